// The public face of the in-process bus: EventBus, Subscription, DeferWakes, the blocking hooks
// and the option/stat types. The machinery lives in events/src/bus/ (each file opens with its
// contract):
//   bus/common.hpp           per-thread state, counter helpers, drain bookkeeping, logs
//   bus/routes.{hpp,cpp}     subscriptions and the lock-free routing snapshot + reclamation
//   bus/mailbox.{hpp,cpp}    one subscription's bounded queue, overflow policy, counters
//   bus/dispatcher_pool.*    pool mode: ready queue, dispatcher threads, idle spin, wake-ups
//   bus/inline_gate.hpp      inline mode's per-subscription re-entrant lock
//   bus/inline_delivery.*    inline mode: handlers on the publishing thread, hand-offs
// BusCore (below) ties them together and owns the bus's lifecycle (closed, stop, unsubscribe).
#include <herald/events/event_bus.hpp>

#include "bus/common.hpp"
#include "bus/dispatcher_pool.hpp"
#include "bus/inline_delivery.hpp"
#include "bus/mailbox.hpp"
#include "bus/routes.hpp"

#include <herald/events/enums.hpp>
#include <herald/events/error.hpp>
#include <herald/events/log.hpp>
#include <herald/events/pattern.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

namespace herald {

namespace {
constexpr std::array<std::pair<OverflowPolicy, std::string_view>, 3> kOverflowNames{{
    {OverflowPolicy::block, "block"},
    {OverflowPolicy::drop_newest, "drop_newest"},
    {OverflowPolicy::drop_oldest, "drop_oldest"},
}};
constexpr std::array<std::pair<DispatchPolicy, std::string_view>, 2> kDispatchNames{{
    {DispatchPolicy::dispatcher_pool, "dispatcher_pool"},
    {DispatchPolicy::inline_on_publisher, "inline_on_publisher"},
}};
}  // namespace

std::string_view to_string(DispatchPolicy policy) noexcept {
  return detail::enum_name(policy, kDispatchNames);
}
DispatchPolicy parse_dispatch_policy(std::string_view text) {
  return detail::parse_enum("dispatch policy", text, kDispatchNames);
}

std::string_view to_string(OverflowPolicy policy) noexcept {
  return detail::enum_name(policy, kOverflowNames);
}
OverflowPolicy parse_overflow_policy(std::string_view text) {
  return detail::parse_enum("overflow policy", text, kOverflowNames);
}

nlohmann::json SubscriptionStats::to_json() const {
  return {{"name", name},         {"patterns", patterns},     {"received", received},
          {"handled", handled},   {"failed", failed},         {"dropped", dropped},
          {"in_flight", in_flight}, {"slow", slow},           {"queue_depth", queue_depth},
          {"overcommitted", overcommitted},
          {"paused", paused},     {"last_error", last_error}};
}

namespace {
std::atomic<void* (*)() noexcept> g_release_hook{nullptr};
std::atomic<void (*)(void*) noexcept> g_reacquire_hook{nullptr};
}  // namespace

void set_blocking_hooks(BlockingHooks hooks) noexcept {
  g_release_hook.store(hooks.release);
  g_reacquire_hook.store(hooks.reacquire);
}

BlockingScope::BlockingScope() noexcept {
  if (auto release = g_release_hook.load(std::memory_order_acquire)) token_ = release();
}

BlockingScope::~BlockingScope() {
  if (auto reacquire = g_reacquire_hook.load(std::memory_order_acquire)) reacquire(token_);
}

nlohmann::json BusStats::to_json() const {
  nlohmann::json subs = nlohmann::json::array();
  for (const auto& s : subscriptions) subs.push_back(s.to_json());
  return {{"published", published}, {"unmatched", unmatched}, {"rejected", rejected},
          {"pending", pending}, {"route_cache_misses", route_cache_misses},
          {"subscriptions", subs}};
}

namespace detail {

// The bus: its options and policy, the parts (routes, pool, drain bookkeeping, logs) and the
// lifecycle. `closed` is set once by stop() (publishers check it inside their ReadSection, so
// stop() either sees a publish in progress and waits for it, or the publish sees the bus
// closed); `stop_done` makes stop() run once.
struct BusCore : std::enable_shared_from_this<BusCore> {
  explicit BusCore(BusOptions opts)
      : options(std::move(opts)), inline_mode(options.dispatch == DispatchPolicy::inline_on_publisher) {}

  const BusOptions options;  // normalized: `dispatch` is the policy, inline_dispatch agrees
  const bool inline_mode;    // DispatchPolicy::inline_on_publisher
  Quiescence quiet;
  BusLogs logs;
  RouteTable routes{options.match_cache_capacity, quiet};
  DispatcherPool pool{options, quiet, logs};

