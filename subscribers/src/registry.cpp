#include <herald/subscribers/registry.hpp>

#include "hooks.hpp"

#include <herald/events/error.hpp>
#include <herald/events/log.hpp>
#include <herald/events/pattern.hpp>

#include <algorithm>
#include <atomic>

namespace herald {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

nlohmann::json StopAllResult::to_json() const {
  return {{"success", success},
          {"events_drained", events_drained},
          {"undelivered", undelivered},
          {"duration_ms", duration.count()}};
}

// Locks: the registry's mutex_ may be held while taking an Entry's mutex, never the reverse; an
// Entry's mutex may be held while taking a mailbox's lock (Subscription::pause/resume/stats),
// which the bus never holds while calling us. No lock is held while subscriber code runs or
// while Subscription::unsubscribe waits for a running handler.
struct SubscriberRegistry::Entry {
  enum class State { registered, started, failed, stopped };

  Entry(std::shared_ptr<Subscriber> s, std::string n, std::vector<std::string> p,
        SubscribeOptions o, CircuitBreakerOptions b, std::shared_ptr<Timer> t)
      : subscriber(std::move(s)),
        name(std::move(n)),
        patterns(std::move(p)),
        options(std::move(o)),
        has_breaker(b.enabled()),
        timer(std::move(t)),
        breaker(b) {}

  // Immutable after construction.
  const std::shared_ptr<Subscriber> subscriber;
  const std::string name;
  const std::vector<std::string> patterns;
  const SubscribeOptions options;
  const bool has_breaker;
  const std::shared_ptr<Timer> timer;

  RateLimiter log_limit{10, std::chrono::seconds(1)};
  std::atomic<std::uint64_t> skipped{0};

  mutable std::mutex mutex;  // guards everything below
  State state = State::registered;
  Subscription subscription;
  CircuitBreaker breaker;
  std::optional<SubscriptionStats> final_stats;

  static std::string_view state_name(State s) {
    switch (s) {
      case State::registered: return "registered";
      case State::started: return "started";
      case State::failed: return "failed";
      case State::stopped: return "stopped";
    }
    return "unknown";
  }

  SubscriptionStats stats_locked() const {
    if (state == State::started) return subscription.stats();
    if (final_stats) return *final_stats;
    SubscriptionStats s;
    s.name = name;
    s.patterns = patterns;
    return s;
  }

  // The bus handler: hooks, then the breaker, then the verdict for the bus's counters.
  void on_event(const EventPtr& event) {
    const auto outcome = detail::run_hooks(*subscriber, name, event, log_limit);
    const bool failed = outcome.kind == detail::HookOutcome::Kind::failed;
    if (outcome.kind == detail::HookOutcome::Kind::skipped) {
      skipped.fetch_add(1, std::memory_order_relaxed);
    }
    if (has_breaker) record_outcome(!failed);
    if (failed) throw HandlerFailure(outcome.error);
  }

  // The bus's batch handler for a batch-capable subscriber: the same hooks and breaker per
  // event (hooks.hpp), one handle_batch call for the batch.
  void on_batch(std::span<const EventPtr> events, std::span<HandleOutcome> outcomes) {
    std::vector<detail::HookOutcome> results(events.size());
    detail::run_batch_hooks(*subscriber, name, events, results, log_limit);
    const std::string* last_error = nullptr;
    for (std::size_t i = 0; i < events.size(); ++i) {
      const bool failed = results[i].kind == detail::HookOutcome::Kind::failed;
      if (results[i].kind == detail::HookOutcome::Kind::skipped) {
        skipped.fetch_add(1, std::memory_order_relaxed);
      }
      if (has_breaker) record_outcome(!failed);
      if (failed) {
        outcomes[i] = HandleOutcome::failed;
        last_error = &results[i].error;
      }
    }
    if (last_error) throw HandlerFailure(*last_error);  // outcomes filled; the message for last_error
  }

