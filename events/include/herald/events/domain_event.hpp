// DomainEvent: the immutable event that publishers build and subscribers and transports share.
#pragma once

#include <herald/events/step_completion.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald {

/// Who, where and when: the metadata every event carries. `extra` holds publisher-added and
/// step-supplied fields; in JSON they sit beside the base fields in one flat object.
/// The typed fields are listed once more, with their JSON keys, in
/// herald/events/detail/metadata_fields.hpp, which drives every conversion: a new field is a
/// member here and a row there.
struct EventMetadata {
  std::string task_uuid;
  std::string step_uuid;
  std::string step_name;
  std::string namespace_name;  ///< JSON key "namespace"
  std::string correlation_id;
  std::string fired_at;  ///< RFC 3339 UTC with milliseconds; set at creation when empty
  std::string fired_by;  ///< the publisher (or component) that fired the event
  /// null or an object. Left null until a key is added: an empty object would cost a heap
  /// allocation for every event created. Null and {} mean the same (no extra fields).
  nlohmann::json extra;

  /// Flat JSON object: base fields, then `extra` (extra keys do not override base fields).
  nlohmann::json to_json() const;
  /// Known keys go to the typed fields, everything else to `extra`. Throws ValidationError.
  static EventMetadata from_json(const nlohmann::json& j, std::string_view path = "metadata");
  friend bool operator==(const EventMetadata& a, const EventMetadata& b);
};

/// The outcome of the step that caused the event.
struct ExecutionResult {
  bool success = true;
  bool retryable = false;
  int retry_count = 0;
  int max_retries = 0;
  std::optional<StepError> error;

  /// Failed, retryable and retries left: the step will run again (StepCompletion::will_retry).
  bool will_retry() const noexcept { return !success && retryable && retry_count < max_retries; }

  static ExecutionResult of(const StepCompletion& completion);
  nlohmann::json to_json() const;
  static ExecutionResult from_json(const nlohmann::json& j,
                                   std::string_view path = "execution_result");
  friend bool operator==(const ExecutionResult&, const ExecutionResult&) = default;
};

class DomainEvent;
/// Events travel as shared immutable objects: every subscriber and transport sees the same one.
using EventPtr = std::shared_ptr<const DomainEvent>;

/// An immutable domain event. Build with create() (validates the name, assigns a UUID v7 id and
/// fired_at) or decode with from_json(). Thread safe: all accessors are const, and the cached
/// encodings are computed at most once each (under a mutex, then read through an atomic flag
/// without locking), however many threads ask.
/// Not copyable, not movable: share the EventPtr.
class DomainEvent {
  struct Passkey {};

 public:
  /// Validates `event_name` (EventNameError), generates event_id, sets metadata.fired_at to now
  /// when empty.
  static EventPtr create(std::string event_name, nlohmann::json payload = nlohmann::json::object(),
                         EventMetadata metadata = {}, ExecutionResult execution_result = {});

  /// Decodes the JSON form produced by to_json(); throws ValidationError naming the field or
  /// EventNameError for a bad name. Keys it does not know are ignored.
  static EventPtr from_json(const nlohmann::json& j);
  /// The same, taking the payload out of `j` instead of copying it (receivers that parsed `j`
  /// only to build the event). `j` is left valid but unspecified.
  static EventPtr from_json(nlohmann::json&& j);
  /// An event from already decoded fields (what from_json builds; receivers that decode the
  /// envelope themselves). Validates like from_json: event_id not empty (ValidationError),
  /// event_name valid (EventNameError). fired_at is kept as given, even when empty.
  static EventPtr from_fields(std::string event_id, std::string event_name, nlohmann::json payload,
                              EventMetadata metadata, ExecutionResult execution_result);

  // Rvalue references: the factories hand over what they own, and each field is moved once
  // (an event is built for every publish; EventMetadata alone is seven strings and a json).
  DomainEvent(Passkey, std::string&& event_id, std::string&& event_name, nlohmann::json&& payload,
              EventMetadata&& metadata, ExecutionResult&& execution_result);
  DomainEvent(const DomainEvent&) = delete;
  DomainEvent& operator=(const DomainEvent&) = delete;

  const std::string& event_id() const noexcept { return event_id_; }
  const std::string& event_name() const noexcept { return event_name_; }
  const nlohmann::json& payload() const noexcept { return payload_; }
  const EventMetadata& metadata() const noexcept { return metadata_; }
  const ExecutionResult& execution_result() const noexcept { return execution_result_; }

  /// {"event_id", "event_name", "event_version", "payload", "metadata", "execution_result"}.
  nlohmann::json to_json() const;
  /// Compact JSON text of to_json(), computed once.
  const std::string& json_text() const;
  /// MessagePack of to_json(), computed once.
  const std::vector<std::uint8_t>& msgpack() const;

  /// Version of the event's JSON shape (see docs/wire-format.md).
  static constexpr std::string_view kEventVersion = "1.0";

 private:
  std::string event_id_;
  std::string event_name_;
  nlohmann::json payload_;
  EventMetadata metadata_;
  ExecutionResult execution_result_;
  // Not std::call_once: glibc's pthread_once makes a futex_wake system call every time it runs
  // an initialiser, which is once per event on the transport path.
  mutable std::mutex encode_mutex_;
  mutable std::atomic<bool> json_ready_{false};
  mutable std::string json_text_;
  mutable std::atomic<bool> msgpack_ready_{false};
  mutable std::vector<std::uint8_t> msgpack_;
};

void to_json(nlohmann::json& j, const EventMetadata& m);
/// EventMetadata::from_json as nlohmann's ADL hook (j.get<EventMetadata>()).
void from_json(const nlohmann::json& j, EventMetadata& m);
void to_json(nlohmann::json& j, const ExecutionResult& r);
void to_json(nlohmann::json& j, const DomainEvent& e);

}  // namespace herald
