// Fuzz target: the ZeroMQ wire decoder (herald/events/wire.hpp), JSON and MessagePack envelopes.
//
// Input: the frames of one received message, separated by the two bytes FF FE (which never occur
// in UTF-8 text, so never inside a topic or a JSON envelope): "payment.done" FF FE "{...}".
// Checks:
//  - decode_wire_message never throws and never crashes, whatever the frames (any count);
//  - a decoded message is consistent: its encoding is what sniff_encoding says, its event name is
//    the topic and valid, publisher_id is non-empty, seq >= 1;
//  - round trip: re-encoding the decoded event with encode_envelope (both encodings, and
//    envelope_json_line) decodes again, to the same header and the same event (exactly for
//    MessagePack; for JSON whenever JSON text can carry the event's values);
//  - DomainEvent::json_text() (written directly) is byte for byte to_json().dump();
//  - differential: a JSON frame 2 decodes exactly like the same object sent as MessagePack
//    (same message, or rejected for the same reason); a frame 2 that is not valid JSON is
//    rejected as invalid_encoding;
//  - differential: whenever the JSON fast path (one SAX pass, events/src/wire_fast.hpp)
//    answers, the general path accepts the same frame 2 and returns the same message, with the
//    same JSON types (1 stays number_unsigned, -1 number_integer).
#include "fuzz_support.hpp"
#include "wire_fast.hpp"

#include <herald/events/json_fields.hpp>
#include <herald/events/pattern.hpp>
#include <herald/events/wire.hpp>

#include <array>
#include <span>
#include <variant>

namespace {

using herald::WireEncoding;
using herald::WireMessage;
using herald_fuzz::fail;
using herald_fuzz::json;

constexpr std::string_view kFrameSeparator = "\xff\xfe";

json event_json(const herald::DomainEvent& e) { return e.to_json(); }

// Decodes `envelope` under `topic` again and checks it against `original`.
void check_round_trip(const WireMessage& original, std::string_view topic,
                      const std::string& envelope, WireEncoding encoding, bool exact) {
  const std::array<std::string_view, 2> frames{topic, envelope};
  const auto result = herald::decode_wire_message(frames, /*max_message_size=*/0);
  if (const auto* err = std::get_if<herald::WireError>(&result)) {
    fail("re-encoded envelope was rejected",
         std::string(herald::to_string(err->reason)) + ": " + err->detail + " envelope: " + envelope);
  }
  const auto& again = std::get<WireMessage>(result);
  if (again.encoding != encoding) fail("re-encoded envelope decoded with another encoding");
  if (again.header.seq != original.header.seq) fail("seq changed in the round trip");
  if (again.header.name_seq != original.header.name_seq) fail("name_seq changed in the round trip");
  if (again.event->event_name() != original.event->event_name()) fail("event_name changed");
  if (!exact) return;
  if (again.header.publisher_id != original.header.publisher_id) {
    fail("publisher_id changed in the round trip", again.header.publisher_id);
  }
  const json before = event_json(*original.event);
  const json after = event_json(*again.event);
  if (!herald_fuzz::same(before, after)) {
    fail("event changed in the round trip",
         before.dump(-1, ' ', false, json::error_handler_t::replace) + " != " +
             after.dump(-1, ' ', false, json::error_handler_t::replace));
  }
}

void check_decoded(const WireMessage& msg, std::span<const std::string_view> frames) {
  const std::string_view topic = frames[0];
  const std::string_view body = frames[1];
  if (!msg.event) fail("decoded message without an event");
  const auto sniffed = herald::sniff_encoding(body);
  if (!sniffed || *sniffed != msg.encoding) fail("decoded encoding differs from sniff_encoding");
  if (msg.event->event_name() != topic) fail("decoded event name differs from the topic");
  if (!herald::is_valid_event_name(msg.event->event_name())) fail("decoded an invalid event name");
  if (msg.header.publisher_id.empty()) fail("decoded an empty publisher_id");
  if (msg.header.seq < 1) fail("decoded seq < 1");
  if (msg.wire_version != herald::kWireVersion) fail("decoded another wire_version");
  if (msg.event->event_id().empty()) fail("decoded an empty event_id");

  const json ev = event_json(*msg.event);
  // json_text() writes the JSON directly; it must be exactly what dumping to_json() gives.
  const std::string dumped = ev.dump(-1, ' ', false, json::error_handler_t::replace);
  if (msg.event->json_text() != dumped) fail("json_text() differs from to_json().dump()", msg.event->json_text() + " != " + dumped);
  const bool id_exact = herald_fuzz::json_text_exact(json(msg.header.publisher_id));
  // MessagePack keeps every value; the publisher id goes through JSON text in encode_envelope.
  check_round_trip(msg, topic, herald::encode_envelope(*msg.event, WireEncoding::msgpack, msg.header),
                   WireEncoding::msgpack, id_exact);
  const bool exact = id_exact && herald_fuzz::json_text_exact(ev);
  check_round_trip(msg, topic, herald::encode_envelope(*msg.event, WireEncoding::json, msg.header),
                   WireEncoding::json, exact);
  check_round_trip(msg, topic, herald::envelope_json_line(msg), WireEncoding::json, exact);
}

// Differential: a JSON envelope and the same object as MessagePack must decode the same way
// (JSON envelopes may take a one-pass fast path; MessagePack always takes the general path), and
// text that is not JSON must be rejected as invalid_encoding.
void check_json_against_msgpack(std::string_view topic, std::string_view body) {
  if (herald::sniff_encoding(body) != WireEncoding::json) return;
  const std::array<std::string_view, 2> as_json{topic, body};
  const auto from_json = herald::decode_wire_message(as_json, 0);
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    const auto* err = std::get_if<herald::WireError>(&from_json);
    if (!err) fail("a frame that is not valid JSON was decoded", body);
    if (err->reason != herald::WireReject::invalid_encoding) {
      fail("invalid JSON rejected for another reason", std::string(herald::to_string(err->reason)));
    }
    return;
  }
  const auto bytes = json::to_msgpack(j);
  const std::string mp(bytes.begin(), bytes.end());
  const std::array<std::string_view, 2> as_msgpack{topic, mp};
  const auto from_mp = herald::decode_wire_message(as_msgpack, 0);
  const auto* e1 = std::get_if<herald::WireError>(&from_json);
  const auto* e2 = std::get_if<herald::WireError>(&from_mp);
  if (e1 || e2) {
    if (!e1) fail("a JSON envelope was accepted whose MessagePack twin is rejected", e2->detail);
    if (!e2) fail("a JSON envelope was rejected whose MessagePack twin is accepted", e1->detail);
    if (e1->reason != e2->reason) {
      fail("a JSON envelope and its MessagePack twin are rejected for different reasons",
           std::string(herald::to_string(e1->reason)) + " (" + e1->detail + ") vs " +
               std::string(herald::to_string(e2->reason)) + " (" + e2->detail + ")");
    }
    return;
  }
  const auto& m1 = std::get<WireMessage>(from_json);
  const auto& m2 = std::get<WireMessage>(from_mp);
  if (m1.header.publisher_id != m2.header.publisher_id || m1.header.seq != m2.header.seq ||
      m1.header.name_seq != m2.header.name_seq) {
    fail("a JSON envelope and its MessagePack twin decode to different headers");
  }
  if (!herald_fuzz::same(event_json(*m1.event), event_json(*m2.event))) {
    fail("a JSON envelope and its MessagePack twin decode to different events",
         event_json(*m1.event).dump(-1, ' ', false, json::error_handler_t::replace) + " vs " +
             event_json(*m2.event).dump(-1, ' ', false, json::error_handler_t::replace));
  }
}

