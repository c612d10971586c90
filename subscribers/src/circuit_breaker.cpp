#include <herald/subscribers/circuit_breaker.hpp>

#include <herald/events/enums.hpp>

#include <array>

namespace herald {

namespace {
constexpr std::array<std::pair<BreakerState, std::string_view>, 3> kStateNames{{
    {BreakerState::closed, "closed"},
    {BreakerState::open, "open"},
    {BreakerState::half_open, "half_open"},
}};
}  // namespace

std::string_view to_string(BreakerState state) noexcept {
  return detail::enum_name(state, kStateNames);
}

BreakerState parse_breaker_state(std::string_view text) {
  return detail::parse_enum("circuit breaker state", text, kStateNames);
}

void CircuitBreaker::open(Clock::time_point now) {
  state_ = BreakerState::open;
  ++times_opened_;
  next_probe_ = now + options_.cooldown;
}

std::optional<BreakerState> CircuitBreaker::record(bool success, Clock::time_point now) {
  if (!enabled()) return std::nullopt;
  switch (state_) {
    case BreakerState::closed:
      if (success) {
        consecutive_failures_ = 0;
        return std::nullopt;
      }
      if (++consecutive_failures_ < options_.failure_threshold) return std::nullopt;
      open(now);
      return state_;
    case BreakerState::half_open:
      if (success) {
        consecutive_failures_ = 0;
        state_ = BreakerState::closed;
      } else {
        ++consecutive_failures_;
        open(now);
      }
      return state_;
    case BreakerState::open:
      return std::nullopt;  // a straggler of the batch that opened it
  }
  return std::nullopt;
}

std::optional<CircuitBreaker::Clock::time_point> CircuitBreaker::probe_due() const noexcept {
  if (state_ != BreakerState::open) return std::nullopt;
  return next_probe_;
}

std::optional<BreakerState> CircuitBreaker::probe_result(bool healthy, Clock::time_point now) {
  if (state_ != BreakerState::open) return std::nullopt;
  if (healthy) {
    state_ = BreakerState::half_open;
    return state_;
  }
  next_probe_ = now + options_.cooldown;
  return std::nullopt;
}

void CircuitBreaker::reset() noexcept {
  state_ = BreakerState::closed;
  consecutive_failures_ = 0;
}

nlohmann::json CircuitBreaker::to_json() const {
  return {{"state", to_string(state_)},
          {"consecutive_failures", consecutive_failures_},
          {"failure_threshold", options_.failure_threshold},
          {"cooldown_ms", options_.cooldown.count()},
          {"times_opened", times_opened_}};
}

}  // namespace herald
