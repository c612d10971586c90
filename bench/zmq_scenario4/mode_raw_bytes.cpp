// Mode `raw`: the floor of the wire. Bare cppzmq PUB/SUB carrying the very bytes herald sends for
// this event, encoded once before timing; per event the sender only writes the latency stamp into
// a copy, and the receiver only counts (and finds the stamp without parsing).
#include "harness.hpp"

#include <herald/events/wire.hpp>

#include <cstring>
#include <stdexcept>

namespace herald::bench::s4 {
namespace {

int send_raw_bytes(SendContext& c) {
  zmq::context_t ctx(1);
  zmq::socket_t sock(ctx, zmq::socket_type::xpub);
  if (!open_baseline_publisher(sock, c)) return 2;
  const std::string name = kEventName;
  const std::int64_t setup_done = mono_ns();
  const double cpu0 = cpu_seconds();
  // The bytes herald would send for this event, encoded once.
  auto event = DomainEvent::create(kEventName, c.payload, c.metadata);
  const std::string body = encode_envelope(*event, WireEncoding::json, {"raw-baseline", 1, 1});
  const std::string marker = R"("sent_ns":")";
  const auto at = body.find(marker);
  if (at == std::string::npos) throw std::runtime_error("no sent_ns in the envelope");
  const std::size_t offset = at + marker.size();
  const std::int64_t t0 = mono_ns();
  for (std::size_t i = 0; i < c.count; ++i) {
    c.pacer.wait(i);
    c.credit.wait(i);
    const std::string s = stamp(mono_ns());
    zmq::message_t msg(body.data(), body.size());
    std::memcpy(static_cast<char*>(msg.data()) + offset, s.data(), kStampDigits);
    sock.send(zmq::buffer(name), zmq::send_flags::sndmore);
    sock.send(msg, zmq::send_flags::none);
  }
  const std::int64_t t1 = mono_ns();
  sock.close();  // linger: flushes what is queued
  say_baseline_send_report(c, setup_done, t0, t1, cpu0);
  return 0;
}

int recv_raw_bytes(RecvContext& c) {
  Recorder& rec = c.recorder;
  return run_baseline_receiver(c, [&](std::string_view body) {
    rec.on_message(mono_ns(), rec.latency ? find_stamp(body) : std::nullopt);
  });
}

}  // namespace

const Mode kRawBytesMode{"raw", send_raw_bytes, recv_raw_bytes};

}  // namespace herald::bench::s4
