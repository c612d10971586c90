// Inline delivery's rare paths (contract in bus/inline_delivery.hpp).
#include "bus/inline_delivery.hpp"

namespace herald::detail::inline_delivery {

void hand_off(Mailbox& mb, const EventPtr& event, BusLogs& logs) {
  {
    std::lock_guard lock(mb.gate.handoff_mutex);
    serial_add(mb.handed_over, 1);  // handoff_mutex: the only writer
    mb.gate.handoff.push_back(event);
    mb.gate.handoff_size.store(mb.gate.handoff.size(), std::memory_order_release);
  }
  // If the gate came free meanwhile (its holder may have looked at the hand-offs just before
  // this one landed), take it and run them here.
  if (mb.gate.try_enter()) leave_gate(mb, logs);
}

void run_handoffs(Mailbox& mb, BusLogs& logs) {
  while (mb.gate.handoff_size.load(std::memory_order_acquire) != 0) {
    EventPtr next = mb.gate.take_handoff();
    if (!next) break;
    if (mb.closed()) {
      serial_add(mb.dropped, 1);
      continue;
    }
    run(mb, next, logs);
  }
}

void close(Mailbox& mb, BusLogs& logs) {
  // A handler running on another thread holds the gate; taking it waits for that call (and its
  // hand-offs) to end, after which nothing runs the handler again. From inside the handler
  // itself the gate is ours already.
  if (!mb.gate.try_enter()) mb.gate.enter_blocking();
  leave_gate(mb, logs);
}

}  // namespace herald::detail::inline_delivery
