// Mode `json`: what a user writes by hand with cppzmq and nlohmann::json. The sender builds the
// same envelope herald sends (same fields, a new UUID v7 and fired_at per event) and dump()s it
// per event; the receiver json::parse()s it and reads the name and the payload per event.
#include "harness.hpp"

#include <herald/events/ids.hpp>

namespace herald::bench::s4 {
namespace {

int send_handrolled_json(SendContext& c) {
  zmq::context_t ctx(1);
  zmq::socket_t sock(ctx, zmq::socket_type::xpub);
  if (!open_baseline_publisher(sock, c)) return 2;
  const std::string name = kEventName;
  const std::int64_t setup_done = mono_ns();
  const double cpu0 = cpu_seconds();
  const json metadata = c.metadata.to_json();  // fired_at set per event below
  const json execution = ExecutionResult{}.to_json();
  const std::string publisher_id = new_uuid_v7();
  const std::int64_t t0 = mono_ns();
  for (std::size_t i = 0; i < c.count; ++i) {
    c.pacer.wait(i);
    c.credit.wait(i);
    json p = c.payload;
    p["sent_ns"] = stamp(mono_ns());
    json env = json::object();
    env["wire_version"] = 1;
    env["publisher_id"] = publisher_id;
    env["seq"] = i + 1;
    env["name_seq"] = i + 1;
    env["event_id"] = new_uuid_v7();
    env["event_name"] = name;
    env["event_version"] = "1.0";
    env["payload"] = std::move(p);
    json m = metadata;
    m["fired_at"] = now_rfc3339_ms();
    env["metadata"] = std::move(m);
    env["execution_result"] = execution;
    const std::string body = env.dump();
    sock.send(zmq::buffer(name), zmq::send_flags::sndmore);
    sock.send(zmq::buffer(body), zmq::send_flags::none);
  }
  const std::int64_t t1 = mono_ns();
  sock.close();  // linger: flushes what is queued
  say_baseline_send_report(c, setup_done, t0, t1, cpu0);
  return 0;
}

int recv_handrolled_json(RecvContext& c) {
  Recorder& rec = c.recorder;
  return run_baseline_receiver(c, [&](std::string_view body) {
    // Parse the envelope, take the name and the payload.
    const json j = json::parse(body);
    const auto& name = j.at("event_name").get_ref<const std::string&>();
    const json& payload = j.at("payload");
    std::optional<std::string_view> sent;
    if (rec.latency) sent = std::string_view(payload.at("sent_ns").get_ref<const std::string&>());
    rec.sink += name.size() + payload.size();
    rec.on_message(mono_ns(), sent);
  });
}

}  // namespace

const Mode kHandRolledJsonMode{"json", send_handrolled_json, recv_handrolled_json};

}  // namespace herald::bench::s4
