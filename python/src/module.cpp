// The `_herald` extension module: the native half of the `herald` Python package.
#include "common.hpp"

PYBIND11_MODULE(_herald, m) {
  using namespace herald::py_bindings;
  m.doc() = "herald's native core; import the `herald` package instead.";
  bind_errors(m);
  bind_event_type(m);
  bind_events(m);
  bind_publishers(m);
  bind_subscribers(m);
  bind_worker(m);
  bind_zmq(m);
  bind_durable(m);  // after bind_errors: DurableError derives from TransportError
  install_blocking_hooks();
}
