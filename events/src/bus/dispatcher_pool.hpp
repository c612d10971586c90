// DispatcherPool: the threads that run pool-mode handlers (DispatchPolicy::dispatcher_pool).
//
// Owns: the ready queue (mailboxes with work, each at most once: Mailbox::scheduled), the
// dispatcher threads, the idle spin (BusOptions::idle_spin) and the per-thread deferral of
// wake-ups (EventBus::DeferWakes).
//
// Threads: schedule()/maybe_schedule_locked() run on publishing threads (and on a dispatcher
// that requeues a mailbox); run_batch()/wait_for_more() run on dispatcher threads only;
// start()/stop() on the thread that builds or stops the bus.
//
// Locks: `ready_mutex` guards `ready` and `stopping`; `ready_size` mirrors ready.size() for
// lock-free peeks ("is another mailbox waiting?"). A mailbox's own fields are guarded by its
// mutex (bus/mailbox.hpp); the pool never holds ready_mutex and a mailbox mutex at once.
//
// Invariants: a mailbox is in `ready` or `running` on one dispatcher, never both, never twice
// (so one subscription's handler runs one call at a time, in publish order); at most one
// dispatcher spins at a time (`spinner`); no lock is held while a handler runs.
#pragma once

#include "bus/common.hpp"
#include "bus/mailbox.hpp"

#include <herald/events/event_bus.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace herald::detail {

class DispatcherPool {
 public:
  // `options`, `quiet` and `logs` belong to the bus and outlive the pool.
  DispatcherPool(const BusOptions& options, Quiescence& quiet, BusLogs& logs) noexcept
      : options_(options), quiet_(quiet), logs_(logs) {}
  DispatcherPool(const DispatcherPool&) = delete;
  DispatcherPool& operator=(const DispatcherPool&) = delete;

  // Starts `n` dispatchers; each keeps `keep_alive` (the bus core) alive while it runs, so a
  // bus destroyed from inside one of its handlers lets that thread finish on a live core.
  void start(std::size_t n, const std::shared_ptr<void>& keep_alive);
  // Lets the dispatchers go once the ready queue is empty and hands each thread to `finish`
  // (join, or detach for the caller's own thread).
  template <typename Finish>
  void stop(Finish finish) {
    {
      std::lock_guard lock(ready_mutex_);
      stopping_ = true;
    }
    ready_cv_.notify_all();
    BlockingScope waiting;
    for (auto& t : threads_) finish(t);
  }

  std::size_t size() const noexcept { return threads_.size(); }
  bool on_dispatcher_thread() const;

  // Makes the mailbox ready if it is idle, not paused and not closed; called with its lock
  // held, which it may release (then `lock` no longer owns it).
  void maybe_schedule_locked(const MailboxPtr& mb, std::unique_lock<std::mutex>& lock);
  // Hands this thread's deferred wake-ups (DeferWakes) to the pool, if they are this pool's.
  void flush_deferred();
  // EventBus::DeferWakes: true when the scope defers (the outermost scope on this thread is
  // this pool's, or none is open); end_defer() closes a scope that did.
  bool begin_defer() noexcept;
  void end_defer() noexcept;

  Quiescence& quiescence() noexcept { return quiet_; }
  BusLogs& logs() noexcept { return logs_; }

 private:
  static constexpr std::chrono::nanoseconds kGatherWindow{1'000};

  void schedule(MailboxPtr mailbox);
  void dispatcher_main();
  void run_batch(const MailboxPtr& mb);
  bool wait_for_more(Mailbox& mb, std::unique_lock<std::mutex>& lock);
  void run_handlers(Mailbox& mb, std::vector<EventPtr>& batch, std::vector<HandleOutcome>& outcomes,
                    std::uint64_t& handled, std::uint64_t& failed, std::uint64_t& dropped,
                    std::string& last_error);

  const BusOptions& options_;
  Quiescence& quiet_;
  BusLogs& logs_;

  std::mutex ready_mutex_;
  std::condition_variable ready_cv_;
  std::deque<MailboxPtr> ready_;
  std::atomic<std::size_t> ready_size_{0};  // ready_.size(), read without the lock
  bool stopping_ = false;
  std::atomic<bool> spinner_{false};  // a dispatcher is in wait_for_more()
  std::vector<std::thread> threads_;
  std::vector<std::thread::id> thread_ids_;
};

}  // namespace herald::detail
