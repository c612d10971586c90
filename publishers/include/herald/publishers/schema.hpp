// PayloadSchema: a documented subset of JSON Schema for checking event payloads before they are
// published. Compile once (at configuration time), validate many (on every publish).
//
// Supported keywords (anything else is rejected at compile time, with a "did you mean" hint):
//   type                  "null" | "boolean" | "object" | "array" | "number" | "integer" |
//                         "string", or a non-empty array of those. "integer" accepts whole
//                         numbers only (1 and 1.0, not 1.5); "number" accepts every number.
//   required              array of property names that must be present (objects only)
//   properties            object: property name -> schema for that property's value
//   additionalProperties  false (no other properties), true (default), or a schema that every
//                         property not listed in `properties` must match
//   items                 one schema every array element must match (the tuple form is not
//                         supported)
//   enum                  non-empty array; the value must equal one element (1 == 1.0)
//   const                 the value must equal this value
//   minimum, maximum      inclusive numeric bounds (numbers only; compared as doubles)
//   minLength, maxLength  string length bounds in Unicode code points
//   pattern               RE2 regular expression; like JSON Schema it is an unanchored search
//                         (use ^...$ to match the whole string)
// Annotations that do not constrain anything are accepted and ignored: $schema, $id, $comment,
// title, description, default, examples.
// As in JSON Schema, keywords that concern another type are ignored for a value (minimum does
// not reject a string; use `type` for that).
#pragma once

#include <herald/events/error.hpp>

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace herald {

namespace detail {
struct SchemaNode;  // the compiled form; defined in schema.cpp
}  // namespace detail

/// The first place a payload breaks its schema. `path` is a JSON Pointer (RFC 6901) to the
/// offending value: "" for the payload itself, "/amount", "/items/2", "/customer/email".
struct SchemaViolation {
  std::string path;
  std::string message;  ///< "expected number, got string"
  /// "/amount: expected number, got string" ("(root): ..." when the path is empty).
  std::string to_string() const;
  friend bool operator==(const SchemaViolation&, const SchemaViolation&) = default;
};

/// A payload that does not match its event's schema. field() is the violation's JSON Pointer
/// ("(root)" for the payload itself), so what() reads "/amount: expected number, got string".
class PayloadSchemaError : public ValidationError {
 public:
  explicit PayloadSchemaError(SchemaViolation violation);
  const SchemaViolation& violation() const noexcept { return violation_; }

 private:
  SchemaViolation violation_;
};

/// A compiled payload schema. Immutable after compile(); copies share the compiled form.
/// Thread safe: validate() may run concurrently from any number of threads.
class PayloadSchema {
 public:
  /// Compiles `schema` (a JSON object, or true/false as in JSON Schema). Throws ValidationError
  /// whose field is the keyword's path below `path` ("properties.amount.minimum") for an unknown
  /// keyword, a keyword of the wrong type, an unknown type name or a pattern RE2 rejects.
  static PayloadSchema compile(const nlohmann::json& schema, std::string_view path = "");

  /// The first violation, or nullopt when `payload` matches. Never throws for any payload.
  std::optional<SchemaViolation> validate(const nlohmann::json& payload) const;
  /// Throws PayloadSchemaError for the first violation.
  void check(const nlohmann::json& payload) const;

  /// The schema as it was given to compile().
  const nlohmann::json& source() const noexcept;
  nlohmann::json to_json() const { return source(); }

 private:
  PayloadSchema() = default;
  std::shared_ptr<const detail::SchemaNode> root_;
};

void to_json(nlohmann::json& j, const PayloadSchema& schema);

}  // namespace herald
