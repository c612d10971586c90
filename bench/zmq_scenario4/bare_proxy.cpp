// `zmq_scenario4 proxy`: the baseline proxy the `herald proxy` path is held against. libzmq's own
// forwarder between an XSUB frontend and an XPUB backend, with the same unlimited high-water
// marks the driver gives `herald proxy`; no checks, no counters. Runs until killed.
#include "harness.hpp"

#include <cstdio>

namespace herald::bench::s4 {

int run_bare_proxy(const Args& a) {
  zmq::context_t context(1);
  zmq::socket_t front(context, zmq::socket_type::xsub), back(context, zmq::socket_type::xpub);
  for (auto* s : {&front, &back}) {
    s->set(zmq::sockopt::sndhwm, 1'000'000'000);
    s->set(zmq::sockopt::rcvhwm, 1'000'000'000);
  }
  front.bind(a.get("frontend"));
  back.bind(a.get("backend"));
  std::fprintf(stderr, "bare proxy: ready\n");
  std::fflush(stderr);
  zmq::proxy(front, back);
  return 0;
}

}  // namespace herald::bench::s4
