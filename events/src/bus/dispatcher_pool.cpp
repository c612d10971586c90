// DispatcherPool (contract in bus/dispatcher_pool.hpp).
#include "bus/dispatcher_pool.hpp"

#include <algorithm>
#include <span>

namespace herald::detail {

namespace {
// EventBus::DeferWakes on this thread: the pool whose wake-ups are deferred (the outermost
// scope's), the nesting depth, and the mailboxes made ready meanwhile, each once (its
// `scheduled` flag is set when it joins the list, so later publishes to it only queue).
struct DeferredWakes {
  DispatcherPool* pool = nullptr;
  int depth = 0;
  std::vector<MailboxPtr> mailboxes;
};
thread_local DeferredWakes t_deferred;
}  // namespace

void DispatcherPool::start(std::size_t n, const std::shared_ptr<void>& keep_alive) {
  threads_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    threads_.emplace_back([this, keep_alive] { dispatcher_main(); });
    thread_ids_.push_back(threads_.back().get_id());
  }
}

bool DispatcherPool::on_dispatcher_thread() const {
  const auto self = std::this_thread::get_id();
  return std::find(thread_ids_.begin(), thread_ids_.end(), self) != thread_ids_.end();
}

void DispatcherPool::schedule(MailboxPtr mailbox) {
  {
    std::lock_guard lock(ready_mutex_);
    ready_.push_back(std::move(mailbox));
    ready_size_.store(ready_.size(), std::memory_order_relaxed);
  }
  ready_cv_.notify_one();
}

void DispatcherPool::maybe_schedule_locked(const MailboxPtr& mb, std::unique_lock<std::mutex>& lock) {
  if (!mb->scheduled && !mb->running && !mb->paused && !mb->queue.closed(lock)) {
    mb->scheduled = true;
    lock.unlock();
    if (t_deferred.pool == this) {
      t_deferred.mailboxes.push_back(mb);
      return;
    }
    schedule(mb);
  }
}

// Hands the mailboxes this thread made ready to the pool, under one ready-queue lock and with
// one wake-up per mailbox (a sleeping dispatcher is woken only if there is one: notify on a
// condition variable nobody waits on is not a system call).
void DispatcherPool::flush_deferred() {
  if (t_deferred.pool != this || t_deferred.mailboxes.empty()) return;
  const std::size_t n = t_deferred.mailboxes.size();
  {
    std::lock_guard lock(ready_mutex_);
    for (auto& mb : t_deferred.mailboxes) ready_.push_back(std::move(mb));
    ready_size_.store(ready_.size(), std::memory_order_relaxed);
  }
  t_deferred.mailboxes.clear();
  if (n == 1) {
    ready_cv_.notify_one();
  } else {
    ready_cv_.notify_all();
  }
}

bool DispatcherPool::begin_defer() noexcept {
  auto& d = t_deferred;
  if (d.depth == 0) d.pool = this;
  if (d.pool != this) return false;  // another bus's scope is open here: this one does nothing
  ++d.depth;
  return true;
}

void DispatcherPool::end_defer() noexcept {
  auto& d = t_deferred;
  if (--d.depth == 0) {
    flush_deferred();
    d.pool = nullptr;
  }
}

