#include <herald/events/error.hpp>
#include <herald/events/event_bus.hpp>

#include <gtest/gtest.h>
#include <wait_for.hpp>

#include <atomic>
#include <latch>
#include <map>
#include <set>
#include <mutex>
#include <numeric>
#include <thread>

using herald::DomainEvent;
using herald::EventBus;
using herald::EventPtr;
using herald::OverflowPolicy;
using herald::testing::wait_for;
using namespace std::chrono_literals;

namespace {
EventPtr make(const std::string& name, int n = 0) {
  return DomainEvent::create(name, {{"n", n}});
}

void expect_invariant(const herald::SubscriptionStats& s) {
  EXPECT_EQ(s.received, s.handled + s.failed + s.dropped + s.in_flight) << s.to_json().dump();
}
}  // namespace

TEST(EventBusDelivery, AMatchingSubscriberReceivesTheSameEventObject) {
  EventBus bus({.dispatcher_threads = 2});
  std::mutex m;
  std::vector<EventPtr> got;
  auto sub = bus.subscribe({"payment.*"}, [&](const EventPtr& e) {
    std::lock_guard lock(m);
    got.push_back(e);
  });
  const auto e = make("payment.processed");
  const auto report = bus.publish(e);
  EXPECT_EQ(report.matched, 1u);
  EXPECT_EQ(report.delivered, 1u);
  bus.publish(make("order.created"));
  ASSERT_TRUE(bus.drain(60s));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].get(), e.get());
  EXPECT_EQ(bus.stats().unmatched, 1u);
}

TEST(EventBusDelivery, ASubscriberWithOverlappingPatternsGetsEachEventOnce) {
  EventBus bus({.dispatcher_threads = 2});
  std::atomic<int> calls{0};
  auto sub = bus.subscribe({"payment.*", "payment.processed", "#", "*"}, [&](const EventPtr&) { ++calls; });
  for (int i = 0; i < 100; ++i) bus.publish(make("payment.processed", i));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(calls.load(), 100);
}

TEST(EventBusDelivery, InvalidPatternsAreRejectedAtSubscribeTime) {
  EventBus bus({.dispatcher_threads = 1});
  EXPECT_THROW(bus.subscribe({"ok.*", "bad..pattern"}, [](const EventPtr&) {}), herald::PatternError);
  EXPECT_THROW(bus.subscribe({}, [](const EventPtr&) {}), herald::Error);
  EXPECT_TRUE(bus.stats().subscriptions.empty());
}

