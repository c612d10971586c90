// One-pass decoding of the usual JSON envelope on simdjson On-Demand (Debian libsimdjson-dev):
// the wire header and the event's typed fields are read straight from the input, so a received
// message is not first built into a JSON tree (a node and a string per field) only to be copied
// into the event and thrown away. Only the payload and extra metadata values become
// nlohmann::json values. Anything outside the usual shape gives up; see wire_fast.hpp.
//
// Why every value is walked: On-Demand validates only what it is asked to read (its first stage
// checks UTF-8, unescaped control characters in strings and unclosed strings for the whole input;
// numbers, literals, escapes and the nesting of brackets are checked when reached). The general
// path parses the whole envelope, so a key it ignores must still be read here to the last byte,
// or invalid JSON would be accepted. The values are read as nlohmann reads them (`value` below);
// wherever the two could differ (a number beyond 64-bit integers, a float that underflows, "-0")
// this gives up and the general path decides.
#include "wire_fast.hpp"

#include <herald/events/detail/metadata_fields.hpp>
#include <herald/events/pattern.hpp>

#include <nlohmann/json.hpp>
#include <simdjson.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>

namespace herald::detail {

namespace {

namespace od = simdjson::ondemand;
using nlohmann::json;

// What a key names. Top-level fields, metadata base fields, execution_result fields and error
// fields each have a bit of one mask, which catches duplicates.
enum Field : std::uint8_t {
  // top level
  f_wire_version, f_publisher_id, f_seq, f_name_seq, f_event_id, f_event_name, f_payload,
  f_metadata, f_execution_result,
  // metadata base keys: f_metadata_base + their index in kMetadataFields
  f_metadata_base,
  // execution_result
  f_success = f_metadata_base + kMetadataFieldCount, f_retryable, f_retry_count, f_max_retries, f_error,
  // error
  f_message, f_error_type,
  f_count,
  // not tracked for duplicates
  f_ignore = 64,  // a key the general path does not read: validated, then dropped
  f_extra,        // a metadata key that is not a base key: kept in metadata.extra
};
static_assert(f_count <= 32, "every tracked field needs a bit of the 32-bit duplicate mask");

Field top_field(std::string_view k) {
  if (k == "wire_version") return f_wire_version;
  if (k == "publisher_id") return f_publisher_id;
  if (k == "seq") return f_seq;
  if (k == "name_seq") return f_name_seq;
  if (k == "event_id") return f_event_id;
  if (k == "event_name") return f_event_name;
  if (k == "payload") return f_payload;
  if (k == "metadata") return f_metadata;
  if (k == "execution_result") return f_execution_result;
  return f_ignore;
}

Field metadata_field(std::string_view k) {
  if (auto i = metadata_field_index(k)) return static_cast<Field>(f_metadata_base + *i);
  return f_extra;
}

Field execution_field(std::string_view k) {
  if (k == "success") return f_success;
  if (k == "retryable") return f_retryable;
  if (k == "retry_count") return f_retry_count;
  if (k == "max_retries") return f_max_retries;
  if (k == "error") return f_error;
  return f_ignore;
}

Field error_field(std::string_view k) {
  if (k == "message") return f_message;
  if (k == "error_type") return f_error_type;
  return f_ignore;
}

// The value's type. A null is checked to be exactly `null` and consumed.
bool type_of(od::value& v, od::json_type& type) {
  if (v.type().get(type) != simdjson::SUCCESS) return false;
  if (type != od::json_type::null) return true;
  bool is_null = false;
  return v.is_null().get(is_null) == simdjson::SUCCESS && is_null;
}

// A number as nlohmann reads it: an integer without '-' that fits 64 bits is number_unsigned, a
// negative one that fits is number_integer, anything else a double. Gives up (false) where the two
// parsers may disagree or the general path refuses: integers beyond 64 bits (nlohmann reads them
// as doubles), "-0" (number_integer for nlohmann, which simdjson does not tell from "0"), and
// doubles that are zero, subnormal or out of range (underflow rounding, 1e999).
//
// The typed getters, not get_number(): simdjson 3.0.1's get_number() loses the value of a float
// with more than 19 significant digits (its slow path writes to a copy of the result).
bool read_number(od::value& v, json& out) {
  od::number_type type;
  if (v.get_number_type().get(type) != simdjson::SUCCESS) return false;
  switch (type) {
    case od::number_type::unsigned_integer: {  // >= 2^63
      std::uint64_t u = 0;
      if (v.get_uint64().get(u) != simdjson::SUCCESS) return false;
      out = u;
      return true;
    }
    case od::number_type::signed_integer: {
      std::int64_t i = 0;
      if (v.get_int64().get(i) != simdjson::SUCCESS) return false;
      if (i > 0) {
        out = static_cast<std::uint64_t>(i);
      } else if (i < 0) {
        out = i;
      } else {
        if (v.is_negative()) return false;  // "-0"
        out = std::uint64_t{0};
      }
      return true;
    }
    case od::number_type::floating_point_number: {
      double d = 0;
      if (v.get_double().get(d) != simdjson::SUCCESS || !std::isnormal(d)) return false;
      out = d;
      return true;
    }
  }
  return false;
}

// An integer nlohmann reads as number_unsigned (see read_number); false for anything else.
bool read_unsigned(od::value& v, std::uint64_t& out) {
  od::number_type type;
  if (v.get_number_type().get(type) != simdjson::SUCCESS) return false;
  switch (type) {
    case od::number_type::unsigned_integer: return v.get_uint64().get(out) == simdjson::SUCCESS;
    case od::number_type::signed_integer: {
      std::int64_t i = 0;
      if (v.get_int64().get(i) != simdjson::SUCCESS || i < 0 || (i == 0 && v.is_negative())) {
        return false;
      }
      out = static_cast<std::uint64_t>(i);
      return true;
    }
    default: return false;  // integral floats where integers belong: the general path decides
  }
}

bool read_string(od::value& v, std::string& out) {
  std::string_view s;
  if (v.get_string().get(s) != simdjson::SUCCESS) return false;
  out.assign(s);
  return true;
}

class Decoder {
 public:
  explicit Decoder(std::size_t max_depth) : max_depth_(max_depth) {}

