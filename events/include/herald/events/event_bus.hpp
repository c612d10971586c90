// The in-process EventBus: glob subscriptions, per-subscription bounded mailboxes, a dispatcher
// pool that runs each subscription's events one at a time in publish order (DESIGN.md 5, 6).
#pragma once

#include <herald/events/domain_event.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace herald {

/// What a full mailbox does with a new event.
enum class OverflowPolicy {
  block,        ///< the publisher waits for room, up to the subscription's block_timeout
  drop_newest,  ///< the new event is dropped
  drop_oldest,  ///< the oldest queued event is dropped to make room
};
std::string_view to_string(OverflowPolicy policy) noexcept;
/// Throws UnknownValueError naming the value ("block", "drop_newest", "drop_oldest").
OverflowPolicy parse_overflow_policy(std::string_view text);

/// Which threads run a bus's handlers, and with it the bus's locking contract. Set once, in
/// BusOptions::dispatch; EventBus::dispatch_policy() reports it.
///
/// Both: a subscription's handler runs one call at a time, in publish order per publishing
/// thread; an exception in a handler marks the event failed and reaches neither the publisher
/// nor other subscriptions; every wait on another thread runs in a BlockingScope (Python drops
/// the GIL); `release()` and `stats()` mean the same; unsubscribe() drops what is queued
/// (counted) and, when it returns, the handler is not running and will not run again (unless
/// called from inside that handler: the current call finishes).
enum class DispatchPolicy : std::uint8_t {
  /// Handlers run on the bus's dispatcher threads (BusOptions::dispatcher_threads), never on
  /// the publisher's. Each subscription has a bounded mailbox (SubscribeOptions: capacity,
  /// overflow, block_timeout); publish() only queues, and waits only for room in a full
  /// `block` mailbox (PublishWait). No herald lock is held while a handler runs. A handler may
  /// publish, subscribe and unsubscribe freely (a publish from a handler only queues; note that
  /// one to its own full `block` mailbox waits its block_timeout out, since only its own
  /// dispatcher would make room). pause() holds the subscription's events in its mailbox (also
  /// between two events of a batch) until resume(). drain() waits until every queued event has
  /// been handled; stop() drains within its deadline, drops what is left (counted) and joins
  /// the dispatchers (not from a dispatcher thread: StateError). DeferWakes batches wake-ups.
  dispatcher_pool,
  /// Handlers run on the publishing thread, inside publish(), which returns when they have
  /// run (PublishReport::failed counts those that threw). No dispatcher threads, no mailbox:
  /// capacity, overflow, PublishWait, DeferWakes and the dispatcher hooks do not apply, and
  /// pause() is ignored (there is nowhere to hold events). Each subscription has a *gate*
  /// that serializes its handler calls:
  ///  - re-entrant: a handler that publishes to its own subscription runs the new event
  ///    nested, at once, on the same thread;
  ///  - a publisher outside any herald handler that finds the gate held by another thread
  ///    waits for it (in a BlockingScope: Python releases the GIL first, after trying once);
  ///  - a thread that is itself inside a handler (inline or pool) never waits for a gate held
  ///    by another thread: it hands the event to the gate's holder, which runs it (in hand-off
  ///    order) before letting the gate go, and publish returns without waiting. So two inline
  ///    handlers that publish to each other from two threads cannot deadlock; the price is
  ///    that such an event runs on the other thread, after publish returned.
  /// drain() waits for the publishes in progress (their handlers and hand-offs included);
  /// stop() refuses new publishes and waits for those in progress within its deadline;
  /// unsubscribe() waits for a call running on another thread by taking the gate, and drops
  /// hand-offs still waiting (counted).
  inline_on_publisher,
};
std::string_view to_string(DispatchPolicy policy) noexcept;
/// Throws UnknownValueError naming the value ("dispatcher_pool", "inline_on_publisher").
DispatchPolicy parse_dispatch_policy(std::string_view text);

/// How a publish may wait when a `block` mailbox is full (the other policies never wait).
enum class PublishWait : std::uint8_t {
  /// Wait for room up to the subscription's block_timeout, then drop (the default).
  allowed,
  /// Never wait: the full mailbox takes the event beyond its capacity (counted in
  /// SubscriptionStats::overcommitted, logged). For publishers that must not stop, such as the
  /// thread of an asyncio event loop that the subscriber's handler needs to run on: waiting
  /// there would wait for itself. The excess is bounded by what that thread publishes before it
  /// yields.
  overcommit,
  /// Never wait: the full mailbox drops the event, as a block timeout would (counted).
  drop,
};

