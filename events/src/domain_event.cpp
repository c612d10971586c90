#include <herald/events/domain_event.hpp>

#include <herald/events/detail/metadata_fields.hpp>
#include <herald/events/error.hpp>
#include <herald/events/ids.hpp>
#include <herald/events/json_fields.hpp>
#include <herald/events/pattern.hpp>

#include "json_codec.hpp"

#include <array>
#include <charconv>
#include <climits>
#include <string_view>

namespace herald {

namespace jf = json_fields;
using nlohmann::json;

using detail::kMetadataFields;

json EventMetadata::to_json() const {
  json j = json::object();
  // Extra first, then base fields on top: a stale copy of a base field in `extra` can never
  // contradict the typed field.
  if (extra.is_object()) j = extra;
  for (const auto& f : kMetadataFields) j[f.name.data()] = this->*f.member;
  return j;
}

bool operator==(const EventMetadata& a, const EventMetadata& b) {
  const auto no_extra = [](const json& e) { return e.is_null() || (e.is_object() && e.empty()); };
  const bool extras_equal = (no_extra(a.extra) && no_extra(b.extra)) || a.extra == b.extra;
  if (!extras_equal) return false;
  for (const auto& f : kMetadataFields) {
    if (a.*f.member != b.*f.member) return false;
  }
  return true;
}

EventMetadata EventMetadata::from_json(const json& j, std::string_view path) {
  jf::require_object(j, path);
  EventMetadata m;
  for (const auto& f : kMetadataFields) {
    m.*f.member = jf::optional_string(j, f.name, path).value_or("");
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!detail::metadata_field_index(it.key())) m.extra[it.key()] = it.value();
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

DomainEvent::DomainEvent(Passkey, std::string&& event_id, std::string&& event_name, json&& payload,
                         EventMetadata&& metadata, ExecutionResult&& execution_result)
    : event_id_(std::move(event_id)),
      event_name_(std::move(event_name)),
      payload_(std::move(payload)),
      metadata_(std::move(metadata)),
      execution_result_(std::move(execution_result)) {}

EventPtr DomainEvent::create(std::string event_name, json payload, EventMetadata metadata,
                             ExecutionResult execution_result) {
  validate_event_name(event_name);
  const auto now = std::chrono::system_clock::now();  // one clock read for id and fired_at
  if (metadata.fired_at.empty()) metadata.fired_at = format_rfc3339_ms(now);
  return std::make_shared<const DomainEvent>(Passkey{}, new_uuid_v7(now), std::move(event_name),
                                             std::move(payload), std::move(metadata),
                                             std::move(execution_result));
}

namespace {
struct EventParts {
  std::string event_id;
  std::string event_name;
  json payload = json::object();
  EventMetadata metadata;
  ExecutionResult result;
};

// Reads and validates everything but the payload; from_json(const&) copies the payload,
// from_json(&&) moves it.
EventParts event_parts(const json& j) {
  jf::require_object(j, "event");
  EventParts parts;
  parts.event_id = jf::required_string(j, "event_id");
  if (parts.event_id.empty()) throw ValidationError("event_id", "must not be empty");
  parts.event_name = jf::required_string(j, "event_name");
  validate_event_name(parts.event_name);
  if (const json* m = jf::find(j, "metadata")) parts.metadata = EventMetadata::from_json(*m);
  if (const json* r = jf::find(j, "execution_result")) parts.result = ExecutionResult::from_json(*r);
  return parts;
}
}  // namespace

EventPtr DomainEvent::from_json(const json& j) {
  auto parts = event_parts(j);
  if (const json* p = jf::find(j, "payload")) parts.payload = *p;
  return std::make_shared<const DomainEvent>(Passkey{}, std::move(parts.event_id),
                                             std::move(parts.event_name), std::move(parts.payload),
                                             std::move(parts.metadata), std::move(parts.result));
}

EventPtr DomainEvent::from_fields(std::string event_id, std::string event_name, json payload,
                                  EventMetadata metadata, ExecutionResult execution_result) {
  if (event_id.empty()) throw ValidationError("event_id", "must not be empty");
  validate_event_name(event_name);
  return std::make_shared<const DomainEvent>(Passkey{}, std::move(event_id), std::move(event_name),
                                             std::move(payload), std::move(metadata),
                                             std::move(execution_result));
}

EventPtr DomainEvent::from_json(json&& j) {
  auto parts = event_parts(j);
  if (auto it = j.find("payload"); it != j.end() && !it->is_null()) parts.payload = std::move(*it);
  return std::make_shared<const DomainEvent>(Passkey{}, std::move(parts.event_id),
                                             std::move(parts.event_name), std::move(parts.payload),
                                             std::move(parts.metadata), std::move(parts.result));
}

json DomainEvent::to_json() const {
  return json{{"event_id", event_id_},
              {"event_name", event_name_},
              {"event_version", kEventVersion},
              {"payload", payload_},
              {"metadata", metadata_.to_json()},
              {"execution_result", execution_result_.to_json()}};
}

namespace {

using detail::json_codec::append_json;         // exactly json::dump(-1, ' ', false, replace)
using detail::json_codec::append_json_integer;
using detail::json_codec::append_json_string;  // the same for one string

}  // namespace

const std::string& DomainEvent::json_text() const {
  if (json_ready_.load(std::memory_order_acquire)) return json_text_;
  std::lock_guard lock(encode_mutex_);
  if (json_ready_.load(std::memory_order_relaxed)) return json_text_;
  {
    // Literals go in as string_views: append(const char*) measured a strlen per call (S7).
    using namespace std::string_view_literals;
    // The same bytes as to_json().dump(-1, ' ', false, replace) (keys in json's sorted order;
    // invalid UTF-8 replaced, never thrown), written directly: building to_json() first would
    // copy the payload and every field into a temporary tree only to serialise it.
    std::string out;
    out.reserve(512 + event_id_.size() + event_name_.size());
    out.append(R"({"event_id":)"sv);
    append_json_string(out, event_id_);
    out.append(R"(,"event_name":)"sv);
    append_json_string(out, event_name_);
    out.append(R"(,"event_version":")"sv);
    out.append(kEventVersion);  // a constant with nothing to escape
    out.push_back('"');
    out.append(R"(,"execution_result":{"error":)"sv);
    const auto& r = execution_result_;
    if (r.error) {
      out.append(R"({"error_type":)"sv);
      append_json_string(out, r.error->error_type);
      out.append(R"(,"message":)"sv);
      append_json_string(out, r.error->message);
      out.push_back('}');
    } else {
      out.append("null"sv);
    }
    out.append(R"(,"max_retries":)"sv);
    append_json_integer(out, r.max_retries);
    out.append(R"(,"retry_count":)"sv);
    append_json_integer(out, r.retry_count);
    out.append(R"(,"retryable":)"sv);
    out.append(r.retryable ? "true"sv : "false"sv);
    out.append(R"(,"success":)"sv);
    out.append(r.success ? "true"sv : "false"sv);
    out.append(R"(},"metadata":)"sv);
    const auto& m = metadata_;
    // One flat object, keys in json's sorted order: the base fields (already in order) merged
    // with `extra` (a std::map, in order too), a base field winning over an extra key of the
    // same name, exactly as to_json() builds it, but without building that tree per event.
    // kMetadataFieldsByKey walks the base fields in that order.
    constexpr auto& by_key = detail::kMetadataFieldsByKey;
    bool first = true;
    auto key = [&out, &first](std::string_view k) {
      out.push_back(first ? '{' : ',');
      first = false;
      append_json_string(out, k);
      out.push_back(':');
    };
    // The table's keys are plain ASCII identifiers (nothing to escape): copied as they are.
    auto base = [&](std::size_t b) {
      const auto& f = kMetadataFields[by_key[b]];
      out.push_back(first ? '{' : ',');
      first = false;
      out.push_back('"');
      out.append(f.name);
      out.append("\":"sv);
      append_json_string(out, m.*f.member);
    };
    std::size_t b = 0;
    if (m.extra.is_object()) {
      for (auto it = m.extra.begin(); it != m.extra.end(); ++it) {
        const std::string_view extra_key = it.key();
        while (b < by_key.size() && kMetadataFields[by_key[b]].name < extra_key) base(b++);
        if (b < by_key.size() && kMetadataFields[by_key[b]].name == extra_key) continue;
        key(extra_key);
        append_json(out, it.value());
      }
    }
    for (; b < by_key.size(); ++b) base(b);
    out.push_back('}');
    out.append(R"(,"payload":)"sv);
    append_json(out, payload_);
    out.push_back('}');
    json_text_ = std::move(out);
  }
  json_ready_.store(true, std::memory_order_release);
  return json_text_;
}

const std::vector<std::uint8_t>& DomainEvent::msgpack() const {
  if (msgpack_ready_.load(std::memory_order_acquire)) return msgpack_;
  std::lock_guard lock(encode_mutex_);
  if (!msgpack_ready_.load(std::memory_order_relaxed)) {
    msgpack_ = json::to_msgpack(to_json());
    msgpack_ready_.store(true, std::memory_order_release);
  }
  return msgpack_;
}

void to_json(json& j, const EventMetadata& m) { j = m.to_json(); }
void from_json(const json& j, EventMetadata& m) { m = EventMetadata::from_json(j); }
void to_json(json& j, const ExecutionResult& r) { j = r.to_json(); }
void to_json(json& j, const DomainEvent& e) { j = e.to_json(); }

}  // namespace herald