// Batches of one mailbox. While no other mailbox is waiting for a dispatcher, the same mailbox
// is drained batch after batch without going back through the ready queue (a lone busy
// subscriber would otherwise pay a reschedule and a wake-up per batch); as soon as another
// mailbox waits, this one goes to the back of the queue after the current batch.
void DispatcherPool::run_batch(const MailboxPtr& mb) {
  // Reused across calls: a dispatcher thread runs one batch at a time (handlers that publish
  // only enqueue in pool mode, they never re-enter run_batch).
  thread_local std::vector<EventPtr> batch;
  thread_local std::vector<HandleOutcome> outcomes;
  std::unique_lock lock(mb->mutex);
  mb->scheduled = false;
  while (true) {
    if (mb->queue.closed(lock) || mb->paused) break;
    if (mb->queue.empty(lock)) {
      if (!wait_for_more(*mb, lock)) break;
      continue;
    }
    mb->queue.take(lock, options_.batch_size, batch);  // wakes blocked publishers, if any
    mb->running = 1;
    mb->running_thread = std::this_thread::get_id();
    lock.unlock();

    std::uint64_t handled = 0, failed = 0, dropped = 0;
    std::string last_error;
    run_handlers(*mb, batch, outcomes, handled, failed, dropped, last_error);
    // Release the events before announcing their completion, and outside the mailbox lock:
    // the last reference frees the event (its payload tree, its strings, its JSON text), which
    // under the lock kept publishers to this mailbox waiting (S7's profile: 58% of all context
    // switches were the publisher blocking in enqueue on this lock).
    batch.clear();

    lock.lock();
    serial_add(mb->handled, handled);
    serial_add(mb->failed, failed);
    serial_add(mb->dropped, dropped);
    if (!last_error.empty()) mb->last_error = std::move(last_error);
    quiet_.remove_pending(static_cast<std::int64_t>(handled + failed + dropped));
    if (ready_size_.load(std::memory_order_relaxed) > 0) {
      // Others are waiting: yield the thread and requeue behind them if work is left.
      if (!mb->queue.empty(lock) && !mb->queue.closed(lock) && !mb->paused) {
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
bool DispatcherPool::wait_for_more(Mailbox& mb, std::unique_lock<std::mutex>& lock) {
  // Only as the mailbox's runner (after a batch): a mailbox that is not `running` can be
  // scheduled again by a publisher, and two dispatchers must never run one subscription.
  if (options_.idle_spin.count() <= 0 || mb.running == 0 ||
      ready_size_.load(std::memory_order_relaxed) > 0) {
    return false;
  }
  bool expected = false;
  if (!spinner_.compare_exchange_strong(expected, true, std::memory_order_acquire)) return false;
  const auto seen = mb.received.load(std::memory_order_relaxed);
  lock.unlock();
  auto until = std::chrono::steady_clock::now() + options_.idle_spin;
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
    if (arrived && received - seen >= options_.batch_size) break;
    if (ready_size_.load(std::memory_order_relaxed) > 0 || mb.queue.closed_relaxed() ||
        mb.paused.load(std::memory_order_relaxed)) {
      break;
    }
    if ((i & 15) == 0 && std::chrono::steady_clock::now() >= until) break;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  spinner_.store(false, std::memory_order_release);
  lock.lock();
  // Under the lock again: an event queued after the last look (while `running` kept its
  // publisher from scheduling the mailbox) is seen here, never left behind.
  return !mb.queue.empty(lock);
}

// Runs one batch's handlers (no lock held) and counts the outcomes. Events handed back
// because the subscription was paused mid-batch are re-queued, in order, and not counted.
void DispatcherPool::run_handlers(Mailbox& mb, std::vector<EventPtr>& batch,
                                  std::vector<HandleOutcome>& outcomes, std::uint64_t& handled,
                                  std::uint64_t& failed, std::uint64_t& dropped, std::string& last_error) {
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
      logs_.failure(mb, *batch.front(), last_error);
    } catch (...) {
      last_error = "unknown exception";
      std::fill(outcomes.begin(), outcomes.end(), HandleOutcome::failed);
    }
    for (auto o : outcomes) (o == HandleOutcome::handled ? handled : failed)++;
    if (failed && last_error.empty()) last_error = "batch handler reported failures";
    return;
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (i > 0 && mb.closed()) {  // unsubscribed from inside the handler
      dropped = batch.size() - i;
      return;
    }
    if (i > 0 && mb.paused.load(std::memory_order_acquire)) {
      // Paused mid-batch (a circuit breaker opened): hand the rest back, in order, to be
      // held with the queued events. They stay pending; nothing is counted.
      std::unique_lock lock(mb.mutex);
      if (!mb.queue.closed(lock)) {
        mb.queue.requeue_front(lock, batch.begin() + static_cast<std::ptrdiff_t>(i), batch.end());
        batch.resize(i);
        return;
      }
    }
    if (invoke_one(mb, batch[i], last_error, logs_)) {
      ++handled;
    } else {
      ++failed;
    }
  }
}

void DispatcherPool::dispatcher_main() {
  if (options_.on_dispatcher_start) {
    try {
      options_.on_dispatcher_start();
    } catch (const std::exception& e) {
      logger()->error("{}: dispatcher start hook failed: {}", options_.name, e.what());
    }
  }
  while (true) {
    MailboxPtr mb;
    {
      std::unique_lock lock(ready_mutex_);
      ready_cv_.wait(lock, [&] { return stopping_ || !ready_.empty(); });
      if (ready_.empty()) break;  // stopping and nothing left
      mb = std::move(ready_.front());
      ready_.pop_front();
      ready_size_.store(ready_.size(), std::memory_order_relaxed);
    }
    run_batch(mb);
  }
  if (options_.on_dispatcher_stop) {
    try {
      options_.on_dispatcher_stop();
    } catch (const std::exception& e) {
      logger()->error("{}: dispatcher stop hook failed: {}", options_.name, e.what());
    }
  }
}

}  // namespace herald::detail