TEST(EventBusOrdering, EachPublishingThreadsEventsArriveInOrderPerSubscriber) {
  EventBus bus({.dispatcher_threads = 4, .batch_size = 8});
  constexpr int kThreads = 4, kPerThread = 5000, kSubscribers = 4;
  struct Seen {
    std::mutex m;
    std::map<int, int> last;  // thread -> last n
    bool in_order = true;
    int count = 0;
  };
  std::vector<Seen> seen(kSubscribers);
  std::vector<herald::Subscription> subs;
  for (int s = 0; s < kSubscribers; ++s) {
    subs.push_back(bus.subscribe({"load.#"}, [&, s](const EventPtr& e) {
      auto& me = seen[s];
      std::lock_guard lock(me.m);  // uncontended unless the bus broke the one-at-a-time rule
      const int t = e->payload()["t"], n = e->payload()["n"];
      auto it = me.last.find(t);
      if (it != me.last.end() && it->second >= n) me.in_order = false;
      me.last[t] = n;
      ++me.count;
    }));
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int n = 0; n < kPerThread; ++n) {
        bus.publish(DomainEvent::create("load.t" + std::to_string(t), {{"t", t}, {"n", n}}));
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(bus.drain(30s));
  for (auto& s : seen) {
    EXPECT_TRUE(s.in_order);
    EXPECT_EQ(s.count, kThreads * kPerThread);
  }
}

TEST(EventBusOrdering, ASubscriptionNeverRunsOnTwoThreadsAtOnce) {
  EventBus bus({.dispatcher_threads = 4, .batch_size = 1});
  std::atomic<int> inside{0};
  std::atomic<bool> overlap{false};
  auto sub = bus.subscribe({"#"}, [&](const EventPtr&) {
    if (inside.fetch_add(1) != 0) overlap = true;
    // Stay inside a moment so that a second dispatcher running the same subscription would be
    // caught. A spin, not a yield: on a loaded machine a yield per event costs a scheduler time
    // slice, and 8,000 of them outlasted the drain's 30 s in a CI run.
    for (int k = 0; k < 512 && !overlap.load(std::memory_order_relaxed); ++k) {
    }
    inside.fetch_sub(1);
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) bus.publish(make("x"));
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(bus.drain(30s));
  EXPECT_FALSE(overlap.load());
}

TEST(EventBusOverflow, BlockLosesNothingUnderLoad) {
  EventBus bus({.dispatcher_threads = 2});
  constexpr int kThreads = 4, kPerThread = 25000, kSubscribers = 8;
  std::vector<std::atomic<int>> counts(kSubscribers);
  std::vector<herald::Subscription> subs;
  for (int s = 0; s < kSubscribers; ++s) {
    subs.push_back(bus.subscribe({"load.*"}, [&, s](const EventPtr&) { counts[s].fetch_add(1); },
                                 {.capacity = 256, .overflow = OverflowPolicy::block,
                                  .block_timeout = 60s}));
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      const auto e = make("load.tick");  // the same shared event, many times
      for (int n = 0; n < kPerThread; ++n) bus.publish(e);
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(bus.drain(60s));
  for (int s = 0; s < kSubscribers; ++s) {
    EXPECT_EQ(counts[s].load(), kThreads * kPerThread);
    const auto st = subs[s].stats();
    EXPECT_EQ(st.dropped, 0u);
    EXPECT_EQ(st.handled, static_cast<std::uint64_t>(kThreads * kPerThread));
    expect_invariant(st);
  }
}

TEST(EventBusOverflow, DropNewestDropsExactlyWhatItReports) {
  EventBus bus({.dispatcher_threads = 1});
  std::vector<int> seen;
  auto sub = bus.subscribe({"#"}, [&](const EventPtr& e) { seen.push_back(e->payload()["n"]); },
                           {.capacity = 10, .overflow = OverflowPolicy::drop_newest});
  sub.pause();  // hold deliveries so the mailbox fills deterministically
  std::size_t reported_drops = 0;
  for (int i = 0; i < 25; ++i) reported_drops += bus.publish(make("x", i)).dropped;
  EXPECT_EQ(reported_drops, 15u);
  EXPECT_EQ(sub.stats().dropped, 15u);
  expect_invariant(sub.stats());
  sub.resume();
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  expect_invariant(sub.stats());
}

TEST(EventBusOverflow, DropOldestKeepsTheNewestEvents) {
  EventBus bus({.dispatcher_threads = 1});
  std::vector<int> seen;
  auto sub = bus.subscribe({"#"}, [&](const EventPtr& e) { seen.push_back(e->payload()["n"]); },
                           {.capacity = 10, .overflow = OverflowPolicy::drop_oldest});
  sub.pause();
  std::size_t reported_drops = 0, reported_displaced = 0;
  for (int i = 0; i < 25; ++i) {
    const auto report = bus.publish(make("x", i));
    reported_drops += report.dropped;
    reported_displaced += report.displaced;
  }
  EXPECT_EQ(reported_drops, 0u);       // each new event was accepted...
  EXPECT_EQ(reported_displaced, 15u);  // ...and an old one made room, reported to the publisher
  EXPECT_EQ(sub.stats().dropped, 15u);
  sub.resume();
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(seen, (std::vector<int>{15, 16, 17, 18, 19, 20, 21, 22, 23, 24}));
  expect_invariant(sub.stats());
}

TEST(EventBusOverflow, BlockGivesUpAfterItsTimeoutAndCountsTheDrop) {
  EventBus bus({.dispatcher_threads = 1});
  auto sub = bus.subscribe({"#"}, [](const EventPtr&) {},
                           {.capacity = 1, .overflow = OverflowPolicy::block, .block_timeout = 20ms});
  sub.pause();
  EXPECT_EQ(bus.publish(make("x")).delivered, 1u);
  const auto r = bus.publish(make("x"));
  EXPECT_EQ(r.dropped, 1u);
  EXPECT_EQ(sub.stats().dropped, 1u);
  expect_invariant(sub.stats());
}

TEST(EventBusIsolation, AThrowingHandlerIsCountedAndDoesNotAffectOthers) {
  EventBus bus({.dispatcher_threads = 2});
  std::atomic<int> good{0};
  auto bad = bus.subscribe({"#"}, [](const EventPtr& e) {
    if (e->payload()["n"].get<int>() % 2 == 0) throw std::runtime_error("boom");
  });
  auto ok = bus.subscribe({"#"}, [&](const EventPtr&) { ++good; });
  for (int i = 0; i < 10; ++i) bus.publish(make("x", i));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(good.load(), 10);
  const auto s = bad.stats();
  EXPECT_EQ(s.failed, 5u);
  EXPECT_EQ(s.handled, 5u);
  EXPECT_EQ(s.last_error, "boom");
  expect_invariant(s);
}

TEST(EventBusReentrancy, UnsubscribeInsideTheHandlerStopsFurtherDeliveries) {
  EventBus bus({.dispatcher_threads = 2});
  std::atomic<int> calls{0};
  herald::Subscription sub;
  std::mutex m;
  {
    std::lock_guard lock(m);
    sub = bus.subscribe({"#"}, [&](const EventPtr&) {
      ++calls;
      std::lock_guard lock(m);
      sub.unsubscribe();
    });
    for (int i = 0; i < 50; ++i) bus.publish(make("x", i));
  }
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(calls.load(), 1);
  EXPECT_FALSE(sub.active());
  for (int i = 0; i < 5; ++i) bus.publish(make("x", i));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(calls.load(), 1);
}

TEST(EventBusReentrancy, SubscribeAndPublishFromInsideAHandlerWork) {
  EventBus bus({.dispatcher_threads = 2});
  std::atomic<int> followups{0};
  std::vector<herald::Subscription> later;
  std::mutex m;
  auto first = bus.subscribe({"start"}, [&](const EventPtr&) {
    std::lock_guard lock(m);
    later.push_back(bus.subscribe({"followup"}, [&](const EventPtr&) { ++followups; }));
    bus.publish(make("followup"));
  });
  bus.publish(make("start"));
  ASSERT_TRUE(wait_for([&] { return followups.load() == 1; }));
  ASSERT_TRUE(bus.drain(60s));
}

TEST(EventBusReentrancy, UnsubscribeFromAnotherThreadWaitsForTheRunningHandler) {
  EventBus bus({.dispatcher_threads = 1});
  std::atomic<bool> entered{false}, release{false}, finished{false};
  auto sub = bus.subscribe({"#"}, [&](const EventPtr&) {
    entered = true;
    while (!release) std::this_thread::yield();
    finished = true;
  });
  bus.publish(make("x"));
  ASSERT_TRUE(wait_for([&] { return entered.load(); }));
  std::thread releaser([&] {
    std::this_thread::sleep_for(20ms);  // give unsubscribe time to start waiting
    release = true;
  });
  sub.unsubscribe();
  EXPECT_TRUE(finished.load());  // unsubscribe returned only after the handler finished
  releaser.join();
}

TEST(EventBusLifecycle, StopDrainsEverythingQueued) {
  EventBus bus({.dispatcher_threads = 2});
  std::atomic<int> calls{0};
  auto sub = bus.subscribe({"#"}, [&](const EventPtr&) {
    std::this_thread::sleep_for(50us);
    ++calls;
  });
  for (int i = 0; i < 2000; ++i) bus.publish(make("x", i));
  const auto report = bus.stop(30s);
  EXPECT_TRUE(report.drained);
  EXPECT_EQ(report.undelivered, 0u);
  EXPECT_EQ(calls.load(), 2000);
  EXPECT_TRUE(bus.publish(make("x")).rejected);
  EXPECT_EQ(bus.stats().rejected, 1u);
  EXPECT_THROW(bus.subscribe({"#"}, [](const EventPtr&) {}), herald::StateError);
}

TEST(EventBusLifecycle, StopReportsWhatItCouldNotDeliverBeforeTheDeadline) {
  EventBus bus({.dispatcher_threads = 1});
  auto sub = bus.subscribe({"#"}, [](const EventPtr&) {});
  sub.pause();
  for (int i = 0; i < 7; ++i) bus.publish(make("x", i));
  const auto report = bus.stop(10ms);
  EXPECT_FALSE(report.drained);
  EXPECT_EQ(report.undelivered, 7u);
  EXPECT_EQ(sub.stats().dropped, 7u);
  expect_invariant(sub.stats());
}

TEST(EventBusLifecycle, DispatcherHooksRunOnEachPoolThread) {
  std::mutex m;
  std::set<std::thread::id> started, stopped;
  {
    EventBus bus({.dispatcher_threads = 3,
                  .on_dispatcher_start = [&] { std::lock_guard l(m); started.insert(std::this_thread::get_id()); },
                  .on_dispatcher_stop = [&] { std::lock_guard l(m); stopped.insert(std::this_thread::get_id()); }});
    EXPECT_EQ(bus.dispatcher_threads(), 3u);
  }
  EXPECT_EQ(started.size(), 3u);
  EXPECT_EQ(started, stopped);
  EXPECT_EQ(started.count(std::this_thread::get_id()), 0u);
}

TEST(EventBusLifecycle, ASubscriptionOutlivingItsBusIsHarmless) {
  herald::Subscription sub;
  {
    EventBus bus({.dispatcher_threads = 1});
    sub = bus.subscribe({"#"}, [](const EventPtr&) {});
  }
  EXPECT_FALSE(sub.active());
  sub.unsubscribe();
}

TEST(EventBusInline, HandlersRunOnThePublishingThread) {
  EventBus bus({.inline_dispatch = true});
  std::thread::id where;
  auto sub = bus.subscribe({"#"}, [&](const EventPtr&) { where = std::this_thread::get_id(); });
  const auto r = bus.publish(make("x"));
  EXPECT_EQ(r.delivered, 1u);
  EXPECT_EQ(where, std::this_thread::get_id());
  EXPECT_EQ(bus.dispatcher_threads(), 0u);
}

TEST(EventBusInline, AThrowingInlineHandlerIsReportedNotPropagated) {
  EventBus bus({.inline_dispatch = true});
  auto sub = bus.subscribe({"#"}, [&](const EventPtr&) { throw std::runtime_error("nope"); });
  const auto r = bus.publish(make("x"));
  EXPECT_EQ(r.failed, 1u);
  EXPECT_EQ(sub.stats().failed, 1u);
}

TEST(EventBusInline, AReentrantPublishToTheSameSubscriptionRunsNested) {
  EventBus bus({.inline_dispatch = true});
  std::vector<std::string> order;
  auto sub = bus.subscribe({"#"}, [&](const EventPtr& e) {
    order.push_back("enter " + e->event_name());
    if (e->event_name() == "outer") bus.publish(make("inner"));
    order.push_back("leave " + e->event_name());
  });
  bus.publish(make("outer"));
  EXPECT_EQ(order, (std::vector<std::string>{"enter outer", "enter inner", "leave inner", "leave outer"}));
}

TEST(EventBusBatches, ABatchHandlerReceivesConsecutiveEventsAndReportsOutcomes) {
  EventBus bus({.dispatcher_threads = 1, .batch_size = 16});
  std::atomic<int> seen{0};
  auto sub = bus.subscribe_batch({"#"}, [&](std::span<const EventPtr> events,
                                            std::span<herald::HandleOutcome> outcomes) {
    for (std::size_t i = 0; i < events.size(); ++i) {
      if (events[i]->payload()["n"].get<int>() == 3) outcomes[i] = herald::HandleOutcome::failed;
      ++seen;
    }
  });
  sub.pause();
  for (int i = 0; i < 40; ++i) bus.publish(make("x", i));
  sub.resume();
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(seen.load(), 40);
  EXPECT_EQ(sub.stats().failed, 1u);
  EXPECT_EQ(sub.stats().handled, 39u);
}

TEST(EventBusStats, SlowHandlersAreCounted) {
  EventBus bus({.dispatcher_threads = 1});
  auto sub = bus.subscribe({"#"}, [](const EventPtr& e) {
    if (e->payload()["n"] == 1) std::this_thread::sleep_for(30ms);
  }, {.slow_threshold = 5ms});
  bus.publish(make("x", 0));
  bus.publish(make("x", 1));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(sub.stats().slow, 1u);
}

TEST(OverflowPolicies, ParseAndPrintEveryPolicyAndRejectUnknownByName) {
  for (auto p : {OverflowPolicy::block, OverflowPolicy::drop_newest, OverflowPolicy::drop_oldest}) {
    EXPECT_EQ(herald::parse_overflow_policy(herald::to_string(p)), p);
  }
  try {
    herald::parse_overflow_policy("drop_all");
    FAIL();
  } catch (const herald::UnknownValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'drop_all'"), std::string::npos);
  }
}

TEST(EventBusPause, PausingMidBatchHoldsTheRestOfTheBatchInOrder) {
  EventBus bus({.dispatcher_threads = 1, .batch_size = 64});
  std::vector<int> seen;
  herald::Subscription sub;
  std::mutex m;
  sub = bus.subscribe({"#"}, [&](const EventPtr& e) {
    const int n = e->payload()["n"];
    seen.push_back(n);
    if (n == 4) {
      std::lock_guard lock(m);
      sub.pause();  // like a circuit breaker opening on a failure
    }
  });
  {
    std::lock_guard lock(m);
    sub.pause();
    for (int i = 0; i < 20; ++i) bus.publish(make("x", i));
    sub.resume();  // one batch of 20 starts
  }
  ASSERT_TRUE(wait_for([&] { return sub.stats().handled == 5; }));
  EXPECT_FALSE(bus.drain(50ms));  // the other 15 are held, not lost
  EXPECT_EQ(sub.stats().queue_depth, 15u);
  {
    std::lock_guard lock(m);
    sub.resume();
  }
  ASSERT_TRUE(bus.drain(60s));
  std::vector<int> expected(20);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(seen, expected);
  expect_invariant(sub.stats());
}

TEST(EventBusStats, StatsSurviveUnsubscribeWithTheDropsItMade) {
  EventBus bus({.dispatcher_threads = 1});
  auto sub = bus.subscribe({"#"}, [](const EventPtr&) {});
  sub.pause();
  for (int i = 0; i < 4; ++i) bus.publish(make("x", i));
  sub.unsubscribe();
  const auto s = sub.stats();
  EXPECT_EQ(s.received, 4u);
  EXPECT_EQ(s.dropped, 4u);
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_FALSE(sub.active());
}

// The routing snapshot is read without locks and retired snapshots are freed later (see
// BusCore): these tests pin down that "later" really comes, and that churn under load is safe.
TEST(EventBusRoutes, AHandlerIsDestroyedOnceItsSubscriptionIsGoneAndNoPublishIsInFlight) {
  for (const bool inline_mode : {true, false}) {
    EventBus bus({.dispatcher_threads = 1, .inline_dispatch = inline_mode});
    auto token = std::make_shared<int>(0);
    std::weak_ptr<int> watch = token;
    {
      auto sub = bus.subscribe({"a.*"}, [token](const EventPtr&) { ++*token; });
      token.reset();
      bus.publish(make("a.b"));  // builds a snapshot that holds the subscription
      ASSERT_TRUE(bus.drain(60s));
      EXPECT_FALSE(watch.expired());
    }  // unsubscribed: the snapshot is retired, and nobody is publishing
    EXPECT_TRUE(watch.expired()) << (inline_mode ? "inline" : "pool");
    bus.publish(make("a.b"));  // a fresh snapshot without it
    EXPECT_EQ(bus.stats().published, 2u);
  }
}

TEST(EventBusStats, PublishedCountsAcceptedPublishesNestedAndConcurrentOnesIncludedButNotRejected) {
  for (const bool inline_mode : {true, false}) {
    EventBus bus({.dispatcher_threads = 2, .inline_dispatch = inline_mode});
    std::atomic<int> nested{0};
    auto sub = bus.subscribe({"outer"}, [&](const EventPtr&) {
      bus.publish(make("inner"));  // re-entrant (inline) or from a dispatcher thread (pool)
      nested.fetch_add(1);
    });
    constexpr int kThreads = 4, kPerThread = 5000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kPerThread; ++i) bus.publish(make(i % 10 == 0 ? "outer" : "other", i));
      });
    }
    for (auto& t : threads) t.join();
    ASSERT_TRUE(bus.drain(30s));
    const auto outers = kThreads * kPerThread / 10;
    EXPECT_EQ(nested.load(), outers);
    auto stats = bus.stats();
    EXPECT_EQ(stats.published, static_cast<std::uint64_t>(kThreads * kPerThread + outers));
    EXPECT_EQ(stats.pending, 0u);
    EXPECT_TRUE(bus.stop(60s).drained);
    EXPECT_TRUE(bus.publish(make("other")).rejected);
    stats = bus.stats();
    EXPECT_EQ(stats.published, static_cast<std::uint64_t>(kThreads * kPerThread + outers));
    EXPECT_EQ(stats.rejected, 1u);
    EXPECT_EQ(bus.pending(), 0u);
  }
}

