#include <herald/publishers/schema.hpp>

#include <herald/events/json_fields.hpp>

#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <utility>
#include <vector>

namespace herald {

namespace jf = json_fields;
using nlohmann::json;

namespace {

// Bit per JSON Schema type; a node's `types` of 0 means "any type".
enum TypeBit : unsigned {
  kNull = 1u << 0,
  kBoolean = 1u << 1,
  kObject = 1u << 2,
  kArray = 1u << 3,
  kNumber = 1u << 4,
  kInteger = 1u << 5,
  kString = 1u << 6,
};

constexpr std::array<std::pair<TypeBit, std::string_view>, 7> kTypeNames{{
    {kNull, "null"},
    {kBoolean, "boolean"},
    {kObject, "object"},
    {kArray, "array"},
    {kNumber, "number"},
    {kInteger, "integer"},
    {kString, "string"},
}};

bool is_whole(const json& v) {
  if (v.is_number_integer() || v.is_number_unsigned()) return true;
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::isfinite(d) && std::trunc(d) == d;
}

bool type_matches(unsigned types, const json& v) {
  if (types == 0) return true;
  switch (v.type()) {
    case json::value_t::null: return types & kNull;
    case json::value_t::boolean: return types & kBoolean;
    case json::value_t::object: return types & kObject;
    case json::value_t::array: return types & kArray;
    case json::value_t::string: return types & kString;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return (types & kNumber) || ((types & kInteger) && is_whole(v));
    default: return false;
  }
}

std::string describe_types(unsigned types) {
  std::string out;
  for (const auto& [bit, name] : kTypeNames) {
    if (!(types & bit)) continue;
    if (!out.empty()) out += " or ";
    out += name;
  }
  return out;
}

// Unicode code points in UTF-8 text: every byte that is not a continuation byte starts one.
std::size_t code_points(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0u) != 0x80u;
  return n;
}

// JSON Pointer reference token escaping (RFC 6901).
std::string pointer_token(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

// Values quoted in messages: invalid UTF-8 in a payload string must not make reporting throw.
std::string show(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string format_number(double d) {
  // json's own number formatting: 1 for 1.0, no trailing zeros.
  if (std::trunc(d) == d && std::fabs(d) < 9.0e15) return std::to_string(static_cast<std::int64_t>(d));
  return json(d).dump();
}

const std::initializer_list<std::string_view> kKeywords = {
    "type",      "required",  "properties", "additionalProperties", "items",    "enum",
    "const",     "minimum",   "maximum",    "minLength",            "maxLength", "pattern",
    "$schema",   "$id",       "$comment",   "title",                "description", "default",
    "examples"};

}  // namespace

struct detail::SchemaNode {
  json source;  // root only
  bool reject_all = false;  // the schema `false`
  unsigned types = 0;
  std::vector<std::string> required;
  std::map<std::string, std::unique_ptr<SchemaNode>, std::less<>> properties;
  bool additional_allowed = true;
  std::unique_ptr<SchemaNode> additional;  // schema for properties not in `properties`
  std::unique_ptr<SchemaNode> items;
  std::optional<json> enum_values;  // a non-empty array
  std::optional<json> const_value;
  std::optional<double> minimum;
  std::optional<double> maximum;
  std::optional<std::size_t> min_length;
  std::optional<std::size_t> max_length;
  std::unique_ptr<const RE2> pattern;

  std::optional<SchemaViolation> check(const json& v, std::string& path) const;
};

namespace {

using Node = detail::SchemaNode;

std::size_t read_length(const json& v, const std::string& path) {
  // The upper bound keeps the conversion below defined; no string is that long anyway.
  if (!is_whole(v) || v.get<double>() < 0 || v.get<double>() > 1e15) {
    throw ValidationError(path, "expected a non-negative integer, got " + show(v));
  }
  return v.get<std::size_t>();
}

double read_bound(const json& v, const std::string& path) {
  if (!v.is_number()) {
    throw ValidationError(path, "expected number, got " + std::string(jf::type_name(v)));
  }
  return v.get<double>();
}

unsigned read_type_name(const json& v, const std::string& path) {
  if (!v.is_string()) {
    throw ValidationError(path, "expected a type name, got " + std::string(jf::type_name(v)));
  }
  const auto& name = v.get_ref<const std::string&>();
  for (const auto& [bit, type_name] : kTypeNames) {
    if (type_name == name) return bit;
  }
  std::string problem = "unknown type '" + name + "'";
  if (auto hint = jf::did_you_mean(name, {"null", "boolean", "object", "array", "number",
                                           "integer", "string"})) {
    problem += " (did you mean '" + *hint + "'?)";
  }
  throw ValidationError(path, problem);
}

std::unique_ptr<Node> compile_node(const json& s, const std::string& path) {
  auto node = std::make_unique<Node>();
  if (s.is_boolean()) {
    node->reject_all = !s.get<bool>();
    return node;
  }
  if (!s.is_object()) {
    throw ValidationError(path, "expected a schema (object or boolean), got " +
                                    std::string(jf::type_name(s)));
  }
  // Not jf::reject_unknown_keys: "oneOf" is valid JSON Schema, so say "unsupported", not "unknown".
  for (auto it = s.begin(); it != s.end(); ++it) {
    if (std::find(kKeywords.begin(), kKeywords.end(), it.key()) != kKeywords.end()) continue;
    std::string problem = "unknown or unsupported schema keyword";
    if (auto hint = jf::did_you_mean(it.key(), kKeywords)) problem += " (did you mean '" + *hint + "'?)";
    throw ValidationError(jf::join(path, it.key()), problem);
  }

  for (auto it = s.begin(); it != s.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    const std::string at = jf::join(path, key);
    if (key == "type") {
      if (v.is_array()) {
        if (v.empty()) throw ValidationError(at, "expected at least one type name");
        for (std::size_t i = 0; i < v.size(); ++i) {
          node->types |= read_type_name(v[i], at + "[" + std::to_string(i) + "]");
        }
      } else {
        node->types = read_type_name(v, at);
      }
    } else if (key == "required") {
      if (!v.is_array()) {
        throw ValidationError(at, "expected array of property names, got " +
                                      std::string(jf::type_name(v)));
      }
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_string()) {
          throw ValidationError(at + "[" + std::to_string(i) + "]",
                                "expected string, got " + std::string(jf::type_name(v[i])));
        }
        node->required.push_back(v[i].get<std::string>());
      }
    } else if (key == "properties") {
      jf::require_object(v, at);
      for (auto p = v.begin(); p != v.end(); ++p) {
        node->properties.emplace(p.key(), compile_node(p.value(), jf::join(at, p.key())));
      }
    } else if (key == "additionalProperties") {
      if (v.is_boolean()) {
        node->additional_allowed = v.get<bool>();
      } else {
        node->additional = compile_node(v, at);
      }
    } else if (key == "items") {
      if (v.is_array()) throw ValidationError(at, "the tuple form (an array of schemas) is not supported");
      node->items = compile_node(v, at);
    } else if (key == "enum") {
      if (!v.is_array() || v.empty()) {
        throw ValidationError(at, "expected a non-empty array, got " + show(v));
      }
      node->enum_values = v;
    } else if (key == "const") {
      node->const_value = v;
    } else if (key == "minimum") {
      node->minimum = read_bound(v, at);
    } else if (key == "maximum") {
      node->maximum = read_bound(v, at);
    } else if (key == "minLength") {
      node->min_length = read_length(v, at);
    } else if (key == "maxLength") {
      node->max_length = read_length(v, at);
    } else if (key == "pattern") {
      if (!v.is_string()) {
        throw ValidationError(at, "expected string, got " + std::string(jf::type_name(v)));
      }
      RE2::Options options;
      options.set_log_errors(false);
      auto re = std::make_unique<const RE2>(v.get<std::string>(), options);
      if (!re->ok()) {
        throw ValidationError(at, "invalid regular expression '" + v.get<std::string>() +
                                      "': " + re->error());
      }
      node->pattern = std::move(re);
    }
    // Annotations ($schema, title, ...) constrain nothing.
  }
  return node;
}

SchemaViolation violation(const std::string& path, std::string message) {
  return SchemaViolation{path, std::move(message)};
}

}  // namespace