  void record_outcome(bool success) {
    std::optional<BreakerState> changed;
    std::uint32_t failures = 0;
    {
      std::lock_guard lock(mutex);
      changed = breaker.record(success, Clock::now());
      failures = breaker.consecutive_failures();
      // Pausing holds later events in the mailbox; the rest of the batch the dispatcher
      // already took still runs (their outcomes do not move an open breaker).
      if (changed == BreakerState::open) subscription.pause();
    }
    if (!changed) return;
    if (*changed == BreakerState::open) {
      logger()->warn(
          "subscriber '{}': circuit breaker open after {} consecutive failures; holding its "
          "events, health probe in {} ms",
          name, failures, breaker.options().cooldown.count());
      {
        std::lock_guard lock(timer->mutex);
        ++timer->wakeups;
      }
      timer->cv.notify_all();
    } else if (*changed == BreakerState::closed) {
      logger()->info("subscriber '{}': circuit breaker closed (handled an event after resuming)",
                     name);
    }
  }
};

SubscriberRegistry::SubscriberRegistry(EventBus& bus) : bus_(bus) {}

SubscriberRegistry::~SubscriberRegistry() {
  try {
    stop_all();
  } catch (const std::exception& e) {
    logger()->error("subscriber registry: error while stopping: {}", e.what());
  }
  stop_breaker_thread();
}

void SubscriberRegistry::register_subscriber(std::shared_ptr<Subscriber> subscriber) {
  if (!subscriber) throw Error("register_subscriber: the subscriber is null");
  std::string name = subscriber->name();
  if (name.empty()) throw Error("register_subscriber: the subscriber's name is empty");
  auto patterns = subscriber->subscribes_to();
  if (patterns.empty()) {
    throw Error("register_subscriber: subscriber '" + name + "' subscribes to no patterns");
  }
  for (const auto& p : patterns) {
    try {
      Pattern::compile(p);
    } catch (const PatternError& e) {
      throw PatternError(e.pattern(), e.reason() + " (subscriber '" + name + "')");
    }
  }
  auto options = subscriber->subscribe_options();
  options.name = name;
  auto entry = std::make_shared<Entry>(subscriber, name, std::move(patterns), std::move(options),
                                       subscriber->circuit_breaker(), timer_);
  bool start_now = false;
  {
    std::lock_guard lock(mutex_);
    if (state_ == State::stopped) {
      throw StateError("register_subscriber: cannot register '" + name +
                       "': the registry is stopped");
    }
    for (const auto& e : entries_) {
      if (e->name == name) throw RegistryError("subscriber '" + name + "' is already registered");
    }
    entries_.push_back(entry);
    start_now = state_ == State::started;
  }
  if (start_now) {
    try {
      start_entry(entry, /*rethrow=*/true);
    } catch (...) {
      std::lock_guard lock(mutex_);
      std::erase(entries_, entry);
      throw;
    }
  }
}

bool SubscriberRegistry::start_entry(const std::shared_ptr<Entry>& entry, bool rethrow) {
  auto fail = [&](std::string_view what, std::string_view why) {
    logger()->error("subscriber '{}' left out: {}: {}", entry->name, what, why);
    std::lock_guard lock(entry->mutex);
    if (entry->state == Entry::State::registered) {
      entry->state = Entry::State::failed;
      // Kept for stats() and status reports: why this subscriber receives nothing.
      SubscriptionStats s;
      s.name = entry->name;
      s.patterns = entry->patterns;
      s.last_error = std::string(what) + ": " + std::string(why);
      entry->final_stats = std::move(s);
    }
  };
  try {
    entry->subscriber->on_start();
  } catch (const std::exception& e) {
    fail("on_start threw", e.what());
    if (rethrow) throw;
    return false;
  } catch (...) {
    fail("on_start threw", "unknown exception");
    if (rethrow) throw;
    return false;
  }

  bool stop_again = false;
  std::exception_ptr subscribe_error;
  {
    std::lock_guard lock(entry->mutex);
    if (entry->state != Entry::State::registered) {
      stop_again = true;  // stop_all or remove() came first
    } else {
      try {
        if (entry->subscriber->handles_batches()) {
          entry->subscription = bus_.subscribe_batch(
              entry->patterns,
              [entry](std::span<const EventPtr> events, std::span<HandleOutcome> outcomes) {
                entry->on_batch(events, outcomes);
              },
              entry->options);
        } else {
          entry->subscription = bus_.subscribe(
              entry->patterns, [entry](const EventPtr& event) { entry->on_event(event); },
              entry->options);
        }
        entry->state = Entry::State::started;
      } catch (...) {
        subscribe_error = std::current_exception();
        stop_again = true;
      }
    }
  }
  if (stop_again) {
    if (subscribe_error) {
      try {
        std::rethrow_exception(subscribe_error);
      } catch (const std::exception& e) {
        fail("subscribe failed", e.what());
      }
    }
    try {
      entry->subscriber->on_stop();
    } catch (const std::exception& e) {
      logger()->error("subscriber '{}': on_stop threw: {}", entry->name, e.what());
    } catch (...) {
      logger()->error("subscriber '{}': on_stop threw an unknown exception", entry->name);
    }
    if (subscribe_error && rethrow) std::rethrow_exception(subscribe_error);
    return false;
  }
  if (entry->has_breaker) ensure_breaker_thread();
  logger()->info("subscriber '{}' started", entry->name);
  return true;
}

std::uint64_t SubscriberRegistry::stop_entry(const std::shared_ptr<Entry>& entry,
                                             bool& on_stop_ok) {
  Subscription subscription;
  std::uint64_t undelivered = 0;
  {
    std::lock_guard lock(entry->mutex);
    const auto was = entry->state;
    if (was != Entry::State::registered && was != Entry::State::started) return 0;
    entry->state = Entry::State::stopped;
    if (was == Entry::State::registered) return 0;
    // The subscription's counters die with it: keep the last ones. Whatever is still queued or
    // running is dropped by the unsubscribe below (approximate for a running event that
    // finishes: see registry.hpp, stats()).
    auto s = entry->subscription.stats();
    undelivered = s.in_flight;
    s.dropped += s.in_flight;
    s.in_flight = 0;
    s.queue_depth = 0;
    s.paused = false;
    entry->final_stats = std::move(s);
    subscription = std::move(entry->subscription);
  }
  subscription.unsubscribe();  // waits for a running handler unless called from inside it
  try {
    entry->subscriber->on_stop();
  } catch (const std::exception& e) {
    on_stop_ok = false;
    logger()->error("subscriber '{}': on_stop threw: {}", entry->name, e.what());
  } catch (...) {
    on_stop_ok = false;
    logger()->error("subscriber '{}': on_stop threw an unknown exception", entry->name);
  }
  logger()->info("subscriber '{}' stopped", entry->name);
  return undelivered;
}

bool SubscriberRegistry::remove(std::string_view name) {
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(entries_.begin(), entries_.end(),
                           [&](const auto& e) { return e->name == name; });
    if (it == entries_.end()) return false;
    entry = *it;
    entries_.erase(it);
  }
  bool on_stop_ok = true;
  stop_entry(entry, on_stop_ok);
  return true;
}

