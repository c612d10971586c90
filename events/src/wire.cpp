// Wire codec: splicing encoder and never-throwing decoder (docs/wire-format.md).
#include <herald/events/wire.hpp>

#include "json_codec.hpp"
#include "wire_fast.hpp"

#include <herald/events/enums.hpp>
#include <herald/events/error.hpp>
#include <herald/events/json_fields.hpp>
#include <herald/events/pattern.hpp>

#include <array>
#include <charconv>
#include <exception>
#include <utility>

namespace herald {

using nlohmann::json;

namespace {

constexpr std::array<std::pair<WireEncoding, std::string_view>, 2> kEncodings = {{
    {WireEncoding::json, "json"},
    {WireEncoding::msgpack, "msgpack"},
}};

constexpr std::array<std::pair<WireReject, std::string_view>, kWireRejectCount> kRejects = {{
    {WireReject::frame_count, "frame_count"},
    {WireReject::oversized, "oversized"},
    {WireReject::invalid_encoding, "invalid_encoding"},
    {WireReject::missing_field, "missing_field"},
    {WireReject::invalid_field, "invalid_field"},
    {WireReject::unsupported_version, "unsupported_version"},
    {WireReject::bad_event_name, "bad_event_name"},
    {WireReject::topic_mismatch, "topic_mismatch"},
}};

void append_uint(std::string& out, std::uint64_t value) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  (void)ec;
  out.append(buf, end);
}

// MessagePack map header for `n` entries, in its shortest form.
void append_map_header(std::string& out, std::uint32_t n) {
  if (n <= 15) {
    out.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xffff) {
    out.push_back(static_cast<char>(0xde));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(static_cast<char>(0xdf));
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
  }
}

// Reads a MessagePack map header: {entries, header length}; {0, 0} when not a map.
std::pair<std::uint32_t, std::size_t> read_map_header(const std::vector<std::uint8_t>& b) {
  if (b.empty()) return {0, 0};
  const std::uint8_t first = b[0];
  if ((first & 0xf0) == 0x80) return {first & 0x0fu, 1};
  if (first == 0xde && b.size() >= 3) return {static_cast<std::uint32_t>((b[1] << 8) | b[2]), 3};
  if (first == 0xdf && b.size() >= 5) {
    return {(static_cast<std::uint32_t>(b[1]) << 24) | (static_cast<std::uint32_t>(b[2]) << 16) |
                (static_cast<std::uint32_t>(b[3]) << 8) | b[4],
            5};
  }
  return {0, 0};
}

WireError reject(WireReject reason, std::string detail) { return WireError{reason, std::move(detail)}; }

// A required positive integer: number_unsigned, or number_integer >= 1.
std::optional<std::uint64_t> positive_integer(const json& v) {
  if (v.is_number_unsigned()) {
    auto n = v.get<std::uint64_t>();
    return n >= 1 ? std::optional(n) : std::nullopt;
  }
  if (v.is_number_integer()) {
    auto n = v.get<std::int64_t>();
    return n >= 1 ? std::optional(static_cast<std::uint64_t>(n)) : std::nullopt;
  }
  return std::nullopt;
}

}  // namespace

std::string_view to_string(WireEncoding encoding) noexcept {
  return detail::enum_name(encoding, kEncodings);
}

WireEncoding parse_wire_encoding(std::string_view text) {
  return detail::parse_enum("wire encoding", text, kEncodings);
}

std::string_view to_string(WireReject reason) noexcept { return detail::enum_name(reason, kRejects); }

std::optional<WireEncoding> sniff_encoding(std::string_view envelope) noexcept {
  if (envelope.empty()) return std::nullopt;
  const auto first = static_cast<unsigned char>(envelope.front());
  if (first == '{') return WireEncoding::json;
  if ((first & 0xf0) == 0x80 || first == 0xde || first == 0xdf) return WireEncoding::msgpack;
  return std::nullopt;
}

std::string encode_envelope(const DomainEvent& event, WireEncoding encoding,
                            std::string_view publisher_id_json, std::uint64_t seq,
                            std::uint64_t name_seq) {
  std::string out;
  if (encoding == WireEncoding::json) {
    const std::string& text = event.json_text();  // cached; starts with '{' and has fields
    out.reserve(text.size() + publisher_id_json.size() + 80);
    out.append(R"({"wire_version":)");
    append_uint(out, kWireVersion);
    out.append(R"(,"publisher_id":)");
    out.append(publisher_id_json);
    out.append(R"(,"seq":)");
    append_uint(out, seq);
    if (name_seq != 0) {
      out.append(R"(,"name_seq":)");
      append_uint(out, name_seq);
    }
    out.push_back(',');
    out.append(text, 1, std::string::npos);
    return out;
  }
  const std::vector<std::uint8_t>& body = event.msgpack();  // cached
  auto [entries, header_len] = read_map_header(body);
  // The four (or three) wire fields as a small map; its own header is dropped below.
  json fields = json::object();
  fields["wire_version"] = kWireVersion;
  fields["publisher_id"] = json::parse(publisher_id_json);
  fields["seq"] = seq;
  if (name_seq != 0) fields["name_seq"] = name_seq;
  const auto field_bytes = json::to_msgpack(fields);  // fixmap header: one byte
  out.reserve(body.size() + field_bytes.size() + 4);
  append_map_header(out, entries + static_cast<std::uint32_t>(fields.size()));
  out.append(reinterpret_cast<const char*>(field_bytes.data()) + 1, field_bytes.size() - 1);
  out.append(reinterpret_cast<const char*>(body.data()) + header_len, body.size() - header_len);
  return out;
}

