// One-pass decoding of the usual JSON envelope: a SAX handler that writes the wire header and the
// event's typed fields directly, so that a received message is not first built into a JSON tree
// (a node and a string per field) only to be copied into the event and thrown away. The payload
// (and extra metadata keys) are built as JSON values by json_codec's DOM builder, the same values
// the general path builds. Anything outside the usual shape gives up; see wire_fast.hpp.
#include "wire_fast.hpp"

#include "json_codec.hpp"

#include <herald/events/detail/metadata_fields.hpp>
#include <herald/events/pattern.hpp>

#include <nlohmann/json.hpp>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace herald::detail {

namespace {

using nlohmann::json;
using DomBuilder = json_codec::DomBuilder;

// Where the next key belongs.
enum class Where : std::uint8_t { top, metadata, execution, error };

// What the value after the last key is. Top-level fields, metadata fields, execution_result
// fields and error fields have their own ranges so one bit mask can catch duplicates.
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
  f_ignore = 64,  // a key the general path does not read: skipped
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

bool is_metadata_base(Field f) {
  return static_cast<std::size_t>(f) - f_metadata_base < kMetadataFieldCount;  // unsigned: below wraps
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

class Decoder {
 public:
  explicit Decoder(std::size_t max_depth) : max_depth_(max_depth) {}

  // --- SAX interface (json_codec::read_json). Returning false stops parsing: give up.
  bool null() {
    if (capturing()) return forward([](DomBuilder& b) { return b.null(); });
    if (skip_ > 0) return true;
    switch (pending_) {
      case f_ignore: return done();
      case f_payload: return done();  // null payload: the default, {}
      case f_extra: metadata_.extra[extra_key_] = nullptr; return done();
      case f_name_seq: return done();  // null: absent
      case f_metadata: case f_execution_result: case f_error: return done();  // defaults
      case f_success: case f_retryable: case f_retry_count: case f_max_retries: return done();
      case f_message: case f_error_type: error_string(pending_).clear(); return done();
      default:
        if (is_metadata_base(pending_)) {
          metadata_string(pending_).clear();
          return done();
        }
        return false;  // a required field that is null: missing
    }
  }

  bool boolean(bool v) {
    if (capturing()) return forward([&](DomBuilder& b) { return b.boolean(v); });
    if (skip_ > 0) return true;
    switch (pending_) {
      case f_ignore: return done();
      case f_payload: payload_ = v; return done();
      case f_extra: metadata_.extra[extra_key_] = v; return done();
      case f_success: execution_.success = v; return done();
      case f_retryable: execution_.retryable = v; return done();
      default: return false;
    }
  }

  bool number_integer(std::int64_t v) {  // negative integers
    if (capturing()) return forward([&](DomBuilder& b) { return b.number_integer(v); });
    if (skip_ > 0) return true;
    switch (pending_) {
      case f_ignore: return done();
      case f_payload: payload_ = v; return done();
      case f_extra: metadata_.extra[extra_key_] = v; return done();
      default: return false;
    }
  }

  bool number_unsigned(std::uint64_t v) {
    if (capturing()) return forward([&](DomBuilder& b) { return b.number_unsigned(v); });
    if (skip_ > 0) return true;
    switch (pending_) {
      case f_ignore: return done();
      case f_payload: payload_ = v; return done();
      case f_extra: metadata_.extra[extra_key_] = v; return done();
      case f_wire_version:
        if (v != static_cast<std::uint64_t>(kWireVersion)) return false;
        return done();
      case f_seq:
        if (v == 0) return false;
        header_.seq = v;
        return done();
      case f_name_seq:
        if (v == 0) return false;
        header_.name_seq = v;
        return done();
      case f_retry_count:
      case f_max_retries:
        if (v > static_cast<std::uint64_t>(INT_MAX)) return false;
        (pending_ == f_retry_count ? execution_.retry_count : execution_.max_retries) = static_cast<int>(v);
        return done();
      default: return false;
    }
  }

  bool number_float(double v, const std::string& s) {
    if (capturing()) return forward([&](DomBuilder& b) { return b.number_float(v, s); });
    if (skip_ > 0) return true;
    switch (pending_) {
      case f_ignore: return done();
      case f_payload: payload_ = v; return done();
      case f_extra: metadata_.extra[extra_key_] = v; return done();
      default: return false;  // integral floats for counts etc.: the general path decides
    }
  }

  bool string(std::string& v) {
    if (capturing()) return forward([&](DomBuilder& b) { return b.string(v); });
    if (skip_ > 0) return true;
    switch (pending_) {
      case f_ignore: return done();
      case f_payload: payload_ = std::move(v); return done();
      case f_extra: metadata_.extra[extra_key_] = std::move(v); return done();
      case f_publisher_id:
        if (v.empty()) return false;
        header_.publisher_id = std::move(v);
        return done();
      case f_event_id:
        if (v.empty()) return false;
        event_id_ = std::move(v);
        return done();
      case f_event_name: event_name_ = std::move(v); return done();
      case f_message: case f_error_type: error_string(pending_) = std::move(v); return done();
      default:
        if (is_metadata_base(pending_)) {
          metadata_string(pending_) = std::move(v);
          return done();
        }
        return false;
    }
  }

  bool binary(json::binary_t&) { return false; }  // not in JSON text

  bool start_object(std::size_t n) {
    if (++depth_ > max_depth_) return false;
    if (capturing()) {
      ++capture_depth_;
      return forward([&](DomBuilder& b) { return b.start_object(n); });
    }
    if (skip_ > 0) {
      ++skip_;
      return true;
    }
    if (!started_) {
      started_ = true;
      where_ = Where::top;
      pending_ = f_ignore;
      return true;
    }
    switch (pending_) {
      case f_ignore: skip_ = 1; return true;
      case f_payload: return capture(payload_, [&](DomBuilder& b) { return b.start_object(n); });
      case f_extra:
        return capture(metadata_.extra[extra_key_], [&](DomBuilder& b) { return b.start_object(n); });
      case f_metadata: where_ = Where::metadata; return true;
      case f_execution_result: where_ = Where::execution; return true;
      case f_error:
        where_ = Where::error;
        error_.emplace();
        return true;
      default: return false;
    }
  }

  bool start_array(std::size_t n) {
    if (++depth_ > max_depth_) return false;
    if (capturing()) {
      ++capture_depth_;
      return forward([&](DomBuilder& b) { return b.start_array(n); });
    }
    if (skip_ > 0) {
      ++skip_;
      return true;
    }
    switch (pending_) {
      case f_ignore: skip_ = 1; return true;
      case f_payload: return capture(payload_, [&](DomBuilder& b) { return b.start_array(n); });
      case f_extra:
        return capture(metadata_.extra[extra_key_], [&](DomBuilder& b) { return b.start_array(n); });
      default: return false;  // not a top-level array, nor an array where an object belongs
    }
  }

  bool end_object() { return end([](DomBuilder& b) { return b.end_object(); }); }
  bool end_array() { return end([](DomBuilder& b) { return b.end_array(); }); }

  bool key(std::string& k) {
    if (capturing()) return forward([&](DomBuilder& b) { return b.key(k); });
    if (skip_ > 0) return true;
    Field f = f_ignore;
    switch (where_) {
      case Where::top: f = top_field(k); break;
      case Where::metadata:
        f = metadata_field(k);
        if (f == f_extra) {
          if (metadata_.extra.contains(k)) return false;  // duplicate
          extra_key_ = std::move(k);
        }
        break;
      case Where::execution: f = execution_field(k); break;
      case Where::error: f = error_field(k); break;
    }
    if (f < f_count) {  // unknown keys are ignored however often they repeat
      const std::uint32_t bit = 1u << f;
      if (seen_ & bit) return false;  // duplicate key: the general path keeps the last one
      seen_ |= bit;
    }
    pending_ = f;
    return true;
  }

  template <class Exception>
  bool parse_error(std::size_t, const std::string&, const Exception&) {
    return false;
  }

  // --- the result, after a successful parse
  std::optional<WireMessage> finish(std::string_view topic) {
    constexpr std::uint32_t required = (1u << f_wire_version) | (1u << f_publisher_id) |
                                       (1u << f_seq) | (1u << f_event_id) | (1u << f_event_name);
    if (!started_ || depth_ != 0 || (seen_ & required) != required) return std::nullopt;
    // A null required field was refused above; a null event_name or event_id too.
    if (event_name_ != topic || !is_valid_event_name(event_name_)) return std::nullopt;
    if (error_) execution_.error = std::move(error_);
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
  bool capturing() const { return builder_.has_value(); }

  template <class F>
  bool forward(F&& f) {
    return f(*builder_);
  }

  // Starts building a container value into `target` (depth is bounded here, not there).
  template <class F>
  bool capture(json& target, F&& first) {
    builder_.emplace(target);
    capture_depth_ = 1;
    return first(*builder_);
  }

  template <class F>
  bool end(F&& f) {
    --depth_;
    if (capturing()) {
      const bool ok = f(*builder_);
      if (--capture_depth_ == 0) {
        builder_.reset();
        done();
      }
      return ok;
    }
    if (skip_ > 0) {
      if (--skip_ == 0) done();
      return true;
    }
    switch (where_) {
      case Where::top: return depth_ == 0;  // the envelope's end
      case Where::metadata: where_ = Where::top; break;
      case Where::execution: where_ = Where::top; break;
      case Where::error: where_ = Where::execution; break;
    }
    return done();
  }

  bool done() {
    pending_ = f_ignore;
    return true;
  }

  // `f` is a metadata base field (is_metadata_base).
  std::string& metadata_string(Field f) { 
    return metadata_.*kMetadataFields[static_cast<std::size_t>(f) - f_metadata_base].member;
  }

  std::string& error_string(Field f) { return f == f_message ? error_->message : error_->error_type; }

  std::size_t max_depth_;
  std::size_t depth_ = 0;
  bool started_ = false;
  Where where_ = Where::top;
  Field pending_ = f_ignore;
  std::uint32_t seen_ = 0;
  std::size_t skip_ = 0;           // > 0: inside a skipped container, its nesting
  std::optional<DomBuilder> builder_;
  std::size_t capture_depth_ = 0;  // nesting inside the captured container
  std::string extra_key_;

  WireHeader header_;
  std::string event_id_;
  std::string event_name_;
  json payload_ = json::object();
  EventMetadata metadata_;
  ExecutionResult execution_;
  std::optional<StepError> error_;
};

}  // namespace

std::optional<WireMessage> decode_json_envelope_fast(std::string_view topic, std::string_view body,
                                                     std::size_t max_depth) noexcept {
  try {
    Decoder decoder(max_depth);
    if (json_codec::read_json(body, decoder) != json_codec::ReadStatus::ok) return std::nullopt;
    return decoder.finish(topic);
  } catch (...) {  // allocation failures: the general path
    return std::nullopt;
  }
}

}  // namespace herald::detail