/// Per-subscription settings.
struct SubscribeOptions {
  std::string name;                                ///< for logs and stats; default "subscription-N"
  std::size_t capacity = 10'000;                   ///< mailbox bound (events)
  OverflowPolicy overflow = OverflowPolicy::block;
  std::chrono::milliseconds block_timeout{5'000};  ///< block policy: longest wait for room
  std::chrono::milliseconds slow_threshold{0};     ///< handlers slower than this are counted (0: off)
};

/// A subscription's counters. Invariant at every snapshot:
/// received == handled + failed + dropped + in_flight.
struct SubscriptionStats {
  std::string name;
  std::vector<std::string> patterns;
  std::uint64_t received = 0;   ///< events that matched while subscribed
  std::uint64_t handled = 0;    ///< handler returned normally
  std::uint64_t failed = 0;     ///< handler threw
  std::uint64_t dropped = 0;    ///< overflow, block timeout, unsubscribe or stop with events queued
  std::uint64_t in_flight = 0;  ///< queued or running
  std::uint64_t slow = 0;       ///< handlers that ran longer than slow_threshold
  std::uint64_t overcommitted = 0;  ///< events queued beyond capacity (PublishWait::overcommit)
  std::size_t queue_depth = 0;
  bool paused = false;
  std::string last_error;
  nlohmann::json to_json() const;
};

/// One event's outcome in a batch handler.
enum class HandleOutcome : std::uint8_t { handled, failed };

/// Called on a dispatcher thread (or the publishing thread: DispatchPolicy) for each event. An exception
/// marks the event failed; it never reaches the publisher or other subscriptions.
using EventHandler = std::function<void(const EventPtr&)>;
/// Called with up to BusOptions::batch_size consecutive events of one subscription; fills one
/// outcome per event (pre-set to handled). For adapters that pay a fixed cost per call (Python,
/// the audit subscriber's writev). Any exception fails the whole batch, except HandlerFailure:
/// thrown after filling the outcomes, they stand and its message becomes last_error.
using BatchHandler =
    std::function<void(std::span<const EventPtr> events, std::span<HandleOutcome> outcomes)>;

namespace detail {
struct BusCore;
struct Mailbox;
}  // namespace detail

/// RAII handle of a subscription: unsubscribes when destroyed. Move-only.
/// Thread safety: every member function may be called concurrently with the others on the same
/// handle (an internal mutex guards the handle's links; none is held while unsubscribe waits
/// for a running handler). Moving a handle, like destroying it, must not race with other calls
/// on the handle moved from.
class Subscription {
 public:
  Subscription() = default;
  ~Subscription();
  Subscription(Subscription&& other) noexcept;
  Subscription& operator=(Subscription&& other) noexcept;
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  /// Stops deliveries. Queued events are dropped (and counted; stats() keeps reporting the final
  /// counters after unsubscribe); when it returns (from any number of concurrent callers), the
  /// handler is not running and will not run again, unless called from inside that handler, in
  /// which case the current call finishes normally. Idempotent. Safe after the bus is gone.
  void unsubscribe();
  /// Leaves the subscription in place for the bus's lifetime; the handle becomes empty.
  void release() noexcept;
  bool active() const noexcept;
  std::string name() const;
  SubscriptionStats stats() const;
  /// Holds deliveries: events keep arriving (bounded by the mailbox and its overflow policy)
  /// but the handler is not called until resume(). Takes effect before the next event, also in
  /// the middle of a dispatcher's batch. Used by circuit breakers. Ignored under
  /// DispatchPolicy::inline_on_publisher, where there is no mailbox to hold events in.
  void pause();
  void resume();

