#include <herald/events/event_bus.hpp>

#include <herald/events/enums.hpp>
#include <herald/events/error.hpp>
#include <herald/events/log.hpp>
#include <herald/events/pattern.hpp>

#include <sys/single_threaded.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace herald {

namespace {
constexpr std::array<std::pair<OverflowPolicy, std::string_view>, 3> kOverflowNames{{
    {OverflowPolicy::block, "block"},
    {OverflowPolicy::drop_newest, "drop_newest"},
    {OverflowPolicy::drop_oldest, "drop_oldest"},
}};
}  // namespace

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

// How many herald handlers (inline or pool, any bus) are running on this thread, nested. A
// thread inside a handler never waits for an inline gate held by another thread (see
// EventBus's locking contract): it hands the event over instead.
thread_local int t_handler_depth = 0;

// True while the process has never started a second thread (glibc's __libc_single_threaded,
// the flag libstdc++'s shared_ptr and glibc's own mutexes consult for the same purpose). Then
// nothing can race with us, and the inline publish's atomic read-modify-writes (the reader
// registration and the gate) become plain loads and stores: measured on the bench host, each
// lock-prefixed instruction costs ~5-6 ns, most of an inline publish's ~55 ns. The flag only
// ever goes from true to false, in pthread_create before the new thread runs, so a thread
// started by a handler mid-publish sees every value written before it, and every later
// operation is atomic again.
inline bool single_threaded() noexcept { return __libc_single_threaded != 0; }

// fetch_add that skips the lock prefix while the process is single-threaded.
inline std::uint64_t fetch_add_st(std::atomic<std::uint64_t>& a, std::uint64_t n) noexcept {
  if (single_threaded()) {
    const auto before = a.load(std::memory_order_relaxed);
    a.store(before + n, std::memory_order_relaxed);
    return before;
  }
  return a.fetch_add(n);
}
// Each thread's identity for InlineGate::owner: its address (cheaper than std::this_thread::get_id()).
thread_local const char t_gate_identity = 0;

struct BusCore;

// EventBus::DeferWakes on this thread: the bus whose wake-ups are deferred (the outermost
// scope's), the nesting depth, and the mailboxes made ready meanwhile, each once (its
// `scheduled` flag is set when it joins the list, so later publishes to it only queue).
struct DeferredWakes {
  BusCore* core = nullptr;
  int depth = 0;
  std::vector<std::shared_ptr<Mailbox>> mailboxes;
};
thread_local DeferredWakes t_deferred;

struct HandlerScope {
  HandlerScope() noexcept { ++t_handler_depth; }
  ~HandlerScope() { --t_handler_depth; }
  HandlerScope(const HandlerScope&) = delete;
  HandlerScope& operator=(const HandlerScope&) = delete;
};

// Adds to a counter that has one writer at a time (the writers are serialized by a mutex): a
// load and a store, no read-modify-write. Readers may load it at any time.
inline void serial_add(std::atomic<std::uint64_t>& counter, std::uint64_t n) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_release);
}

// Inline mode's per-subscription serialization (EventBus's locking contract). One thread at a
// time holds the gate; it may re-enter (depth). Events handed over by threads that must not
// wait (they are inside a handler themselves) queue in `handoff`; the holder runs them before
// it lets the gate go, and a hand-off that finds the gate free a moment later takes the gate
// and runs them itself, so none is left behind.
struct InlineGate {
  // A small futex lock rather than std::mutex: the inline publish takes and leaves the gate
  // once per event, and pthread_mutex_trylock + unlock (a library call each, plus the owner
  // bookkeeping) measured ~10 ns of a ~55 ns inline publish on the bench host (bench_inline).
  // state: 0 free, 1 held, 2 held and a thread may be waiting (then leaving wakes one).
  std::atomic<std::uint32_t> state{0};
  std::atomic<const void*> owner{nullptr};  // the holder's t_gate_identity (written by the holder)
  int depth = 0;                // owner only
  std::mutex handoff_mutex;
  std::deque<EventPtr> handoff;           // guarded by handoff_mutex
  std::atomic<std::size_t> handoff_size{0};

  // Relaxed is enough: a thread reads back either its own identity (which only it writes) or
  // some other value, and either answers "is it me" correctly.
  bool owned_here() const noexcept { return owner.load(std::memory_order_relaxed) == &t_gate_identity; }
  void set_owner(const void* who) noexcept { owner.store(who, std::memory_order_relaxed); }
  // Enters if free or already ours; false if another thread holds it.
  bool try_enter() noexcept {
    if (owned_here()) {
      ++depth;
      return true;
    }
    if (single_threaded()) {
      if (state.load(std::memory_order_relaxed) != 0) return false;
      state.store(1, std::memory_order_relaxed);
    } else {
      std::uint32_t expected = 0;
      if (!state.compare_exchange_strong(expected, 1, std::memory_order_acquire, std::memory_order_relaxed)) {
        return false;
      }
    }
    set_owner(&t_gate_identity);
    depth = 1;
    return true;
  }
  // Waits for the gate (the caller is not its owner). In a BlockingScope: a Python thread
  // drops the GIL while it waits.
  void enter_blocking() {
    {
      BlockingScope waiting;
      // Mark the gate contended (2) while waiting, so that its holder wakes us when it leaves.
      std::uint32_t seen = state.exchange(2, std::memory_order_acquire);
      while (seen != 0) {
        state.wait(2, std::memory_order_relaxed);
        seen = state.exchange(2, std::memory_order_acquire);
      }
    }
    set_owner(&t_gate_identity);
    depth = 1;
  }
  // Leaves one level; true when this was the outermost (the caller must then run the
  // hand-offs through BusCore::leave_gate).
  bool leave_level() noexcept { return --depth == 0; }
  void unlock() noexcept {
    set_owner(nullptr);
    if (single_threaded()) {
      state.store(0, std::memory_order_relaxed);  // no thread exists that could wait
      return;
    }
    if (state.exchange(0, std::memory_order_release) == 2) state.notify_one();
  }
  EventPtr take_handoff() {
    std::lock_guard lock(handoff_mutex);
    if (handoff.empty()) return nullptr;
    EventPtr e = std::move(handoff.front());
    handoff.pop_front();
    handoff_size.store(handoff.size(), std::memory_order_release);
    return e;
  }
};

