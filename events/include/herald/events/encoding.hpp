// WireEncoding: the two encodings herald reads and writes (JSON text and MessagePack), shared by
// the wire codec (frame 2 of a ZeroMQ message), parse_bounded and the configuration.
#pragma once

#include <string_view>

namespace herald {

/// How an envelope (or any document herald parses) is encoded.
enum class WireEncoding { json, msgpack };
/// "json" or "msgpack".
std::string_view to_string(WireEncoding encoding) noexcept;
/// "json" or "msgpack"; throws UnknownValueError naming the value:
/// "unknown wire encoding 'xml' (expected one of: json, msgpack)".
WireEncoding parse_wire_encoding(std::string_view text);

}  // namespace herald
