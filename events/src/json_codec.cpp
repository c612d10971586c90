#include "json_codec.hpp"

#include <array>
#include <cstring>
#include <optional>

namespace herald::detail::json_codec {

namespace {

using Serializer = nlohmann::detail::serializer<json>;

// json's serializer on `out`, made when first needed: for floats (its shortest round-trip
// format, "1.0" for integral values) and for strings that are not valid UTF-8 (its replacement
// of each bad byte sequence with U+FFFD). Its constructor reads the locale: not paid per event
// when the payload has neither.
class Fallback {
 public:
  explicit Fallback(std::string& out) : out_(out) {}
  void dump(const json& value) {
    if (!serializer_) {
      serializer_.emplace(nlohmann::detail::output_adapter<char, std::string>(out_), ' ',
                          json::error_handler_t::replace);
    }
    serializer_->dump(value, /*pretty_print=*/false, /*ensure_ascii=*/false, 0);
  }

 private:
  std::string& out_;
  std::optional<Serializer> serializer_;
};

constexpr std::array<char, 16> kHex = {'0', '1', '2', '3', '4', '5', '6', '7',
                                       '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};

void write_string(std::string& out, std::string_view text, Fallback& fallback) {
  const std::size_t mark = out.size();
  const char* p = text.data();
  const char* const end = p + text.size();
  const std::size_t first_run = plain_run(p, end);
  if (first_run == text.size()) {
    // Nothing to escape (most keys and values): the quotes and the text with one growth check
    // instead of three appends (json_text writes a dozen strings per event).
    out.resize(mark + text.size() + 2);
    char* d = out.data() + mark;
    d[0] = '"';
    if (!text.empty()) std::memcpy(d + 1, p, text.size());
    d[text.size() + 1] = '"';
    return;
  }
  out.push_back('"');
  for (std::size_t run = first_run;; run = plain_run(p, end)) {  // the first run is scanned already
    out.append(p, run);
    p += run;
    if (p == end) break;
    const auto c = static_cast<unsigned char>(*p);
    if (c >= 0x80) {
      const std::size_t len = utf8_sequence_length(p, end);
      if (len == 0) {  // not UTF-8: json's own replacement, from the start of the string
        out.resize(mark);
        fallback.dump(json(std::string(text)));
        return;
      }
      out.append(p, len);
      p += len;
      continue;
    }
    ++p;
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      default: {  // other control characters, as json writes them: \u00XX in lower case
        const char escaped[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out.append(escaped, sizeof escaped);
        break;
      }
    }
  }
  out.push_back('"');
}

// Recursion depth is the value's own nesting, as in json::dump.
void write_value(std::string& out, const json& value, Fallback& fallback) {
  switch (value.type()) {
    case json::value_t::object: {
      const auto& object = value.get_ref<const json::object_t&>();
      out.push_back('{');
      bool first = true;
      for (const auto& [key, member] : object) {
        if (!first) out.push_back(',');
        first = false;
        write_string(out, key, fallback);
        out.push_back(':');
        write_value(out, member, fallback);
      }
      out.push_back('}');
      return;
    }
    case json::value_t::array: {
      const auto& array = value.get_ref<const json::array_t&>();
      out.push_back('[');
      bool first = true;
      for (const auto& element : array) {
        if (!first) out.push_back(',');
        first = false;
        write_value(out, element, fallback);
      }
      out.push_back(']');
      return;
    }
    case json::value_t::string:
      write_string(out, value.get_ref<const std::string&>(), fallback);
      return;
    case json::value_t::number_unsigned:
      append_json_integer(out, value.get<std::uint64_t>());
      return;
    case json::value_t::number_integer:
      append_json_integer(out, value.get<std::int64_t>());
      return;
    case json::value_t::boolean:
      out.append(value.get<bool>() ? std::string_view("true") : std::string_view("false"));
      return;
    case json::value_t::null:
      out.append(std::string_view("null"));
      return;
    default:  // floats, binary, discarded
      fallback.dump(value);
      return;
  }
}

}  // namespace

void append_json(std::string& out, const json& value) {
  Fallback fallback(out);
  write_value(out, value, fallback);
}

void append_json_string(std::string& out, std::string_view text) {
  Fallback fallback(out);
  write_string(out, text, fallback);
}

}  // namespace herald::detail::json_codec