// One subscription's mailbox. Mutable fields are guarded by `mutex`, except: the handlers
// (set once, read without a lock while running; in pool mode close_mailbox() releases them
// once the mailbox is closed and idle, after which nothing reads them); `gate` (inline mode);
// and the atomic counters, which are written under `mutex` in pool mode and by the gate's
// holder in inline mode (one writer at a time either way: plain load + store, no atomic
// read-modify-write on the inline path) and read lock-free. Inline hand-offs count their receipt
// in `handed_over`, under the gate's handoff_mutex, so that `received` keeps a single writer.
struct Mailbox {
  std::uint64_t id = 0;
  std::string name;
  std::vector<std::string> patterns;
  EventHandler handler;
  BatchHandler batch_handler;
  SubscribeOptions options;

  mutable std::mutex mutex;
  std::condition_variable not_full;     // block policy publishers wait here
  std::condition_variable idle;         // unsubscribe waits here for a running batch to end
  std::deque<EventPtr> queue;
  bool scheduled = false;  // in the ready queue
  int running = 0;         // handler calls in progress (pool: 0 or 1; inline may nest)
  std::atomic<bool> closed{false};  // unsubscribed or bus stopped (written under mutex)
  std::atomic<bool> paused{false};  // written under mutex; read lock-free between events
  std::thread::id running_thread;
  std::size_t blocked_publishers = 0;
  std::atomic<std::uint64_t> received{0}, handled{0}, failed{0}, dropped{0};
  std::atomic<std::uint64_t> handed_over{0};  // inline hand-offs received (under gate.handoff_mutex)
  std::uint64_t slow = 0;
  std::uint64_t overcommitted = 0;
  std::string last_error;
  InlineGate gate;

  SubscriptionStats stats_locked() const {
    SubscriptionStats s;
    s.name = name;
    s.patterns = patterns;
    // Outcomes before `received`: each outcome is counted after its receipt, so this order
    // keeps received >= handled + failed + dropped in the snapshot.
    s.dropped = dropped.load(std::memory_order_acquire);
    s.failed = failed.load(std::memory_order_acquire);
    s.handled = handled.load(std::memory_order_acquire);
    s.received = received.load(std::memory_order_acquire) + handed_over.load(std::memory_order_acquire);
    s.in_flight = s.received - s.handled - s.failed - s.dropped;
    s.slow = slow;
    s.overcommitted = overcommitted;
    s.queue_depth = queue.size() + gate.handoff_size.load(std::memory_order_acquire);
    s.paused = paused;
    s.last_error = last_error;
    return s;
  }
};

using MailboxPtr = std::shared_ptr<Mailbox>;

// Immutable routing snapshot: the subscriptions at one moment and their compiled patterns.
struct Routes {
  std::vector<MailboxPtr> mailboxes;
  CachedPatternSet matcher;
  Routes(std::vector<MailboxPtr> m, PatternSet set, std::size_t cache_capacity)
      : mailboxes(std::move(m)), matcher(std::move(set), cache_capacity) {}
};

struct BusCore : std::enable_shared_from_this<BusCore> {
  BusOptions options;
  bool inline_mode = false;

  // Subscriptions and the lazily rebuilt routing snapshot (guarded by routes_mutex).
  mutable std::mutex routes_mutex;
  std::vector<MailboxPtr> mailboxes;
  std::unique_ptr<const Routes> routes_owner;  // null: rebuild on next publish
  std::uint64_t next_id = 1;
  std::atomic<std::uint64_t> cache_misses_of_retired_routes{0};

  // Publishers read the snapshot without a lock (a small read-copy-update): they register in
  // `readers` *before* loading `routes`, so a snapshot replaced at time T can only be in use by
  // a publisher that registered before T. It is retired with a sequence number and freed once
  // `readers` has been seen at zero after its retirement (every publisher that registered
  // before has left). Writers never wait for readers, so a handler may subscribe or
  // unsubscribe. The publish hot path costs two atomic read-modify-writes instead of a shared
  // lock and two reference-count round trips.
  //
  // `activity` packs the readers (bits 0-23: publishes in progress, nested ones included) with
  // the count of accepted publishes (bits 24-63), so that leaving the read section and counting
  // the publish is one atomic add instead of two: perf showed the three lock-prefixed adds of
  // the old enter/count/leave as most of an inline publish's own time. Readers are checked
  // against kReaderLimit on entry (a publish beyond it is rejected, never wraps into the
  // count; 16 bits could be reached by 65,536 nested inline publishes on a big stack); the
  // published count wraps after 2^40 (a statistic only).
  static constexpr unsigned kReaderBits = 24;
  static constexpr std::uint64_t kReaderOne = 1;
  static constexpr std::uint64_t kPublishedOne = std::uint64_t{1} << kReaderBits;
  static constexpr std::uint64_t kReaderMask = kPublishedOne - 1;
  static constexpr std::uint64_t kReaderLimit = kReaderMask / 2;
  std::atomic<const Routes*> routes{nullptr};
  std::atomic<std::uint64_t> activity{0};
  std::uint64_t readers() const noexcept { return activity.load() & kReaderMask; }
  std::uint64_t published() const noexcept { return activity.load() >> kReaderBits; }
  std::atomic<std::uint64_t> retired_seq{0};     // written under routes_mutex
  std::atomic<std::uint64_t> reclaimed_upto{0};  // written under retired_mutex
  std::mutex retired_mutex;
  std::vector<std::pair<std::uint64_t, std::unique_ptr<const Routes>>> retired;

