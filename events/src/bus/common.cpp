// Definitions for bus/common.hpp: the per-thread state and the rate-limited logs.
#include "bus/common.hpp"

#include "bus/mailbox.hpp"

#include <string>
#include <string_view>

namespace herald::detail {

constinit thread_local int t_handler_depth = 0;
constinit thread_local const char t_gate_identity = 0;

namespace {

std::string suppressed_note(std::uint64_t suppressed) {
  return suppressed ? fmt::format(" ({} similar messages suppressed)", suppressed) : "";
}

// A rate-limited warning about one event at one subscriber: "<verb> event_name=... : <why>".
void warn_event(RateLimiter& limiter, const Mailbox& mb, const DomainEvent& event,
                std::string_view verb, std::string_view why) {
  std::uint64_t suppressed = 0;
  if (!limiter.allow(&suppressed)) return;
  logger()->warn("subscriber '{}' {} event_name={} event_id={} correlation_id={}: {}{}", mb.name,
                 verb, event.event_name(), event.event_id(), event.metadata().correlation_id, why,
                 suppressed_note(suppressed));
}

}  // namespace

void BusLogs::drop(const Mailbox& mb, const DomainEvent& event, std::string_view why) {
  warn_event(drop_log, mb, event, "dropped", why);
}

void BusLogs::failure(const Mailbox& mb, const DomainEvent& event, const std::string& error) {
  warn_event(error_log, mb, event, "failed on", error);
}

void BusLogs::overcommit(const Mailbox& mb, const DomainEvent& event, std::size_t depth) {
  std::uint64_t suppressed = 0;
  if (overcommit_log.allow(&suppressed)) {
    logger()->warn(
        "subscriber '{}' mailbox is full (capacity {}) and the publisher of event_name={} may not "
        "wait (an event loop's own thread): queued beyond capacity ({} queued); await "
        "publish_async() to wait for room instead{}",
        mb.name, mb.options.capacity, event.event_name(), depth, suppressed_note(suppressed));
  }
}

void BusLogs::slow(const Mailbox& mb, const DomainEvent& event, std::chrono::steady_clock::duration took) {
  static RateLimiter slow_log;  // process-wide, as it always was
  if (slow_log.allow()) {
    logger()->warn("subscriber '{}' slow on event_name={} event_id={}: {} ms (threshold {} ms)",
                   mb.name, event.event_name(), event.event_id(),
                   std::chrono::duration_cast<std::chrono::milliseconds>(took).count(),
                   mb.options.slow_threshold.count());
  }
}

}  // namespace herald::detail
