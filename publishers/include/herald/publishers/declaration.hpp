// Event declarations: which events a step emits (a step's `publishes_events`), under which
// condition, on which road, by which publisher and with which payload schema.
#pragma once

#include <herald/events/step_completion.hpp>
#include <herald/publishers/schema.hpp>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace herald {

/// When a declared event fires, given the step's outcome.
enum class PublicationCondition {
  success,            ///< the step succeeded
  failure,            ///< the step failed (retryable or not)
  retryable_failure,  ///< failed, retryable and retries left (retry_count < max_retries)
  permanent_failure,  ///< failed and will not run again (not retryable, or retries exhausted)
  always,             ///< whatever the outcome
};

/// Which road a published event takes.
enum class DeliveryMode {
  in_process,  ///< the in-process EventBus (alias "fast")
  zeromq,      ///< the ZeroMQ transport only
  broadcast,   ///< the bus and every configured out-of-process road, as one event (one event_id)
  durable,     ///< the durable road only (PostgreSQL, transports/postgres): stored, never lost
};

std::string_view to_string(PublicationCondition condition) noexcept;
std::string_view to_string(DeliveryMode mode) noexcept;
/// Throw UnknownValueError naming the value and listing the accepted names.
PublicationCondition parse_publication_condition(std::string_view text);
/// Accepts "fast" as an alias of "in_process".
DeliveryMode parse_delivery_mode(std::string_view text);

/// True when an event declared with `condition` fires for `completion`.
bool condition_holds(PublicationCondition condition, const StepCompletion& completion) noexcept;

/// One entry of a step's `publishes_events`. Plain value type (the schema is shared, immutable).
struct EventDeclaration {
  std::string name;  ///< a valid event name (DESIGN.md decision 2)
  PublicationCondition condition = PublicationCondition::success;
  DeliveryMode delivery_mode = DeliveryMode::in_process;
  std::optional<std::string> publisher;  ///< publisher name; unset: chosen by the step
  std::optional<PayloadSchema> schema;

  /// Parses {"name", "condition"?, "delivery_mode"?, "publisher"?, "schema"?}. `path` locates
  /// the declaration in its document ("steps[0].publishes_events[1]"); every ValidationError's
  /// field is the full path of the offending key ("steps[0].publishes_events[1].condition").
  /// Rejects unknown keys with a "did you mean" hint, invalid event names (naming the name) and
  /// unknown condition or delivery-mode values.
  static EventDeclaration from_json(const nlohmann::json& j, std::string_view path = "");
  /// Every field, defaults included; `publisher` and `schema` only when set.
  nlohmann::json to_json() const;
};

void to_json(nlohmann::json& j, const EventDeclaration& declaration);
void from_json(const nlohmann::json& j, EventDeclaration& declaration);

}  // namespace herald