  std::atomic<bool> closed{false};
  std::atomic<bool> stop_done{false};
  std::atomic<std::uint64_t> unmatched{0}, rejected{0};

  void unsubscribe(const MailboxPtr& mb) {
    routes.remove(mb);
    const auto discarded = close(*mb, /*wait_for_runner=*/!inline_mode);
    if (inline_mode) inline_delivery::close(*mb, logs);
    quiet.remove_pending(discarded);
  }

  // Waits until no event is queued or running and no publish is in progress.
  bool wait_idle(std::chrono::milliseconds timeout) {
    return quiet.wait(timeout, [&] {
      return routes.readers() == 0 && (inline_mode || quiet.pending.load() <= 0);
    });
  }

  // stop(): refuses new events, drains within `timeout`, drops what is left (counted), stops
  // the pool and hands each dispatcher thread to `finish` (join, or detach for the caller's
  // own thread). Once; later calls return an empty report.
  template <typename Finish>
  StopReport shut_down(std::chrono::milliseconds timeout, Finish finish) {
    StopReport report;
    if (stop_done.exchange(true)) return report;
    const auto start = std::chrono::steady_clock::now();
    closed.store(true, std::memory_order_release);
    report.drained = wait_idle(timeout);

    // Whatever is still queued after the deadline is dropped and counted.
    for (const auto& mb : routes.all()) {
      const auto discarded = close(*mb, /*wait_for_runner=*/false);
      report.undelivered += static_cast<std::uint64_t>(discarded);
      quiet.remove_pending(discarded);
    }
    pool.stop(finish);
    report.duration = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    if (report.undelivered > 0) {
      logger()->warn("{}: stopped with {} undelivered events (drain deadline {} ms)",
                     options.name, report.undelivered, timeout.count());
    }
    return report;
  }

  static Subscription make_subscription(const std::shared_ptr<BusCore>& core,
                                        const std::vector<std::string>& patterns,
                                        EventHandler handler, BatchHandler batch,
                                        SubscribeOptions options);
};

}  // namespace detail
// ---------------------------------------------------------------------------- Subscription

Subscription::Subscription(std::weak_ptr<detail::BusCore> core,
                           std::shared_ptr<detail::Mailbox> mailbox)
    : core_(std::move(core)), mailbox_(std::move(mailbox)) {}

Subscription::Subscription(Subscription&& other) noexcept {
  std::lock_guard lock(other.mutex_);
  core_ = std::move(other.core_);
  mailbox_ = std::move(other.mailbox_);
}

Subscription::~Subscription() { unsubscribe(); }

Subscription& Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    unsubscribe();
    std::weak_ptr<detail::BusCore> core;
    std::shared_ptr<detail::Mailbox> mailbox;
    {
      std::lock_guard lock(other.mutex_);
      core = std::move(other.core_);
      mailbox = std::move(other.mailbox_);
    }
    std::shared_ptr<detail::Mailbox> replaced;  // released outside the lock
    std::lock_guard lock(mutex_);
    core_ = std::move(core);
    replaced = std::exchange(mailbox_, std::move(mailbox));
  }
  return *this;
}

std::pair<std::weak_ptr<detail::BusCore>, std::shared_ptr<detail::Mailbox>> Subscription::links() const {
  std::lock_guard lock(mutex_);
  return {core_, mailbox_};
}

void Subscription::unsubscribe() {
  // The links stay: the mailbox so that stats() still reports the final counters (including
  // what this unsubscribe dropped), the bus so that a concurrent second caller also waits for
  // a running handler before it returns (BusCore::unsubscribe is idempotent).
  auto [weak_core, mailbox] = links();
  auto core = weak_core.lock();
  if (mailbox && core) core->unsubscribe(mailbox);
}

void Subscription::release() noexcept {
  std::weak_ptr<detail::BusCore> core;
  std::shared_ptr<detail::Mailbox> mailbox;
  std::lock_guard lock(mutex_);
  core = std::exchange(core_, {});
  mailbox = std::exchange(mailbox_, {});
}

bool Subscription::active() const noexcept {
  auto [core, mailbox] = links();
  if (!mailbox || core.expired()) return false;  // never subscribed, released, or bus gone
  std::unique_lock lock(mailbox->mutex);
  return !mailbox->queue.closed(lock);
}

std::string Subscription::name() const {
  auto mailbox = links().second;
  return mailbox ? mailbox->name : std::string();
}