std::string encode_envelope(const DomainEvent& event, WireEncoding encoding,
                            const WireHeader& header) {
  std::string id;
  detail::json_codec::append_json_string(id, header.publisher_id);
  return encode_envelope(event, encoding, id, header.seq, header.name_seq);
}

namespace detail {

WireResult decode_envelope_general(std::string_view topic, std::string_view body,
                                   WireEncoding encoding) noexcept {
  try {
    // Bounded depth: a 1 MiB frame of nested arrays would otherwise overflow the stack later.
    json j;
    try {
      j = json_fields::parse_bounded(body, encoding);
    } catch (const ParseError& e) {
      return reject(WireReject::invalid_encoding, std::string("frame 2 is not valid ") +
                                                      std::string(to_string(encoding)) + ": " +
                                                      e.what());
    }
    if (!j.is_object()) return reject(WireReject::invalid_encoding, "envelope is not an object");

    WireMessage msg;
    msg.encoding = encoding;
    auto field = [&](const char* key) -> const json* {
      auto it = j.find(key);
      return it == j.end() || it->is_null() ? nullptr : &*it;
    };
    const json* version = field("wire_version");
    if (!version) return reject(WireReject::missing_field, "wire_version");
    if (!version->is_number_integer()) return reject(WireReject::invalid_field, "wire_version: expected integer");
    if (version->get<std::int64_t>() != kWireVersion) {
      return reject(WireReject::unsupported_version,
                    "wire_version " + std::to_string(version->get<std::int64_t>()));
    }
    const json* publisher = field("publisher_id");
    if (!publisher) return reject(WireReject::missing_field, "publisher_id");
    if (!publisher->is_string() || publisher->get_ref<const std::string&>().empty()) {
      return reject(WireReject::invalid_field, "publisher_id: expected non-empty string");
    }
    msg.header.publisher_id = publisher->get<std::string>();
    const json* seq = field("seq");
    if (!seq) return reject(WireReject::missing_field, "seq");
    auto seq_value = positive_integer(*seq);
    if (!seq_value) return reject(WireReject::invalid_field, "seq: expected integer >= 1");
    msg.header.seq = *seq_value;
    if (const json* name_seq = field("name_seq")) {
      auto v = positive_integer(*name_seq);
      if (!v) return reject(WireReject::invalid_field, "name_seq: expected integer >= 1");
      msg.header.name_seq = *v;
    }
    for (const char* key : {"event_id", "event_name"}) {
      if (!field(key)) return reject(WireReject::missing_field, key);
    }
    try {
      msg.event = DomainEvent::from_json(std::move(j));  // j is not read after this
    } catch (const EventNameError& e) {
      return reject(WireReject::bad_event_name, e.what());
    } catch (const ValidationError& e) {
      return reject(e.problem() == "required field is missing" ? WireReject::missing_field
                                                                : WireReject::invalid_field,
                    e.what());
    }
    if (msg.event->event_name() != topic) {
      return reject(WireReject::topic_mismatch, "topic frame '" + std::string(topic.substr(0, 300)) +
                                                    "' != event_name '" + msg.event->event_name() + "'");
    }
    return msg;
  } catch (const std::exception& e) {
    return WireError{WireReject::invalid_encoding, std::string("decode failed: ") + e.what()};
  } catch (...) {
    return WireError{WireReject::invalid_encoding, "decode failed"};
  }
}

}  // namespace detail

WireResult decode_wire_message(std::span<const std::string_view> frames,
                               std::size_t max_message_size) noexcept {
  try {
    if (frames.size() != 2) {
      return reject(WireReject::frame_count, "expected 2 frames, got " + std::to_string(frames.size()));
    }
    const std::string_view topic = frames[0];
    const std::string_view body = frames[1];
    if (max_message_size != 0 && topic.size() + body.size() > max_message_size) {
      return reject(WireReject::oversized, std::to_string(topic.size() + body.size()) +
                                               " bytes > limit " + std::to_string(max_message_size));
    }
    const auto encoding = sniff_encoding(body);
    if (!encoding) return reject(WireReject::invalid_encoding, "frame 2 is neither a JSON object nor a MessagePack map");
    // The usual JSON envelope in one pass, without a JSON tree of the whole envelope; anything
    // unusual or invalid gives up and takes the general path (wire_fast.hpp).
    if (*encoding == WireEncoding::json) {
      if (auto fast = detail::decode_json_envelope_fast(topic, body, json_fields::kMaxDepth)) {
        return std::move(*fast);
      }
    }
    return detail::decode_envelope_general(topic, body, *encoding);
  } catch (const std::exception& e) {
    return WireError{WireReject::invalid_encoding, std::string("decode failed: ") + e.what()};
  } catch (...) {
    return WireError{WireReject::invalid_encoding, "decode failed"};
  }
}

std::string envelope_json_line(const WireMessage& message) {
  return encode_envelope(*message.event, WireEncoding::json, message.header);
}

}  // namespace herald
