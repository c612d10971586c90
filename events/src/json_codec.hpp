// herald's own JSON text reader and writer (private to herald_events).
//
// Why not json's (nlohmann) parser and serializer: they handle strings one byte at a time
// (the lexer pushes each character into a token buffer, the serializer runs every byte through
// a UTF-8 decoder), which made them most of the CPU of a ZeroMQ event with a 1-16 KiB payload on
// both ends (perf: dump_escaped ~57% of the sender, lexer + push_back ~77% of the receiver).
// These scan strings eight bytes at a time and copy runs that need no escaping in one go.
//
// They are exact stand-ins, never more permissive:
//  - read_json() accepts a subset of what json::parse (strict) accepts and reports the same
//    values through the same SAX calls. What it does not handle itself (a UTF-8 byte order mark,
//    a float out of a double's range, a NUL byte, which json's lexer takes for the end) it
//    reports as `unsupported`, and callers then take json's parser, which also words every error
//    message.
//  - append_json() writes exactly the bytes of json::dump(-1, ' ', false, replace); strings that
//    are not valid UTF-8 (json replaces the bad bytes with U+FFFD its own way) and floats are
//    written by json's serializer itself.
// tests/events/json_codec_test.cpp and the json_codec fuzz target hold both sides against json.
#pragma once

#include <nlohmann/json.hpp>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace herald::detail::json_codec {

using nlohmann::json;

/// Bytes at the start of [p, end) that a JSON string carries as they are: not '"', not '\\',
/// not a control character (< 0x20) and ASCII (< 0x80; longer UTF-8 sequences are validated one
/// by one). Eight bytes per step on little-endian machines.
inline std::size_t plain_run(const char* p, const char* end) noexcept {
  const char* const start = p;
  if constexpr (std::endian::native == std::endian::little) {
    constexpr std::uint64_t ones = 0x0101010101010101ull;
    constexpr std::uint64_t highs = 0x8080808080808080ull;
    while (end - p >= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      const std::uint64_t quote = w ^ (ones * '"');
      const std::uint64_t backslash = w ^ (ones * '\\');
      // Per byte: high bit set (>= 0x80), or a zero byte in `quote`/`backslash`, or below 0x20.
      // The lowest flagged byte is exact for each test (borrows only run upwards), so the lowest
      // bit of the union is the first byte that needs attention.
      const std::uint64_t special = (w & highs) | ((quote - ones) & ~quote & highs) |
                                    ((backslash - ones) & ~backslash & highs) |
                                    ((w - ones * 0x20) & ~w & highs);
      if (special != 0) return static_cast<std::size_t>(p - start) + (std::countr_zero(special) >> 3);
      p += 8;
    }
  }
  while (p != end) {
    const auto c = static_cast<unsigned char>(*p);
    if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') break;
    ++p;
  }
  return static_cast<std::size_t>(p - start);
}

