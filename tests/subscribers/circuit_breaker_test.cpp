// The circuit breaker: its state machine alone, then run by a SubscriberRegistry.
#include "fn_subscriber.hpp"

#include <herald/events/error.hpp>
#include <herald/subscribers/circuit_breaker.hpp>
#include <herald/subscribers/registry.hpp>

#include <gtest/gtest.h>
#include <wait_for.hpp>

using herald::BreakerState;
using herald::CircuitBreaker;
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
const auto t0 = CircuitBreaker::Clock::time_point{} + 1h;
}  // namespace

TEST(CircuitBreakerStates, ADisabledBreakerNeverOpens) {
  CircuitBreaker b;
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(b.record(false, t0));
  EXPECT_EQ(b.state(), BreakerState::closed);
}

TEST(CircuitBreakerStates, OpensAfterThresholdConsecutiveFailures) {
  CircuitBreaker b({.failure_threshold = 3, .cooldown = 50ms});
  EXPECT_FALSE(b.record(false, t0));
  EXPECT_FALSE(b.record(false, t0));
  EXPECT_EQ(b.record(false, t0), BreakerState::open);
  EXPECT_EQ(b.probe_due(), t0 + 50ms);
  EXPECT_EQ(b.times_opened(), 1u);
}

TEST(CircuitBreakerStates, ASuccessResetsTheConsecutiveFailureCount) {
  CircuitBreaker b({.failure_threshold = 3});
  b.record(false, t0);
  b.record(false, t0);
  b.record(true, t0);
  EXPECT_EQ(b.consecutive_failures(), 0u);
  b.record(false, t0);
  b.record(false, t0);
  EXPECT_EQ(b.state(), BreakerState::closed);
}

TEST(CircuitBreakerStates, AHealthyProbeHalfOpensAndASuccessCloses) {
  CircuitBreaker b({.failure_threshold = 1, .cooldown = 10ms});
  b.record(false, t0);
  EXPECT_FALSE(b.record(true, t0)) << "outcomes while open do not move the breaker";
  EXPECT_EQ(b.probe_result(true, t0 + 10ms), BreakerState::half_open);
  EXPECT_FALSE(b.probe_due());
  EXPECT_EQ(b.record(true, t0 + 11ms), BreakerState::closed);
}

TEST(CircuitBreakerStates, AnUnhealthyProbeWaitsAnotherCooldown) {
  CircuitBreaker b({.failure_threshold = 1, .cooldown = 10ms});
  b.record(false, t0);
  EXPECT_FALSE(b.probe_result(false, t0 + 10ms));
  EXPECT_EQ(b.state(), BreakerState::open);
  EXPECT_EQ(b.probe_due(), t0 + 20ms);
}

TEST(CircuitBreakerStates, AFailureWhileHalfOpenReopens) {
  CircuitBreaker b({.failure_threshold = 2, .cooldown = 10ms});
  b.record(false, t0);
  b.record(false, t0);
  b.probe_result(true, t0 + 10ms);
  EXPECT_EQ(b.record(false, t0 + 11ms), BreakerState::open);
  EXPECT_EQ(b.times_opened(), 2u);
  EXPECT_EQ(b.probe_due(), t0 + 21ms);
}

TEST(CircuitBreakerStates, StateNamesRoundTripAndUnknownNamesAreRejected) {
  for (auto s : {BreakerState::closed, BreakerState::open, BreakerState::half_open}) {
    EXPECT_EQ(herald::parse_breaker_state(herald::to_string(s)), s);
  }
  EXPECT_THROW(herald::parse_breaker_state("ajar"), herald::UnknownValueError);
}

namespace {
// A subscriber that fails while `failing` is set; health_check follows `healthy`.
std::shared_ptr<FnSubscriber> flaky(std::atomic<bool>& failing, std::uint32_t threshold,
                                    std::chrono::milliseconds cooldown) {
  auto s = std::make_shared<FnSubscriber>("flaky", std::vector<std::string>{"#"});
  s->breaker = {.failure_threshold = threshold, .cooldown = cooldown};
  s->on_handle = [&failing](const EventPtr&) {
    return failing ? SubscriberResult::failure("downstream down") : SubscriberResult{};
  };
  return s;
}
}  // namespace

