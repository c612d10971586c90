// The inline publish's single-threaded fast path (event_bus.cpp, single_threaded()): while the
// process has never started a second thread, the reader registration and the inline gate use
// plain loads and stores. These tests start in such a process (CTest runs every test in a
// process of its own; they skip when run after other tests in one process) and check that the
// bus stays correct when a handler starts the process's first thread in the middle of a
// publish: the gate taken with a plain store is waited for, and handed on, with atomics.
#include <herald/events/event_bus.hpp>

#include <gtest/gtest.h>

#include <sys/single_threaded.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

using herald::DomainEvent;
using herald::EventBus;
using herald::EventPtr;
using namespace std::chrono_literals;

namespace {
EventPtr make(const std::string& name, int n = 0) { return DomainEvent::create(name, {{"n", n}}); }

bool process_single_threaded() { return __libc_single_threaded != 0; }
}  // namespace

TEST(EventBusSingleThread, NestedInlinePublishesCountEveryEventOnce) {
  if (!process_single_threaded()) GTEST_SKIP() << "needs a process of its own (run it through CTest)";
  EventBus bus(herald::BusOptions{.inline_dispatch = true});
  int depth = 0, max_depth = 0, calls = 0;
  auto sub = bus.subscribe({"chain.*"}, [&](const EventPtr& e) {
    ++calls;
    max_depth = std::max(max_depth, ++depth);
    const int n = e->payload()["n"].get<int>();
    if (n < 5) (void)bus.publish(make("chain.next", n + 1));  // re-enters our own gate
    --depth;
  });
  for (int i = 0; i < 100; ++i) ASSERT_EQ(bus.publish(make("chain.start", 0)).delivered, 1u);
  EXPECT_TRUE(process_single_threaded());  // the fast path was the one exercised
  EXPECT_EQ(calls, 600);
  EXPECT_EQ(max_depth, 6);
  const auto s = sub.stats();
  EXPECT_EQ(s.received, 600u);
  EXPECT_EQ(s.handled, 600u);
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_TRUE(bus.drain(1s));
  EXPECT_TRUE(bus.stop(1s).drained);
}

TEST(EventBusSingleThread, AThreadStartedInsideAHandlerWaitsForTheGateAndGetsIt) {
  if (!process_single_threaded()) GTEST_SKIP() << "needs a process of its own (run it through CTest)";
  EventBus bus(herald::BusOptions{.inline_dispatch = true});
  std::atomic<int> calls{0};
  std::atomic<bool> inside{false}, overlapped{false};
  std::unique_ptr<std::thread> helper;
  std::atomic<bool> helper_started{false};
  constexpr int kHelperEvents = 200;
  auto sub = bus.subscribe({"gate.*"}, [&](const EventPtr& e) {
    if (inside.exchange(true)) overlapped = true;  // one call at a time per subscription
    ++calls;
    if (e->event_name() == "gate.first") {
      // The gate was taken with a plain store (one thread so far); the process's first
      // thread now publishes to the same subscription and must wait for this call to end.
      helper = std::make_unique<std::thread>([&] {
        helper_started = true;
        for (int i = 0; i < kHelperEvents; ++i) (void)bus.publish(make("gate.helper", i));
      });
      while (!helper_started.load()) std::this_thread::yield();
    }
    inside = false;
  });
  ASSERT_EQ(bus.publish(make("gate.first")).delivered, 1u);  // leaves the gate atomically now
  ASSERT_TRUE(helper);
  // This thread's publishes now race the helper's for the same gate.
  for (int i = 0; i < kHelperEvents; ++i) (void)bus.publish(make("gate.main", i));
  helper->join();
  EXPECT_FALSE(process_single_threaded());
  EXPECT_FALSE(overlapped.load());
  EXPECT_EQ(calls.load(), 1 + 2 * kHelperEvents);
  const auto s = sub.stats();
  EXPECT_EQ(s.received, static_cast<std::uint64_t>(1 + 2 * kHelperEvents));
  EXPECT_EQ(s.handled, s.received);
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_TRUE(bus.drain(60s));
  const auto report = bus.stop(60s);
  EXPECT_TRUE(report.drained);
  EXPECT_EQ(report.undelivered, 0u);
}