  // Dispatcher pool: mailboxes with work, each at most once.
  std::mutex ready_mutex;
  std::condition_variable ready_cv;
  std::deque<MailboxPtr> ready;
  std::atomic<std::size_t> ready_size{0};  // ready.size(), read without the lock
  bool pool_stopping = false;
  std::atomic<bool> spinner{false};  // a dispatcher is in wait_for_more()
  static constexpr std::chrono::nanoseconds kGatherWindow{1'000};
  std::vector<std::thread> threads;
  std::vector<std::thread::id> thread_ids;

  // Pool mode: events queued or running, all mailboxes; drain() waits for zero and for the
  // publishes in progress (`readers`). Inline mode has no queue: a publish in progress runs
  // its handlers (and the gate holders their hand-offs) before it ends.
  std::atomic<std::int64_t> pending{0};
  std::atomic<int> drain_waiters{0};
  std::mutex idle_mutex;
  std::condition_variable idle_cv;

  std::atomic<bool> closed{false};
  std::atomic<bool> stop_done{false};
  std::atomic<std::uint64_t> unmatched{0}, rejected{0};
  RateLimiter drop_log{10, std::chrono::seconds(1)};
  RateLimiter error_log{10, std::chrono::seconds(1)};
  RateLimiter overcommit_log{1, std::chrono::seconds(10)};

  void add_pending(std::int64_t n) { pending.fetch_add(n, std::memory_order_relaxed); }
  void remove_pending(std::int64_t n) {
    if (n == 0) return;
    // Only wake drain() when someone waits: in inline mode pending goes 0 -> 1 -> 0 on every
    // publish, and a lock + broadcast each time would dominate its cost. seq_cst on both
    // sides (here and in drain()) means either we see the waiter or it sees pending == 0.
    if (pending.fetch_sub(n) == n && drain_waiters.load() > 0) {
      std::lock_guard lock(idle_mutex);
      idle_cv.notify_all();
    }
  }

  // A publisher's registration as a reader of `routes` (see above).
  class ReadSection {
   public:
    explicit ReadSection(BusCore& core) noexcept
        : core_(core), overflow_((fetch_add_st(core_.activity, kReaderOne) & kReaderMask) >= kReaderLimit) {}
    ~ReadSection() { core_.leave_read_section(accepted_); }
    ReadSection(const ReadSection&) = delete;
    ReadSection& operator=(const ReadSection&) = delete;
    /// Counts this publish as accepted when the section ends.
    void accept() noexcept { accepted_ = true; }
    /// Too many publishes in progress (kReaderLimit): this one must be rejected.
    bool overflow() const noexcept { return overflow_; }

   private:
    BusCore& core_;
    bool overflow_;
    bool accepted_ = false;
  };

  void leave_read_section(bool accepted) noexcept {
    // Load the retirement sequence *before* leaving: if we then see readers reach zero, every
    // snapshot retired up to `seq` was retired before that moment and nobody can hold it.
    const auto seq = retired_seq.load();
    // One add: readers - 1, and published + 1 when accepted (unsigned wrap-around subtracts).
    const auto before = fetch_add_st(activity, accepted ? kPublishedOne - kReaderOne : ~std::uint64_t{0});
    if ((before & kReaderMask) != 1) return;
    if (seq > reclaimed_upto.load(std::memory_order_relaxed)) reclaim(seq);
    // drain() waits for the publishes in progress too (in pool mode, one may be about to
    // enqueue). seq_cst on both sides: either we see the waiter or it sees readers == 0.
    if (drain_waiters.load() > 0) {
      std::lock_guard lock(idle_mutex);
      idle_cv.notify_all();
    }
  }

  // Frees the snapshots retired up to `seq`. Never called with routes_mutex held: freeing a
  // snapshot may destroy the last reference to a handler (and with it, say, a Python object).
  void reclaim(std::uint64_t seq) noexcept {
    std::vector<std::unique_ptr<const Routes>> doomed;
    {
      std::lock_guard lock(retired_mutex);
      auto keep = std::stable_partition(retired.begin(), retired.end(),
                                        [&](const auto& r) { return r.first > seq; });
      for (auto it = keep; it != retired.end(); ++it) doomed.push_back(std::move(it->second));
      retired.erase(keep, retired.end());
      if (seq > reclaimed_upto.load(std::memory_order_relaxed)) reclaimed_upto.store(seq);
    }
  }

  // Called in a ReadSection. The current snapshot, built if there is none.
  const Routes* current_routes() {
    if (const Routes* r = routes.load()) return r;
    std::lock_guard lock(routes_mutex);
    if (const Routes* r = routes.load()) return r;
    std::vector<std::pair<Pattern, std::size_t>> entries;
    for (std::size_t i = 0; i < mailboxes.size(); ++i) {
      for (const auto& p : mailboxes[i]->patterns) entries.emplace_back(Pattern::compile(p), i);
    }
    routes_owner = std::make_unique<const Routes>(mailboxes, PatternSet(entries),
                                                  options.match_cache_capacity);
    routes.store(routes_owner.get());
    return routes_owner.get();
  }

  // Takes the current snapshot out of service (the next publish builds a new one). Called with
  // routes_mutex held; the caller calls reclaim_if_quiet() after releasing it.
  void invalidate_routes_locked() {
    if (!routes_owner) return;
    cache_misses_of_retired_routes.fetch_add(routes_owner->matcher.cache_misses(),
                                             std::memory_order_relaxed);
    routes.store(nullptr);
    const auto seq = retired_seq.load(std::memory_order_relaxed) + 1;
    {
      std::lock_guard lock(retired_mutex);
      retired.emplace_back(seq, std::move(routes_owner));
    }
    retired_seq.store(seq);
  }

  void reclaim_if_quiet() noexcept {
    const auto seq = retired_seq.load();
    if (readers() == 0 && seq > reclaimed_upto.load(std::memory_order_relaxed)) reclaim(seq);
  }

  // The snapshot's match cache is full and names keep missing it (say, ids inside event names):
  // replace the snapshot so that a fresh cache learns the names in use now.
  void refresh_saturated_routes(const Routes* seen) {
    {
      std::lock_guard lock(routes_mutex);
      if (routes.load() != seen) return;  // someone else already did
      invalidate_routes_locked();
    }
  }

  void schedule(MailboxPtr mailbox) {
    {
      std::lock_guard lock(ready_mutex);
      ready.push_back(std::move(mailbox));
      ready_size.store(ready.size(), std::memory_order_relaxed);
    }
    ready_cv.notify_one();
  }

  // EventBus::DeferWakes: hands the mailboxes this thread made ready to the pool, under one
  // ready-queue lock and with one wake-up per mailbox (a sleeping dispatcher is woken only if
  // there is one: notify on a condition variable nobody waits on is not a system call).
  void flush_deferred() {
    if (t_deferred.core != this || t_deferred.mailboxes.empty()) return;
    const std::size_t n = t_deferred.mailboxes.size();
    {
      std::lock_guard lock(ready_mutex);
      for (auto& mb : t_deferred.mailboxes) ready.push_back(std::move(mb));
      ready_size.store(ready.size(), std::memory_order_relaxed);
    }
    t_deferred.mailboxes.clear();
    if (n == 1) {
      ready_cv.notify_one();
    } else {
      ready_cv.notify_all();
    }
  }

  void log_drop(const Mailbox& mb, const DomainEvent& event, std::string_view why) {
    std::uint64_t suppressed = 0;
    if (drop_log.allow(&suppressed)) {
      logger()->warn(
          "subscriber '{}' dropped event_name={} event_id={} correlation_id={}: {}{}", mb.name,
          event.event_name(), event.event_id(), event.metadata().correlation_id, why,
          suppressed ? fmt::format(" ({} similar messages suppressed)", suppressed) : "");
    }
  }

  void log_failure(const Mailbox& mb, const DomainEvent& event, const std::string& error) {
    std::uint64_t suppressed = 0;
    if (error_log.allow(&suppressed)) {
      logger()->warn(
          "subscriber '{}' failed on event_name={} event_id={} correlation_id={}: {}{}", mb.name,
          event.event_name(), event.event_id(), event.metadata().correlation_id, error,
          suppressed ? fmt::format(" ({} similar messages suppressed)", suppressed) : "");
    }
  }

  // Pool mode: put the event in the mailbox per its overflow policy. Returns true if queued;
  // counts an older event displaced to make room (drop_oldest) in report.displaced.
  bool enqueue(const MailboxPtr& mb, const EventPtr& event, PublishWait wait, PublishReport& report) {
    std::unique_lock lock(mb->mutex);
    if (mb->closed) return false;
    serial_add(mb->received, 1);
    if (mb->queue.size() >= mb->options.capacity) {
      switch (mb->options.overflow) {
        case OverflowPolicy::drop_newest:
          serial_add(mb->dropped, 1);
          lock.unlock();
          log_drop(*mb, *event, "mailbox full (drop_newest)");
          return false;
        case OverflowPolicy::drop_oldest: {
          EventPtr oldest = std::move(mb->queue.front());
          mb->queue.pop_front();
          serial_add(mb->dropped, 1);
          ++report.displaced;
          mb->queue.push_back(event);
          // The new event's count before the old one's goes: pending never passes through 0
          // here, so a concurrent drain() cannot return with an event queued.
          add_pending(1);
          remove_pending(1);
          maybe_schedule_locked(mb, lock);
          if (lock.owns_lock()) lock.unlock();  // never log under the mailbox lock
          log_drop(*mb, *oldest, "mailbox full (drop_oldest)");
          return true;
        }
        case OverflowPolicy::block: {
          if (wait == PublishWait::overcommit) {
            ++mb->overcommitted;
            const auto depth = mb->queue.size() + 1;
            mb->queue.push_back(event);
            add_pending(1);
            maybe_schedule_locked(mb, lock);
            if (lock.owns_lock()) lock.unlock();
            log_overcommit(*mb, *event, depth);
            return true;
          }
          if (wait == PublishWait::drop) {
            serial_add(mb->dropped, 1);
            lock.unlock();
            log_drop(*mb, *event, "mailbox full and the publisher may not wait");
            return false;
          }
          const bool room = wait_for_room(*mb, lock);
          if (!room || mb->closed) {
            serial_add(mb->dropped, 1);
            lock.unlock();
            log_drop(*mb, *event, room ? "unsubscribed while waiting"
                                       : "mailbox full, block timeout expired");
            return false;
          }
          break;
        }
      }
    }
    mb->queue.push_back(event);
    add_pending(1);
    maybe_schedule_locked(mb, lock);
    return true;
  }

  // Block policy: waits (up to block_timeout) until the mailbox has room or is closed. The wait
  // itself runs in a BlockingScope with the mailbox lock released around the scope's edges,
  // so a Python thread drops the GIL first and takes it back holding no herald lock. Called
  // and returns with `lock` held; true when there is room.
  bool wait_for_room(Mailbox& mb, std::unique_lock<std::mutex>& lock) {
    const auto deadline = std::chrono::steady_clock::now() + mb.options.block_timeout;
    const auto ready = [&] { return mb.closed || mb.queue.size() < mb.options.capacity; };
    ++mb.blocked_publishers;
    bool room = ready();
    while (!room) {
      lock.unlock();
      flush_deferred();  // the mailbox we wait on may be one this thread has not handed over yet
      {
        BlockingScope waiting;
        std::unique_lock relock(mb.mutex);
        room = mb.not_full.wait_until(relock, deadline, ready);
      }
      lock.lock();
      if (!room) break;
      room = ready();  // another publisher may have taken the room meanwhile
    }
    --mb.blocked_publishers;
    return room;
  }

  void log_overcommit(const Mailbox& mb, const DomainEvent& event, std::size_t depth) {
    std::uint64_t suppressed = 0;
    if (overcommit_log.allow(&suppressed)) {
      logger()->warn(
          "subscriber '{}' mailbox is full (capacity {}) and the publisher of event_name={} may not "
          "wait (an event loop's own thread): queued beyond capacity ({} queued); await "
          "publish_async() to wait for room instead{}",
          mb.name, mb.options.capacity, event.event_name(), depth,
          suppressed ? fmt::format(" ({} similar messages suppressed)", suppressed) : "");
    }
  }

  void maybe_schedule_locked(const MailboxPtr& mb, std::unique_lock<std::mutex>& lock) {
    if (!mb->scheduled && !mb->running && !mb->paused && !mb->closed) {
      mb->scheduled = true;
      lock.unlock();
      if (t_deferred.core == this) {
        t_deferred.mailboxes.push_back(mb);
        return;
      }
      schedule(mb);
    }
  }

  // Runs one handler call, classifying the outcome. Returns true when handled.
  bool invoke_one(Mailbox& mb, const EventPtr& event, std::string& error) {
    const bool timed = mb.options.slow_threshold.count() > 0;
    const auto start = timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    bool ok = true;
    try {
      HandlerScope in_handler;
      mb.handler(event);
    } catch (const HandlerFailure& e) {
      ok = false;  // already reported by the adapter
      error = e.what();
    } catch (const std::exception& e) {
      ok = false;
      error = e.what();
      log_failure(mb, *event, error);
    } catch (...) {
      ok = false;
      error = "unknown exception";
      log_failure(mb, *event, error);
    }
    if (timed) {
      const auto took = std::chrono::steady_clock::now() - start;
      if (took > mb.options.slow_threshold) {
        std::lock_guard lock(mb.mutex);
        ++mb.slow;
      }
      if (took > mb.options.slow_threshold) {
        static RateLimiter slow_log;
        if (slow_log.allow()) {
          logger()->warn("subscriber '{}' slow on event_name={} event_id={}: {} ms (threshold {} ms)",
                         mb.name, event->event_name(), event->event_id(),
                         std::chrono::duration_cast<std::chrono::milliseconds>(took).count(),
                         mb.options.slow_threshold.count());
        }
      }
    }
    return ok;
  }

  // Pool mode: batches of one mailbox. While no other mailbox is waiting for a dispatcher, the
  // same mailbox is drained batch after batch without going back through the ready queue (a
  // lone busy subscriber would otherwise pay a reschedule and a wake-up per batch); as soon as
  // another mailbox waits, this one goes to the back of the queue after the current batch.
  void run_batch(const MailboxPtr& mb) {
    // Reused across calls: a dispatcher thread runs one batch at a time (handlers that publish
    // only enqueue in pool mode, they never re-enter run_batch).
    thread_local std::vector<EventPtr> batch;
    thread_local std::vector<HandleOutcome> outcomes;
    std::unique_lock lock(mb->mutex);
    mb->scheduled = false;
    while (true) {
      if (mb->closed || mb->paused) break;
      if (mb->queue.empty()) {
        if (!wait_for_more(*mb, lock)) break;
        continue;
      }
      const auto n = std::min(mb->queue.size(), options.batch_size);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(mb->queue.front()));
        mb->queue.pop_front();
      }
      mb->running = 1;
      mb->running_thread = std::this_thread::get_id();
      if (mb->blocked_publishers > 0) mb->not_full.notify_all();
      lock.unlock();

      std::uint64_t handled = 0, failed = 0, dropped = 0;
      std::string last_error;
      run_handlers(*mb, batch, outcomes, handled, failed, dropped, last_error);

      lock.lock();
      serial_add(mb->handled, handled);
      serial_add(mb->failed, failed);
      serial_add(mb->dropped, dropped);
      if (!last_error.empty()) mb->last_error = std::move(last_error);
      batch.clear();  // release the events before announcing their completion
      remove_pending(static_cast<std::int64_t>(handled + failed + dropped));
      if (ready_size.load(std::memory_order_relaxed) > 0) {
        // Others are waiting: yield the thread and requeue behind them if work is left.
        if (!mb->queue.empty() && !mb->closed && !mb->paused) {
          mb->scheduled = true;
          mb->running = 0;
          mb->running_thread = {};
          mb->idle.notify_all();
          lock.unlock();
          schedule(mb);
          return;
        }
        break;
      }
    }
    mb->running = 0;
    mb->running_thread = {};
    mb->idle.notify_all();
  }

  // BusOptions::idle_spin. Called by run_batch with the mailbox drained and its lock held.
  // Rather than giving the mailbox up at once, one dispatcher at a time keeps it (still
  // `running`, so publishers only queue: no reschedule, no wake-up) and watches for its next
  // event for up to idle_spin, until another mailbox waits, or the subscription is closed or
  // paused. Returns with the lock held; true when events are queued again.
  bool wait_for_more(Mailbox& mb, std::unique_lock<std::mutex>& lock) {
    // Only as the mailbox's runner (after a batch): a mailbox that is not `running` can be
    // scheduled again by a publisher, and two dispatchers must never run one subscription.
    if (options.idle_spin.count() <= 0 || mb.running == 0 ||
        ready_size.load(std::memory_order_relaxed) > 0) {
      return false;
    }
    bool expected = false;
    if (!spinner.compare_exchange_strong(expected, true, std::memory_order_acquire)) return false;
    const auto seen = mb.received.load(std::memory_order_relaxed);
    lock.unlock();
    auto until = std::chrono::steady_clock::now() + options.idle_spin;
    bool arrived = false;
    for (unsigned i = 1;; ++i) {
      const auto received = mb.received.load(std::memory_order_relaxed);
      if (received != seen && !arrived) {
        // The first event is here. Under a fast stream, taking each event the moment it lands
        // would hand the mailbox lock back and forth with the publisher once per event; a
        // moment's grace (kGatherWindow, or a full batch) lets the next few join it.
        arrived = true;
        until = std::chrono::steady_clock::now() + kGatherWindow;
      }
      if (arrived && received - seen >= options.batch_size) break;
      if (ready_size.load(std::memory_order_relaxed) > 0 || mb.closed.load(std::memory_order_relaxed) ||
          mb.paused.load(std::memory_order_relaxed)) {
        break;
      }
      if ((i & 15) == 0 && std::chrono::steady_clock::now() >= until) break;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    spinner.store(false, std::memory_order_release);
    lock.lock();
    // Under the lock again: an event queued after the last look (while `running` kept its
    // publisher from scheduling the mailbox) is seen here, never left behind.
    return !mb.queue.empty();
  }

  // Runs one batch's handlers (no lock held) and counts the outcomes. Events handed back
  // because the subscription was paused mid-batch are re-queued, in order, and not counted.
  void run_handlers(Mailbox& mb, std::vector<EventPtr>& batch, std::vector<HandleOutcome>& outcomes,
                    std::uint64_t& handled, std::uint64_t& failed, std::uint64_t& dropped,
                    std::string& last_error) {
    if (mb.batch_handler) {
      outcomes.assign(batch.size(), HandleOutcome::handled);
      try {
        HandlerScope in_handler;
        mb.batch_handler(std::span<const EventPtr>(batch), std::span<HandleOutcome>(outcomes));
      } catch (const HandlerFailure& e) {
        last_error = e.what();  // the outcomes stand; the adapter has reported the failures
      } catch (const std::exception& e) {
        last_error = e.what();
        std::fill(outcomes.begin(), outcomes.end(), HandleOutcome::failed);
        log_failure(mb, *batch.front(), last_error);
      } catch (...) {
        last_error = "unknown exception";
        std::fill(outcomes.begin(), outcomes.end(), HandleOutcome::failed);
      }
      for (auto o : outcomes) (o == HandleOutcome::handled ? handled : failed)++;
      if (failed && last_error.empty()) last_error = "batch handler reported failures";
      return;
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (i > 0 && mb.closed.load(std::memory_order_acquire)) {  // unsubscribed from inside the handler
        dropped = batch.size() - i;
        return;
      }
      if (i > 0 && mb.paused.load(std::memory_order_acquire)) {
        // Paused mid-batch (a circuit breaker opened): hand the rest back, in order, to be
        // held with the queued events. They stay pending; nothing is counted.
        std::lock_guard lock(mb.mutex);
        if (!mb.closed) {
          mb.queue.insert(mb.queue.begin(),
                          std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(i)),
                          std::make_move_iterator(batch.end()));
          batch.resize(i);
          return;
        }
      }
      if (invoke_one(mb, batch[i], last_error)) {
        ++handled;
      } else {
        ++failed;
      }
    }
  }

  void dispatcher_main() {
    if (options.on_dispatcher_start) {
      try {
        options.on_dispatcher_start();
      } catch (const std::exception& e) {
        logger()->error("{}: dispatcher start hook failed: {}", options.name, e.what());
      }
    }
    while (true) {
      MailboxPtr mb;
      {
        std::unique_lock lock(ready_mutex);
        ready_cv.wait(lock, [&] { return pool_stopping || !ready.empty(); });
        if (ready.empty()) break;  // stopping and nothing left
        mb = std::move(ready.front());
        ready.pop_front();
        ready_size.store(ready.size(), std::memory_order_relaxed);
      }
      run_batch(mb);
    }
    if (options.on_dispatcher_stop) {
      try {
        options.on_dispatcher_stop();
      } catch (const std::exception& e) {
        logger()->error("{}: dispatcher stop hook failed: {}", options.name, e.what());
      }
    }
  }

  // Inline mode (EventBus's locking contract): the handler runs on this thread under the
  // subscription's gate. A thread inside a handler never waits for a gate another thread holds:
  // it hands the event over.
  void deliver_inline(Mailbox& mb, const EventPtr& event, PublishReport& report) {
    if (mb.closed.load(std::memory_order_acquire)) return;
    if (!mb.gate.try_enter()) {
      if (t_handler_depth > 0) {
        hand_off(mb, event);
        ++report.delivered;
        return;
      }
      mb.gate.enter_blocking();
    }
    if (!mb.closed.load(std::memory_order_acquire)) {
      serial_add(mb.received, 1);  // we hold the gate: the only writer
      ++report.delivered;
      if (!run_inline(mb, event)) ++report.failed;
    }
    leave_gate(mb);
  }

  // Runs one event's handler under the gate and counts its outcome; true when handled.
  bool run_inline(Mailbox& mb, const EventPtr& event) {
    std::string error;
    bool ok;
    if (mb.batch_handler) {
      HandleOutcome outcome = HandleOutcome::handled;
      try {
        HandlerScope in_handler;
        mb.batch_handler(std::span<const EventPtr>(&event, 1), std::span<HandleOutcome>(&outcome, 1));
      } catch (const std::exception& e) {
        outcome = HandleOutcome::failed;
        error = e.what();
      } catch (...) {
        outcome = HandleOutcome::failed;
        error = "unknown exception";
      }
      ok = outcome == HandleOutcome::handled;
    } else {
      ok = invoke_one(mb, event, error);
    }
    if (ok) {
      serial_add(mb.handled, 1);
    } else {
      {
        std::lock_guard lock(mb.mutex);
        mb.last_error = error.empty() ? "batch handler reported a failure" : error;
      }
      serial_add(mb.failed, 1);
    }
    return ok;
  }

  // Queues the event for the gate's holder. If the gate came free meanwhile (its holder may
  // have looked at the hand-offs just before this one landed), take it and run them here.
  void hand_off(Mailbox& mb, const EventPtr& event) {
    {
      std::lock_guard lock(mb.gate.handoff_mutex);
      serial_add(mb.handed_over, 1);  // handoff_mutex: the only writer
      mb.gate.handoff.push_back(event);
      mb.gate.handoff_size.store(mb.gate.handoff.size(), std::memory_order_release);
    }
    if (mb.gate.try_enter()) leave_gate(mb);
  }

  // Leaves one level of the gate. The outermost level first runs what was handed over, then
  // lets the gate go, and takes it back if a hand-off landed in between (someone always runs
  // it: either the holder sees it here, or the hand-off sees the gate free).
  void leave_gate(Mailbox& mb) {
    if (!mb.gate.leave_level()) return;
    while (true) {
      mb.gate.depth = 1;  // handed-over events run at level 1, like a publish of our own
      // The size is read before the hand-off mutex is taken: almost always there is nothing,
      // and the mutex would cost the inline path two atomic read-modify-writes per publish.
      while (mb.gate.handoff_size.load(std::memory_order_acquire) != 0) {
        EventPtr next = mb.gate.take_handoff();
        if (!next) break;
        if (mb.closed.load(std::memory_order_acquire)) {
          serial_add(mb.dropped, 1);
          continue;
        }
        run_inline(mb, next);
      }
      mb.gate.depth = 0;
      mb.gate.unlock();
      if (mb.gate.handoff_size.load(std::memory_order_acquire) == 0 || !mb.gate.try_enter()) return;
    }
  }

  void close_mailbox(const MailboxPtr& mb) {
    std::int64_t discarded = 0;
    EventHandler released_handler;  // destroyed after the lock is released
    BatchHandler released_batch_handler;
    {
      std::unique_lock lock(mb->mutex);
      if (!mb->closed) {
        mb->closed = true;
        discarded = static_cast<std::int64_t>(mb->queue.size());
        if (!mb->queue.empty()) serial_add(mb->dropped, mb->queue.size());  // inline: the gate holder may be adding
        mb->queue.clear();
        mb->not_full.notify_all();
      }
      // Wait for a running batch to end, unless we are that batch (unsubscribe from inside
      // the handler): then the current call finishes and the rest of the batch is dropped.
      if (!inline_mode && mb->running_thread != std::this_thread::get_id()) {
        mb->idle.wait(lock, [&] { return mb->running == 0; });
        // Closed and idle: no dispatcher will call the handler again (run_batch checks `closed`
        // under this mutex first). Release it now rather than with the last reference to the
        // mailbox, which a dispatcher thread may hold a moment longer, so that what the handler
        // captured is gone when unsubscribe() returns.
        released_handler = std::move(mb->handler);
        released_batch_handler = std::move(mb->batch_handler);
      }
    }
    // Inline mode: a handler running on another thread holds the gate; taking it waits for
    // that call (and its hand-offs) to end, after which nothing runs the handler again. From
    // inside the handler itself the gate is ours already. Hand-offs still queued are dropped.
    if (inline_mode) {
      if (!mb->gate.try_enter()) mb->gate.enter_blocking();
      leave_gate(*mb);
    }
    remove_pending(discarded);
  }

  void unsubscribe(const MailboxPtr& mb) {
    {
      std::lock_guard lock(routes_mutex);
      auto it = std::find(mailboxes.begin(), mailboxes.end(), mb);
      if (it != mailboxes.end()) {
        mailboxes.erase(it);
        invalidate_routes_locked();
      }
    }
    reclaim_if_quiet();
    close_mailbox(mb);
  }

  // Waits until no event is queued or running and no publish is in progress.
  bool wait_idle(std::chrono::milliseconds timeout) {
    BlockingScope waiting;
    drain_waiters.fetch_add(1);
    bool idle;
    {
      std::unique_lock lock(idle_mutex);
      idle = idle_cv.wait_for(lock, timeout, [&] {
        return readers() == 0 && (inline_mode || pending.load() <= 0);
      });
    }
    drain_waiters.fetch_sub(1);
    return idle;
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
    std::vector<MailboxPtr> all;
    {
      std::lock_guard lock(routes_mutex);
      all = mailboxes;
    }
    for (const auto& mb : all) {
      std::int64_t discarded = 0;
      {
        std::lock_guard lock(mb->mutex);
        discarded = static_cast<std::int64_t>(mb->queue.size());
        if (!mb->queue.empty()) serial_add(mb->dropped, mb->queue.size());  // inline: the gate holder may be adding
        mb->queue.clear();
        mb->closed = true;
        mb->not_full.notify_all();
      }
      report.undelivered += static_cast<std::uint64_t>(discarded);
      remove_pending(discarded);
    }
    {
      std::lock_guard lock(ready_mutex);
      pool_stopping = true;
    }
    ready_cv.notify_all();
    {
      BlockingScope waiting;
      for (auto& t : threads) finish(t);
    }
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

  bool on_dispatcher_thread() const {
    const auto self = std::this_thread::get_id();
    return std::find(thread_ids.begin(), thread_ids.end(), self) != thread_ids.end();
  }
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
  std::lock_guard lock(mailbox->mutex);
  return !mailbox->closed;
}