  // Reads the whole document: one object, then nothing but whitespace.
  bool envelope(od::document& doc) {
    if (max_depth_ < 1) return false;
    od::object top;
    if (doc.get_object().get(top) != simdjson::SUCCESS) return false;
    for (auto item : top) {
      od::field field;
      std::string_view key;
      if (std::move(item).get(field) != simdjson::SUCCESS ||
          field.unescaped_key().get(key) != simdjson::SUCCESS) {
        return false;
      }
      const Field f = top_field(key);
      if (!mark(f) || !top_value(f, field.value())) return false;
    }
    // The object closed at the last structural character: at the end, else bytes trail it.
    return doc.current_location().error() == simdjson::OUT_OF_BOUNDS;
  }

  std::optional<WireMessage> finish(std::string_view topic) {
    constexpr std::uint32_t required = (1u << f_wire_version) | (1u << f_publisher_id) |
                                       (1u << f_seq) | (1u << f_event_id) | (1u << f_event_name);
    // A required field that was null was refused when read; so was an empty event_id.
    if ((seen_ & required) != required) return std::nullopt;
    if (event_name_ != topic || !is_valid_event_name(event_name_)) return std::nullopt;
    WireMessage msg;
    msg.header = std::move(header_);
    msg.encoding = WireEncoding::json;
    msg.wire_version = kWireVersion;
    msg.event = DomainEvent::from_fields(std::move(event_id_), std::move(event_name_),
                                         std::move(payload_), std::move(metadata_),
                                         std::move(execution_));
    return msg;
  }

 private:
  // Records a tracked key; false for a duplicate (the general path keeps the last one).
  bool mark(Field f) {
    if (f >= f_count) return true;  // unknown and extra keys: not tracked here
    const std::uint32_t bit = 1u << f;
    if (seen_ & bit) return false;
    seen_ |= bit;
    return true;
  }

  bool top_value(Field f, od::value& v) {
    switch (f) {
      case f_wire_version: {
        std::uint64_t version = 0;
        return read_unsigned(v, version) && version == static_cast<std::uint64_t>(kWireVersion);
      }
      case f_publisher_id:
        return read_string(v, header_.publisher_id) && !header_.publisher_id.empty();
      case f_seq: return read_unsigned(v, header_.seq) && header_.seq != 0;
      case f_name_seq: {
        od::json_type type;
        if (!type_of(v, type)) return false;
        if (type == od::json_type::null) return true;  // absent
        return read_unsigned(v, header_.name_seq) && header_.name_seq != 0;
      }
      case f_event_id: return read_string(v, event_id_) && !event_id_.empty();
      case f_event_name: return read_string(v, event_name_);
      case f_payload: {
        od::json_type type;
        if (!type_of(v, type)) return false;
        if (type == od::json_type::null) return true;  // the default, {}
        return value(v, type, payload_, 1);
      }
      case f_metadata: return metadata(v);
      case f_execution_result: return execution(v);
      default: return skip(v, 1);
    }
  }

