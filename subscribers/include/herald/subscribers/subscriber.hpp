// The Subscriber base class: the hooks a subscriber implements (DESIGN.md "Vocabulary") and the
// rules by which SubscriberRegistry runs them for each event.
//
// For each event delivered to a subscriber, the registry's adapter runs, on one dispatcher
// thread at a time per subscriber and in publish order:
//
//   before_handle(event)  -- false: the event is skipped (counted as handled and as "skipped";
//                            neither handle nor after_handle runs)
//   handle(event)         -- returns a SubscriberResult
//   after_handle(event, result)  -- runs for success and for success=false results alike
//
// An exception thrown by any of the three goes to on_handle_error(event, error) (after_handle
// does not run then), is logged (rate-limited) and counted as failed; it never reaches the
// publisher, other subscribers, or this subscriber's later events. A result with
// success=false is counted as failed too (after_handle still runs, on_handle_error does not).
// An exception thrown by on_handle_error is caught and logged.
#pragma once

#include <herald/events/domain_event.hpp>
#include <herald/events/event_bus.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace herald {

/// What handle() reports. success=false counts the event as failed (message becomes the
/// subscription's last_error) without an exception.
struct SubscriberResult {
  bool success = true;
  std::string message;

  static SubscriberResult ok(std::string message = {}) { return {true, std::move(message)}; }
  static SubscriberResult failure(std::string message) { return {false, std::move(message)}; }
};

/// Which hook threw.
enum class HandleStage { before_handle, handle, after_handle };
std::string_view to_string(HandleStage stage) noexcept;

/// What on_handle_error receives: the exception (rethrow it to inspect its type), its message
/// (what(), or "unknown exception" for a non-std exception) and the hook that threw it.
struct HandleError {
  std::exception_ptr exception;
  std::string message;
  HandleStage stage = HandleStage::handle;
};

/// Per-subscriber circuit breaker (see registry.hpp for how the registry runs it).
/// failure_threshold consecutive failed events open the breaker (0: no breaker).
struct CircuitBreakerOptions {
  std::uint32_t failure_threshold = 0;
  std::chrono::milliseconds cooldown{5'000};  ///< wait before each health_check() probe
  bool enabled() const noexcept { return failure_threshold > 0; }
};

/// The mailbox settings a subscriber hosted by a SubscriberRegistry (and so by a Worker) starts
/// from: the bus defaults, except the overflow policy, drop_oldest. A worker publishes every
/// completion's events from one intake thread; with `block`, one full mailbox would make that
/// thread wait (up to block_timeout per event) and hold back every completion and every other
/// subscriber (DESIGN.md 5: a slow subscriber does not hold back the others). drop_oldest keeps
/// the newest events of a subscriber that falls behind and counts what it loses (tasker-core's
/// in-process broadcast does the same for a lagging receiver). Choose `block` for a subscriber
/// that must see every event and may slow the whole worker to its pace.
inline SubscribeOptions hosted_subscribe_options(std::string name = {}) {
  return SubscribeOptions{.name = std::move(name), .overflow = OverflowPolicy::drop_oldest};
}

/// Base class of every subscriber. Subclasses override name(), subscribes_to() and handle(); the
/// other hooks have harmless defaults.
///
/// Threads: the per-event hooks (before_handle, handle, after_handle, on_handle_error) are
/// called one call at a time per subscriber, never concurrently with each other. on_start and
/// on_stop are called by the thread that starts or stops the subscriber (start_all, stop_all,
/// a late register_subscriber, remove), never while a per-event hook of this subscriber runs,
/// except when remove() is called from inside this subscriber's own handle(). health_check()
/// may be called from any thread (the registry's breaker thread, whoever calls health()) while
/// handle() runs: make it thread safe. name(), subscribes_to(), subscribe_options() and
/// circuit_breaker() are read once, at registration.
class Subscriber {
 public:
  virtual ~Subscriber() = default;

  /// Unique within a registry; names the subscription in logs and statistics.
  virtual std::string name() const = 0;
  /// Glob patterns (pattern.hpp); an event is delivered once however many of them match.
  virtual std::vector<std::string> subscribes_to() const = 0;
  virtual SubscriberResult handle(const EventPtr& event) = 0;

  /// Batch-capable subscribers (handles_batches() true) are given runs of consecutive events
  /// (up to the bus's batch_size) in one handle_batch() call instead of one handle() call each:
  /// the registry runs before_handle for each event, handle_batch for those not skipped, then
  /// after_handle for each of them with its own result (success, or failure with the returned
  /// message for the events marked failed), so the hook rules above hold per event. An
  /// exception from handle_batch fails every event of the call (on_handle_error for each,
  /// stage `handle`). For subscribers that pay a fixed cost per call: the audit subscriber
  /// writes a batch with one writev(2). The default handle_batch calls handle() per event.
  virtual bool handles_batches() const { return false; }
  /// Fills `outcomes` (pre-set to handled, one per event) and returns a failure naming the
  /// problem when any event failed.
  virtual SubscriberResult handle_batch(std::span<const EventPtr> events,
                                        std::span<HandleOutcome> outcomes);

  virtual bool before_handle(const EventPtr& /*event*/) { return true; }
  virtual void after_handle(const EventPtr& /*event*/, const SubscriberResult& /*result*/) {}
  virtual void on_handle_error(const EventPtr& /*event*/, const HandleError& /*error*/) {}

  /// Runs before the subscriber is subscribed (no event arrives before it returns). An exception
  /// leaves the subscriber out of start_all.
  virtual void on_start() {}
  /// Runs after the subscriber is unsubscribed and its queue drained (or dropped). Exceptions are
  /// logged.
  virtual void on_stop() {}
  /// Probed by health() and by an open circuit breaker before it resumes. Default: healthy.
  virtual bool health_check() { return true; }

  /// Mailbox capacity, overflow policy, block timeout and slow threshold (the issue's
  /// dispatch_timeout_ms). The registry always sets `name` to name(). Default:
  /// hosted_subscribe_options().
  virtual SubscribeOptions subscribe_options() const { return hosted_subscribe_options(name()); }
  /// Default: no breaker.
  virtual CircuitBreakerOptions circuit_breaker() const { return {}; }
};

}  // namespace herald