 private:
  friend class EventBus;
  Subscription(std::weak_ptr<detail::BusCore> core, std::shared_ptr<detail::Mailbox> mailbox);
  /// The links, copied under mutex_.
  std::pair<std::weak_ptr<detail::BusCore>, std::shared_ptr<detail::Mailbox>> links() const;
  mutable std::mutex mutex_;
  std::weak_ptr<detail::BusCore> core_;
  std::shared_ptr<detail::Mailbox> mailbox_;
};

/// Hooks around every wait of the calling thread on another thread inside herald (a contended
/// inline gate, a full `block` mailbox, unsubscribe waiting for a running handler, drain, stop,
/// a worker's full intake). The Python bindings install hooks that release the GIL, so that no
/// thread ever waits on a herald lock while holding it (DESIGN.md 12): `release` runs before the
/// wait and returns a token that `reacquire` gets after it. Never called with a herald lock
/// held. Process-wide; set once, before use (the Python module sets them at import).
struct BlockingHooks {
  void* (*release)() noexcept = nullptr;
  void (*reacquire)(void* token) noexcept = nullptr;
};
void set_blocking_hooks(BlockingHooks hooks) noexcept;

/// The scope of one such wait: calls the hooks (if any) around it. Construct it with no herald
/// lock held, and end it after releasing them.
class BlockingScope {
 public:
  BlockingScope() noexcept;
  ~BlockingScope();
  BlockingScope(const BlockingScope&) = delete;
  BlockingScope& operator=(const BlockingScope&) = delete;

 private:
  void* token_ = nullptr;
};

struct BusOptions {
  /// Dispatcher pool size; 0 means std::thread::hardware_concurrency(). Unused inline.
  std::size_t dispatcher_threads = 0;
  /// Which threads run handlers, and the locking contract that goes with it (DispatchPolicy).
  DispatchPolicy dispatch = DispatchPolicy::dispatcher_pool;
  /// The older spelling of `dispatch = DispatchPolicy::inline_on_publisher`, kept for existing
  /// callers (designated initializers, the Python binding's EventBus(inline=True), the config
  /// file's worker.inline_dispatch): true selects inline_on_publisher whatever `dispatch` says.
  bool inline_dispatch = false;
  /// Most events a dispatcher takes from one mailbox before moving on (fairness vs overhead).
  std::size_t batch_size = 64;
  /// Wait strategy of an idle dispatcher. 0 (the default) blocks at once: best throughput, and
  /// an idle pool uses no CPU, but each event that finds its dispatcher asleep waits for a
  /// wake-up (a futex call by the publisher, then the OS scheduler; on a busy machine that can be
  /// a whole time slice, ~1 ms). > 0: the dispatcher that drained a mailbox keeps it and watches
  /// for its next event this long before giving it up (one dispatcher at a time, so at most one
  /// core). For steady low-latency streams: cross-thread p50 drops from microseconds to below
  /// one, the p99 tail of wake-ups shrinks, at the price of smaller batches (saturated
  /// throughput fell to between a half and a third in bench/bench_fanout) and the spin's CPU
  /// after each burst.
  std::chrono::microseconds idle_spin{0};
  /// Bound on cached per-name routing answers.
  std::size_t match_cache_capacity = 16'384;
  /// Run on each dispatcher thread as it starts and before it exits (per-thread resources).
  /// Exceptions are logged. Never called under DispatchPolicy::inline_on_publisher.
  std::function<void()> on_dispatcher_start;
  std::function<void()> on_dispatcher_stop;
  std::string name = "bus";
};

/// What publish() did with one event.
struct PublishReport {
  std::size_t matched = 0;    ///< subscriptions whose patterns matched
  std::size_t delivered = 0;  ///< queued (pool) or handled (inline)
  std::size_t dropped = 0;    ///< this event, refused by a full mailbox's policy
  std::size_t displaced = 0;  ///< older queued events dropped to make room for it (drop_oldest)
  std::size_t failed = 0;     ///< inline mode: handlers that threw
  bool rejected = false;      ///< the bus is stopped
};

/// What stop() left behind. [[nodiscard]]: drained = false means events were lost.
struct [[nodiscard]] StopReport {
  bool drained = true;          ///< every queued event was handled before the deadline
  std::uint64_t undelivered = 0;  ///< events dropped because the deadline passed
  std::chrono::milliseconds duration{0};
};

struct BusStats {
  std::uint64_t published = 0;  ///< publish() calls accepted
  std::uint64_t unmatched = 0;  ///< accepted events no subscription wanted
  std::uint64_t rejected = 0;   ///< publish() after stop()
  std::uint64_t pending = 0;    ///< events queued or running, all subscriptions
  std::uint64_t route_cache_misses = 0;
  std::vector<SubscriptionStats> subscriptions;
  nlohmann::json to_json() const;
};

/// In-process publish/subscribe. Thread safe: every method may be called from any thread,
/// including from inside handlers, except stop() (not from a dispatcher thread: StateError).
/// Not copyable, not movable. The destructor stops; destroyed from inside one of its own
/// handlers on a dispatcher thread, it stops without draining (queued events are dropped and
/// counted), joins the other dispatchers and lets its own thread finish the handler and exit.
///
/// Locking contract: see DispatchPolicy (which threads run handlers, what pause, drain, stop
/// and unsubscribe mean, re-entrancy) for each of the two policies.
class EventBus {
 public:
  explicit EventBus(BusOptions options = {});
  ~EventBus();
  EventBus(const EventBus&) = delete;
  EventBus& operator=(const EventBus&) = delete;

