#include <herald/events/step_completion.hpp>

#include <herald/events/error.hpp>
#include <herald/events/json_fields.hpp>

#include <climits>

namespace herald {

namespace jf = json_fields;
using nlohmann::json;

StepCompletion StepCompletion::from_json(const json& j) {
  jf::require_object(j, "step completion");
  StepCompletion c;
  c.step_name = jf::required_string(j, "step_name");
  if (c.step_name.empty()) throw ValidationError("step_name", "must not be empty");
  c.success = jf::required_bool(j, "success");
  c.task_uuid = jf::optional_string(j, "task_uuid").value_or("");
  c.step_uuid = jf::optional_string(j, "step_uuid").value_or("");
  c.namespace_name = jf::optional_string(j, "namespace").value_or("");
  c.correlation_id = jf::optional_string(j, "correlation_id").value_or("");
  c.retryable = jf::optional_bool(j, "retryable").value_or(false);
  c.retry_count = static_cast<int>(jf::optional_int(j, "retry_count", "", 0, INT_MAX).value_or(0));
  c.max_retries = static_cast<int>(jf::optional_int(j, "max_retries", "", 0, INT_MAX).value_or(0));
  if (const json* r = jf::find(j, "result")) c.result = *r;  // any JSON value
  c.metadata = jf::optional_object(j, "metadata");
  if (const json* e = jf::find(j, "error")) {
    if (e->is_string()) {  // shorthand: "error": "card declined"
      c.error = StepError{e->get<std::string>(), ""};
    } else {
      jf::require_object(*e, "error");
      c.error = StepError{jf::optional_string(*e, "message", "error").value_or(""),
                          jf::optional_string(*e, "error_type", "error").value_or("")};
    }
  }
  return c;
}

StepCompletion StepCompletion::parse(std::string_view json_text) {
  json j;
  try {
    j = jf::parse_bounded(json_text);
  } catch (const ParseError& e) {
    throw ParseError(std::string("invalid JSON: ") + e.what());
  }
  return from_json(j);
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