// `path` is the JSON Pointer of `v`; it is extended in place while descending (and restored),
// so a valid payload costs no string allocation per value.
std::optional<SchemaViolation> detail::SchemaNode::check(const json& v, std::string& path) const {
  if (reject_all) return violation(path, "no value is allowed here (schema is false)");
  if (!type_matches(types, v)) {
    return violation(path, "expected " + describe_types(types) + ", got " +
                               std::string(jf::type_name(v)));
  }
  if (enum_values) {
    bool found = false;
    for (const auto& candidate : *enum_values) {
      if (candidate == v) {
        found = true;
        break;
      }
    }
    if (!found) return violation(path, show(v) + " is not one of " + show(*enum_values));
  }
  if (const_value && !(*const_value == v)) {
    return violation(path, "expected " + show(*const_value) + ", got " + show(v));
  }
  if (v.is_number()) {
    const double d = v.get<double>();
    if (minimum && d < *minimum) {
      return violation(path, show(v) + " is less than the minimum " + format_number(*minimum));
    }
    if (maximum && d > *maximum) {
      return violation(path, show(v) + " is greater than the maximum " + format_number(*maximum));
    }
  } else if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (min_length || max_length) {
      const std::size_t n = code_points(s);
      if (min_length && n < *min_length) {
        return violation(path, "length " + std::to_string(n) + " is less than minLength " +
                                   std::to_string(*min_length));
      }
      if (max_length && n > *max_length) {
        return violation(path, "length " + std::to_string(n) + " is greater than maxLength " +
                                   std::to_string(*max_length));
      }
    }
    if (pattern && !RE2::PartialMatch(s, *pattern)) {
      return violation(path, show(v) + " does not match pattern '" + pattern->pattern() + "'");
    }
  } else if (v.is_object()) {
    const std::size_t base = path.size();
    for (const auto& name : required) {
      if (!v.contains(name)) {
        path += '/';
        path += pointer_token(name);
        auto out = violation(path, "required property is missing");
        path.resize(base);
        return out;
      }
    }
    if (!properties.empty() || !additional_allowed || additional) {
      for (auto it = v.begin(); it != v.end(); ++it) {
        path += '/';
        path += pointer_token(it.key());
        std::optional<SchemaViolation> out;
        if (auto p = properties.find(it.key()); p != properties.end()) {
          out = p->second->check(it.value(), path);
        } else if (!additional_allowed) {
          out = violation(path, "property is not allowed (additionalProperties is false)");
        } else if (additional) {
          out = additional->check(it.value(), path);
        }
        path.resize(base);
        if (out) return out;
      }
    }
  } else if (v.is_array() && items) {
    const std::size_t base = path.size();
    for (std::size_t i = 0; i < v.size(); ++i) {
      path += '/';
      path += std::to_string(i);
      auto out = items->check(v[i], path);
      path.resize(base);
      if (out) return out;
    }
  }
  return std::nullopt;
}

std::string SchemaViolation::to_string() const {
  return (path.empty() ? std::string("(root)") : path) + ": " + message;
}

PayloadSchemaError::PayloadSchemaError(SchemaViolation violation)
    : ValidationError(violation.path.empty() ? std::string("(root)") : violation.path,
                      violation.message),
      violation_(std::move(violation)) {}

PayloadSchema PayloadSchema::compile(const json& schema, std::string_view path) {
  PayloadSchema out;
  auto root = compile_node(schema, std::string(path));
  root->source = schema;  // kept at the root only: nested nodes need no copy of their text
  out.root_ = std::move(root);
  return out;
}

std::optional<SchemaViolation> PayloadSchema::validate(const json& payload) const {
  if (!root_) return std::nullopt;
  std::string path;
  return root_->check(payload, path);
}

void PayloadSchema::check(const json& payload) const {
  if (auto v = validate(payload)) throw PayloadSchemaError(std::move(*v));
}

const json& PayloadSchema::source() const noexcept {
  static const json empty = json::object();
  return root_ ? root_->source : empty;
}

void to_json(json& j, const PayloadSchema& schema) { j = schema.source(); }

}  // namespace herald