std::size_t SubscriberRegistry::start_all() {
  std::vector<std::shared_ptr<Entry>> entries;
  {
    std::lock_guard lock(mutex_);
    if (state_ != State::registered) return 0;
    state_ = State::started;
    entries = entries_;
  }
  std::size_t started = 0;
  for (const auto& e : entries) {
    if (start_entry(e, /*rethrow=*/false)) ++started;
  }
  logger()->info("subscriber registry: started {} of {} subscribers", started, entries.size());
  return started;
}

StopAllResult SubscriberRegistry::stop_all(milliseconds drain_timeout) {
  const auto start = Clock::now();
  std::vector<std::shared_ptr<Entry>> entries;
  auto totals = [&entries](std::uint64_t& in_flight, std::uint64_t& done) {
    in_flight = done = 0;
    for (const auto& e : entries) {
      std::lock_guard lock(e->mutex);
      if (e->state != Entry::State::started) continue;
      const auto s = e->subscription.stats();
      in_flight += s.in_flight;
      done += s.handled + s.failed;
    }
  };
  State previous;
  std::uint64_t in_flight = 0, done_before = 0, done_after = 0;
  {
    std::lock_guard lock(mutex_);
    if (state_ == State::stopped) return {};
    previous = state_;
    entries = entries_;
    totals(in_flight, done_before);  // before anyone can see the registry stopped
    state_ = State::stopped;
  }
  stop_breaker_thread();

  StopAllResult result;
  bool drained = true;
  if (previous == State::started) {
    // Events held by open breakers get their chance now: nothing is lost on a graceful stop.
    for (const auto& e : entries) {
      if (!e->has_breaker) continue;
      std::lock_guard lock(e->mutex);
      if (e->state != Entry::State::started) continue;
      if (e->breaker.state() != BreakerState::closed) {
        logger()->info("subscriber '{}': circuit breaker closed for stop (was {})", e->name,
                       to_string(e->breaker.state()));
        e->breaker.reset();
        e->subscription.resume();
      }
    }
    const auto deadline = start + drain_timeout;
    while (true) {
      totals(in_flight, done_after);
      if (in_flight == 0) break;
      const auto now = Clock::now();
      if (now >= deadline) {
        drained = false;
        break;
      }
      // Wakes as soon as the whole bus is idle; the slice bounds the wait when subscriptions
      // outside this registry keep the bus busy.
      (void)bus_.drain(std::min(std::chrono::duration_cast<milliseconds>(deadline - now) +
                              milliseconds(1),
                          milliseconds(10)));
    }
    result.events_drained = done_after - done_before;
  }

  bool on_stop_ok = true;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    result.undelivered += stop_entry(*it, on_stop_ok);
  }
  result.success = drained && result.undelivered == 0 && on_stop_ok;
  result.duration = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  if (previous == State::started) {
    auto log_level = result.success ? spdlog::level::info : spdlog::level::warn;
    logger()->log(log_level,
                  "subscriber registry stopped: {} events drained, {} undelivered, in {} ms{}",
                  result.events_drained, result.undelivered, result.duration.count(),
                  on_stop_ok ? "" : " (an on_stop hook failed)");
  }
  return result;
}