std::string Subscription::name() const {
  auto mailbox = links().second;
  return mailbox ? mailbox->name : std::string();
}

SubscriptionStats Subscription::stats() const {
  auto mailbox = links().second;
  if (!mailbox) return {};
  std::lock_guard lock(mailbox->mutex);
  return mailbox->stats_locked();
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
  if (!core->inline_mode) core->maybe_schedule_locked(mailbox, lock);
}

// ---------------------------------------------------------------------------- EventBus

EventBus::EventBus(BusOptions options) : core_(std::make_shared<detail::BusCore>()) {
  if (options.batch_size == 0) options.batch_size = 1;
  core_->inline_mode = options.inline_dispatch;
  if (!options.inline_dispatch && options.dispatcher_threads == 0) {
    options.dispatcher_threads = std::max(1u, std::thread::hardware_concurrency());
  }
  core_->options = std::move(options);
  if (!core_->inline_mode) {
    const auto n = core_->options.dispatcher_threads;
    core_->threads.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      // Each dispatcher keeps the core alive: a bus destroyed from inside one of its handlers
      // lets that thread finish its batch on a live core (see ~EventBus).
      core_->threads.emplace_back([core = core_] { core->dispatcher_main(); });
      core_->thread_ids.push_back(core_->threads.back().get_id());
    }
  }
}