TEST(EventBusRoutes, SubscribeAndUnsubscribeWhileOtherThreadsPublishLosesNoSteadySubscriberEvent) {
  for (const bool inline_mode : {true, false}) {
    EventBus bus({.dispatcher_threads = 2, .inline_dispatch = inline_mode});
    std::atomic<int> steady{0};
    std::atomic<bool> after_unsubscribe_call{false};
    auto steady_sub = bus.subscribe({"load.#"}, [&](const EventPtr&) { steady.fetch_add(1); });
    constexpr int kThreads = 3, kPerThread = 5000;
    std::atomic<bool> publishing{true};
    std::thread churn([&] {
      while (publishing.load()) {
        std::atomic<bool> unsubscribed{false};
        auto transient = bus.subscribe({"load.*"}, [&](const EventPtr&) {
          if (unsubscribed.load()) after_unsubscribe_call.store(true);
        });
        std::this_thread::yield();
        transient.unsubscribe();
        unsubscribed.store(true);  // from here on the handler must never run again
      }
    });
    std::vector<std::thread> publishers;
    for (int t = 0; t < kThreads; ++t) {
      publishers.emplace_back([&] {
        for (int i = 0; i < kPerThread; ++i) bus.publish(make("load.tick", i));
      });
    }
    for (auto& p : publishers) p.join();
    publishing.store(false);
    churn.join();
    ASSERT_TRUE(bus.drain(60s));
    EXPECT_EQ(steady.load(), kThreads * kPerThread) << (inline_mode ? "inline" : "pool");
    EXPECT_FALSE(after_unsubscribe_call.load());
    expect_invariant(steady_sub.stats());
  }
}

