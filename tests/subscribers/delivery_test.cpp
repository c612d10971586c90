// Delivery guarantees seen through subscribers: nothing lost with `block` under load,
// per-publisher order per subscriber, and drop policies that drop exactly what they report.
#include "fn_subscriber.hpp"

#include <herald/subscribers/registry.hpp>

#include <gtest/gtest.h>
#include <wait_for.hpp>

#include <condition_variable>
#include <map>
#include <thread>

using herald::DomainEvent;
using herald::EventBus;
using herald::EventPtr;
using herald::OverflowPolicy;
using herald::SubscriberRegistry;
using herald::SubscriberResult;
using herald::testing::FnSubscriber;
using herald::testing::fn;
using herald::testing::make;
using herald::testing::wait_for;
using namespace std::chrono_literals;

namespace {
// A subscriber that counts and, optionally, checks per-publisher order (payload {"t", "n"}).
class Counter : public herald::Subscriber {
 public:
  explicit Counter(std::string name) : name_(std::move(name)) {}
  std::string name() const override { return name_; }
  std::vector<std::string> subscribes_to() const override { return {"load.#"}; }
  herald::SubscribeOptions subscribe_options() const override {
    return {.name = name_, .capacity = 256, .overflow = OverflowPolicy::block,
            .block_timeout = 60s};
  }
  SubscriberResult handle(const EventPtr& e) override {
    ++count;
    const auto& p = e->payload();
    const int t = p["t"].get<int>(), n = p["n"].get<int>();
    auto [it, fresh] = last_.emplace(t, n);
    if (!fresh) {
      if (n <= it->second) out_of_order = true;
      it->second = n;
    }
    return {};
  }
  std::atomic<int> count{0};
  std::atomic<bool> out_of_order{false};

 private:
  std::string name_;
  std::map<int, int> last_;  // only touched by handle(), which the bus serializes
};

// Handlers block on it until opened.
class Gate {
 public:
  void wait() {
    std::unique_lock lock(m_);
    ++entered_;
    cv_.wait(lock, [&] { return open_; });
  }
  void open() {
    std::lock_guard lock(m_);
    open_ = true;
    cv_.notify_all();
  }
  int entered() {
    std::lock_guard lock(m_);
    return entered_;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = false;
  int entered_ = 0;
};
}  // namespace

TEST(SubscriberDelivery, BlockLosesNothingUnderLoadAndKeepsEachPublishersOrder) {
  constexpr int kThreads = 4, kSubscribers = 8, kEvents = 100'000;
  EventBus bus({.dispatcher_threads = 4});
  SubscriberRegistry registry(bus);
  std::vector<std::shared_ptr<Counter>> counters;
  for (int i = 0; i < kSubscribers; ++i) {
    counters.push_back(std::make_shared<Counter>("counter-" + std::to_string(i)));
    registry.register_subscriber(counters.back());
  }
  ASSERT_EQ(registry.start_all(), static_cast<std::size_t>(kSubscribers));
  std::vector<std::thread> publishers;
  for (int t = 0; t < kThreads; ++t) {
    publishers.emplace_back([&bus, t] {
      for (int n = 0; n < kEvents / kThreads; ++n) {
        bus.publish(DomainEvent::create("load.event", {{"t", t}, {"n", n}}));
      }
    });
  }
  for (auto& p : publishers) p.join();
  const auto result = registry.stop_all(120s);
  EXPECT_TRUE(result.success);
  for (const auto& c : counters) {
    EXPECT_EQ(c->count.load(), kEvents) << c->name();
    EXPECT_FALSE(c->out_of_order.load()) << c->name();
    const auto stats = registry.stats(c->name());
    EXPECT_EQ(stats->received, static_cast<std::uint64_t>(kEvents));
    EXPECT_EQ(stats->handled, static_cast<std::uint64_t>(kEvents));
    EXPECT_EQ(stats->dropped, 0u);
  }
}

TEST(SubscriberDelivery, EachPublishingThreadsEventsArriveInThatThreadsOrder) {
  constexpr int kThreads = 4, kPerThread = 5'000;
  EventBus bus({.dispatcher_threads = 2, .batch_size = 8});
  SubscriberRegistry registry(bus);
  auto a = std::make_shared<Counter>("a");
  auto b = std::make_shared<Counter>("b");
  registry.register_subscriber(a);
  registry.register_subscriber(b);
  registry.start_all();
  std::vector<std::thread> publishers;
  for (int t = 0; t < kThreads; ++t) {
    publishers.emplace_back([&bus, t] {
      for (int n = 0; n < kPerThread; ++n) {
        bus.publish(DomainEvent::create("load.ordered", {{"t", t}, {"n", n}}));
      }
    });
  }
  for (auto& p : publishers) p.join();
  ASSERT_TRUE(registry.stop_all(60s).success);
  for (const auto& c : {a, b}) {
    EXPECT_EQ(c->count.load(), kThreads * kPerThread);
    EXPECT_FALSE(c->out_of_order.load()) << c->name();
  }
}

namespace {
// One subscriber with a small mailbox whose first event blocks its handler; returns the handled
// event numbers once everything is released.
struct DropRun {
  std::vector<int> handled;
  std::size_t reported_dropped = 0;
  herald::SubscriptionStats stats;
};

DropRun run_with_blocked_handler(OverflowPolicy policy, int capacity, int published) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = std::make_shared<FnSubscriber>("s", std::vector<std::string>{"#"});
  s->options = {.capacity = static_cast<std::size_t>(capacity), .overflow = policy};
  Gate gate;
  std::mutex m;
  DropRun run;
  s->on_handle = [&](const EventPtr& e) {
    const int n = e->payload()["n"].get<int>();
    if (n == 0) gate.wait();
    std::lock_guard lock(m);
    run.handled.push_back(n);
    return SubscriberResult{};
  };
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.b", 0));
  EXPECT_TRUE(wait_for([&] { return gate.entered() == 1; }));  // the handler holds event 0
  for (int n = 1; n <= published; ++n) run.reported_dropped += bus.publish(make("a.b", n)).dropped;
  gate.open();
  EXPECT_TRUE(bus.drain(60s));
  run.stats = *registry.stats("s");
  std::lock_guard lock(m);
  return run;
}
}  // namespace

