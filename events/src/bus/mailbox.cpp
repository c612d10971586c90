// Mailbox (contract in bus/mailbox.hpp): the pool-mode intake with its overflow policy, closing.
#include "bus/mailbox.hpp"

#include "bus/dispatcher_pool.hpp"

namespace herald::detail {

SubscriptionStats Mailbox::stats_locked(const std::unique_lock<std::mutex>& lock) const {
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
  s.queue_depth = queue.size(lock) + gate.handoff_size.load(std::memory_order_acquire);
  s.paused = paused;
  s.last_error = last_error;
  return s;
}

bool enqueue(const MailboxPtr& mb, const EventPtr& event, PublishWait wait, PublishReport& report,
             DispatcherPool& pool) {
  auto& quiet = pool.quiescence();
  auto& logs = pool.logs();
  std::unique_lock lock(mb->mutex);
  if (mb->queue.closed(lock)) return false;
  serial_add(mb->received, 1);
  EventPtr oldest;  // drop_oldest: destroyed after the lock is released
  // The mailbox we may wait on may be one this thread has not handed over yet (DeferWakes).
  const auto admission = mb->queue.make_room(lock, wait, &oldest, [&] { pool.flush_deferred(); });
  switch (admission) {
    case Admission::room:
      break;
    case Admission::displaced:
      serial_add(mb->dropped, 1);
      ++report.displaced;
      mb->queue.push(lock, event);
      // The new event's count before the old one's goes: pending never passes through 0
      // here, so a concurrent drain() cannot return with an event queued.
      quiet.add_pending(1);
      quiet.remove_pending(1);
      pool.maybe_schedule_locked(mb, lock);
      if (lock.owns_lock()) lock.unlock();  // never log under the mailbox lock
      logs.drop(*mb, *oldest, "mailbox full (drop_oldest)");
      return true;
    case Admission::overcommitted: {
      ++mb->overcommitted;
      const auto depth = mb->queue.size(lock) + 1;
      mb->queue.push(lock, event);
      quiet.add_pending(1);
      pool.maybe_schedule_locked(mb, lock);
      if (lock.owns_lock()) lock.unlock();
      logs.overcommit(*mb, *event, depth);
      return true;
    }
    case Admission::full:
    case Admission::may_not_wait:
    case Admission::timed_out:
    case Admission::closed:
      serial_add(mb->dropped, 1);
      lock.unlock();
      logs.drop(*mb, *event,
                admission == Admission::full           ? "mailbox full (drop_newest)"
                : admission == Admission::may_not_wait ? "mailbox full and the publisher may not wait"
                : admission == Admission::closed       ? "unsubscribed while waiting"
                                                       : "mailbox full, block timeout expired");
      return false;
  }
  mb->queue.push(lock, event);
  quiet.add_pending(1);
  pool.maybe_schedule_locked(mb, lock);
  return true;
}

std::int64_t close(Mailbox& mb, bool wait_for_runner) {
  std::int64_t discarded = 0;
  EventHandler released_handler;  // destroyed after the lock is released
  BatchHandler released_batch_handler;
  std::unique_lock lock(mb.mutex);
  if (!mb.queue.closed(lock)) {
    mb.queue.close(lock);  // blocked publishers give up (counted as dropped by them)
    discarded = static_cast<std::int64_t>(mb.queue.clear(lock));
    if (discarded > 0) serial_add(mb.dropped, static_cast<std::uint64_t>(discarded));  // inline: the gate holder may be adding
  }
  // Wait for a running batch to end, unless we are that batch (unsubscribe from inside the
  // handler): then the current call finishes and the rest of the batch is dropped.
  if (wait_for_runner && mb.running_thread != std::this_thread::get_id()) {
    mb.idle.wait(lock, [&] { return mb.running == 0; });
    // Closed and idle: no dispatcher will call the handler again (run_batch checks `closed`
    // under this mutex first). Release it now rather than with the last reference to the
    // mailbox, which a dispatcher thread may hold a moment longer, so that what the handler
    // captured is gone when unsubscribe() returns.
    released_handler = std::move(mb.handler);
    released_batch_handler = std::move(mb.batch_handler);
  }
  lock.unlock();
  return discarded;
}

}  // namespace herald::detail