TEST(EventBusRoutes, AMatchCacheFloodedWithDistinctNamesIsRenewedAndStaysCorrect) {
  EventBus bus({.inline_dispatch = true, .match_cache_capacity = 8});
  int hot = 0, all = 0;
  auto a = bus.subscribe({"order.*.created"}, [&](const EventPtr&) { ++all; });
  auto b = bus.subscribe({"order.hot.created"}, [&](const EventPtr&) { ++hot; });
  for (int i = 0; i < 200; ++i) {
    bus.publish(make("order.id" + std::to_string(i) + ".created"));
    bus.publish(make("order.hot.created"));
  }
  EXPECT_EQ(all, 400);
  EXPECT_EQ(hot, 200);
  // Every distinct name missed the cache once per snapshot that saw it: more misses than names
  // means the saturated snapshot was replaced (a fresh cache) rather than left to answer uncached.
  EXPECT_GE(bus.stats().route_cache_misses, 201u);
}

TEST(EventBusInline, DrainAndStopWaitForAnInlineHandlerRunningOnAnotherThread) {
  EventBus bus({.inline_dispatch = true});
  std::atomic<bool> entered{false}, release{false}, finished{false};
  auto sub = bus.subscribe({"slow.*"}, [&](const EventPtr&) {
    entered.store(true);
    while (!release.load()) std::this_thread::sleep_for(1ms);
    finished.store(true);
  });
  std::thread publisher([&] { bus.publish(make("slow.one")); });
  ASSERT_TRUE(wait_for([&] { return entered.load(); }, 60s));
  EXPECT_EQ(bus.pending(), 1u);
  EXPECT_FALSE(bus.drain(20ms));  // the handler is still running
  release.store(true);
  const auto report = bus.stop(60s);
  EXPECT_TRUE(report.drained);
  EXPECT_TRUE(finished.load());  // stop() returned only after the handler did
  publisher.join();
  EXPECT_TRUE(bus.publish(make("slow.two")).rejected);
}

