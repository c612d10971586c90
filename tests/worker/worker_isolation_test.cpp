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
