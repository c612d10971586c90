// Inline delivery (DispatchPolicy::inline_on_publisher): publish() runs the handlers on the
// publishing thread, under each subscription's InlineGate (bus/inline_gate.hpp).
//
// Threads: deliver() runs on publishing threads; close() on the unsubscribing thread.
// Locks (EventBus's locking contract): the gate serializes one subscription's handler calls
// and is re-entrant; a publisher outside any herald handler that finds the gate held by another
// thread waits for it (BlockingScope); a thread inside a handler (t_handler_depth > 0) never
// waits for a gate another thread holds: it hands the event to the holder (hand_off), which
// runs it before letting the gate go.
// Counters: the gate's holder is the only writer of the mailbox's received/handled/failed/
// dropped (serial_add); hand-offs count their receipt in `handed_over` under handoff_mutex.
// Invariant: no hand-off is left behind: either the holder sees it before unlocking, or the
// hand-off sees the gate free and takes it.
//
// The per-event path (deliver, run, leave_gate) is defined here so that it inlines into
// EventBus::publish (bench_inline); the rare paths live in inline_delivery.cpp.
#pragma once

#include "bus/common.hpp"
#include "bus/mailbox.hpp"

#include <herald/events/event_bus.hpp>

#include <span>
#include <string>

namespace herald::detail::inline_delivery {

// Queues the event for the gate's holder (the caller is inside a handler and must not wait).
void hand_off(Mailbox& mb, const EventPtr& event, BusLogs& logs);
// Runs what was handed over to the gate's holder (called by it at the outermost level).
void run_handoffs(Mailbox& mb, BusLogs& logs);
// After the mailbox is closed: waits for a handler running on another thread (and its
// hand-offs) to end, by taking the gate; hand-offs still queued are dropped (counted).
void close(Mailbox& mb, BusLogs& logs);

// Runs one event's handler under the gate and counts its outcome; true when handled.
inline bool run(Mailbox& mb, const EventPtr& event, BusLogs& logs) {
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
    ok = invoke_one(mb, event, error, logs);
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

// Leaves one level of the gate. The outermost level first runs what was handed over, then
// lets the gate go, and takes it back if a hand-off landed in between (someone always runs
// it: either the holder sees it here, or the hand-off sees the gate free).
inline void leave_gate(Mailbox& mb, BusLogs& logs) {
  if (!mb.gate.leave_level()) return;
  while (true) {
    // The size is read before the hand-off mutex is taken: almost always there is nothing,
    // and the mutex would cost the inline path two atomic read-modify-writes per publish.
    if (mb.gate.handoff_size.load(std::memory_order_acquire) != 0) {
      mb.gate.depth = 1;  // handed-over events run at level 1, like a publish of our own
      run_handoffs(mb, logs);
    }
    mb.gate.depth = 0;
    mb.gate.unlock();
    if (mb.gate.handoff_size.load(std::memory_order_acquire) == 0 || !mb.gate.try_enter()) return;
  }
}

// Delivers one event to one subscription on this thread.
inline void deliver(Mailbox& mb, const EventPtr& event, PublishReport& report, BusLogs& logs) {
  if (mb.closed()) return;
  if (!mb.gate.try_enter()) {
    if (t_handler_depth > 0) {
      hand_off(mb, event, logs);
      ++report.delivered;
      return;
    }
    mb.gate.enter_blocking();
  }
  if (!mb.closed()) {
    serial_add(mb.received, 1);  // we hold the gate: the only writer
    ++report.delivered;
    if (!run(mb, event, logs)) ++report.failed;
  }
  leave_gate(mb, logs);
}

}  // namespace herald::detail::inline_delivery