  // `v` must be an object (or null: the defaults) at depth `depth`.
  template <class Visit>
  bool object_fields(od::value& v, std::size_t depth, bool& present, Visit&& visit) {
    od::json_type type;
    if (!type_of(v, type)) return false;
    present = type == od::json_type::object;
    if (type == od::json_type::null) return true;
    if (!present || depth > max_depth_) return false;
    od::object obj;
    if (v.get_object().get(obj) != simdjson::SUCCESS) return false;
    for (auto item : obj) {
      od::field field;
      std::string_view key;
      if (std::move(item).get(field) != simdjson::SUCCESS ||
          field.unescaped_key().get(key) != simdjson::SUCCESS) {
        return false;
      }
      if (!visit(key, field.value())) return false;
    }
    return true;
  }

  // A string field that may be null (read as empty).
  static bool nullable_string(od::value& v, std::string& out) {
    od::json_type type;
    if (!type_of(v, type)) return false;
    if (type == od::json_type::null) {
      out.clear();
      return true;
    }
    return read_string(v, out);
  }

  bool metadata(od::value& v) {
    bool present = false;
    return object_fields(v, 2, present, [&](std::string_view key, od::value& value_of_key) {
      const Field f = metadata_field(key);
      if (f == f_extra) {
        if (metadata_.extra.is_null()) metadata_.extra = json::object();
        auto [slot, inserted] = metadata_.extra.get_ref<json::object_t&>().try_emplace(std::string(key));
        if (!inserted) return false;  // duplicate
        return any_value(value_of_key, slot->second, 2);
      }
      if (!mark(f)) return false;
      const auto& base = kMetadataFields[static_cast<std::size_t>(f) - f_metadata_base];
      return nullable_string(value_of_key, metadata_.*base.member);
    });
  }

  bool execution(od::value& v) {
    bool present = false;
    return object_fields(v, 2, present, [&](std::string_view key, od::value& field_value) {
      const Field f = execution_field(key);
      if (!mark(f)) return false;
      switch (f) {
        case f_success: return nullable_bool(field_value, execution_.success);
        case f_retryable: return nullable_bool(field_value, execution_.retryable);
        case f_retry_count: return nullable_count(field_value, execution_.retry_count);
        case f_max_retries: return nullable_count(field_value, execution_.max_retries);
        case f_error: return error(field_value);
        default: return skip(field_value, 2);
      }
    });
  }

  bool error(od::value& v) {
    StepError e;
    bool present = false;
    const bool ok = object_fields(v, 3, present, [&](std::string_view key, od::value& field_value) {
      const Field f = error_field(key);
      if (!mark(f)) return false;
      switch (f) {
        case f_message: return nullable_string(field_value, e.message);
        case f_error_type: return nullable_string(field_value, e.error_type);
        default: return skip(field_value, 3);
      }
    });
    if (ok && present) execution_.error = std::move(e);
    return ok;
  }

  // A boolean that may be null (the default stays).
  static bool nullable_bool(od::value& v, bool& out) {
    od::json_type type;
    if (!type_of(v, type)) return false;
    if (type == od::json_type::null) return true;
    return v.get_bool().get(out) == simdjson::SUCCESS;
  }

  // A count in [0, INT_MAX] that may be null (the default stays).
  static bool nullable_count(od::value& v, int& out) {
    od::json_type type;
    if (!type_of(v, type)) return false;
    if (type == od::json_type::null) return true;
    std::uint64_t n = 0;
    if (!read_unsigned(v, n) || n > static_cast<std::uint64_t>(INT_MAX)) return false;
    out = static_cast<int>(n);
    return true;
  }

  // A value the general path does not read: read all the same (see the top of the file).
  bool skip(od::value& v, std::size_t depth) {
    json ignored;
    return any_value(v, ignored, depth);
  }

  bool any_value(od::value& v, json& out, std::size_t depth) {
    od::json_type type;
    return type_of(v, type) && value(v, type, out, depth);
  }