// BusOptions::idle_spin: a dispatcher keeps a drained mailbox and watches for its next event.
// What must not change: every event delivered once, in order per subscription, one handler call
// at a time per subscription, and pause / unsubscribe still taking hold.
TEST(EventBusIdleSpin, EveryEventArrivesOnceInOrderWithOneCallAtATimePerSubscription) {
  EventBus bus({.dispatcher_threads = 3, .batch_size = 4, .idle_spin = 300us});
  constexpr int kSubs = 4, kPublishers = 3, kPerPublisher = 3000;
  struct Seen {
    std::atomic<int> inside{0};
    std::atomic<bool> overlapped{false};
    std::mutex m;
    std::map<int, int> last;  // publisher -> last sequence seen
    std::atomic<int> out_of_order{0}, calls{0};
  };
  std::vector<std::unique_ptr<Seen>> seen;
  std::vector<herald::Subscription> subs;
  for (int s = 0; s < kSubs; ++s) {
    seen.push_back(std::make_unique<Seen>());
    Seen& mine = *seen.back();
    subs.push_back(bus.subscribe({"spin.*"}, [&mine](const EventPtr& e) {
      if (mine.inside.fetch_add(1) != 0) mine.overlapped = true;
      const int n = e->payload().at("n").get<int>();
      {
        std::lock_guard lock(mine.m);
        auto [it, first] = mine.last.emplace(n / 1'000'000, n);
        if (!first) {
          if (n <= it->second) ++mine.out_of_order;
          it->second = n;
        }
      }
      ++mine.calls;
      mine.inside.fetch_sub(1);
    }));
  }
  std::vector<std::thread> publishers;
  for (int p = 0; p < kPublishers; ++p) {
    publishers.emplace_back([&, p] {
      for (int i = 0; i < kPerPublisher; ++i) {
        bus.publish(make("spin.tick", p * 1'000'000 + i));
        // Bursts and pauses longer than the spin: mailboxes are given up and taken again.
        if (i % 500 == 499) std::this_thread::sleep_for(1ms);
      }
    });
  }
  for (auto& t : publishers) t.join();
  ASSERT_TRUE(bus.drain(60s));
  for (int s = 0; s < kSubs; ++s) {
    EXPECT_EQ(seen[s]->calls.load(), kPublishers * kPerPublisher) << "subscription " << s;
    EXPECT_EQ(seen[s]->out_of_order.load(), 0) << "subscription " << s;
    EXPECT_FALSE(seen[s]->overlapped.load()) << "subscription " << s;
    const auto st = subs[static_cast<std::size_t>(s)].stats();
    EXPECT_EQ(st.handled, static_cast<std::uint64_t>(kPublishers * kPerPublisher));
    expect_invariant(st);
  }
}

