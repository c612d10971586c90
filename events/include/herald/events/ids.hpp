// Event ids and timestamps.
#pragma once

#include <chrono>
#include <string>

namespace herald {

/// A new UUID version 7 (RFC 9562) as 36-character lowercase text. Ids are strictly increasing
/// in creation order across all threads of the process (48-bit millisecond time plus a 12-bit
/// sequence that carries over into the next millisecond when exhausted) and unique (62 random
/// bits from a per-thread generator). Thread safe.
std::string new_uuid_v7();
/// The same, with the millisecond time taken from `now` (a caller that also stamps the time,
/// like DomainEvent::create, reads the clock once).
std::string new_uuid_v7(std::chrono::system_clock::time_point now);

/// RFC 3339 UTC with milliseconds: "2026-11-23T08:39:00.123Z".
std::string format_rfc3339_ms(std::chrono::system_clock::time_point t);

/// format_rfc3339_ms(now).
std::string now_rfc3339_ms();

}  // namespace herald