TEST(CircuitBreakerInRegistry, OpensAfterNConsecutiveFailuresAndHoldsLaterEvents) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  std::atomic<bool> failing{true};
  auto s = flaky(failing, 3, 1h);
  registry.register_subscriber(s);
  registry.start_all();
  for (int i = 0; i < 3; ++i) bus.publish(make("a.fail", i));
  ASSERT_TRUE(wait_for([&] { return registry.breaker_state("flaky") == BreakerState::open; }));
  ASSERT_TRUE(wait_for([&] { return registry.stats("flaky")->failed == 3; }));
  for (int i = 0; i < 5; ++i) bus.publish(make("a.held", i));
  const auto stats = registry.stats("flaky");
  EXPECT_EQ(stats->queue_depth, 5u);
  EXPECT_EQ(stats->in_flight, 5u);
  EXPECT_TRUE(stats->paused);
  EXPECT_EQ(registry.stats()["flaky"]["breaker"]["state"], "open");
  EXPECT_EQ(registry.health()["subscribers"]["flaky"]["breaker"], "open");
  EXPECT_FALSE(registry.health()["healthy"].get<bool>());
}

TEST(CircuitBreakerInRegistry, ResumesAfterTheCooldownWhenHealthCheckPasses) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  std::atomic<bool> failing{true};
  auto s = flaky(failing, 2, 50ms);
  s->healthy = false;
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.fail", 0));
  bus.publish(make("a.fail", 1));
  ASSERT_TRUE(wait_for([&] { return registry.breaker_state("flaky") == BreakerState::open; }));
  for (int i = 0; i < 5; ++i) bus.publish(make("a.held", i));
  // Unhealthy: probes keep it open and the events stay held.
  ASSERT_TRUE(wait_for([&] { return s->health_checks.load() >= 2; }));
  EXPECT_EQ(registry.breaker_state("flaky"), BreakerState::open);
  EXPECT_EQ(registry.stats("flaky")->queue_depth, 5u);
  // Healthy again: the next probe resumes, the held events are handled, a success closes it.
  failing = false;
  s->healthy = true;
  ASSERT_TRUE(wait_for([&] { return registry.stats("flaky")->handled == 5; }, 60s));
  ASSERT_TRUE(wait_for([&] { return registry.breaker_state("flaky") == BreakerState::closed; }));
  const auto stats = registry.stats("flaky");
  EXPECT_EQ(stats->failed, 2u);
  EXPECT_EQ(stats->dropped, 0u);
  EXPECT_FALSE(stats->paused);
  EXPECT_EQ(registry.stats()["flaky"]["breaker"]["times_opened"], 1);
}

TEST(CircuitBreakerInRegistry, AFailureAfterResumingReopensTheBreaker) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  std::atomic<bool> failing{true};
  auto s = flaky(failing, 1, 20ms);
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.fail", 0));
  ASSERT_TRUE(wait_for([&] { return registry.breaker_state("flaky") == BreakerState::open; }));
  bus.publish(make("a.fail", 1));  // held, then tried after the probe: fails, reopens
  ASSERT_TRUE(wait_for(
      [&] { return registry.stats()["flaky"]["breaker"]["times_opened"].get<int>() >= 2; }));
  // The breaker reopens inside the handler; the bus counts the failure when the batch ends.
  EXPECT_TRUE(wait_for([&] { return registry.stats("flaky")->failed == 2u; }))
      << registry.stats()["flaky"].dump();
}

TEST(CircuitBreakerInRegistry, AnOpenBreakerDropsByTheOverflowPolicyAndCountsIt) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  std::atomic<bool> failing{true};
  auto s = flaky(failing, 1, 1h);
  s->options.capacity = 4;
  s->options.overflow = herald::OverflowPolicy::drop_newest;
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.fail"));
  ASSERT_TRUE(wait_for([&] { return registry.breaker_state("flaky") == BreakerState::open; }));
  std::size_t reported = 0;
  for (int i = 0; i < 10; ++i) reported += bus.publish(make("a.held", i)).dropped;
  EXPECT_EQ(reported, 6u);
  const auto stats = registry.stats("flaky");
  EXPECT_EQ(stats->dropped, 6u);
  EXPECT_EQ(stats->queue_depth, 4u);
}

TEST(CircuitBreakerInRegistry, StopAllDeliversTheEventsAnOpenBreakerHeld) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  std::atomic<bool> failing{true};
  auto s = flaky(failing, 1, 1h);
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.fail"));
  ASSERT_TRUE(wait_for([&] { return registry.breaker_state("flaky") == BreakerState::open; }));
  // The breaker opens inside the handler; the bus counts that failure when the batch ends.
  ASSERT_TRUE(wait_for([&] { return registry.stats("flaky")->failed == 1u; }));
  failing = false;
  for (int i = 0; i < 7; ++i) bus.publish(make("a.held", i));
  const auto result = registry.stop_all(60s);
  EXPECT_TRUE(result.success);
  EXPECT_EQ(result.events_drained, 7u);
  EXPECT_EQ(registry.stats("flaky")->handled, 7u);
}
