// A worker isolates its subscribers (issue 13): one full mailbox must not hold back the intake
// thread and with it every completion and every other subscriber. And the intake's own
// PublishWait modes for callers that may not wait (an event loop's thread).
#include <herald/events/error.hpp>
#include <herald/worker/worker.hpp>

#include <gtest/gtest.h>
#include <wait_for.hpp>
#include <watchdog.hpp>

#include <atomic>
#include <latch>

using herald::PublishWait;
using herald::StepCompletion;
using herald::Worker;
using herald::WorkerConfig;
using herald::testing::wait_for;
using herald::testing::Watchdog;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

WorkerConfig one_step_config(json worker = json::object()) {
  worker["name"] = "isolation";
  worker["dispatcher_threads"] = 2;
  return WorkerConfig::from_json(json{
      {"worker", worker},
      {"steps", {{{"name", "work"}, {"publishes_events", {{{"name", "work.done"}, {"condition", "always"}}}}}}}});
}

StepCompletion done(int n) {
  StepCompletion c;
  c.step_name = "work";
  c.success = true;
  c.result = {{"n", n}};
  return c;
}

// Counts events; optionally stuck in handle() until released.
class CountingSubscriber : public herald::Subscriber {
 public:
  CountingSubscriber(std::string name, std::latch* gate = nullptr, std::size_t capacity = 10'000)
      : name_(std::move(name)), gate_(gate), capacity_(capacity) {}
  std::string name() const override { return name_; }
  std::vector<std::string> subscribes_to() const override { return {"work.#"}; }
  herald::SubscriberResult handle(const herald::EventPtr&) override {
    if (gate_ != nullptr) {
      entered.store(true);
      gate_->wait();
    }
    ++handled;
    return {};
  }
  herald::SubscribeOptions subscribe_options() const override {
    auto o = Subscriber::subscribe_options();  // the hosted defaults, with a small mailbox
    o.capacity = capacity_;
    return o;
  }
  std::atomic<int> handled{0};
  std::atomic<bool> entered{false};

 private:
  std::string name_;
  std::latch* gate_;
  std::size_t capacity_;
};

}  // namespace

TEST(WorkerIsolation, AStuckSubscriberWithAFullMailboxDoesNotHoldBackTheOthers) {
  Watchdog watchdog("worker isolation", 120s);
  herald::PublisherRegistry publishers;
  Worker worker(one_step_config(), &publishers);
  std::latch release(1);
  auto stuck = std::make_shared<CountingSubscriber>("stuck", &release, /*capacity=*/2);
  auto fast = std::make_shared<CountingSubscriber>("fast");
  worker.add_subscriber(stuck);
  worker.add_subscriber(fast);
  worker.start();
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(worker.complete_step(done(i)));
  // With `block` as the default, each event beyond the stuck mailbox's 2 waited 5 s on the
  // single intake thread: the fast subscriber saw a handful in this bound.
  ASSERT_TRUE(wait_for([&] { return fast->handled.load() == 200; }, 30s)) << fast->handled.load();
  ASSERT_TRUE(stuck->entered.load());
  release.count_down();
  ASSERT_TRUE(worker.drain(30s));
  const auto status = worker.status();
  const std::uint64_t stuck_dropped = status["subscribers"]["stuck"]["dropped"];
  const std::uint64_t stuck_received = status["subscribers"]["stuck"]["received"];
  EXPECT_EQ(stuck_received, 200u);
  EXPECT_GT(stuck_dropped, 0u);  // drop_oldest: counted, not silent
  EXPECT_EQ(static_cast<std::uint64_t>(stuck->handled.load()) + stuck_dropped, 200u);
  (void)worker.stop();
}

TEST(WorkerIntake, ACallerThatMayNotWaitIsTakenBeyondCapacityOrRefusedAtOnce) {
  Watchdog watchdog("intake wait modes", 120s);
  herald::PublisherRegistry publishers;
  Worker worker(one_step_config({{"intake_capacity", 2}, {"intake_block_timeout_ms", 3'600'000}}), &publishers);
  std::latch release(1);
  // Blocks the intake thread inside the pipeline: an on_success hook that waits.
  std::atomic<bool> in_hook{false};
  worker.on_success([&](const StepCompletion& c) {
    if (c.result["n"] == 0) {
      in_hook = true;
      release.wait();
    }
  });
  worker.start();
  ASSERT_TRUE(worker.complete_step(done(0)));
  ASSERT_TRUE(wait_for([&] { return in_hook.load(); }));
  ASSERT_TRUE(worker.complete_step(done(1)));
  ASSERT_TRUE(worker.complete_step(done(2)));
  EXPECT_FALSE(worker.intake_has_room());
  // Would wait an hour with PublishWait::allowed.
  EXPECT_TRUE(worker.complete_step(done(3), PublishWait::overcommit));
  EXPECT_FALSE(worker.complete_step(done(4), PublishWait::drop));
  auto status = worker.status();
  EXPECT_EQ(status["queues"]["intake_depth"], 3);
  EXPECT_EQ(status["completions"]["rejected"], 1);
  EXPECT_EQ(status["completions"]["overcommitted"], 1);
  release.count_down();
  ASSERT_TRUE(worker.drain(30s));
  EXPECT_TRUE(worker.intake_has_room());
  status = worker.status();
  EXPECT_EQ(status["completions"]["processed"], 4);
  (void)worker.stop();
}