TEST(EventBusIdleSpin, PauseAndUnsubscribeTakeHoldWhileADispatcherWatchesTheMailbox) {
  // A long spin: the dispatcher is still watching the mailbox when pause() and unsubscribe()
  // come, and must let go of it for them. (30 s against a 10 s bound below: a slow sanitizer
  // build on a busy machine stays far inside it, and a dispatcher that kept watching would not.)
  EventBus bus({.dispatcher_threads = 1, .idle_spin = 30s});
  std::atomic<int> calls{0};
  auto sub = bus.subscribe({"spin.*"}, [&](const EventPtr&) { ++calls; });
  bus.publish(make("spin.first"));
  ASSERT_TRUE(wait_for([&] { return calls.load() == 1; }));
  sub.pause();
  for (int i = 0; i < 5; ++i) bus.publish(make("spin.held", i));
  std::this_thread::sleep_for(50ms);  // long enough for a wrongly running handler to show
  EXPECT_EQ(calls.load(), 1) << "a paused subscription's handler ran";
  sub.resume();
  ASSERT_TRUE(wait_for([&] { return calls.load() == 6; }));
  // Unsubscribe while the dispatcher watches (well within its 30 s): it returns at once, with
  // the handler done for good, and stop() does not wait for the spin either.
  const auto t0 = std::chrono::steady_clock::now();
  sub.unsubscribe();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  bus.publish(make("spin.after"));
  const auto report = bus.stop(60s);
  EXPECT_TRUE(report.drained);
  EXPECT_EQ(calls.load(), 6);
}

