// BoundedQueue<T>: a FIFO with a capacity and an overflow policy (block with a timeout,
// drop_newest, drop_oldest), shared by the EventBus's mailboxes (events/src/bus/mailbox.hpp) and
// the worker's step-completion intake (worker/src/worker.cpp). Internal to herald (namespace
// detail): public only because worker/ uses it; not part of the API.
//
// Locking: the queue has no mutex of its own. Its owner keeps one mutex for the queue *and* the
// state that goes with it (a mailbox's scheduled/running/paused flags, the intake's busy flag),
// so a publish takes one lock, not two; every member that reads or writes the queue takes the
// owner's `std::unique_lock` as proof that it is held. The exceptions: closed_relaxed() (a
// lock-free peek; `closed` is written under the lock only) and notify_consumer() (after the
// lock is released).
//
// Threads: any number of producers (offer via make_room + push); the consumer side (take,
// wait_for_items) is meant for one consumer at a time (a mailbox's dispatcher, the intake
// thread). Producers that wait for room (block policy) do it in a BlockingScope with the lock
// released around the scope's edges: a Python thread drops the GIL first and takes it back
// holding no herald lock (DESIGN.md 12).
//
// Wake-ups: take() wakes blocked producers only when one is waiting (a counter), and push()
// reports whether the consumer sleeps in wait_for_items(), so that a producer calls
// notify_consumer() only then: a stream that never fills the queue, or a consumer that is busy,
// costs no condition-variable call at all.
//
// The queue counts nothing: make_room() says what happened (Admission) and the owner keeps its
// own counters (a mailbox's received/dropped, the worker's received/rejected/dropped), because
// the two count differently (a full mailbox *drops* a new event it had received; a full intake
// *rejects* a completion it never accepted).
#pragma once

#include <herald/events/event_bus.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <iterator>
#include <mutex>
#include <utility>

namespace herald::detail {

/// What make_room() decided for a new item.
enum class Admission : std::uint8_t {
  room,           ///< there is room: push it
  displaced,      ///< full, drop_oldest: the oldest item was taken out to make room; push it
  overcommitted,  ///< full, block, PublishWait::overcommit: push it beyond capacity
  full,           ///< full, drop_newest: refuse it
  may_not_wait,   ///< full, block, PublishWait::drop: refuse it
  timed_out,      ///< full, block: no room came within the block timeout: refuse it
  closed,         ///< the queue is closed (perhaps while waiting for room): refuse it
};
/// True when the item is to be pushed.
constexpr bool admitted(Admission a) noexcept { return a <= Admission::overcommitted; }

template <typename T>
class BoundedQueue {
 public:
  using Lock = std::unique_lock<std::mutex>;
  struct Limits {
    std::size_t capacity = 10'000;
    OverflowPolicy overflow = OverflowPolicy::block;
    std::chrono::milliseconds block_timeout{5'000};
  };

  BoundedQueue() = default;
  explicit BoundedQueue(Limits limits, bool closed = false) : limits_(limits), closed_(closed) {}
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  /// Before the queue is shared, or under the lock.
  void set_limits(Limits limits) noexcept { limits_ = limits; }
  const Limits& limits() const noexcept { return limits_; }

  // ---- producers ---------------------------------------------------------------------------

  /// Decides, per the overflow policy and `wait`, whether a new item may be pushed; with the
  /// lock held (a block wait releases and retakes it). drop_oldest moves the displaced item
  /// into `*displaced` (the owner destroys it after unlocking, or discards it). `before_wait`
  /// runs with the lock released before each wait (a mailbox hands over its deferred wake-ups
  /// there, so it never waits for a wake-up it holds back itself).
  template <typename BeforeWait>
  Admission make_room(Lock& lock, PublishWait wait, T* displaced, BeforeWait&& before_wait) {
    if (closed_.load(std::memory_order_relaxed)) return Admission::closed;
    if (items_.size() < limits_.capacity) return Admission::room;
    switch (limits_.overflow) {
      case OverflowPolicy::drop_newest:
        return Admission::full;
      case OverflowPolicy::drop_oldest:
        if (displaced) *displaced = std::move(items_.front());
        items_.pop_front();
        return Admission::displaced;
      case OverflowPolicy::block:
        break;
    }
    if (wait == PublishWait::overcommit) return Admission::overcommitted;
    if (wait == PublishWait::drop) return Admission::may_not_wait;
    const bool room = wait_for_room(lock, before_wait);
    if (closed_.load(std::memory_order_relaxed)) return Admission::closed;
    return room ? Admission::room : Admission::timed_out;
  }

