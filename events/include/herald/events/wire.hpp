// herald's ZeroMQ wire codec (docs/wire-format.md, wire_version 1).
//
// A message is two frames: frame 1 the event name (UTF-8, so ZeroMQ prefix subscriptions work),
// frame 2 the envelope. The envelope is the event's JSON (DomainEvent::to_json) plus
// "wire_version", "publisher_id", "seq" and "name_seq", encoded either as JSON text (first byte
// '{') or as a MessagePack map (first byte 0x80-0x8f, 0xde or 0xdf). Receivers accept both.
//
// Encoding never re-serialises the event: the four wire fields are spliced in front of the
// event's cached json_text() / msgpack() (DESIGN.md decision 1).
//
// All functions are pure and thread safe. decode_wire_message never throws.
#pragma once

#include <herald/events/domain_event.hpp>
#include <herald/events/encoding.hpp>  // WireEncoding: how frame 2 is encoded

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

namespace herald {

/// The version of the envelope layout this build writes and reads.
inline constexpr int kWireVersion = 1;
/// Default largest accepted message (both frames together).
inline constexpr std::size_t kDefaultMaxMessageSize = 1024 * 1024;

/// The per-message fields a publisher adds to the event.
struct WireHeader {
  std::string publisher_id;    ///< one run of one publisher (a stream); a UUID by default
  std::uint64_t seq = 0;       ///< per publisher, every event, from 1
  std::uint64_t name_seq = 0;  ///< per publisher and event name, from 1 (0: absent on receipt)
};

/// Frame 2 for `event` with `header`, as bytes. Splices the header in front of the event's
/// cached encoding; the event is not re-serialised. `name_seq` 0 leaves the field out. `publisher_id_json` is the publisher id
/// already encoded as a JSON string (quotes included), which publishers compute once.
std::string encode_envelope(const DomainEvent& event, WireEncoding encoding,
                            std::string_view publisher_id_json, std::uint64_t seq,
                            std::uint64_t name_seq);
/// Convenience overload that escapes `header.publisher_id` itself.
std::string encode_envelope(const DomainEvent& event, WireEncoding encoding,
                            const WireHeader& header);

/// Why a received message was rejected. Closed set; to_string gives the stats key.
enum class WireReject {
  frame_count,          ///< not exactly two frames
  oversized,            ///< frames together exceed the receiver's limit
  invalid_encoding,     ///< frame 2 is neither valid JSON nor valid MessagePack, or not an object
  missing_field,        ///< a required field is absent
  invalid_field,        ///< a field has the wrong type or value
  unsupported_version,  ///< wire_version is not kWireVersion
  bad_event_name,       ///< event_name is not a valid event name
  topic_mismatch,       ///< frame 1 differs from the envelope's event_name
};
inline constexpr std::size_t kWireRejectCount = 8;
std::string_view to_string(WireReject reason) noexcept;

/// A rejected message: the reason and a human-readable detail (field name, parser message).
struct WireError {
  WireReject reason;
  std::string detail;
};

/// A decoded message.
struct WireMessage {
  EventPtr event;
  WireHeader header;
  WireEncoding encoding = WireEncoding::json;
  int wire_version = kWireVersion;
};

/// Either a decoded message or why it was rejected.
using WireResult = std::variant<WireMessage, WireError>;

/// Decodes a received multipart message (`frames`: every frame, in order). Never throws: every
/// failure, even running out of memory while parsing, becomes a WireError. `max_message_size` bounds the frames' total size (0: unlimited).
WireResult decode_wire_message(std::span<const std::string_view> frames,
                               std::size_t max_message_size = kDefaultMaxMessageSize) noexcept;

/// Which encoding frame 2 claims by its first byte; nullopt for neither.
std::optional<WireEncoding> sniff_encoding(std::string_view envelope) noexcept;

/// The envelope of a decoded message as one line of compact JSON (what `herald tail` prints).
std::string envelope_json_line(const WireMessage& message);

}  // namespace herald