TEST(EventBusIdleSpin, StopDoesNotWaitForAWatchingDispatcher) {
  // 30 s of spin against a 10 s bound: far apart, whatever the build and the machine's load.
  EventBus bus({.dispatcher_threads = 2, .idle_spin = 30s});
  std::atomic<int> calls{0};
  auto sub = bus.subscribe({"spin.*"}, [&](const EventPtr&) { ++calls; });
  bus.publish(make("spin.one"));
  ASSERT_TRUE(wait_for([&] { return calls.load() == 1; }));  // its dispatcher now watches
  const auto report = bus.stop(60s);
  EXPECT_TRUE(report.drained);
  EXPECT_LT(report.duration, 10s) << "stop() waited for the idle spin";
}

TEST(EventBusDispatchPolicy, NamesRoundTripAndUnknownNamesAreRejectedByName) {
  using herald::DispatchPolicy;
  for (auto p : {DispatchPolicy::dispatcher_pool, DispatchPolicy::inline_on_publisher}) {
    EXPECT_EQ(herald::parse_dispatch_policy(herald::to_string(p)), p);
  }
  try {
    (void)herald::parse_dispatch_policy("inline");
    FAIL() << "expected UnknownValueError";
  } catch (const herald::UnknownValueError& e) {
    EXPECT_NE(std::string(e.what()).find("inline"), std::string::npos) << e.what();
  }
}

