// The circuit breaker's state machine, kept free of threads and clocks so that it can be tested
// on its own. SubscriberRegistry owns one per subscriber, guards it with that subscriber's lock,
// pauses and resumes the subscription on its transitions, and probes health_check() from its
// breaker thread.
//
//            failure_threshold consecutive failures
//   closed ──────────────────────────────────────────▶ open  (subscription paused: events are
//     ▲                                                 │ ▲    held in the mailbox, bounded by
//     │ success                 cooldown passed and     │ │    its capacity and overflow policy)
//     │                         health_check() is true  │ │ cooldown passed, health_check()
//   half_open ◀─────────────────────────────────────────┘ │ false: wait another cooldown
//   (resumed) ─────────────── failure ────────────────────┘
//
// A success in the closed state resets the consecutive-failure count. Outcomes of events that
// finish while the breaker is open (the rest of a batch the dispatcher had already taken when
// the breaker opened) do not change the state.
#pragma once

#include <herald/subscribers/subscriber.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace herald {

enum class BreakerState { closed, open, half_open };
std::string_view to_string(BreakerState state) noexcept;
/// Throws UnknownValueError naming the value ("closed", "open", "half_open").
BreakerState parse_breaker_state(std::string_view text);

/// Not thread safe: the owner serializes calls. Copyable.
class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;

  explicit CircuitBreaker(CircuitBreakerOptions options = {}) : options_(options) {}

  const CircuitBreakerOptions& options() const noexcept { return options_; }
  bool enabled() const noexcept { return options_.enabled(); }
  BreakerState state() const noexcept { return state_; }
  std::uint32_t consecutive_failures() const noexcept { return consecutive_failures_; }
  /// How many times the breaker has opened.
  std::uint64_t times_opened() const noexcept { return times_opened_; }

  /// Records one event's outcome; returns the new state when it changed. No-op when disabled.
  std::optional<BreakerState> record(bool success, Clock::time_point now);
  /// Open: when the next health probe is due; otherwise none.
  std::optional<Clock::time_point> probe_due() const noexcept;
  /// The result of a probe of an open breaker: healthy moves it to half_open, unhealthy starts
  /// another cooldown. Returns the new state when it changed. No-op unless open.
  std::optional<BreakerState> probe_result(bool healthy, Clock::time_point now);
  /// Back to closed with no failures counted (used when stopping).
  void reset() noexcept;

  /// {"state", "consecutive_failures", "failure_threshold", "cooldown_ms", "times_opened"}.
  nlohmann::json to_json() const;

 private:
  void open(Clock::time_point now);

  CircuitBreakerOptions options_;
  BreakerState state_ = BreakerState::closed;
  std::uint32_t consecutive_failures_ = 0;
  std::uint64_t times_opened_ = 0;
  Clock::time_point next_probe_{};
};

}  // namespace herald
