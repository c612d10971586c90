// Shared helpers of herald's libFuzzer targets: silence the logger, split an input into parts,
// decode a part as JSON text or MessagePack, compare JSON values exactly, and report a finding.
#pragma once

#include <herald/events/log.hpp>

#include <nlohmann/json.hpp>

#include "../support/json_identical.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald_fuzz {

using nlohmann::json;

/// Turns herald's logger off (fuzzing must not be slowed down by log lines); HERALD_FUZZ_LOG=1
/// keeps it on for debugging a finding.
inline void quiet_logs() {
  if (std::getenv("HERALD_FUZZ_LOG") == nullptr) herald::logger()->set_level(spdlog::level::off);
}

/// A finding: prints what broke and aborts, so libFuzzer saves the input as a crash.
[[noreturn]] inline void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "herald fuzz finding: %s%s%.*s\n", what, detail.empty() ? "" : ": ",
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

/// Splits `data` on every occurrence of `separator`, at most `max_parts` parts (the last part
/// keeps the rest, separators included).
inline std::vector<std::string_view> split(std::string_view data, std::string_view separator,
                                           std::size_t max_parts = 64) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const auto at = data.find(separator);
    if (at == std::string_view::npos) break;
    parts.push_back(data.substr(0, at));
    data.remove_prefix(at + separator.size());
  }
  parts.push_back(data);
  return parts;
}

/// `text` as JSON text, else as MessagePack (which reaches values JSON text cannot carry:
/// invalid UTF-8 strings, binary, NaN); nullopt when it is neither.
inline std::optional<json> decode_any(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_discarded()) return j;
  j = json::from_msgpack(text, /*strict=*/true, /*allow_exceptions=*/false);
  if (!j.is_discarded()) return j;
  return std::nullopt;
}

/// MessagePack of `j`: a canonical byte form for exact comparisons (NaN equals NaN, 1 equals 1u,
/// object keys sorted).
inline std::vector<std::uint8_t> canonical(const json& j) { return json::to_msgpack(j); }
inline bool same(const json& a, const json& b) { return canonical(a) == canonical(b); }

/// Same type and value all the way down: unlike same(), 1 (number_integer) and 1u
/// (number_unsigned) differ, and so do 0.0 and -0.0.
using herald::testing::identical;

/// True when JSON text can carry `j` exactly: valid UTF-8 in every string and key, no binary,
/// no NaN or infinity (json's dump writes those as null).
inline bool json_text_exact(const json& j) {
  switch (j.type()) {
    case json::value_t::binary: return false;
    case json::value_t::number_float: {
      const double d = j.get<double>();
      return d - d == 0.0;  // finite
    }
    case json::value_t::string:
      try {
        (void)j.dump();
        return true;
      } catch (const json::type_error&) {
        return false;
      }
    case json::value_t::array:
      for (const auto& v : j) {
        if (!json_text_exact(v)) return false;
      }
      return true;
    case json::value_t::object:
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!json_text_exact(json(it.key())) || !json_text_exact(it.value())) return false;
      }
      return true;
    default: return true;
  }
}

}  // namespace herald_fuzz
