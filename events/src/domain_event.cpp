#include <herald/events/domain_event.hpp>

#include <herald/events/error.hpp>
#include <herald/events/ids.hpp>
#include <herald/events/json_fields.hpp>
#include <herald/events/pattern.hpp>

#include <array>
#include <climits>
#include <string_view>

namespace herald {

namespace jf = json_fields;
using nlohmann::json;

namespace {
constexpr std::array<std::string_view, 7> kBaseMetadataKeys = {
    "task_uuid", "step_uuid", "step_name", "namespace", "correlation_id", "fired_at", "fired_by"};

bool is_base_metadata_key(std::string_view key) {
  for (auto k : kBaseMetadataKeys) {
    if (k == key) return true;
  }
  return false;
}
}  // namespace

json EventMetadata::to_json() const {
  json j = json::object();
  // Extra first, then base fields on top: a stale copy of a base field in `extra` can never
  // contradict the typed field.
  if (extra.is_object()) j = extra;
  j["task_uuid"] = task_uuid;
  j["step_uuid"] = step_uuid;
  j["step_name"] = step_name;
  j["namespace"] = namespace_name;
  j["correlation_id"] = correlation_id;
  j["fired_at"] = fired_at;
  j["fired_by"] = fired_by;
  return j;
}

EventMetadata EventMetadata::from_json(const json& j, std::string_view path) {
  jf::require_object(j, path);
  EventMetadata m;
  m.task_uuid = jf::optional_string(j, "task_uuid", path).value_or("");
  m.step_uuid = jf::optional_string(j, "step_uuid", path).value_or("");
  m.step_name = jf::optional_string(j, "step_name", path).value_or("");
  m.namespace_name = jf::optional_string(j, "namespace", path).value_or("");
  m.correlation_id = jf::optional_string(j, "correlation_id", path).value_or("");
  m.fired_at = jf::optional_string(j, "fired_at", path).value_or("");
  m.fired_by = jf::optional_string(j, "fired_by", path).value_or("");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!is_base_metadata_key(it.key())) m.extra[it.key()] = it.value();
  }
  return m;
}

ExecutionResult ExecutionResult::of(const StepCompletion& c) {
  return ExecutionResult{c.success, c.retryable, c.retry_count, c.max_retries, c.error};
}

json ExecutionResult::to_json() const {
  json j = {{"success", success}, {"retryable", retryable}, {"retry_count", retry_count},
            {"max_retries", max_retries}};
  j["error"] = error ? json{{"message", error->message}, {"error_type", error->error_type}}
                     : json(nullptr);
  return j;
}

ExecutionResult ExecutionResult::from_json(const json& j, std::string_view path) {
  jf::require_object(j, path);
  ExecutionResult r;
  r.success = jf::optional_bool(j, "success", path).value_or(true);
  r.retryable = jf::optional_bool(j, "retryable", path).value_or(false);
  r.retry_count = static_cast<int>(jf::optional_int(j, "retry_count", path, 0, INT_MAX).value_or(0));
  r.max_retries = static_cast<int>(jf::optional_int(j, "max_retries", path, 0, INT_MAX).value_or(0));
  if (const json* e = jf::find(j, "error")) {
    const auto epath = jf::join(path, "error");
    jf::require_object(*e, epath);
    r.error = StepError{jf::optional_string(*e, "message", epath).value_or(""),
                        jf::optional_string(*e, "error_type", epath).value_or("")};
  }
  return r;
}

DomainEvent::DomainEvent(Passkey, std::string event_id, std::string event_name, json payload,
                         EventMetadata metadata, ExecutionResult execution_result)
    : event_id_(std::move(event_id)),
      event_name_(std::move(event_name)),
      payload_(std::move(payload)),
      metadata_(std::move(metadata)),
      execution_result_(std::move(execution_result)) {}

EventPtr DomainEvent::create(std::string event_name, json payload, EventMetadata metadata,
                             ExecutionResult execution_result) {
  validate_event_name(event_name);
  if (metadata.fired_at.empty()) metadata.fired_at = now_rfc3339_ms();
  return std::make_shared<const DomainEvent>(Passkey{}, new_uuid_v7(), std::move(event_name),
                                             std::move(payload), std::move(metadata),
                                             std::move(execution_result));
}

EventPtr DomainEvent::from_json(const json& j) {
  jf::require_object(j, "event");
  auto event_id = jf::required_string(j, "event_id");
  if (event_id.empty()) throw ValidationError("event_id", "must not be empty");
  auto event_name = jf::required_string(j, "event_name");
  validate_event_name(event_name);
  json payload = json::object();
  if (const json* p = jf::find(j, "payload")) payload = *p;
  EventMetadata metadata;
  if (const json* m = jf::find(j, "metadata")) metadata = EventMetadata::from_json(*m);
  ExecutionResult result;
  if (const json* r = jf::find(j, "execution_result")) result = ExecutionResult::from_json(*r);
  return std::make_shared<const DomainEvent>(Passkey{}, std::move(event_id), std::move(event_name),
                                             std::move(payload), std::move(metadata),
                                             std::move(result));
}

json DomainEvent::to_json() const {
  return json{{"event_id", event_id_},
              {"event_name", event_name_},
              {"event_version", kEventVersion},
              {"payload", payload_},
              {"metadata", metadata_.to_json()},
              {"execution_result", execution_result_.to_json()}};
}

const std::string& DomainEvent::json_text() const {
  std::call_once(json_once_, [this] {
    // Invalid UTF-8 in a payload must not make encoding throw: replace it.
    json_text_ = to_json().dump(-1, ' ', false, json::error_handler_t::replace);
  });
  return json_text_;
}

const std::vector<std::uint8_t>& DomainEvent::msgpack() const {
  std::call_once(msgpack_once_, [this] { msgpack_ = json::to_msgpack(to_json()); });
  return msgpack_;
}

void to_json(json& j, const EventMetadata& m) { j = m.to_json(); }
void to_json(json& j, const ExecutionResult& r) { j = r.to_json(); }
void to_json(json& j, const DomainEvent& e) { j = e.to_json(); }

}  // namespace herald