TEST(SubscriberDelivery, DropNewestDropsExactlyWhatPublishReports) {
  const auto run = run_with_blocked_handler(OverflowPolicy::drop_newest, 10, 25);
  EXPECT_EQ(run.reported_dropped, 15u);
  EXPECT_EQ(run.stats.dropped, 15u);
  EXPECT_EQ(run.stats.received, 26u);
  EXPECT_EQ(run.stats.handled, 11u);
  std::vector<int> expected{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};  // the oldest ten were kept
  EXPECT_EQ(run.handled, expected);
}

TEST(SubscriberDelivery, DropOldestDropsExactlyWhatItCounts) {
  const auto run = run_with_blocked_handler(OverflowPolicy::drop_oldest, 10, 25);
  EXPECT_EQ(run.reported_dropped, 0u) << "drop_oldest accepts the new event";
  EXPECT_EQ(run.stats.dropped, 15u);
  EXPECT_EQ(run.stats.received, 26u);
  EXPECT_EQ(run.stats.handled, 11u);
  std::vector<int> expected{0, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25};  // the newest ten
  EXPECT_EQ(run.handled, expected);
}

TEST(SubscriberDelivery, BlockWithAnExpiredTimeoutDropsAndReportsIt) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = std::make_shared<FnSubscriber>("s", std::vector<std::string>{"#"});
  s->options = {.capacity = 2, .overflow = OverflowPolicy::block, .block_timeout = 20ms};
  Gate gate;
  s->on_handle = [&](const EventPtr& e) {
    if (e->payload()["n"].get<int>() == 0) gate.wait();
    return SubscriberResult{};
  };
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.b", 0));
  ASSERT_TRUE(wait_for([&] { return gate.entered() == 1; }));
  std::size_t reported = 0;
  for (int n = 1; n <= 4; ++n) reported += bus.publish(make("a.b", n)).dropped;
  gate.open();
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(reported, 2u);
  EXPECT_EQ(registry.stats("s")->dropped, 2u);
  EXPECT_EQ(registry.stats("s")->handled, 3u);
}
