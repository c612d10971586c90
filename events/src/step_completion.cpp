#include <herald/events/step_completion.hpp>

#include <herald/events/error.hpp>
#include <herald/events/json_fields.hpp>

#include <climits>
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

StepCompletion StepCompletion::parse(std::string_view json_text) {
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