  /// Subscribes `handler` to every event matching any of `patterns` (delivered once even when
  /// several match). Throws PatternError for an invalid pattern, Error for no patterns or an
  /// empty handler, StateError after stop().
  Subscription subscribe(const std::vector<std::string>& patterns, EventHandler handler,
                         SubscribeOptions options = {});
  Subscription subscribe_batch(const std::vector<std::string>& patterns, BatchHandler handler,
                               SubscribeOptions options = {});

  /// Routes the event to every matching subscription. Never throws; blocks only as long as a
  /// full `block` mailbox's timeout allows (see PublishWait), or, inline, for a busy gate. A
  /// null event is rejected.
  PublishReport publish(const EventPtr& event, PublishWait wait = PublishWait::allowed) noexcept;

  /// True when no `block` subscription matching `event_name` has a full mailbox: a publish now
  /// would not wait. For cooperative back-pressure (Python's publish_async polls it).
  [[nodiscard]] bool has_room(std::string_view event_name) const;

  /// Waits until every accepted event has been handled, publishes in progress included; false
  /// on timeout.
  [[nodiscard]] bool drain(std::chrono::milliseconds timeout);
  /// Refuses new events, drains within `timeout`, drops what is left (counted), joins the pool.
  /// Idempotent (later calls return an empty report).
  [[nodiscard("the report says what was not delivered")]] StopReport stop(
      std::chrono::milliseconds timeout = std::chrono::seconds(5));

  /// Batches dispatcher wake-ups for a thread that publishes runs of events. While a scope is
  /// open on a thread, that thread's publishes to this bus queue their events as usual but hand
  /// the mailboxes they make ready to the dispatcher pool only when the outermost scope ends (or
  /// flush()): one ready-queue lock and at most one wake-up per mailbox per scope, instead of a
  /// wake-up (and a context switch on each side) per event. The worker's intake opens one per
  /// batch of completions. Handlers see the events later by at most the scope's length, never
  /// out of order, and nothing is dropped. The scope flushes by itself before its thread waits
  /// on this bus (a full `block` mailbox, drain(), stop()), so it never holds back the events
  /// its own thread waits for; code run inside the scope must not wait in any other way for a
  /// handler to handle an event published in the scope (it would wait until the scope ends).
  /// Inline buses (DispatchPolicy::inline_on_publisher) ignore it: they have no dispatchers. Scopes nest; a scope opened while
  /// another bus's scope is open on the thread does nothing. A scope belongs to the thread that
  /// opened it and must end before the bus is destroyed. Not copyable, not movable.
  class DeferWakes {
   public:
    explicit DeferWakes(EventBus& bus) noexcept;
    ~DeferWakes();
    DeferWakes(const DeferWakes&) = delete;
    DeferWakes& operator=(const DeferWakes&) = delete;
    /// Hands over the wake-ups deferred so far; the scope stays open.
    void flush() noexcept;

   private:
    detail::BusCore* core_ = nullptr;  // null: this scope defers nothing
  };

  bool stopped() const noexcept;
  DispatchPolicy dispatch_policy() const noexcept;
  /// dispatch_policy() == DispatchPolicy::inline_on_publisher.
  bool is_inline() const noexcept;
  std::size_t dispatcher_threads() const noexcept;
  /// Events queued or running across all subscriptions.
  std::uint64_t pending() const noexcept;
  BusStats stats() const;
  /// True on a thread that is running a herald handler (of any bus, inline or on a
  /// dispatcher): code that waits for the bus or for a publisher to make progress must not wait
  /// there (the worker's process_steps() queues instead).
  static bool in_handler() noexcept;

 private:
  friend struct detail::BusCore;
  static Subscription make_handle(std::weak_ptr<detail::BusCore> core,
                                  std::shared_ptr<detail::Mailbox> mailbox) {
    return Subscription(std::move(core), std::move(mailbox));
  }
  std::shared_ptr<detail::BusCore> core_;
};

}  // namespace herald
