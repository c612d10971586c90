// The bus's shared vocabulary: per-thread state (which thread is inside a handler, which thread
// is single), the counter helpers of the hot path, the drain bookkeeping (`Quiescence`) and the
// rate-limited logs. Private to herald::events (events/src, not the public include dir).
//
// Threads: every function here may be called from any thread. The thread_locals are this
// thread's own; the helpers that skip atomic read-modify-writes (fetch_add_st, serial_add) state
// their precondition (one process thread, or one writer at a time).
#pragma once

#include <herald/events/domain_event.hpp>
#include <herald/events/event_bus.hpp>
#include <herald/events/log.hpp>

#include <sys/single_threaded.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace herald::detail {

struct Mailbox;

// How many herald handlers (inline or pool, any bus) are running on this thread, nested. A
// thread inside a handler never waits for an inline gate held by another thread (see
// EventBus's locking contract): it hands the event over instead. constinit: no TLS wrapper call
// on the inline hot path.
extern constinit thread_local int t_handler_depth;

// Each thread's identity for InlineGate::owner: its address (cheaper than std::this_thread::get_id()).
extern constinit thread_local const char t_gate_identity;

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

// Adds to a counter that has one writer at a time (the writers are serialized by a mutex): a
// load and a store, no read-modify-write. Readers may load it at any time.
inline void serial_add(std::atomic<std::uint64_t>& counter, std::uint64_t n) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_release);
}

// Marks this thread as inside a herald handler for its scope (t_handler_depth).
struct HandlerScope {
  HandlerScope() noexcept { ++t_handler_depth; }
  ~HandlerScope() { --t_handler_depth; }
  HandlerScope(const HandlerScope&) = delete;
  HandlerScope& operator=(const HandlerScope&) = delete;
};

// What drain() waits for: no event queued or running (`pending`, pool mode) and no publish in
// progress (the route table's readers, which it reports through notify_if_waited()).
// `pending` is atomic and touched by publishers and dispatchers without a lock; idle_mutex only
// pairs the condition variable with its waiters. Only a waiter (drain_waiters > 0) is woken:
// seq_cst on both sides means either the notifier sees the waiter or the waiter sees the state.
struct Quiescence {
  std::atomic<std::int64_t> pending{0};
  std::atomic<int> drain_waiters{0};
  std::mutex idle_mutex;
  std::condition_variable idle_cv;

  void add_pending(std::int64_t n) noexcept { pending.fetch_add(n, std::memory_order_relaxed); }
  void remove_pending(std::int64_t n) {
    if (n == 0) return;
    // Only wake drain() when someone waits: in inline mode pending goes 0 -> 1 -> 0 on every
    // publish, and a lock + broadcast each time would dominate its cost.
    if (pending.fetch_sub(n) == n) notify_if_waited();
  }
  void notify_if_waited() {
    if (drain_waiters.load() > 0) {
      std::lock_guard lock(idle_mutex);
      idle_cv.notify_all();
    }
  }
  // Waits (in a BlockingScope) until `idle()` holds, re-checked on every notification; false
  // on timeout.
  template <typename Idle>
  bool wait(std::chrono::milliseconds timeout, Idle idle) {
    BlockingScope waiting;
    drain_waiters.fetch_add(1);
    bool ok;
    {
      std::unique_lock lock(idle_mutex);
      ok = idle_cv.wait_for(lock, timeout, idle);
    }
    drain_waiters.fetch_sub(1);
    return ok;
  }
};

// The bus's rate-limited warnings (thread safe; never called with a mailbox lock held).
struct BusLogs {
  RateLimiter drop_log{10, std::chrono::seconds(1)};
  RateLimiter error_log{10, std::chrono::seconds(1)};
  RateLimiter overcommit_log{1, std::chrono::seconds(10)};

  void drop(const Mailbox& mb, const DomainEvent& event, std::string_view why);
  void failure(const Mailbox& mb, const DomainEvent& event, const std::string& error);
  void overcommit(const Mailbox& mb, const DomainEvent& event, std::size_t depth);
  void slow(const Mailbox& mb, const DomainEvent& event, std::chrono::steady_clock::duration took);
};

}  // namespace herald::detail