SubscriptionStats Subscription::stats() const {
  auto mailbox = links().second;
  if (!mailbox) return {};
  std::unique_lock lock(mailbox->mutex);
  return mailbox->stats_locked(lock);
}

void Subscription::pause() {
  auto mailbox = links().second;
  if (!mailbox) return;
  std::lock_guard lock(mailbox->mutex);
  mailbox->paused = true;
}

void Subscription::resume() {
  auto [weak_core, mailbox] = links();
  auto core = weak_core.lock();
  if (!mailbox || !core) return;
  std::unique_lock lock(mailbox->mutex);
  if (!mailbox->paused) return;
  mailbox->paused = false;
  if (!core->inline_mode) core->pool.maybe_schedule_locked(mailbox, lock);
}

// ---------------------------------------------------------------------------- EventBus

namespace {
BusOptions normalized(BusOptions options) {
  if (options.batch_size == 0) options.batch_size = 1;
  if (options.inline_dispatch) options.dispatch = DispatchPolicy::inline_on_publisher;  // the older spelling
  options.inline_dispatch = options.dispatch == DispatchPolicy::inline_on_publisher;
  if (!options.inline_dispatch && options.dispatcher_threads == 0) {
    options.dispatcher_threads = std::max(1u, std::thread::hardware_concurrency());
  }
  return options;
}
}  // namespace

EventBus::EventBus(BusOptions options)
    : core_(std::make_shared<detail::BusCore>(normalized(std::move(options)))) {
  // Each dispatcher keeps the core alive: a bus destroyed from inside one of its handlers lets
  // that thread finish its batch on a live core (see ~EventBus).
  if (!core_->inline_mode) core_->pool.start(core_->options.dispatcher_threads, core_);
}

EventBus::~EventBus() {
  auto& core = *core_;
  if (core.pool.on_dispatcher_thread()) {
    // Destroyed from inside one of our own handlers: this thread cannot join itself, and a
    // drain would wait for the batch it is in. Stop without draining, join the others, and let
    // this thread finish its handler and leave (it holds a reference to the core).
    const auto self = std::this_thread::get_id();
    logger()->warn("{}: destroyed from one of its own dispatcher threads; stopping without draining",
                   core.options.name);
    const auto report = core.shut_down(std::chrono::milliseconds(0), [&](std::thread& t) {
      if (t.get_id() == self) {
        t.detach();
      } else if (t.joinable()) {
        t.join();
      }
    });
    (void)report;
    return;
  }
  try {
    const auto report = stop();
    (void)report;  // stop() logs what it could not deliver
  } catch (const std::exception& e) {
    logger()->error("{}: error while stopping: {}", core.options.name, e.what());
  }
}

namespace detail {
Subscription BusCore::make_subscription(const std::shared_ptr<BusCore>& core,
                               const std::vector<std::string>& patterns, EventHandler handler,
                               BatchHandler batch, SubscribeOptions options) {
  if (patterns.empty()) throw Error("subscribe: at least one pattern is required");
  for (const auto& p : patterns) Pattern::compile(p);  // PatternError names the bad one
  if (options.capacity == 0) throw Error("subscribe: mailbox capacity must be at least 1");
  if (core->closed.load()) throw StateError("subscribe: the bus '" + core->options.name + "' is stopped");
  auto mb = std::make_shared<detail::Mailbox>();
  mb->patterns = patterns;
  mb->queue.set_limits({options.capacity, options.overflow, options.block_timeout});
  mb->handler = std::move(handler);
  mb->batch_handler = std::move(batch);
  core->routes.add(mb, std::move(options));
  return EventBus::make_handle(core, std::move(mb));
}
}  // namespace detail

Subscription EventBus::subscribe(const std::vector<std::string>& patterns, EventHandler handler,
                                 SubscribeOptions options) {
  if (!handler) throw Error("subscribe: handler is empty");
  return detail::BusCore::make_subscription(core_, patterns, std::move(handler), {}, std::move(options));
}

Subscription EventBus::subscribe_batch(const std::vector<std::string>& patterns,
                                       BatchHandler handler, SubscribeOptions options) {
  if (!handler) throw Error("subscribe_batch: handler is empty");
  return detail::BusCore::make_subscription(core_, patterns, {}, std::move(handler), std::move(options));
}