  // Reads `v` (of `type`, a null already consumed) into `out` as nlohmann would; `depth` is the
  // nesting of the container that holds `v` (the envelope: 1). Objects are built with operator[],
  // so a duplicate key keeps its last value, as in the general path.
  bool value(od::value& v, od::json_type type, json& out, std::size_t depth) {
    switch (type) {
      case od::json_type::null: out = nullptr; return true;
      case od::json_type::boolean: {
        bool b = false;
        if (v.get_bool().get(b) != simdjson::SUCCESS) return false;
        out = b;
        return true;
      }
      case od::json_type::number: return read_number(v, out);
      case od::json_type::string: {
        std::string_view s;
        if (v.get_string().get(s) != simdjson::SUCCESS) return false;
        out = std::string(s);
        return true;
      }
      case od::json_type::object: {
        if (depth + 1 > max_depth_) return false;
        od::object obj;
        if (v.get_object().get(obj) != simdjson::SUCCESS) return false;
        out = json::object();
        auto& members = out.get_ref<json::object_t&>();
        for (auto item : obj) {
          od::field field;
          std::string_view key;
          if (std::move(item).get(field) != simdjson::SUCCESS ||
              field.unescaped_key().get(key) != simdjson::SUCCESS) {
            return false;
          }
          if (!any_value(field.value(), members[std::string(key)], depth + 1)) return false;
        }
        return true;
      }
      case od::json_type::array: {
        if (depth + 1 > max_depth_) return false;
        od::array arr;
        if (v.get_array().get(arr) != simdjson::SUCCESS) return false;
        out = json::array();
        auto& elements = out.get_ref<json::array_t&>();
        for (auto item : arr) {
          od::value element;
          if (std::move(item).get(element) != simdjson::SUCCESS) return false;
          if (!any_value(element, elements.emplace_back(), depth + 1)) return false;
        }
        return true;
      }
    }
    return false;
  }

  std::size_t max_depth_;
  std::uint32_t seen_ = 0;

  WireHeader header_;
  std::string event_id_;
  std::string event_name_;
  json payload_ = json::object();
  EventMetadata metadata_;
  ExecutionResult execution_;
};

// A parser and a padded copy of the input. On-Demand reads up to SIMDJSON_PADDING bytes past
// the end of the input, and ZeroMQ frames have no such slack. One per thread: a parser is not
// thread-safe, and keeping it keeps its buffers (structural index, unescaped strings).
struct Workspace {
  od::parser parser;
  std::unique_ptr<char[]> input;
  std::size_t input_capacity = 0;  // bytes, padding included

  // The document of `body`; an error when memory runs out or the input is not JSON.
  simdjson::simdjson_result<od::document> iterate(std::string_view body) {
    const std::size_t needed = body.size() + simdjson::SIMDJSON_PADDING;
    if (input_capacity < needed) {
      const std::size_t capacity = std::max<std::size_t>(needed + needed / 4, 4096);
      input.reset(new (std::nothrow) char[capacity]);
      input_capacity = input ? capacity : 0;
      if (!input) return simdjson::MEMALLOC;
    }
    if (parser.capacity() < body.size()) {  // grow in steps, not to every new largest size
      if (auto e = parser.allocate(input_capacity - simdjson::SIMDJSON_PADDING)) return e;
    }
    std::memcpy(input.get(), body.data(), body.size());
    // Zeros after the end: never mistaken for a closing bracket (simdjson issue 1834).
    std::memset(input.get() + body.size(), 0, simdjson::SIMDJSON_PADDING);
    return parser.iterate(input.get(), body.size(), input_capacity);
  }
};

// Bodies up to this size use the thread's workspace, which keeps its capacity (about eight bytes
// per byte of the largest body seen: the copy, a 32-bit structural index per byte, the string
// buffer), so at most about 2 MiB per thread; a larger body gets a workspace of its own for the
// call (its allocation is small next to parsing it).
constexpr std::size_t kRetainedCapacity = std::size_t{256} << 10;

}  // namespace

std::optional<WireMessage> decode_json_envelope_fast(std::string_view topic, std::string_view body,
                                                     std::size_t max_depth) noexcept {
  try {
    thread_local Workspace thread_workspace;
    std::unique_ptr<Workspace> own;
    Workspace* workspace = &thread_workspace;
    if (body.size() > kRetainedCapacity) {
      own = std::make_unique<Workspace>();
      workspace = own.get();
    }
    od::document doc;
    if (workspace->iterate(body).get(doc) != simdjson::SUCCESS) return std::nullopt;
    Decoder decoder(max_depth);
    if (!decoder.envelope(doc)) return std::nullopt;
    return decoder.finish(topic);
  } catch (...) {  // allocation failures, an invalid event in from_fields: the general path
    return std::nullopt;
  }
}

}  // namespace herald::detail