/// Length of the well-formed UTF-8 sequence (Unicode table 3-7: no overlong forms, no
/// surrogates, nothing above U+10FFFF) starting at `p`, or 0 if there is none.
inline std::size_t utf8_sequence_length(const char* p, const char* end) noexcept {
  const auto at = [&](std::size_t i) { return static_cast<unsigned char>(p[i]); };
  const auto avail = static_cast<std::size_t>(end - p);
  const auto cont = [&](std::size_t i, unsigned lo = 0x80, unsigned hi = 0xBF) {
    return i < avail && at(i) >= lo && at(i) <= hi;
  };
  if (avail == 0) return 0;
  const unsigned b0 = at(0);
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1) ? 2 : 0;
  if (b0 == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (b0 == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (b0 == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b0 >= 0xF1 && b0 <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b0 == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

enum class ReadStatus : std::uint8_t {
  ok,           ///< one complete value, then only whitespace
  invalid,      ///< not JSON (json::parse rejects it too)
  unsupported,  ///< maybe JSON, not handled here (BOM, float out of range, NUL byte)
  stopped,      ///< the handler returned false
};

/// Reads one JSON text, calling the handler the way json::sax_parse does (null, boolean,
/// number_integer for negative integers, number_unsigned, number_float, string, key,
/// start_object/end_object, start_array/end_array; the size argument is always -1). Strings are
/// handed over in a buffer the handler may move from. Iterative: nesting costs no stack, and
/// the handler bounds it (return false from start_*). Never throws itself; a handler may.
template <class Handler>
class Reader {
 public:
  Reader(std::string_view text, Handler& handler)
      : p_(text.data()), end_(text.data() + text.size()), handler_(handler) {}

  ReadStatus read() {
    if (end_ - p_ >= 3 && std::memcmp(p_, "\xEF\xBB\xBF", 3) == 0) return ReadStatus::unsupported;
    skip_space();
    for (;;) {
      // A value is expected here.
      if (p_ == end_) return ReadStatus::invalid;
      switch (*p_) {
        case '{':
          ++p_;
          if (!handler_.start_object(std::size_t(-1))) return ReadStatus::stopped;
          skip_space();
          if (p_ != end_ && *p_ == '}') {
            ++p_;
            if (!handler_.end_object()) return ReadStatus::stopped;
            break;
          }
          open_.push_back('{');
          if (auto s = read_key(); s != ReadStatus::ok) return s;
          continue;
        case '[':
          ++p_;
          if (!handler_.start_array(std::size_t(-1))) return ReadStatus::stopped;
          skip_space();
          if (p_ != end_ && *p_ == ']') {
            ++p_;
            if (!handler_.end_array()) return ReadStatus::stopped;
            break;
          }
          open_.push_back('[');
          continue;
        case '"': {
          ++p_;
          if (auto s = read_string(); s != ReadStatus::ok) return s;
          if (!handler_.string(buffer_)) return ReadStatus::stopped;
          break;
        }
        case 't':
          if (!literal("true")) return ReadStatus::invalid;
          if (!handler_.boolean(true)) return ReadStatus::stopped;
          break;
        case 'f':
          if (!literal("false")) return ReadStatus::invalid;
          if (!handler_.boolean(false)) return ReadStatus::stopped;
          break;
        case 'n':
          if (!literal("null")) return ReadStatus::invalid;
          if (!handler_.null()) return ReadStatus::stopped;
          break;
        default:
          if (auto s = read_number(); s != ReadStatus::ok) return s;
          break;
      }
      // After a value: close containers, or go on to the next element.
      for (;;) {
        skip_space();
        if (open_.empty()) return p_ == end_ ? ReadStatus::ok : ReadStatus::invalid;
        if (p_ == end_) return ReadStatus::invalid;
        const char c = *p_++;
        if (c == ',') {
          skip_space();
          if (open_.back() == '{') {
            if (auto s = read_key(); s != ReadStatus::ok) return s;
          }
          break;  // the next value
        }
        if (c == (open_.back() == '{' ? '}' : ']')) {
          const bool object = open_.back() == '{';
          open_.pop_back();
          if (!(object ? handler_.end_object() : handler_.end_array())) return ReadStatus::stopped;
          continue;
        }
        return ReadStatus::invalid;
      }
    }
  }

 private:
  static bool is_space(char c) noexcept { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
  void skip_space() noexcept {
    while (p_ != end_ && is_space(*p_)) ++p_;
  }

  bool literal(std::string_view word) noexcept {
    if (static_cast<std::size_t>(end_ - p_) < word.size() || std::memcmp(p_, word.data(), word.size()) != 0) {
      return false;
    }
    p_ += word.size();
    return true;
  }

  // `"key"` then `:`, leaving p_ at the value.
  ReadStatus read_key() {
    if (p_ == end_ || *p_ != '"') return ReadStatus::invalid;
    ++p_;
    if (auto s = read_string(); s != ReadStatus::ok) return s;
    if (!handler_.key(buffer_)) return ReadStatus::stopped;
    skip_space();
    if (p_ == end_ || *p_ != ':') return ReadStatus::invalid;
    ++p_;
    skip_space();
    return ReadStatus::ok;
  }

  static int hex(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Four hex digits after "\u"; -1 if they are not.
  int read_hex4() noexcept {
    if (end_ - p_ < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; ++i) {
      const int d = hex(p_[i]);
      if (d < 0) return -1;
      v = (v << 4) | d;
    }
    p_ += 4;
    return v;
  }

  void append_utf8(std::uint32_t cp) {
    if (cp < 0x80) {
      buffer_.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      buffer_.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      buffer_.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      buffer_.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      buffer_.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      buffer_.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      buffer_.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      buffer_.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      buffer_.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      buffer_.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // The string after its opening quote, into buffer_; p_ ends after the closing quote.
  ReadStatus read_string() {
    buffer_.clear();
    for (;;) {
      const std::size_t run = plain_run(p_, end_);
      buffer_.append(p_, run);
      p_ += run;
      if (p_ == end_) return ReadStatus::invalid;  // unterminated
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        return ReadStatus::ok;
      }
      if (c >= 0x80) {
        const std::size_t len = utf8_sequence_length(p_, end_);
        if (len == 0) return ReadStatus::invalid;
        buffer_.append(p_, len);
        p_ += len;
        continue;
      }
      if (c < 0x20) return ReadStatus::invalid;  // control characters must be escaped
      // A backslash.
      if (++p_ == end_) return ReadStatus::invalid;
      switch (*p_++) {
        case '"': buffer_.push_back('"'); break;
        case '\\': buffer_.push_back('\\'); break;
        case '/': buffer_.push_back('/'); break;
        case 'b': buffer_.push_back('\b'); break;
        case 'f': buffer_.push_back('\f'); break;
        case 'n': buffer_.push_back('\n'); break;
        case 'r': buffer_.push_back('\r'); break;
        case 't': buffer_.push_back('\t'); break;
        case 'u': {
          const int first = read_hex4();
          if (first < 0) return ReadStatus::invalid;
          auto cp = static_cast<std::uint32_t>(first);
          if (cp >= 0xDC00 && cp <= 0xDFFF) return ReadStatus::invalid;  // a lone low surrogate
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate: its low half must follow
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return ReadStatus::invalid;
            p_ += 2;
            const int second = read_hex4();
            if (second < 0xDC00 || second > 0xDFFF) return ReadStatus::invalid;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (static_cast<std::uint32_t>(second) - 0xDC00);
          }
          append_utf8(cp);
          break;
        }
        default: return ReadStatus::invalid;
      }
    }
  }

  static bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? as json reads it: integers as unsigned
  // (or int64 when negative) while they fit, else as a double; doubles must be finite.
  ReadStatus read_number() {
    const char* const start = p_;
    bool integral = true;
    if (*p_ == '-') ++p_;
    if (p_ == end_ || !is_digit(*p_)) return ReadStatus::invalid;
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ != end_ && is_digit(*p_)) ++p_;
    }
    if (p_ != end_ && *p_ == '.') {
      integral = false;
      ++p_;
      if (p_ == end_ || !is_digit(*p_)) return ReadStatus::invalid;
      while (p_ != end_ && is_digit(*p_)) ++p_;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      integral = false;
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || !is_digit(*p_)) return ReadStatus::invalid;
      while (p_ != end_ && is_digit(*p_)) ++p_;
    }
    if (integral) {
      if (*start == '-') {
        std::int64_t v = 0;
        const auto [ptr, ec] = std::from_chars(start, p_, v);
        if (ec == std::errc() && ptr == p_) {
          return handler_.number_integer(v) ? ReadStatus::ok : ReadStatus::stopped;
        }
      } else {
        std::uint64_t v = 0;
        const auto [ptr, ec] = std::from_chars(start, p_, v);
        if (ec == std::errc() && ptr == p_) {
          return handler_.number_unsigned(v) ? ReadStatus::ok : ReadStatus::stopped;
        }
      }
      // Too large for a 64-bit integer: json reads it as a double, like any other.
    }
    double v = 0;
    const auto [ptr, ec] = std::from_chars(start, p_, v);
    // Out of range (overflow to infinity, which json refuses, or underflow, which strtod
    // rounds its own way): json's parser decides.
    if (ec != std::errc() || ptr != p_ || !std::isfinite(v)) return ReadStatus::unsupported;
    return handler_.number_float(v, no_text_) ? ReadStatus::ok : ReadStatus::stopped;
  }

  const char* p_;
  const char* const end_;
  Handler& handler_;
  std::string buffer_;
  std::string open_;  // '{' / '[' per open container
  const std::string no_text_;  // json passes a float's text; nobody here reads it
};

template <class Handler>
ReadStatus read_json(std::string_view text, Handler& handler) {
  const ReadStatus status = Reader<Handler>(text, handler).read();
  // json's lexer takes a NUL byte outside a string for the end of the input ("1\0x" is 1):
  // text with one is json's to judge.
  if (status == ReadStatus::invalid && text.find('\0') != std::string_view::npos) {
    return ReadStatus::unsupported;
  }
  return status;
}

/// Builds a json value from read_json's calls, at most `max_depth` containers deep (deeper:
/// the handler refuses and reading stops). Strings and keys are moved in, not copied.
class DomBuilder {
 public:
  explicit DomBuilder(json& root, std::size_t max_depth = std::numeric_limits<std::size_t>::max())
      : root_(&root), max_depth_(max_depth) {}

  /// Builds the next value into `root`, keeping the stack's storage (one builder per document
  /// reader rather than one per value).
  void reset(json& root) noexcept {
    root_ = &root;
    stack_.clear();
  }

  bool null() { return put(nullptr); }
  bool boolean(bool v) { return put(v); }
  bool number_integer(std::int64_t v) { return put(v); }
  bool number_unsigned(std::uint64_t v) { return put(v); }
  bool number_float(double v, const std::string&) { return put(v); }
  bool string(std::string& v) { return put(std::move(v)); }
  bool binary(json::binary_t& v) { return put(json::binary(std::move(v))); }
  bool key(std::string& k) {
    key_ = std::move(k);
    return true;
  }
  bool start_object(std::size_t) { return open(json::value_t::object); }
  bool start_array(std::size_t) { return open(json::value_t::array); }
  bool end_object() {
    stack_.pop_back();
    return true;
  }
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  template <class Exception>
  bool parse_error(std::size_t, const std::string&, const Exception&) {
    return false;
  }

 private:
  // Constructs the value in its place (a map node, an array slot): no temporary json to move
  // and destroy per value, which showed in S7's profile. A repeated key keeps the last value,
  // as json's own parser does.
  template <class V>
  json* place(V&& value) {
    if (stack_.empty()) {
      *root_ = json(std::forward<V>(value));
      return root_;
    }
    json& parent = *stack_.back();
    if (parent.is_array()) {
      auto& array = parent.get_ref<json::array_t&>();
      array.emplace_back(std::forward<V>(value));
      return &array.back();
    }
    auto& object = parent.get_ref<json::object_t&>();
    auto [it, inserted] = object.try_emplace(std::move(key_), std::forward<V>(value));
    if (!inserted) it->second = json(std::forward<V>(value));  // try_emplace left it untouched
    return &it->second;
  }
  template <class V>
  bool put(V&& value) {
    place(std::forward<V>(value));
    return true;
  }
  bool open(json::value_t type) {
    if (stack_.size() >= max_depth_) return false;
    stack_.push_back(place(type));
    return true;
  }

  json* root_;
  std::size_t max_depth_;
  std::vector<json*> stack_;
  std::string key_;  // the key whose value comes next
};

/// Appends `value` as compact JSON: exactly json::dump(-1, ' ', false, error_handler_t::replace).
void append_json(std::string& out, const json& value);

/// Appends `text` as a JSON string, exactly as append_json(out, json(text)) would.
void append_json_string(std::string& out, std::string_view text);

/// Appends a JSON integer (decimal, as json writes it).
template <class Int>
void append_json_integer(std::string& out, Int value) {
  char buf[24];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  (void)ec;  // 24 bytes hold every 64-bit integer
  out.append(buf, end);
}

}  // namespace herald::detail::json_codec
