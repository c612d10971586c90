#include <herald/events/json_fields.hpp>

#include "json_codec.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace herald::json_fields {

namespace {
// json's own DOM builder with a depth limit. json::sax_parse is a template on the SAX type, so
// these start_/end_ functions hide the base's without being virtual.
class BoundedDomParser : public nlohmann::detail::json_sax_dom_parser<json> {
 public:
  BoundedDomParser(json& result, std::size_t max_depth)
      : json_sax_dom_parser(result, /*allow_exceptions=*/true), max_depth_(max_depth) {}
  bool start_object(std::size_t n) {
    enter();
    return json_sax_dom_parser::start_object(n);
  }
  bool end_object() {
    --depth_;
    return json_sax_dom_parser::end_object();
  }
  bool start_array(std::size_t n) {
    enter();
    return json_sax_dom_parser::start_array(n);
  }
  bool end_array() {
    --depth_;
    return json_sax_dom_parser::end_array();
  }

 private:
  void enter() {
    if (++depth_ > max_depth_) {
      throw ParseError("arrays and objects nested deeper than " + std::to_string(max_depth_) +
                       " levels");
    }
  }
  std::size_t max_depth_;
  std::size_t depth_ = 0;
};
}  // namespace

json parse_bounded(std::string_view text, WireEncoding format, std::size_t max_depth) {
  json result;
  if (format == WireEncoding::json) {
    // herald's own reader (json_codec.hpp: same values, strings copied in runs); json's
    // parser only for what it leaves out and to word the error.
    detail::json_codec::DomBuilder builder(result, max_depth);
    if (detail::json_codec::read_json(text, builder) == detail::json_codec::ReadStatus::ok) {
      return result;
    }
    result = json();
  }
  BoundedDomParser sax(result, max_depth);
  try {
    json::sax_parse(text, &sax,
                    format == WireEncoding::json ? json::input_format_t::json
                                                 : json::input_format_t::msgpack,
                    /*strict=*/true);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for 1e999
    throw ParseError(e.what());
  }
  return result;
}

std::string_view type_name(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::string: return "string";
    case json::value_t::object: return "object";
    case json::value_t::array: return "array";
    case json::value_t::binary: return "binary";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "number";
    default: return "unknown";
  }
}

std::string join(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  std::string out(parent);
  out += '.';
  out += key;
  return out;
}

namespace {
[[noreturn]] void wrong_type(std::string_view path, std::string_view expected, const json& got) {
  throw ValidationError(std::string(path),
                        "expected " + std::string(expected) + ", got " + std::string(type_name(got)));
}
[[noreturn]] void missing(std::string_view path) {
  throw ValidationError(std::string(path), "required field is missing");
}
}  // namespace

const json& require_object(const json& value, std::string_view path) {
  if (!value.is_object()) wrong_type(path, "object", value);
  return value;
}

const json* find(const json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<std::string> optional_string(const json& obj, std::string_view key,
                                           std::string_view path) {
  const json* v = find(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(join(path, key), "string", *v);
  return v->get<std::string>();
}

std::string required_string(const json& obj, std::string_view key, std::string_view path) {
  auto v = optional_string(obj, key, path);
  if (!v) missing(join(path, key));
  return *v;
}

std::optional<bool> optional_bool(const json& obj, std::string_view key, std::string_view path) {
  const json* v = find(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(join(path, key), "boolean", *v);
  return v->get<bool>();
}

bool required_bool(const json& obj, std::string_view key, std::string_view path) {
  auto v = optional_bool(obj, key, path);
  if (!v) missing(join(path, key));
  return *v;
}

std::optional<std::int64_t> optional_int(const json& obj, std::string_view key,
                                         std::string_view path, std::int64_t min,
                                         std::int64_t max) {
  const json* v = find(obj, key);
  if (!v) return std::nullopt;
  std::int64_t value;
  if (v->is_number_integer()) {
    value = v->get<std::int64_t>();
  } else if (v->is_number_unsigned()) {
    const auto u = v->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(INT64_MAX)) wrong_type(join(path, key), "integer", *v);
    value = static_cast<std::int64_t>(u);
  } else if (v->is_number_float()) {
    const double d = v->get<double>();
    if (std::trunc(d) != d || std::fabs(d) > 9.0e15) {
      throw ValidationError(join(path, key), "expected integer, got " + v->dump());
    }
    value = static_cast<std::int64_t>(d);
  } else {
    wrong_type(join(path, key), "integer", *v);
  }
  if (value < min) {
    throw ValidationError(join(path, key), "expected integer >= " + std::to_string(min) +
                                               ", got " + std::to_string(value));
  }
  if (value > max) {
    throw ValidationError(join(path, key), "expected integer <= " + std::to_string(max) +
                                               ", got " + std::to_string(value));
  }
  return value;
}

json optional_object(const json& obj, std::string_view key, std::string_view path) {
  const json* v = find(obj, key);
  if (!v) return json::object();
  if (!v->is_object()) wrong_type(join(path, key), "object", *v);
  return *v;
}

}  // namespace herald::json_fields

namespace herald::json_fields {

namespace {
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}
}  // namespace

std::optional<std::string> did_you_mean(std::string_view word,
                                        std::initializer_list<std::string_view> candidates) {
  std::optional<std::string> best;
  std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (auto c : candidates) {
    const auto d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = std::string(c);
    }
  }
  return best;
}

void reject_unknown_keys(const json& obj, std::initializer_list<std::string_view> allowed,
                         std::string_view path) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const auto& key = it.key();
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    std::string problem = "unknown key";
    if (auto hint = did_you_mean(key, allowed)) problem += " (did you mean '" + *hint + "'?)";
    throw ValidationError(join(path, key), problem);
  }
}

}  // namespace herald::json_fields
