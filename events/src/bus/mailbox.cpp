// Mailbox (contract in bus/mailbox.hpp): the pool-mode intake with its overflow policy, closing.
#include "bus/mailbox.hpp"

#include "bus/dispatcher_pool.hpp"

namespace herald::detail {

SubscriptionStats Mailbox::stats_locked() const {
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

namespace {
// Block policy: waits (up to block_timeout) until the mailbox has room or is closed. The wait
// itself runs in a BlockingScope with the mailbox lock released around the scope's edges,
// so a Python thread drops the GIL first and takes it back holding no herald lock. Called
// and returns with `lock` held; true when there is room.
bool wait_for_room(Mailbox& mb, std::unique_lock<std::mutex>& lock, DispatcherPool& pool) {
  const auto deadline = std::chrono::steady_clock::now() + mb.options.block_timeout;
  const auto ready = [&] { return mb.closed || mb.queue.size() < mb.options.capacity; };
  ++mb.blocked_publishers;
  bool room = ready();
  while (!room) {
    lock.unlock();
    pool.flush_deferred();  // the mailbox we wait on may be one this thread has not handed over yet
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
}  // namespace

bool enqueue(const MailboxPtr& mb, const EventPtr& event, PublishWait wait, PublishReport& report,
             DispatcherPool& pool) {
  auto& quiet = pool.quiescence();
  auto& logs = pool.logs();
  std::unique_lock lock(mb->mutex);
  if (mb->closed) return false;
  serial_add(mb->received, 1);
  if (mb->queue.size() >= mb->options.capacity) {
    switch (mb->options.overflow) {
      case OverflowPolicy::drop_newest:
        serial_add(mb->dropped, 1);
        lock.unlock();
        logs.drop(*mb, *event, "mailbox full (drop_newest)");
        return false;
      case OverflowPolicy::drop_oldest: {
        EventPtr oldest = std::move(mb->queue.front());
        mb->queue.pop_front();
        serial_add(mb->dropped, 1);
        ++report.displaced;
        mb->queue.push_back(event);
        // The new event's count before the old one's goes: pending never passes through 0
        // here, so a concurrent drain() cannot return with an event queued.
        quiet.add_pending(1);
        quiet.remove_pending(1);
        pool.maybe_schedule_locked(mb, lock);
        if (lock.owns_lock()) lock.unlock();  // never log under the mailbox lock
        logs.drop(*mb, *oldest, "mailbox full (drop_oldest)");
        return true;
      }
      case OverflowPolicy::block: {
        if (wait == PublishWait::overcommit) {
          ++mb->overcommitted;
          const auto depth = mb->queue.size() + 1;
          mb->queue.push_back(event);
          quiet.add_pending(1);
          pool.maybe_schedule_locked(mb, lock);
          if (lock.owns_lock()) lock.unlock();
          logs.overcommit(*mb, *event, depth);
          return true;
        }
        if (wait == PublishWait::drop) {
          serial_add(mb->dropped, 1);
          lock.unlock();
          logs.drop(*mb, *event, "mailbox full and the publisher may not wait");
          return false;
        }
        const bool room = wait_for_room(*mb, lock, pool);
        if (!room || mb->closed) {
          serial_add(mb->dropped, 1);
          lock.unlock();
          logs.drop(*mb, *event, room ? "unsubscribed while waiting" : "mailbox full, block timeout expired");
          return false;
        }
        break;
      }
    }
  }
  mb->queue.push_back(event);
  quiet.add_pending(1);
  pool.maybe_schedule_locked(mb, lock);
  return true;
}

std::int64_t close(Mailbox& mb, bool wait_for_runner) {
  std::int64_t discarded = 0;
  EventHandler released_handler;  // destroyed after the lock is released
  BatchHandler released_batch_handler;
  std::unique_lock lock(mb.mutex);
  if (!mb.closed) {
    mb.closed = true;
    discarded = static_cast<std::int64_t>(mb.queue.size());
    if (!mb.queue.empty()) serial_add(mb.dropped, mb.queue.size());  // inline: the gate holder may be adding
    mb.queue.clear();
    mb.not_full.notify_all();
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
