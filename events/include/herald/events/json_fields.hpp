// Typed reads of JSON fields with errors that name the field and what was wrong
// ("step_name: expected string, got number"). Shared by every parser in herald.
#pragma once

#include <herald/events/encoding.hpp>
#include <herald/events/error.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace herald::json_fields {

using nlohmann::json;

/// Deepest nesting of arrays and objects that parse_bounded accepts. json's copy, comparison and
/// dump recurse once per level, so a deeper value (a 1 MiB envelope can nest 500,000 levels)
/// would overflow the stack of whoever handles it. serde_json's default limit.
inline constexpr std::size_t kMaxDepth = 128;

/// Parses a whole document (JSON text, or MessagePack) for herald's parsers of untrusted input:
/// like json::parse / json::from_msgpack, but arrays and objects may nest at most `max_depth`
/// levels. Throws ParseError with the parser's message for every failure (syntax, trailing
/// bytes, number overflow such as 1e999, too deep).
json parse_bounded(std::string_view text, WireEncoding format = WireEncoding::json,
                   std::size_t max_depth = kMaxDepth);

/// "string", "number", "boolean", "object", "array", "null", "binary".
std::string_view type_name(const json& value);

/// Joins a parent path and a key: ("", "a") -> "a", ("a", "b") -> "a.b".
std::string join(std::string_view parent, std::string_view key);

/// Throws ValidationError(path, "expected object, got array") unless `value` is an object.
const json& require_object(const json& value, std::string_view path);

/// The field's value if present and not null, else nullptr. `obj` must be an object.
const json* find(const json& obj, std::string_view key);

/// Required and optional typed reads; `path` is the object's own path ("" at top level).
std::string required_string(const json& obj, std::string_view key, std::string_view path = "");
std::optional<std::string> optional_string(const json& obj, std::string_view key,
                                           std::string_view path = "");
bool required_bool(const json& obj, std::string_view key, std::string_view path = "");
std::optional<bool> optional_bool(const json& obj, std::string_view key,
                                  std::string_view path = "");
/// Integers must be whole numbers in [min, max]; "retry_count: expected integer >= 0, got -1".
std::optional<std::int64_t> optional_int(const json& obj, std::string_view key,
                                         std::string_view path = "", std::int64_t min = INT64_MIN,
                                         std::int64_t max = INT64_MAX);
/// An object-valued field (missing or null -> empty object).
json optional_object(const json& obj, std::string_view key, std::string_view path = "");

}  // namespace herald::json_fields

namespace herald::json_fields {

/// The candidate closest to `word` (edit distance), when close enough to be a likely typo.
std::optional<std::string> did_you_mean(std::string_view word,
                                        std::initializer_list<std::string_view> candidates);

/// Throws ValidationError for the first key of `obj` not in `allowed`:
/// "steps[0].conditon: unknown key (did you mean 'condition'?)".
void reject_unknown_keys(const json& obj, std::initializer_list<std::string_view> allowed,
                         std::string_view path);

}  // namespace herald::json_fields
