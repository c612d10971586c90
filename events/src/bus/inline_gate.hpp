// InlineGate: the per-subscription lock of inline delivery (DispatchPolicy::inline_on_publisher;
// see bus/inline_delivery.hpp for how it is used and EventBus's locking contract).
//
// Owns: who holds the gate (`state`, `owner`, `depth`) and the events handed over to the holder
// (`handoff`). One thread at a time holds the gate; it may re-enter (depth). Threads that must
// not wait (they are inside a handler themselves) queue their event in `handoff`; the holder
// runs them before it lets the gate go, and a hand-off that finds the gate free a moment later
// takes the gate and runs them itself, so none is left behind.
//
// Locks: `state` is the lock itself (a futex word); `depth` is touched by the holder only;
// `handoff` is guarded by `handoff_mutex`; `handoff_size` mirrors handoff.size() for lock-free
// peeks by the holder (almost always zero: the mutex would cost the inline path two atomic
// read-modify-writes per publish).
#pragma once

#include "bus/common.hpp"

#include <herald/events/domain_event.hpp>
#include <herald/events/event_bus.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>

namespace herald::detail {

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
  // hand-offs: inline_delivery's leave_gate).
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

}  // namespace herald::detail
