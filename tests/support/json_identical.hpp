// identical(a, b): two json values of the same type and value all the way down. json's own ==
// calls 1 (number_integer), 1u (number_unsigned) and 1.0 equal, and 0.0 equal to -0.0; the
// decoders' differential tests (tests/events/wire_fast_test.cpp, the wire fuzz target) must
// see those differences.
#pragma once

#include <nlohmann/json.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>

namespace herald::testing {

inline bool identical(const nlohmann::json& a, const nlohmann::json& b) {
  using nlohmann::json;
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case json::value_t::object: {
      if (a.size() != b.size()) return false;
      for (auto i = a.begin(), k = b.begin(); i != a.end(); ++i, ++k) {
        if (i.key() != k.key() || !identical(i.value(), k.value())) return false;
      }
      return true;
    }
    case json::value_t::array: {
      if (a.size() != b.size()) return false;
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (!identical(a[i], b[i])) return false;
      }
      return true;
    }
    case json::value_t::number_float:  // bit for bit
      return std::bit_cast<std::uint64_t>(a.get<double>()) == std::bit_cast<std::uint64_t>(b.get<double>());
    default: return a == b;
  }
}

}  // namespace herald::testing