bool SubscriberRegistry::started() const {
  std::lock_guard lock(mutex_);
  return state_ == State::started;
}

bool SubscriberRegistry::stopped() const {
  std::lock_guard lock(mutex_);
  return state_ == State::stopped;
}

std::vector<std::string> SubscriberRegistry::names() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e->name);
  return out;
}

std::shared_ptr<SubscriberRegistry::Entry> SubscriberRegistry::find(std::string_view name) const {
  std::lock_guard lock(mutex_);
  for (const auto& e : entries_) {
    if (e->name == name) return e;
  }
  return nullptr;
}

std::shared_ptr<Subscriber> SubscriberRegistry::get(std::string_view name) const {
  auto e = find(name);
  return e ? e->subscriber : nullptr;
}

std::optional<SubscriptionStats> SubscriberRegistry::stats(std::string_view name) const {
  auto e = find(name);
  if (!e) return std::nullopt;
  std::lock_guard lock(e->mutex);
  return e->stats_locked();
}

nlohmann::json SubscriberRegistry::stats() const {
  std::vector<std::shared_ptr<Entry>> entries;
  {
    std::lock_guard lock(mutex_);
    entries = entries_;
  }
  nlohmann::json out = nlohmann::json::object();
  for (const auto& e : entries) {
    std::lock_guard lock(e->mutex);
    auto j = e->stats_locked().to_json();
    j["skipped"] = e->skipped.load(std::memory_order_relaxed);
    j["state"] = Entry::state_name(e->state);
    j["breaker"] = e->has_breaker ? e->breaker.to_json() : nlohmann::json(nullptr);
    out[e->name] = std::move(j);
  }
  return out;
}

std::optional<BreakerState> SubscriberRegistry::breaker_state(std::string_view name) const {
  auto e = find(name);
  if (!e || !e->has_breaker) return std::nullopt;
  std::lock_guard lock(e->mutex);
  return e->breaker.state();
}

