// SubscriberRegistry: registration, start_all / stop_all, late registration, remove, stats and
// health.
#include "fn_subscriber.hpp"

#include <herald/events/error.hpp>
#include <herald/subscribers/registry.hpp>

#include <gtest/gtest.h>
#include <wait_for.hpp>

#include <latch>
#include <thread>

using herald::DomainEvent;
using herald::EventBus;
using herald::EventPtr;
using herald::SubscriberRegistry;
using herald::SubscriberResult;
using herald::testing::FnSubscriber;
using herald::testing::fn;
using herald::testing::make;
using herald::testing::wait_for;
using namespace std::chrono_literals;

namespace {

// Holds handlers until opened. Waiting on a condition, not a clock.
class Gate {
 public:
  void wait() {
    std::unique_lock lock(m_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  void open() {
    std::lock_guard lock(m_);
    open_ = true;
    cv_.notify_all();
  }
  bool someone_waiting() {
    std::lock_guard lock(m_);
    return waiting_ > 0;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = false;
  int waiting_ = 0;
};
}  // namespace

TEST(SubscriberRegistration, ADuplicateNameIsRejected) {
  EventBus bus({.dispatcher_threads = 1});
  SubscriberRegistry registry(bus);
  registry.register_subscriber(fn("audit"));
  try {
    registry.register_subscriber(fn("audit"));
    FAIL() << "expected RegistryError";
  } catch (const herald::RegistryError& e) {
    EXPECT_NE(std::string(e.what()).find("'audit'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(registry.names(), std::vector<std::string>{"audit"});
}

TEST(SubscriberRegistration, AnInvalidPatternIsRejectedNamingPatternAndSubscriber) {
  EventBus bus({.dispatcher_threads = 1});
  SubscriberRegistry registry(bus);
  try {
    registry.register_subscriber(fn("s", {"ok.*", "pay*"}));
    FAIL() << "expected PatternError";
  } catch (const herald::PatternError& e) {
    EXPECT_EQ(e.pattern(), "pay*");
    EXPECT_NE(std::string(e.what()).find("subscriber 's'"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(registry.names().empty());
}

TEST(SubscriberRegistration, ANullSubscriberOrOneWithoutPatternsIsRejected) {
  EventBus bus({.dispatcher_threads = 1});
  SubscriberRegistry registry(bus);
  EXPECT_THROW(registry.register_subscriber(nullptr), herald::Error);
  EXPECT_THROW(registry.register_subscriber(fn("s", {})), herald::Error);
}

TEST(SubscriberRegistration, NamesKeepRegistrationOrderAndGetFindsTheSubscriber) {
  EventBus bus({.dispatcher_threads = 1});
  SubscriberRegistry registry(bus);
  auto b = fn("b");
  registry.register_subscriber(b);
  registry.register_subscriber(fn("a"));
  EXPECT_EQ(registry.names(), (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(registry.get("b"), b);
  EXPECT_EQ(registry.get("zzz"), nullptr);
  EXPECT_FALSE(registry.stats("zzz").has_value());
}

TEST(SubscriberLifecycle, StartAllLeavesOutASubscriberWhoseOnStartThrows) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto good = fn("good");
  auto broken = fn("broken");
  broken->start_hook = [] { throw std::runtime_error("no database"); };
  registry.register_subscriber(broken);
  registry.register_subscriber(good);
  EXPECT_EQ(registry.start_all(), 1u);
  bus.publish(make("a.b"));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(good->log.size(), 3u);
  EXPECT_EQ(broken->log.size(), 0u);
  const auto stats = registry.stats();
  EXPECT_EQ(stats["broken"]["state"], "failed");
  EXPECT_EQ(stats["good"]["state"], "started");
  EXPECT_FALSE(registry.health()["healthy"].get<bool>());
  registry.stop_all();
  EXPECT_EQ(broken->stops.load(), 0) << "a subscriber that never started is not stopped";
}

TEST(SubscriberLifecycle, ASecondStartAllDoesNothing) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  registry.register_subscriber(s);
  EXPECT_EQ(registry.start_all(), 1u);
  EXPECT_EQ(registry.start_all(), 0u);
  EXPECT_EQ(s->starts.load(), 1);
  bus.publish(make("a.b"));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(registry.stats("s")->received, 1u) << "subscribed once";
}

TEST(SubscriberLifecycle, NoEventReachesASubscriberBeforeItsOnStartReturns) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  std::atomic<bool> started{false};
  std::atomic<bool> early{false};
  s->start_hook = [&] {
    bus.publish(make("a.during_start"));
    started = true;
  };
  s->on_handle = [&](const EventPtr&) {
    if (!started) early = true;
    return SubscriberResult{};
  };
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.after_start"));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_FALSE(early.load());
  EXPECT_EQ(registry.stats("s")->received, 1u);
}

TEST(SubscriberLifecycle, StopAllDrainsEverythingQueuedAndReportsTheCount) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  Gate gate;
  s->on_handle = [&](const EventPtr&) {
    gate.wait();
    return SubscriberResult{};
  };
  registry.register_subscriber(s);
  registry.start_all();
  for (int i = 0; i < 50; ++i) bus.publish(make("a.b", i));
  ASSERT_TRUE(wait_for([&] { return gate.someone_waiting(); }));
  std::thread opener([&] {
    // Let stop_all begin waiting with all 50 events still in flight, then let them through.
    wait_for([&] { return registry.stopped(); });
    gate.open();
  });
  const auto result = registry.stop_all(60s);
  opener.join();
  EXPECT_TRUE(result.success);
  EXPECT_EQ(result.events_drained, 50u);
  EXPECT_EQ(result.undelivered, 0u);
  EXPECT_EQ(s->stops.load(), 1);
  const auto stats = registry.stats("s");
  EXPECT_EQ(stats->handled, 50u);
  EXPECT_EQ(stats->dropped, 0u);
  EXPECT_EQ(registry.stats()["s"]["state"], "stopped");
}

TEST(SubscriberLifecycle, StopAllPastItsDeadlineDropsAndReportsWhatIsLeft) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  Gate gate;
  s->on_handle = [&](const EventPtr&) {
    gate.wait();
    return SubscriberResult{};
  };
  registry.register_subscriber(s);
  registry.start_all();
  for (int i = 0; i < 10; ++i) bus.publish(make("a.b", i));
  ASSERT_TRUE(wait_for([&] { return gate.someone_waiting(); }));
  std::thread opener([&] {
    wait_for([&] { return registry.stats()["s"]["state"] == "stopped"; });
    gate.open();
  });
  const auto result = registry.stop_all(50ms);
  opener.join();
  EXPECT_FALSE(result.success);
  EXPECT_EQ(result.undelivered, 10u);
  const auto stats = registry.stats("s");
  EXPECT_EQ(stats->received, stats->handled + stats->failed + stats->dropped + stats->in_flight);
}

TEST(SubscriberLifecycle, StopAllIsIdempotentAndRefusesLaterRegistrations) {
  EventBus bus({.dispatcher_threads = 1});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  registry.register_subscriber(s);
  registry.start_all();
  EXPECT_TRUE(registry.stop_all().success);
  const auto again = registry.stop_all();
  EXPECT_TRUE(again.success);
  EXPECT_EQ(again.events_drained, 0u);
  EXPECT_EQ(s->stops.load(), 1);
  EXPECT_THROW(registry.register_subscriber(fn("late")), herald::StateError);
  EXPECT_EQ(registry.start_all(), 0u);
}

TEST(SubscriberLifecycle, AnOnStopThatThrowsMakesStopAllUnsuccessfulButStopsTheOthers) {
  EventBus bus({.dispatcher_threads = 1});
  SubscriberRegistry registry(bus);
  auto a = fn("a");
  auto b = fn("b");
  a->stop_hook = [] { throw std::runtime_error("flush failed"); };
  registry.register_subscriber(a);
  registry.register_subscriber(b);
  registry.start_all();
  EXPECT_FALSE(registry.stop_all().success);
  EXPECT_EQ(a->stops.load(), 1);
  EXPECT_EQ(b->stops.load(), 1);
}

TEST(SubscriberLifecycle, ASubscriberRegisteredAfterStartAllStartsAtOnce) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  registry.start_all();
  auto late = fn("late");
  registry.register_subscriber(late);
  EXPECT_EQ(late->starts.load(), 1);
  bus.publish(make("a.b"));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(registry.stats("late")->handled, 1u);

  auto broken = fn("broken");
  broken->start_hook = [] { throw std::runtime_error("no"); };
  EXPECT_THROW(registry.register_subscriber(broken), std::runtime_error);
  EXPECT_EQ(registry.names(), std::vector<std::string>{"late"});
}

TEST(SubscriberLifecycle, RemoveUnsubscribesAndCallsOnStop) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  registry.register_subscriber(s);
  registry.start_all();
  EXPECT_TRUE(registry.remove("s"));
  EXPECT_FALSE(registry.remove("s"));
  EXPECT_EQ(s->stops.load(), 1);
  const auto report = bus.publish(make("a.b"));
  EXPECT_EQ(report.matched, 0u);
  EXPECT_TRUE(registry.names().empty());
}

TEST(SubscriberLifecycle, RemoveFromInsideItsOwnHandlerStopsLaterDeliveries) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  std::atomic<int> calls{0};
  s->on_handle = [&](const EventPtr&) {
    if (++calls == 1) {
      EXPECT_TRUE(registry.remove("s"));
    }
    return SubscriberResult{};
  };
  registry.register_subscriber(s);
  registry.start_all();
  for (int i = 0; i < 20; ++i) bus.publish(make("a.b", i));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(s->stops.load(), 1);
  EXPECT_EQ(bus.publish(make("a.b")).matched, 0u);
}

TEST(SubscriberLifecycle, RemoveFromInsideAnotherSubscribersHandlerWorks) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto remover = fn("remover", {"control.#"});
  auto victim = fn("victim", {"work.#"});
  remover->on_handle = [&](const EventPtr&) {
    EXPECT_TRUE(registry.remove("victim"));
    return SubscriberResult{};
  };
  registry.register_subscriber(remover);
  registry.register_subscriber(victim);
  registry.start_all();
  bus.publish(make("work.one"));
  ASSERT_TRUE(bus.drain(60s));
  bus.publish(make("control.remove"));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(victim->stops.load(), 1);
  EXPECT_EQ(bus.publish(make("work.two")).matched, 0u);
}

TEST(SubscriberStats, ReceivedEqualsHandledPlusFailedPlusDroppedPlusInFlightWhileBusy) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  s->options.capacity = 64;
  s->options.overflow = herald::OverflowPolicy::drop_newest;
  s->on_handle = [](const EventPtr& e) {
    return e->payload()["n"].get<int>() % 3 == 0 ? SubscriberResult::failure("third")
                                                 : SubscriberResult{};
  };
  registry.register_subscriber(s);
  registry.start_all();
  std::atomic<bool> done{false};
  std::thread publisher([&] {
    for (int i = 0; i < 20'000; ++i) bus.publish(make("a.b", i));
    done = true;
  });
  int samples = 0;
  while (!done || samples < 10) {
    const auto st = registry.stats("s");
    ASSERT_EQ(st->received, st->handled + st->failed + st->dropped + st->in_flight);
    const auto j = registry.stats()["s"];
    ASSERT_EQ(j["received"].get<std::uint64_t>(),
              j["handled"].get<std::uint64_t>() + j["failed"].get<std::uint64_t>() +
                  j["dropped"].get<std::uint64_t>() + j["in_flight"].get<std::uint64_t>());
    ++samples;
  }
  publisher.join();
  ASSERT_TRUE(bus.drain(60s));
  const auto st = registry.stats("s");
  EXPECT_EQ(st->received, 20'000u);
  EXPECT_EQ(st->in_flight, 0u);
  EXPECT_EQ(st->received, st->handled + st->failed + st->dropped);
}

TEST(SubscriberStats, StatsJsonCarriesTheCountersForEachSubscriber) {
  EventBus bus({.dispatcher_threads = 1});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  s->on_handle = [](const EventPtr&) { return SubscriberResult::failure("nope"); };
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.b"));
  ASSERT_TRUE(bus.drain(60s));
  const auto j = registry.stats()["s"];
  for (const char* key : {"received", "handled", "failed", "dropped", "in_flight", "slow",
                          "last_error", "skipped", "state", "breaker"}) {
    EXPECT_TRUE(j.contains(key)) << key << " in " << j.dump();
  }
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["last_error"], "nope");
  EXPECT_TRUE(j["breaker"].is_null());
}

TEST(SubscriberHealth, HealthCombinesEachHealthCheck) {
  EventBus bus({.dispatcher_threads = 1});
  SubscriberRegistry registry(bus);
  auto a = fn("a");
  auto b = fn("b");
  registry.register_subscriber(a);
  registry.register_subscriber(b);
  registry.start_all();
  EXPECT_TRUE(registry.health()["healthy"].get<bool>());
  b->healthy = false;
  const auto h = registry.health();
  EXPECT_FALSE(h["healthy"].get<bool>());
  EXPECT_TRUE(h["subscribers"]["a"]["healthy"].get<bool>());
  EXPECT_FALSE(h["subscribers"]["b"]["health_check"].get<bool>());
}
