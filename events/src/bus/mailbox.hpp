// Mailbox: one subscription's state: its handler, its bounded queue of events with the
// overflow policy (pool mode; herald/events/detail/bounded_queue.hpp, the queue the worker's
// intake uses too), its counters, and its inline gate (inline mode).
//
// Locks: the mutable fields, and `queue`, are guarded by `mutex`, except
//  - the handlers: set once, read without a lock while running; in pool mode close() releases
//    them once the mailbox is closed and idle, after which nothing reads them;
//  - `gate` (inline mode, bus/inline_gate.hpp), which has its own locking;
//  - the queue's closed flag (unsubscribed or bus stopped: set under `mutex`, in both modes),
//    which handlers and the idle spin peek at lock-free between events;
//  - the atomic counters, written under `mutex` in pool mode and by the gate's holder in inline
//    mode (one writer at a time either way: plain load + store, no atomic read-modify-write on
//    the inline path) and read lock-free. Inline hand-offs count their receipt in
//    `handed_over`, under the gate's handoff_mutex, so that `received` keeps a single writer.
// Invariant (SubscriptionStats): received + handed_over == handled + failed + dropped + in_flight.
//
// Threads: enqueue() runs on publishing threads (pool mode); the dispatcher pool
// (bus/dispatcher_pool.hpp) takes events out; close() runs on the unsubscribing or stopping
// thread. A mailbox is `running` on at most one dispatcher at a time.
#pragma once

#include "bus/common.hpp"
#include "bus/inline_gate.hpp"

#include <herald/events/detail/bounded_queue.hpp>
#include <herald/events/error.hpp>
#include <herald/events/event_bus.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace herald::detail {

class DispatcherPool;

struct Mailbox {
  std::uint64_t id = 0;
  std::string name;
  std::vector<std::string> patterns;
  EventHandler handler;
  BatchHandler batch_handler;
  SubscribeOptions options;

  mutable std::mutex mutex;
  std::condition_variable idle;         // unsubscribe waits here for a running batch to end
  // Pool mode's events (capacity and overflow from `options`); closed = unsubscribed or bus
  // stopped, in both modes.
  BoundedQueue<EventPtr> queue;
  bool scheduled = false;  // in the ready queue
  int running = 0;         // handler calls in progress (pool: 0 or 1; inline may nest)
  std::atomic<bool> paused{false};  // written under mutex; read lock-free between events
  std::thread::id running_thread;
  std::atomic<std::uint64_t> received{0}, handled{0}, failed{0}, dropped{0};
  std::atomic<std::uint64_t> handed_over{0};  // inline hand-offs received (under gate.handoff_mutex)
  std::uint64_t slow = 0;
  std::uint64_t overcommitted = 0;
  std::string last_error;
  InlineGate gate;

  // Lock-free peek at the closed flag (see Locks above).
  bool closed() const noexcept { return queue.closed_acquire(); }
  SubscriptionStats stats_locked(const std::unique_lock<std::mutex>& lock) const;
};

using MailboxPtr = std::shared_ptr<Mailbox>;

// Pool mode: puts the event in the mailbox per its overflow policy, counts it, and makes the
// mailbox ready on `pool` (or this thread's DeferWakes scope). Returns true if queued; counts an
// older event displaced to make room (drop_oldest) in report.displaced. May wait (block policy,
// PublishWait::allowed) in a BlockingScope with no herald lock held.
bool enqueue(const MailboxPtr& mb, const EventPtr& event, PublishWait wait, PublishReport& report,
             DispatcherPool& pool);

// Closes the mailbox (idempotent) and drops what is queued (counted in `dropped`); returns how
// many were dropped, for the caller to take off the bus's pending count. With
// `wait_for_runner` (pool mode), also waits until no dispatcher runs its handler (unless this
// thread is that dispatcher) and then releases the handlers.
std::int64_t close(Mailbox& mb, bool wait_for_runner);

// Runs one handler call, classifying the outcome (HandlerFailure: already reported by the
// adapter; other exceptions are logged). Returns true when handled. On the inline hot path:
// defined here so it inlines.
inline bool invoke_one(Mailbox& mb, const EventPtr& event, std::string& error, BusLogs& logs) {
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
    logs.failure(mb, *event, error);
  } catch (...) {
    ok = false;
    error = "unknown exception";
    logs.failure(mb, *event, error);
  }
  if (timed) {
    const auto took = std::chrono::steady_clock::now() - start;
    if (took > mb.options.slow_threshold) {
      {
        std::lock_guard lock(mb.mutex);
        ++mb.slow;
      }
      logs.slow(mb, *event, took);
    }
  }
  return ok;
}

}  // namespace herald::detail
