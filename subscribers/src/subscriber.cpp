#include "hooks.hpp"

#include <herald/events/enums.hpp>

#include <array>

namespace herald {

std::string_view to_string(HandleStage stage) noexcept {
  switch (stage) {
    case HandleStage::before_handle: return "before_handle";
    case HandleStage::handle: return "handle";
    case HandleStage::after_handle: return "after_handle";
  }
  return "unknown";
}

namespace detail {
namespace {

void log_limited(RateLimiter& limit, const std::string& name, const DomainEvent& event,
                 std::string_view what, const std::string& message) {
  std::uint64_t suppressed = 0;
  if (!limit.allow(&suppressed)) return;
  logger()->warn("subscriber '{}' {} on event_name={} event_id={} correlation_id={}: {}{}", name,
                 what, event.event_name(), event.event_id(), event.metadata().correlation_id,
                 message,
                 suppressed ? fmt::format(" ({} similar messages suppressed)", suppressed) : "");
}

std::string message_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

HookOutcome run_hooks(Subscriber& subscriber, const std::string& name, const EventPtr& event,
                      RateLimiter& log_limit) noexcept {
  HookOutcome outcome;
  auto stage = HandleStage::before_handle;
  try {
    if (!subscriber.before_handle(event)) {
      outcome.kind = HookOutcome::Kind::skipped;
      return outcome;
    }
    stage = HandleStage::handle;
    const SubscriberResult result = subscriber.handle(event);
    stage = HandleStage::after_handle;
    subscriber.after_handle(event, result);
    if (!result.success) {
      outcome.kind = HookOutcome::Kind::failed;
      outcome.error = result.message.empty() ? "handle reported failure" : result.message;
      log_limited(log_limit, name, *event, "reported failure", outcome.error);
    }
    return outcome;
  } catch (...) {
    HandleError error{std::current_exception(), {}, stage};
    error.message = message_of(error.exception);
    outcome.kind = HookOutcome::Kind::failed;
    outcome.error = std::string(to_string(stage)) + " threw: " + error.message;
    log_limited(log_limit, name, *event, "failed", outcome.error);
    try {
      subscriber.on_handle_error(event, error);
    } catch (...) {
      log_limited(log_limit, name, *event, "on_handle_error threw",
                  message_of(std::current_exception()));
    }
    return outcome;
  }
}

}  // namespace detail
}  // namespace herald
