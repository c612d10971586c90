// SubscriberRegistry: named subscribers attached to one EventBus, their lifecycle (start_all /
// stop_all), statistics, health and per-subscriber circuit breakers.
//
// Lifecycle: registered → started (start_all, or at once when registered after start_all) →
// stopped (stop_all, remove). A registry starts once: start_all after stop_all does nothing.
//
// Circuit breakers (circuit_breaker.hpp): after the failure that opens a breaker, the registry
// pauses the subscription (Subscription::pause: events keep arriving and are held in the
// mailbox, bounded by its capacity and overflow policy; the bus counts every drop). One breaker
// thread per registry, started when the first subscriber with a breaker starts, sleeps on a
// condition variable until the earliest probe is due (or it is woken by a newly opened
// breaker), calls health_check() outside every lock, and resumes the subscription (half_open)
// if healthy, else schedules another probe one cooldown later. stop_all and the destructor stop
// and join it. Transitions are logged and shown by stats() and health(). In inline bus mode
// the bus does not hold events for a paused subscription, so a breaker only counts.
//
// Thread safety: every method may be called from any thread. No registry lock is held while a
// subscriber's code runs (hooks, on_start, on_stop, health_check) or while waiting on the bus,
// so hooks may call the registry, including remove() of their own subscriber from inside
// handle(). stop_all must not be called from inside a handler (it waits for handlers).
// Not copyable, not movable. The EventBus must outlive the registry.
#pragma once

#include <herald/events/event_bus.hpp>
#include <herald/subscribers/circuit_breaker.hpp>
#include <herald/subscribers/subscriber.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace herald {

/// What stop_all did.
struct StopAllResult {
  /// Every queued event was handled before the deadline and every on_stop returned normally.
  bool success = true;
  /// Events the registry's subscribers finished (handled or failed) while stop_all drained.
  std::uint64_t events_drained = 0;
  /// Events still queued or running at the deadline, dropped by the unsubscribe (counted).
  std::uint64_t undelivered = 0;
  std::chrono::milliseconds duration{0};
  nlohmann::json to_json() const;
};

class SubscriberRegistry {
 public:
  explicit SubscriberRegistry(EventBus& bus);
  /// stop_all() with its default timeout.
  ~SubscriberRegistry();
  SubscriberRegistry(const SubscriberRegistry&) = delete;
  SubscriberRegistry& operator=(const SubscriberRegistry&) = delete;

  /// Adds a subscriber. Throws Error for a null subscriber, an empty name or no patterns,
  /// RegistryError for a name already registered, PatternError naming an invalid pattern,
  /// StateError after stop_all. After start_all the subscriber starts at once (on_start, then
  /// subscribe); if its on_start throws, it is not kept and the exception propagates.
  void register_subscriber(std::shared_ptr<Subscriber> subscriber);

  /// Unsubscribes (events still queued are dropped and counted), calls on_stop, and forgets the
  /// subscriber. False if unknown. Works from inside any handler, its own included.
  bool remove(std::string_view name);

  /// Starts every registered subscriber in registration order: on_start, then subscribe to the
  /// bus. One whose on_start throws is logged and left out (its state becomes "failed").
  /// Returns the number started. Later calls do nothing and return 0.
  std::size_t start_all();

  /// Stops accepting registrations, stops the breaker thread, resumes subscriptions held by
  /// open breakers (their held events get one more try), waits up to `drain_timeout` for the
  /// subscribers' queues to empty, then unsubscribes each (dropping, and counting, whatever is
  /// left) and calls on_stop in reverse registration order. Idempotent: later calls return
  /// {success=true, 0 drained}. Close intake first: events published during the drain are
  /// handled too, and a never-ending stream keeps it from finishing before the deadline.
  StopAllResult stop_all(std::chrono::milliseconds drain_timeout = std::chrono::seconds(5));

  bool started() const;
  bool stopped() const;

  /// Registration order.
  std::vector<std::string> names() const;
  /// Null if unknown.
  std::shared_ptr<Subscriber> get(std::string_view name) const;
  /// The bus's counters for the subscriber's subscription (invariant: received == handled +
  /// failed + dropped + in_flight); after it stopped, the last counters seen (events queued or
  /// running at that moment are shown as dropped). None if unknown; zeros if never started.
  std::optional<SubscriptionStats> stats(std::string_view name) const;
  /// {name: {received, handled, failed, dropped, in_flight, slow, queue_depth, paused,
  ///         last_error, patterns, skipped, state, breaker}} for every subscriber; `breaker` is
  /// null without one.
  nlohmann::json stats() const;
  /// None if unknown or the subscriber has no breaker.
  std::optional<BreakerState> breaker_state(std::string_view name) const;
  /// {"healthy": bool, "subscribers": {name: {"healthy", "health_check", "state", "breaker"}}}.
  /// A subscriber is healthy when it is not failed or stopped, its health_check() returns true
  /// (an exception counts as false and is reported as "error") and its breaker is not open.
  /// Calls every health_check() on the calling thread.
  nlohmann::json health() const;

 private:
  struct Entry;  // one subscriber's state (registry.cpp)
  enum class State { registered, started, stopped };
  struct Timer {
    std::mutex mutex;
    std::condition_variable cv;
    std::uint64_t wakeups = 0;
    bool stop = false;
  };

  bool start_entry(const std::shared_ptr<Entry>& entry, bool rethrow);
  std::uint64_t stop_entry(const std::shared_ptr<Entry>& entry, bool& on_stop_ok);
  void probe(const std::shared_ptr<Entry>& entry);
  void ensure_breaker_thread();
  void stop_breaker_thread();
  void breaker_thread_main();
  std::shared_ptr<Entry> find(std::string_view name) const;

  EventBus& bus_;
  mutable std::mutex mutex_;
  State state_ = State::registered;
  std::vector<std::shared_ptr<Entry>> entries_;
  std::shared_ptr<Timer> timer_ = std::make_shared<Timer>();
  std::thread breaker_thread_;
};

}  // namespace herald
