#include "hooks.hpp"

#include <herald/events/enums.hpp>

#include <array>
#include <vector>

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

void run_batch_hooks(Subscriber& subscriber, const std::string& name,
                     std::span<const EventPtr> events, std::span<HookOutcome> outcomes,
                     RateLimiter& log_limit) noexcept {
  const auto fail = [&](std::size_t i, HandleStage stage, std::exception_ptr e) {
    HandleError error{std::move(e), {}, stage};
    error.message = message_of(error.exception);
    outcomes[i].kind = HookOutcome::Kind::failed;
    outcomes[i].error = std::string(to_string(stage)) + " threw: " + error.message;
    log_limited(log_limit, name, *events[i], "failed", outcomes[i].error);
    try {
      subscriber.on_handle_error(events[i], error);
    } catch (...) {
      log_limited(log_limit, name, *events[i], "on_handle_error threw",
                  message_of(std::current_exception()));
    }
  };

  // 1. before_handle, per event; the accepted ones form the batch. (Local vectors, not
  //    per-thread ones: an inline bus may re-enter this on the same thread.)
  std::vector<EventPtr> accepted;
  std::vector<std::size_t> index;
  accepted.reserve(events.size());
  index.reserve(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    outcomes[i] = HookOutcome{};
    try {
      if (!subscriber.before_handle(events[i])) {
        outcomes[i].kind = HookOutcome::Kind::skipped;
        continue;
      }
    } catch (...) {
      fail(i, HandleStage::before_handle, std::current_exception());
      continue;
    }
    accepted.push_back(events[i]);
    index.push_back(i);
  }
  if (accepted.empty()) return;

  // 2. One handle_batch call.
  std::vector<HandleOutcome> handled(accepted.size(), HandleOutcome::handled);
  SubscriberResult result;
  try {
    result = subscriber.handle_batch(std::span<const EventPtr>(accepted), std::span<HandleOutcome>(handled));
  } catch (...) {
    const auto error = std::current_exception();
    for (const std::size_t i : index) fail(i, HandleStage::handle, error);
    return;
  }

  // 3. after_handle, per event, with that event's result.
  const std::string failure_message =
      result.message.empty() ? "handle_batch reported failure" : result.message;
  for (std::size_t k = 0; k < index.size(); ++k) {
    const std::size_t i = index[k];
    const bool ok = handled[k] == HandleOutcome::handled;
    try {
      subscriber.after_handle(events[i], ok ? SubscriberResult::ok() : SubscriberResult::failure(failure_message));
    } catch (...) {
      fail(i, HandleStage::after_handle, std::current_exception());
      continue;
    }
    if (!ok) {
      outcomes[i].kind = HookOutcome::Kind::failed;
      outcomes[i].error = failure_message;
      log_limited(log_limit, name, *events[i], "reported failure", failure_message);
    }
  }
}

}  // namespace detail

SubscriberResult Subscriber::handle_batch(std::span<const EventPtr> events,
                                          std::span<HandleOutcome> outcomes) {
  SubscriberResult last;
  for (std::size_t i = 0; i < events.size(); ++i) {
    SubscriberResult r = handle(events[i]);
    if (!r.success) {
      outcomes[i] = HandleOutcome::failed;
      last = std::move(r);
    }
  }
  return last;
}

}  // namespace herald