// Differential: the fast path against the general path on the same frame 2.
void check_fast_against_general(std::string_view topic, std::string_view body) {
  if (herald::sniff_encoding(body) != WireEncoding::json) return;
  const auto fast = herald::detail::decode_json_envelope_fast(topic, body, herald::json_fields::kMaxDepth);
  if (!fast) return;  // gave up: the general path decides alone
  const auto general = herald::detail::decode_envelope_general(topic, body, WireEncoding::json);
  if (const auto* err = std::get_if<herald::WireError>(&general)) {
    fail("the fast path accepted an envelope the general path rejects",
         std::string(herald::to_string(err->reason)) + ": " + err->detail);
  }
  const auto& g = std::get<WireMessage>(general);
  if (fast->header.publisher_id != g.header.publisher_id || fast->header.seq != g.header.seq ||
      fast->header.name_seq != g.header.name_seq || fast->encoding != g.encoding ||
      fast->wire_version != g.wire_version) {
    fail("the fast path and the general path decode different headers");
  }
  const json a = event_json(*fast->event);
  const json b = event_json(*g.event);
  if (!herald_fuzz::identical(a, b) || !herald_fuzz::identical(fast->event->metadata().extra, g.event->metadata().extra)) {
    fail("the fast path and the general path decode different events",
         a.dump(-1, ' ', false, json::error_handler_t::replace) + " vs " +
             b.dump(-1, ' ', false, json::error_handler_t::replace));
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  herald_fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto frames = herald_fuzz::split(input, kFrameSeparator, 8);

  // Every frame as received (frame_count for anything but two).
  auto result = herald::decode_wire_message(frames);
  if (frames.size() == 2) {
    if (const auto* msg = std::get_if<WireMessage>(&result)) check_decoded(*msg, frames);
    check_json_against_msgpack(frames[0], frames[1]);
    check_fast_against_general(frames[0], frames[1]);
  } else if (std::holds_alternative<WireMessage>(result)) {
    fail("a message without exactly two frames was accepted");
  }
  // Multi-frame garbage: its first two frames still go through the whole decoder.
  if (frames.size() > 2) {
    const std::span<const std::string_view> two(frames.data(), 2);
    result = herald::decode_wire_message(two);
    if (const auto* msg = std::get_if<WireMessage>(&result)) check_decoded(*msg, two);
  }
  // A size limit below the message's size always rejects as oversized.
  if (frames.size() == 2 && size > 4) {
    result = herald::decode_wire_message(frames, size / 2);
    const auto* err = std::get_if<herald::WireError>(&result);
    if (!err || err->reason != herald::WireReject::oversized) fail("oversized message not rejected");
  }
  (void)herald::sniff_encoding(frames.back());
  return 0;
}
