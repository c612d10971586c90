// One-pass decoding of the usual JSON envelope (private to herald_events; see wire_fast.cpp).
#pragma once

#include <herald/events/wire.hpp>

#include <optional>
#include <string_view>

namespace herald::detail {

/// Decodes a JSON envelope (frame 2, first byte '{') straight into the event's fields, without
/// building a JSON tree of the whole envelope (only the payload and any extra metadata keys
/// become JSON values). For an envelope that decode_wire_message accepts, the result is the
/// same message decode_wire_message returns. It gives up (nullopt) on anything unusual or
/// invalid -- a wrong type, a duplicate key, too deep, a syntax error, a missing field, a bad
/// name, a topic mismatch -- and the caller then takes the general path, which decides and
/// explains. Never throws.
std::optional<WireMessage> decode_json_envelope_fast(std::string_view topic, std::string_view body,
                                                     std::size_t max_depth) noexcept;

}  // namespace herald::detail
