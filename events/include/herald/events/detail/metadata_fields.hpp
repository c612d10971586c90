// The one list of EventMetadata's typed (base) fields: their JSON keys, their members, and which
// StepCompletion member feeds them when the pipeline builds an event. Everything that reads or
// writes the base fields iterates this table: EventMetadata::to_json / from_json / operator==,
// DomainEvent::json_text, the fast wire decoder (wire_fast.cpp), the publishing pipeline's
// metadata build, and the Python bindings (StepCompletion attributes; DomainEvent.metadata is
// to_json). To add a base field: add the std::string member to EventMetadata and one row here.
//
// Why a constexpr table and not an X-macro: every base field is a std::string, so one row type
// with pointers to members holds them all, and the table is an ordinary typed value that the
// compiler checks (unique keys, below), that constexpr code can sort (the json_text writer
// needs json's key order), and that loops and tests can iterate like any array. Loops over a
// 7-row constexpr array compile to the same unrolled code as the hand-written field lists they
// replace: no std::function, no map, no allocation per field. An X-macro would only earn its
// ugliness if each field needed its own name in the code (an enum value per field); nothing
// here does.
#pragma once

#include <herald/events/domain_event.hpp>
#include <herald/events/step_completion.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace herald::detail {

/// One base metadata field.
struct MetadataField {
  /// The JSON key. Always a string literal, so name.data() is NUL-terminated (pybind11 and
  /// nlohmann's operator[] take it as a C string).
  std::string_view name;
  std::string EventMetadata::*member;
  /// The StepCompletion member the pipeline copies into it, or nullptr (fired_at is set at
  /// creation, fired_by is the publisher's name).
  std::string StepCompletion::*from_completion;
};

/// The base fields, in EventMetadata's declaration order.
inline constexpr std::array kMetadataFields = {
    MetadataField{"task_uuid", &EventMetadata::task_uuid, &StepCompletion::task_uuid},
    MetadataField{"step_uuid", &EventMetadata::step_uuid, &StepCompletion::step_uuid},
    MetadataField{"step_name", &EventMetadata::step_name, &StepCompletion::step_name},
    MetadataField{"namespace", &EventMetadata::namespace_name, &StepCompletion::namespace_name},
    MetadataField{"correlation_id", &EventMetadata::correlation_id, &StepCompletion::correlation_id},
    MetadataField{"fired_at", &EventMetadata::fired_at, nullptr},
    MetadataField{"fired_by", &EventMetadata::fired_by, nullptr},
};

inline constexpr std::size_t kMetadataFieldCount = kMetadataFields.size();

/// The index of the base field whose JSON key is `key`, or nullopt for an extra key.
constexpr std::optional<std::size_t> metadata_field_index(std::string_view key) noexcept {
  for (std::size_t i = 0; i < kMetadataFieldCount; ++i) {
    if (kMetadataFields[i].name == key) return i;
  }
  return std::nullopt;
}

/// Indexes into kMetadataFields in ascending key order (the order of a json object's keys): the
/// json_text writer merges them with `extra` in one pass.
inline constexpr std::array<std::size_t, kMetadataFieldCount> kMetadataFieldsByKey = [] {
  std::array<std::size_t, kMetadataFieldCount> order{};
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [](std::size_t a, std::size_t b) {
    return kMetadataFields[a].name < kMetadataFields[b].name;
  });
  return order;
}();

namespace metadata_fields_check {
constexpr bool keys_unique_and_c_strings() {
  for (std::size_t i = 0; i < kMetadataFieldCount; ++i) {
    const auto& f = kMetadataFields[i];
    if (f.name.empty() || f.name.data()[f.name.size()] != '\0' || f.member == nullptr) return false;
    if (metadata_field_index(f.name) != i) return false;  // an earlier row has the same key
    // Lower-case letters and '_' only: DomainEvent::json_text writes the keys without escaping.
    for (char c : f.name) {
      if (!((c >= 'a' && c <= 'z') || c == '_')) return false;
    }
  }
  return true;
}
static_assert(keys_unique_and_c_strings(),
              "kMetadataFields: every key must be a unique, non-empty string literal of [a-z_]");
}  // namespace metadata_fields_check

}  // namespace herald::detail
