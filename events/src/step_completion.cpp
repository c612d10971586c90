#include <herald/events/step_completion.hpp>

#include <herald/events/error.hpp>
#include <herald/events/json_fields.hpp>

#include "json_codec.hpp"

#include <array>
#include <climits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace herald {

namespace jf = json_fields;
using nlohmann::json;

namespace {

// One reader for both entry points: from_json(const json&) copies the fields out of the tree;
// parse() owns the tree it just built and moves them (strings, result, metadata), which saves
// an allocation and a copy per field on the path every completion of `herald run` takes.
// Validation and its order are the same either way: a field that is missing, null or of the
// wrong type goes through the shared json_fields helpers, which name it in the error.
template <bool Move>
using Tree = std::conditional_t<Move, json&, const json&>;

template <bool Move>
std::string take_string(Tree<Move> j, std::string_view key, bool required) {
  if (auto it = j.find(key); it != j.end() && it->is_string()) {
    if constexpr (Move) {
      return std::move(it->template get_ref<std::string&>());
    } else {
      return it->template get_ref<const std::string&>();
    }
  }
  if (required) return jf::required_string(j, key);
  return jf::optional_string(j, key).value_or("");
}

template <bool Move>
StepCompletion read_completion(Tree<Move> j) {
  jf::require_object(j, "step completion");
  StepCompletion c;
  c.step_name = take_string<Move>(j, "step_name", true);
  if (c.step_name.empty()) throw ValidationError("step_name", "must not be empty");
  c.success = jf::required_bool(j, "success");
  c.task_uuid = take_string<Move>(j, "task_uuid", false);
  c.step_uuid = take_string<Move>(j, "step_uuid", false);
  c.namespace_name = take_string<Move>(j, "namespace", false);
  c.correlation_id = take_string<Move>(j, "correlation_id", false);
  c.retryable = jf::optional_bool(j, "retryable").value_or(false);
  c.retry_count = static_cast<int>(jf::optional_int(j, "retry_count", "", 0, INT_MAX).value_or(0));
  c.max_retries = static_cast<int>(jf::optional_int(j, "max_retries", "", 0, INT_MAX).value_or(0));
  if (auto it = j.find("result"); it != j.end() && !it->is_null()) {  // any JSON value
    if constexpr (Move) {
      c.result = std::move(*it);
    } else {
      c.result = *it;
    }
  }
  if (auto it = j.find("metadata"); it != j.end() && it->is_object()) {
    if constexpr (Move) {
      c.metadata = std::move(*it);
    } else {
      c.metadata = *it;
    }
  } else {
    c.metadata = jf::optional_object(j, "metadata");  // missing or null: {}; else the error
  }
  if (const json* e = jf::find(j, "error")) {
    if (e->is_string()) {  // shorthand: "error": "card declined"
      c.error = StepError{take_string<Move>(j, "error", true), ""};
    } else {
      jf::require_object(*e, "error");
      c.error = StepError{jf::optional_string(*e, "message", "error").value_or(""),
                          jf::optional_string(*e, "error_type", "error").value_or("")};
    }
  }
  return c;
}

}  // namespace

StepCompletion StepCompletion::from_json(const json& j) { return read_completion<false>(j); }

// The fast path of parse(): reads the text once (json_codec's reader), keeps the top-level
// object's values in one slot per known key instead of a json object (no tree node and no key
// string per field; a repeated key overwrites its slot, as in the tree), builds a json value only
// for result, metadata, error and unknown keys, and fills the completion when every field has
// the shape it must have. Anything else (not JSON, not an object, too deep, a field of the wrong
// type or out of range) returns nullopt, and parse() takes the general path, which words the
// error exactly as before.
class CompletionSlots {
 public:
  // The string-typed fields first: kTextSlots of them.
  enum Slot : std::uint8_t {
    step_name, task_uuid, step_uuid, namespace_name, correlation_id, success, retryable,
    retry_count, max_retries, result, metadata, error, other, kSlots
  };
  static constexpr std::size_t kTextSlots = 5;

  static std::optional<StepCompletion> read(std::string_view text) {
    CompletionSlots slots;
    if (detail::json_codec::read_json(text, slots) != detail::json_codec::ReadStatus::ok ||
        !slots.object_) {
      return std::nullopt;
    }
    return slots.complete();
  }