nlohmann::json SubscriberRegistry::health() const {
  std::vector<std::shared_ptr<Entry>> entries;
  {
    std::lock_guard lock(mutex_);
    entries = entries_;
  }
  bool all = true;
  nlohmann::json subs = nlohmann::json::object();
  for (const auto& e : entries) {
    nlohmann::json j;
    bool check = false;
    try {
      check = e->subscriber->health_check();
    } catch (const std::exception& ex) {
      j["error"] = ex.what();
    } catch (...) {
      j["error"] = "unknown exception";
    }
    Entry::State state;
    std::optional<BreakerState> breaker;
    {
      std::lock_guard lock(e->mutex);
      state = e->state;
      if (e->has_breaker) breaker = e->breaker.state();
    }
    const bool healthy = check && state != Entry::State::failed &&
                         state != Entry::State::stopped && breaker != BreakerState::open;
    j["healthy"] = healthy;
    j["health_check"] = check;
    j["state"] = Entry::state_name(state);
    j["breaker"] = breaker ? nlohmann::json(to_string(*breaker)) : nlohmann::json(nullptr);
    subs[e->name] = std::move(j);
    all = all && healthy;
  }
  return {{"healthy", all}, {"subscribers", std::move(subs)}};
}

// ------------------------------------------------------------------------- breaker thread

void SubscriberRegistry::ensure_breaker_thread() {
  std::lock_guard lock(mutex_);
  if (state_ != State::started || breaker_thread_.joinable()) return;
  breaker_thread_ = std::thread([this] { breaker_thread_main(); });
}

void SubscriberRegistry::stop_breaker_thread() {
  std::thread thread;
  {
    std::lock_guard lock(mutex_);
    thread = std::move(breaker_thread_);
  }
  {
    std::lock_guard lock(timer_->mutex);
    timer_->stop = true;
  }
  timer_->cv.notify_all();
  if (!thread.joinable()) return;
  if (thread.get_id() == std::this_thread::get_id()) {
    thread.detach();  // stop_all from a health_check(): the loop exits on its next turn
  } else {
    thread.join();
  }
}

void SubscriberRegistry::probe(const std::shared_ptr<Entry>& entry) {
  bool healthy = false;
  try {
    healthy = entry->subscriber->health_check();
  } catch (const std::exception& e) {
    logger()->warn("subscriber '{}': health_check threw: {}", entry->name, e.what());
  } catch (...) {
    logger()->warn("subscriber '{}': health_check threw an unknown exception", entry->name);
  }
  std::optional<BreakerState> changed;
  {
    std::lock_guard lock(entry->mutex);
    if (entry->state != Entry::State::started) return;
    changed = entry->breaker.probe_result(healthy, Clock::now());
    if (changed == BreakerState::half_open) entry->subscription.resume();
  }
  if (changed == BreakerState::half_open) {
    logger()->info("subscriber '{}': circuit breaker half_open (health check passed), resuming",
                   entry->name);
  } else {
    logger()->info("subscriber '{}': circuit breaker stays open (health check failed), next probe "
                   "in {} ms",
                   entry->name, entry->breaker.options().cooldown.count());
  }
}

void SubscriberRegistry::breaker_thread_main() {
  const auto timer = timer_;
  while (true) {
    std::uint64_t seen;
    {
      std::lock_guard lock(timer->mutex);
      if (timer->stop) return;
      seen = timer->wakeups;
    }
    std::vector<std::shared_ptr<Entry>> entries;
    {
      std::lock_guard lock(mutex_);
      entries = entries_;
    }
    std::optional<Clock::time_point> earliest;
    for (const auto& e : entries) {
      if (!e->has_breaker) continue;
      auto due_of = [&e]() -> std::optional<Clock::time_point> {
        std::lock_guard lock(e->mutex);
        if (e->state != Entry::State::started) return std::nullopt;
        return e->breaker.probe_due();
      };
      auto due = due_of();
      if (due && *due <= Clock::now()) {
        probe(e);
        due = due_of();
      }
      if (due && (!earliest || *due < *earliest)) earliest = due;
    }
    std::unique_lock lock(timer->mutex);
    const auto woken = [&] { return timer->stop || timer->wakeups != seen; };
    if (earliest) {
      timer->cv.wait_until(lock, *earliest, woken);
    } else {
      timer->cv.wait(lock, woken);
    }
  }
}

}  // namespace herald