TEST(EventBusDispatchPolicy, InlineOnPublisherRunsHandlersInsidePublishOnTheCallingThread) {
  EventBus bus({.dispatch = herald::DispatchPolicy::inline_on_publisher});
  EXPECT_TRUE(bus.is_inline());
  EXPECT_EQ(bus.dispatch_policy(), herald::DispatchPolicy::inline_on_publisher);
  EXPECT_EQ(bus.dispatcher_threads(), 0u);
  std::thread::id ran_on;
  auto sub = bus.subscribe({"a"}, [&](const EventPtr&) { ran_on = std::this_thread::get_id(); });
  const auto report = bus.publish(make("a"));
  EXPECT_EQ(report.delivered, 1u);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST(EventBusDispatchPolicy, TheOlderInlineDispatchFlagSelectsInlineOnPublisher) {
  EventBus inline_bus({.inline_dispatch = true});
  EXPECT_EQ(inline_bus.dispatch_policy(), herald::DispatchPolicy::inline_on_publisher);
  EventBus pool_bus({.dispatcher_threads = 1});
  EXPECT_EQ(pool_bus.dispatch_policy(), herald::DispatchPolicy::dispatcher_pool);
  EXPECT_FALSE(pool_bus.is_inline());
  EXPECT_EQ(pool_bus.dispatcher_threads(), 1u);
}