  bool null() { return value([](auto& b) { return b.null(); }); }
  bool boolean(bool v) { return value([v](auto& b) { return b.boolean(v); }); }
  bool number_integer(std::int64_t v) { return value([v](auto& b) { return b.number_integer(v); }); }
  bool number_unsigned(std::uint64_t v) { return value([v](auto& b) { return b.number_unsigned(v); }); }
  bool number_float(double v, const std::string& t) {
    return value([v, &t](auto& b) { return b.number_float(v, t); });
  }
  bool string(std::string& v) {
    if (level_ == 1 && current_ < kTextSlots) {
      // A top-level string field: straight into its std::string, no json string in between.
      text_[current_] = std::move(v);
      text_set_[current_] = true;
      slots_[current_] = nullptr;
      return true;
    }
    return value([&v](auto& b) { return b.string(v); });
  }
  bool binary(json::binary_t&) { return false; }
  bool key(std::string& k) {
    if (level_ > 1) return sub_.key(k);
    Slot slot = other;
    static constexpr std::array<std::string_view, other> kKeys = {
        "step_name", "task_uuid", "step_uuid", "namespace", "correlation_id", "success",
        "retryable", "retry_count", "max_retries", "result", "metadata", "error"};
    for (std::size_t i = 0; i < kKeys.size(); ++i) {
      if (kKeys[i] == k) {
        slot = static_cast<Slot>(i);
        break;
      }
    }
    current_ = slot;
    text_set_[slot] = false;  // a repeated key: the last value wins, whatever its type
    sub_.reset(slots_[slot]);
    return true;
  }
  bool start_object(std::size_t n) {
    if (level_ == 0) {
      level_ = 1;
      object_ = true;
      return true;
    }
    ++level_;
    return sub_.start_object(n);
  }
  bool start_array(std::size_t n) {
    if (level_ == 0) return false;  // not an object: the general path says so
    ++level_;
    return sub_.start_array(n);
  }
  bool end_object() {
    if (--level_ == 0) return true;
    return sub_.end_object();
  }
  bool end_array() {
    --level_;
    return sub_.end_array();
  }

 private:
  template <class F>
  bool value(F&& put) {
    if (level_ == 0) return false;  // a scalar text: the general path words the error
    return put(sub_);
  }

  // A string field: its text when the (last) value was a string, "" when absent or null.
  bool take_text(Slot slot, std::string& out) {
    if (text_set_[slot]) {
      out = std::move(text_[slot]);
      return true;
    }
    return slots_[slot].is_null();
  }
  static bool take(json& slot, bool& out) {
    if (slot.is_null()) return true;
    if (!slot.is_boolean()) return false;
    out = slot.get<bool>();
    return true;
  }
  static bool take(json& slot, int& out) {
    if (slot.is_null()) return true;
    if (!slot.is_number_unsigned()) return false;  // negative, float: the general path
    const auto v = slot.get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(INT_MAX)) return false;
    out = static_cast<int>(v);
    return true;
  }

  std::optional<StepCompletion> complete() {
    StepCompletion c;
    if (!text_set_[step_name] || !slots_[success].is_boolean()) return std::nullopt;
    if (!take_text(step_name, c.step_name) || c.step_name.empty()) return std::nullopt;
    c.success = slots_[success].get<bool>();
    if (!take_text(task_uuid, c.task_uuid) || !take_text(step_uuid, c.step_uuid) ||
        !take_text(namespace_name, c.namespace_name) ||
        !take_text(correlation_id, c.correlation_id) ||
        !take(slots_[retryable], c.retryable) || !take(slots_[retry_count], c.retry_count) ||
        !take(slots_[max_retries], c.max_retries)) {
      return std::nullopt;
    }
    if (!slots_[result].is_null()) c.result = std::move(slots_[result]);
    if (slots_[metadata].is_object()) {
      c.metadata = std::move(slots_[metadata]);
    } else if (!slots_[metadata].is_null()) {
      return std::nullopt;
    }
    json& e = slots_[error];
    if (e.is_string()) {
      c.error = StepError{std::move(e.get_ref<std::string&>()), ""};
    } else if (e.is_object()) {
      // The same reads as the general path (and the same errors, since they come last there).
      c.error = StepError{jf::optional_string(e, "message", "error").value_or(""),
                          jf::optional_string(e, "error_type", "error").value_or("")};
    } else if (!e.is_null()) {
      return std::nullopt;
    }
    return c;
  }

  std::array<json, kSlots> slots_;
  std::array<std::string, kTextSlots> text_;
  std::array<bool, kSlots> text_set_{};
  Slot current_ = other;
  detail::json_codec::DomBuilder sub_{slots_[other], json_fields::kMaxDepth - 1};
  int level_ = 0;
  bool object_ = false;
};

StepCompletion StepCompletion::parse(std::string_view json_text) {
  if (auto fast = CompletionSlots::read(json_text)) return std::move(*fast);
  json j;
  try {
    j = jf::parse_bounded(json_text);
  } catch (const ParseError& e) {
    throw ParseError(std::string("invalid JSON: ") + e.what());
  }
  return read_completion<true>(j);
}

json StepCompletion::to_json() const {
  json j = {{"task_uuid", task_uuid},     {"step_uuid", step_uuid},
            {"step_name", step_name},     {"namespace", namespace_name},
            {"correlation_id", correlation_id}, {"success", success},
            {"retryable", retryable},     {"retry_count", retry_count},
            {"max_retries", max_retries}, {"result", result},
            {"metadata", metadata}};
  j["error"] = error ? json{{"message", error->message}, {"error_type", error->error_type}}
                     : json(nullptr);
  return j;
}

void to_json(json& j, const StepCompletion& c) { j = c.to_json(); }
void from_json(const json& j, StepCompletion& c) { c = StepCompletion::from_json(j); }

}  // namespace herald
