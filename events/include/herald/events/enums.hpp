// Small helpers shared by herald's closed sets (enum class + to_string + parse).
#pragma once

#include <herald/events/error.hpp>

#include <array>
#include <string>
#include <string_view>
#include <utility>

namespace herald::detail {

/// Looks `value` up in a table of {enum, name} pairs; throws UnknownValueError naming `what`.
template <typename E, std::size_t N>
E parse_enum(std::string_view what, std::string_view value,
             const std::array<std::pair<E, std::string_view>, N>& table) {
  for (const auto& [e, name] : table) {
    if (name == value) return e;
  }
  std::string allowed;
  for (const auto& [e, name] : table) {
    if (!allowed.empty()) allowed += ", ";
    allowed += name;
  }
  throw UnknownValueError(std::string(what), std::string(value), allowed);
}

template <typename E, std::size_t N>
std::string_view enum_name(E value, const std::array<std::pair<E, std::string_view>, N>& table) {
  for (const auto& [e, name] : table) {
    if (e == value) return name;
  }
  return "unknown";
}

}  // namespace herald::detail
