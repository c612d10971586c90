// Events/s over ipc and tcp: herald's ZmqPublisher -> ZmqSubscriber versus a bare cppzmq
// PUB/SUB pair sending the same bytes (two frames: name, herald's JSON envelope).
//
//   bench/zmq_throughput [events=200000]
//
// High-water marks are unlimited on both sides so that nothing is dropped and the count measures
// throughput, not loss. Events are created and their JSON cached before timing (what is measured
// is the transport: hand-over to the I/O thread, envelope splice, ZeroMQ, decode, dedup, gap
// tracking and pattern matching on the receiving side).
#include <herald/events/wire.hpp>
#include <herald/events/zmq_transport.hpp>

#include <zmq.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  double seconds = 0;
  std::size_t received = 0;
};

std::vector<herald::EventPtr> make_events(std::size_t n) {
  std::vector<herald::EventPtr> events;
  events.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    herald::EventMetadata meta;
    meta.task_uuid = "0190a6c2-7d1e-7000-8000-000000000001";
    meta.step_name = "charge_card";
    meta.correlation_id = "corr-bench";
    auto e = herald::DomainEvent::create(
        "payment.processed", {{"amount", 125.5}, {"currency", "EUR"}, {"order", i}}, meta);
    (void)e->json_text();
    events.push_back(std::move(e));
  }
  return events;
}

Result run_herald(const std::string& endpoint, const std::vector<herald::EventPtr>& events) {
  herald::ZmqPublisherOptions po;
  po.endpoints = {endpoint};
  po.sndhwm = 0;
  po.max_queue = events.size() + 1;
  herald::ZmqPublisher pub(po);
  pub.start();
  std::atomic<std::size_t> received{0};
  herald::ZmqSubscriberOptions so;
  so.endpoints = pub.endpoints();
  so.patterns = {"payment.*"};
  so.rcvhwm = 0;
  so.dedup_capacity = 10'000;
  herald::ZmqSubscriber sub(so, [&](const herald::WireMessage&) { received.fetch_add(1, std::memory_order_relaxed); });
  sub.start();
  if (!pub.wait_for_subscribers(1, std::chrono::seconds(10))) std::abort();
  const auto t0 = Clock::now();
  for (const auto& e : events) pub.send(e);
  const auto deadline = t0 + std::chrono::seconds(60);
  while (received.load() < events.size() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::microseconds(200));
  Result r{std::chrono::duration<double>(Clock::now() - t0).count(), received.load()};
  pub.stop();
  sub.stop();
  return r;
}

Result run_bare(const std::string& endpoint, const std::vector<herald::EventPtr>& events) {
  zmq::context_t ctx(1);
  zmq::socket_t pub(ctx, zmq::socket_type::xpub);  // XPUB only to see the subscription arrive
  pub.set(zmq::sockopt::sndhwm, 0);
  pub.set(zmq::sockopt::linger, 0);
  pub.bind(endpoint);
  const std::string ep = pub.get(zmq::sockopt::last_endpoint);
  // The same bytes herald sends, encoded before timing.
  std::vector<std::string> bodies;
  bodies.reserve(events.size());
  std::uint64_t seq = 0;
  for (const auto& e : events) {
    ++seq;
    bodies.push_back(herald::encode_envelope(*e, herald::WireEncoding::json, {"bare", seq, seq}));
  }
  std::atomic<std::size_t> received{0};
  std::thread receiver([&] {
    zmq::socket_t sub(ctx, zmq::socket_type::sub);
    sub.set(zmq::sockopt::rcvhwm, 0);
    sub.set(zmq::sockopt::linger, 0);
    sub.set(zmq::sockopt::rcvtimeo, 5000);
    sub.set(zmq::sockopt::subscribe, "payment.");
    sub.connect(ep);
    zmq::message_t topic, body;
    while (received.load() < events.size()) {
      if (!sub.recv(topic)) break;
      if (!sub.recv(body)) break;
      received.fetch_add(1, std::memory_order_relaxed);
    }
  });
  zmq::message_t subscription;
  (void)pub.recv(subscription);
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto& name = events[i]->event_name();
    pub.send(zmq::buffer(name), zmq::send_flags::sndmore);
    pub.send(zmq::buffer(bodies[i]), zmq::send_flags::none);
  }
  receiver.join();
  return Result{std::chrono::duration<double>(Clock::now() - t0).count(), received.load()};
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200'000;
  const auto events = make_events(n);
  std::printf("%zu events, envelope %zu bytes\n\n", n,
              herald::encode_envelope(*events[0], herald::WireEncoding::json, {"bench", 1, 1}).size());
  std::printf("| transport | herald events/s | bare cppzmq events/s | herald / bare |\n|---|---|---|---|\n");
  const std::string ipc = "ipc:///tmp/herald-bench-" + std::to_string(::getpid());
  for (const auto& [label, herald_ep, bare_ep] :
       {std::tuple{"ipc", ipc + "-h", ipc + "-b"},
        std::tuple{"tcp", std::string("tcp://127.0.0.1:*"), std::string("tcp://127.0.0.1:*")}}) {
    const auto h = run_herald(herald_ep, events);
    const auto b = run_bare(bare_ep, events);
    const double hr = h.received / h.seconds, br = b.received / b.seconds;
    std::printf("| %s | %.0f%s | %.0f%s | %.2f |\n", label, hr, h.received < n ? " (lost some)" : "", br,
                b.received < n ? " (lost some)" : "", hr / br);
  }
  ::unlink((ipc + "-h").c_str());
  ::unlink((ipc + "-b").c_str());
  return 0;
}