// ---- Worker::complete_steps and the batched intake (issue 16) ---------------------------------

namespace {
// Records the "n" of every work.done event, in handling order.
class OrderSubscriber : public herald::Subscriber {
 public:
  std::string name() const override { return "order"; }
  std::vector<std::string> subscribes_to() const override { return {"work.#"}; }
  herald::SubscriberResult handle(const herald::EventPtr& e) override {
    std::lock_guard lock(mutex);
    seen.push_back(e->payload()["n"].get<int>());
    return {};
  }
  herald::SubscribeOptions subscribe_options() const override {
    auto o = Subscriber::subscribe_options();
    o.overflow = herald::OverflowPolicy::block;  // every event, for the order check
    return o;
  }
  std::size_t size() {
    std::lock_guard lock(mutex);
    return seen.size();
  }
  std::mutex mutex;
  std::vector<int> seen;
};

std::vector<StepCompletion> numbered(int from, int to) {
  std::vector<StepCompletion> v;
  for (int i = from; i < to; ++i) v.push_back(done(i));
  return v;
}
}  // namespace

TEST(WorkerIntake, CompleteStepsAcceptsARunInOrderAndTheEventsKeepIt) {
  Watchdog watchdog("complete_steps", 120s);
  herald::PublisherRegistry publishers;
  Worker worker(one_step_config(), &publishers);
  auto order = std::make_shared<OrderSubscriber>();
  worker.add_subscriber(order);
  worker.start();
  std::vector<int> expected;
  for (int run = 0; run < 20; ++run) {  // runs of 250: several intake batches each
    auto completions = numbered(run * 250, (run + 1) * 250);
    ASSERT_EQ(worker.complete_steps(completions), 250u);
    for (int i = run * 250; i < (run + 1) * 250; ++i) expected.push_back(i);
  }
  ASSERT_TRUE(worker.drain(60s));
  EXPECT_EQ(order->seen, expected);
  const auto status = worker.status();
  EXPECT_EQ(status["completions"]["processed"], 5000);
  EXPECT_EQ(status["queues"]["intake_depth"], 0);
  (void)worker.stop();
  auto late = numbered(0, 3);
  EXPECT_EQ(worker.complete_steps(late), 0u);
  EXPECT_EQ(worker.status()["completions"]["rejected"], 3);
}

TEST(WorkerIntake, CompleteStepsAppliesTheOverflowPolicyToThoseBeyondCapacity) {
  Watchdog watchdog("complete_steps overflow", 120s);
  herald::PublisherRegistry publishers;
  Worker worker(one_step_config({{"intake_capacity", 2}, {"intake_overflow", "drop_newest"}}), &publishers);
  std::latch release(1);
  std::atomic<bool> in_hook{false};
  worker.on_success([&](const StepCompletion& c) {
    if (c.result["n"] == 0) {
      in_hook = true;
      release.wait();
    }
  });
  worker.start();
  ASSERT_TRUE(worker.complete_step(done(0)));
  ASSERT_TRUE(wait_for([&] { return in_hook.load(); }));
  auto run = numbered(1, 6);
  EXPECT_EQ(worker.complete_steps(run), 2u);  // 2 fit; drop_newest refuses the other 3
  EXPECT_EQ(worker.status()["completions"]["rejected"], 3);
  release.count_down();
  ASSERT_TRUE(worker.drain(30s));
  EXPECT_EQ(worker.status()["completions"]["processed"], 3);
  (void)worker.stop();
}

TEST(WorkerIntake, AStopPastItsDeadlineCountsTheRestOfTheIntakeBatchUndelivered) {
  Watchdog watchdog("intake batch at stop", 120s);
  herald::PublisherRegistry publishers;
  Worker worker(one_step_config(), &publishers);
  std::atomic<bool> in_hook{false};
  std::atomic<bool> never{false};
  worker.on_success([&](const StepCompletion& c) {
    if (c.result["n"] == 0) {
      in_hook = true;
      (void)wait_for([&] { return never.load(); }, 3s);  // longer than stop's deadline below
    }
  });
  worker.start();
  auto completions = numbered(0, 10);  // one hand-over: the intake thread takes all ten at once
  ASSERT_EQ(worker.complete_steps(completions), 10u);
  ASSERT_TRUE(wait_for([&] { return in_hook.load(); }));
  const auto report = worker.stop(50ms);
  EXPECT_FALSE(report.graceful);
  EXPECT_EQ(report.intake_undelivered, 9u);  // taken with the first, never started
  const auto status = worker.status();
  EXPECT_EQ(status["completions"]["processed"], 1);
  EXPECT_EQ(status["completions"]["dropped"], 9);
}