PublishReport EventBus::publish(const EventPtr& event, PublishWait wait) noexcept {
  PublishReport report;
  auto& core = *core_;
  // Registered before the closed check, so that stop() (closed, then drain) either sees this
  // publish in progress and waits for it, or this publish sees the bus closed.
  detail::RouteTable::ReadSection reading(core.routes);
  if (!event || core.closed.load() || reading.overflow()) {
    if (reading.overflow() && event) {
      logger()->error("{}: publish of event_name={} rejected: more than {} publishes in progress "
                      "(nested inline publishes without end?)",
                      core.options.name, event->event_name(), detail::RouteTable::kReaderLimit);
    }
    core.rejected.fetch_add(1, std::memory_order_relaxed);
    report.rejected = true;
    return report;
  }
  try {
    reading.accept();
    const detail::Routes* routes = core.routes.current();
    std::vector<std::size_t> scratch;  // only filled when the name is not in the cache
    const auto owners = routes->matcher.match(event->event_name(), scratch);
    if (!scratch.empty() &&
        routes->matcher.uncached_lookups() > core.options.match_cache_capacity) {
      core.routes.refresh_saturated(routes);  // `routes` stays valid: we are still reading
    }
    report.matched = owners.size();
    if (owners.empty()) {
      core.unmatched.fetch_add(1, std::memory_order_relaxed);
      return report;
    }
    for (const auto index : owners) {
      const auto& mb = routes->mailboxes[index];
      if (core.inline_mode) {
        detail::inline_delivery::deliver(*mb, event, report, core.logs);
      } else if (detail::enqueue(mb, event, wait, report, core.pool)) {
        ++report.delivered;
      } else {
        ++report.dropped;
      }
    }
  } catch (const std::exception& e) {
    // Only allocation failure or a pattern that compiled once and not again can land here.
    logger()->error("{}: publish of event_name={} event_id={} failed: {}", core.options.name,
                    event->event_name(), event->event_id(), e.what());
  }
  return report;
}

bool EventBus::drain(std::chrono::milliseconds timeout) {
  core_->pool.flush_deferred();  // drained means handled: hand this thread's deferred wake-ups over first
  return core_->wait_idle(timeout);
}

StopReport EventBus::stop(std::chrono::milliseconds timeout) {
  core_->pool.flush_deferred();
  auto& core = *core_;
  if (core.pool.on_dispatcher_thread()) {
    throw StateError("stop: cannot stop the bus '" + core.options.name +
                     "' from one of its own dispatcher threads");
  }
  return core.shut_down(timeout, [](std::thread& t) {
    if (t.joinable()) t.join();
  });
}

bool EventBus::has_room(std::string_view event_name) const {
  auto& core = *core_;
  detail::RouteTable::ReadSection reading(core.routes);  // not accepted: not counted as a publish
  if (reading.overflow()) return false;
  const detail::Routes* routes = core.routes.current();
  std::vector<std::size_t> scratch;
  for (const auto index : routes->matcher.match(event_name, scratch)) {
    const auto& mb = routes->mailboxes[index];
    if (mb->options.overflow != OverflowPolicy::block) continue;
    std::unique_lock lock(mb->mutex);
    if (!mb->queue.closed(lock) && !mb->queue.has_room(lock)) return false;
  }
  return true;
}

bool EventBus::stopped() const noexcept { return core_->closed.load(); }
DispatchPolicy EventBus::dispatch_policy() const noexcept { return core_->options.dispatch; }
bool EventBus::is_inline() const noexcept { return core_->inline_mode; }
bool EventBus::in_handler() noexcept { return detail::t_handler_depth > 0; }
std::size_t EventBus::dispatcher_threads() const noexcept { return core_->pool.size(); }
std::uint64_t EventBus::pending() const noexcept {
  if (core_->inline_mode) return core_->routes.readers();
  const auto p = core_->quiet.pending.load(std::memory_order_acquire);
  return p > 0 ? static_cast<std::uint64_t>(p) : 0;
}

BusStats EventBus::stats() const {
  auto& core = *core_;
  BusStats s;
  s.published = core.routes.published();
  s.unmatched = core.unmatched.load();
  s.rejected = core.rejected.load();
  s.pending = pending();
  s.route_cache_misses = core.routes.cache_misses();
  for (const auto& mb : core.routes.all()) {
    std::unique_lock lock(mb->mutex);
    s.subscriptions.push_back(mb->stats_locked(lock));
  }
  return s;
}

// ---- DeferWakes --------------------------------------------------------------------------------

EventBus::DeferWakes::DeferWakes(EventBus& bus) noexcept {
  if (bus.core_->pool.begin_defer()) core_ = bus.core_.get();
}

void EventBus::DeferWakes::flush() noexcept {
  if (core_) core_->pool.flush_deferred();
}

EventBus::DeferWakes::~DeferWakes() {
  if (core_) core_->pool.end_defer();
}

}  // namespace herald