  /// Appends (after make_room() admitted it, or unconditionally: complete_steps() fills what
  /// has_room() allows). True when the consumer sleeps in wait_for_items(): the caller then
  /// calls notify_consumer(), best after unlocking.
  template <typename U>
  bool push(const Lock&, U&& item) {
    items_.push_back(std::forward<U>(item));
    return consumer_waiting_;
  }
  void notify_consumer() noexcept { not_empty_.notify_one(); }
  /// The consumer is asleep in wait_for_items() (for tests and assertions).
  bool consumer_sleeping(const Lock&) const noexcept { return consumer_waiting_; }

  /// Below capacity (and not closed: a closed queue has "room" in the sense that nobody waits).
  bool has_room(const Lock&) const noexcept { return items_.size() < limits_.capacity; }

  // ---- the consumer ------------------------------------------------------------------------

  /// Moves up to `max` items, oldest first, to the back of `out` (anything with push_back);
  /// wakes the producers blocked for room, if any. Returns how many.
  template <typename Out>
  std::size_t take(const Lock&, std::size_t max, Out& out) {
    const std::size_t n = std::min(items_.size(), max);
    for (std::size_t i = 0; i < n; ++i) {
      out.push_back(std::move(items_.front()));
      items_.pop_front();
    }
    if (n > 0 && blocked_producers_ > 0) not_full_.notify_all();
    return n;
  }
  /// Waits until there is an item or the queue is closed; false when closed and empty.
  bool wait_for_items(Lock& lock) {
    consumer_waiting_ = true;
    not_empty_.wait(lock, [&] { return !items_.empty() || closed_.load(std::memory_order_relaxed); });
    consumer_waiting_ = false;
    return !items_.empty();
  }
  /// Puts items taken earlier back at the front, in order (a paused subscription's rest of a
  /// batch). Capacity is not checked: they were queued before.
  template <typename It>
  void requeue_front(const Lock&, It first, It last) {
    items_.insert(items_.begin(), std::make_move_iterator(first), std::make_move_iterator(last));
  }

  // ---- either side -------------------------------------------------------------------------

  std::size_t size(const Lock&) const noexcept { return items_.size(); }
  bool empty(const Lock&) const noexcept { return items_.empty(); }
  bool closed(const Lock&) const noexcept { return closed_.load(std::memory_order_relaxed); }
  /// Without the lock: a hint that may be stale by the time it is used.
  bool closed_relaxed() const noexcept { return closed_.load(std::memory_order_relaxed); }
  bool closed_acquire() const noexcept { return closed_.load(std::memory_order_acquire); }
  /// Refuses new items from now on and wakes every waiter (producers give up, the consumer
  /// takes what is left). Items already queued stay, for the consumer or clear().
  void close(const Lock&) noexcept {
    closed_.store(true, std::memory_order_release);
    not_full_.notify_all();
    not_empty_.notify_all();
  }
  void reopen(const Lock&) noexcept { closed_.store(false, std::memory_order_release); }
  /// Drops every queued item; returns how many.
  std::size_t clear(const Lock&) noexcept {
    const auto n = items_.size();
    items_.clear();
    return n;
  }

 private:
  // Block policy: waits up to block_timeout until there is room or the queue is closed; with
  // the lock held on entry and exit, released around the BlockingScope's edges. True when
  // there is room (or the queue closed) now.
  template <typename BeforeWait>
  bool wait_for_room(Lock& lock, BeforeWait& before_wait) {
    const auto deadline = std::chrono::steady_clock::now() + limits_.block_timeout;
    const auto ready = [&] {
      return closed_.load(std::memory_order_relaxed) || items_.size() < limits_.capacity;
    };
    ++blocked_producers_;
    bool room = ready();
    while (!room) {
      lock.unlock();
      before_wait();
      {
        BlockingScope waiting;
        Lock relock(*lock.mutex());
        room = not_full_.wait_until(relock, deadline, ready);
      }
      lock.lock();
      if (!room) break;
      room = ready();  // another producer may have taken the room meanwhile
    }
    --blocked_producers_;
    return room;
  }

  Limits limits_;
  std::deque<T> items_;
  std::atomic<bool> closed_{false};
  std::condition_variable not_full_;   // producers blocked for room
  std::condition_variable not_empty_;  // the consumer, in wait_for_items()
  std::size_t blocked_producers_ = 0;
  bool consumer_waiting_ = false;
};

}  // namespace herald::detail
