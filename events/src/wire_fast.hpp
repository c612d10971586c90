// The two paths of decode_wire_message for frame 2 (private to herald_events; the tests in
// tests/events/wire_fast_test.cpp and the wire fuzz target pit them against each other).
#pragma once

#include <herald/events/wire.hpp>

#include <optional>
#include <string_view>

namespace herald::detail {

/// Decodes a JSON envelope (frame 2, first byte '{') straight into the event's fields, one pass
/// of herald's reader with a SAX handler, without building a JSON tree of the whole envelope
/// (only the payload and any extra metadata keys become JSON values). For an envelope that the
/// general path accepts, the result is the same message the general path returns. It gives up
/// (nullopt) on anything unusual or invalid -- a wrong type, a duplicate key, too deep, a syntax
/// error, a missing field, a bad name, a topic mismatch -- and the caller then takes the general
/// path, which decides and explains. Never throws. Pure: safe from any number of threads.
/// (simdjson On-Demand in its place was measured no faster: docs/architecture.md.)
std::optional<WireMessage> decode_json_envelope_fast(std::string_view topic, std::string_view body,
                                                     std::size_t max_depth) noexcept;

/// The general path: parses frame 2 (`encoding`) whole into a json tree (json_fields::
/// parse_bounded, depth json_fields::kMaxDepth), checks the wire fields and reads the event with
/// DomainEvent::from_json. Decides every envelope and words every rejection. Never throws.
WireResult decode_envelope_general(std::string_view topic, std::string_view body,
                                   WireEncoding encoding) noexcept;

}  // namespace herald::detail