EventBus::~EventBus() {
  auto& core = *core_;
  if (core.on_dispatcher_thread()) {
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
  mb->handler = std::move(handler);
  mb->batch_handler = std::move(batch);
  {
    std::lock_guard lock(core->routes_mutex);
    mb->id = core->next_id++;
    mb->name = options.name.empty() ? "subscription-" + std::to_string(mb->id) : options.name;
    mb->options = std::move(options);
    core->mailboxes.push_back(mb);
    core->invalidate_routes_locked();
  }
  core->reclaim_if_quiet();
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
  detail::BusCore::ReadSection reading(core);
  if (!event || core.closed.load() || reading.overflow()) {
    if (reading.overflow() && event) {
      logger()->error("{}: publish of event_name={} rejected: more than {} publishes in progress "
                      "(nested inline publishes without end?)",
                      core.options.name, event->event_name(), detail::BusCore::kReaderLimit);
    }
    core.rejected.fetch_add(1, std::memory_order_relaxed);
    report.rejected = true;
    return report;
  }
  try {
    reading.accept();
    const detail::Routes* routes = core.current_routes();
    std::vector<std::size_t> scratch;  // only filled when the name is not in the cache
    const auto owners = routes->matcher.match(event->event_name(), scratch);
    if (!scratch.empty() &&
        routes->matcher.uncached_lookups() > core.options.match_cache_capacity) {
      core.refresh_saturated_routes(routes);  // `routes` stays valid: we are still reading
    }
    report.matched = owners.size();
    if (owners.empty()) {
      core.unmatched.fetch_add(1, std::memory_order_relaxed);
      return report;
    }
    for (const auto index : owners) {
      const auto& mb = routes->mailboxes[index];
      if (core.inline_mode) {
        core.deliver_inline(*mb, event, report);
      } else if (core.enqueue(mb, event, wait, report)) {
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
  core_->flush_deferred();  // drained means handled: hand this thread's deferred wake-ups over first
  return core_->wait_idle(timeout);
}

StopReport EventBus::stop(std::chrono::milliseconds timeout) {
  core_->flush_deferred();
  auto& core = *core_;
  if (core.on_dispatcher_thread()) {
    throw StateError("stop: cannot stop the bus '" + core.options.name +
                     "' from one of its own dispatcher threads");
  }
  return core.shut_down(timeout, [](std::thread& t) {
    if (t.joinable()) t.join();
  });
}

bool EventBus::has_room(std::string_view event_name) const {
  auto& core = *core_;
  detail::BusCore::ReadSection reading(core);  // not accepted: not counted as a publish
  if (reading.overflow()) return false;
  const detail::Routes* routes = core.current_routes();
  std::vector<std::size_t> scratch;
  for (const auto index : routes->matcher.match(event_name, scratch)) {
    const auto& mb = routes->mailboxes[index];
    if (mb->options.overflow != OverflowPolicy::block) continue;
    std::lock_guard lock(mb->mutex);
    if (!mb->closed && mb->queue.size() >= mb->options.capacity) return false;
  }
  return true;
}

bool EventBus::stopped() const noexcept { return core_->closed.load(); }
bool EventBus::is_inline() const noexcept { return core_->inline_mode; }
std::size_t EventBus::dispatcher_threads() const noexcept { return core_->threads.size(); }
std::uint64_t EventBus::pending() const noexcept {
  if (core_->inline_mode) return core_->readers();
  const auto p = core_->pending.load(std::memory_order_acquire);
  return p > 0 ? static_cast<std::uint64_t>(p) : 0;
}

BusStats EventBus::stats() const {
  auto& core = *core_;
  BusStats s;
  s.published = core.published();
  s.unmatched = core.unmatched.load();
  s.rejected = core.rejected.load();
  s.pending = pending();
  std::vector<detail::MailboxPtr> all;
  {
    std::lock_guard lock(core.routes_mutex);
    all = core.mailboxes;
    s.route_cache_misses = core.cache_misses_of_retired_routes.load() +
                           (core.routes_owner ? core.routes_owner->matcher.cache_misses() : 0);
  }
  for (const auto& mb : all) {
    std::lock_guard lock(mb->mutex);
    s.subscriptions.push_back(mb->stats_locked());
  }
  return s;
}

// ---- DeferWakes --------------------------------------------------------------------------------

EventBus::DeferWakes::DeferWakes(EventBus& bus) noexcept {
  auto& d = detail::t_deferred;
  if (d.depth == 0) d.core = bus.core_.get();
  if (d.core != bus.core_.get()) return;  // another bus's scope is open here: this one does nothing
  core_ = bus.core_.get();
  ++d.depth;
}

void EventBus::DeferWakes::flush() noexcept {
  if (core_) core_->flush_deferred();
}

EventBus::DeferWakes::~DeferWakes() {
  if (!core_) return;
  auto& d = detail::t_deferred;
  if (--d.depth == 0) {
    core_->flush_deferred();
    d.core = nullptr;
  }
}

}  // namespace herald
