// StepCompletion: what a worker reports when it finishes a step; the input of publishing.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace herald {

/// The error a failed step reported.
struct StepError {
  std::string message;
  std::string error_type;
  friend bool operator==(const StepError&, const StepError&) = default;
};

/// A step's completion. Plain value type; copy it freely.
struct StepCompletion {
  std::string task_uuid;
  std::string step_uuid;
  std::string step_name;       ///< required, non-empty
  std::string namespace_name;  ///< JSON key "namespace"
  std::string correlation_id;
  bool success = false;  ///< required in JSON
  bool retryable = false;
  int retry_count = 0;
  int max_retries = 0;
  nlohmann::json result = nlohmann::json::object();
  nlohmann::json metadata = nlohmann::json::object();
  std::optional<StepError> error;

  /// Failed, retryable and retries left: the step will run again.
  bool will_retry() const noexcept { return !success && retryable && retry_count < max_retries; }

  /// Parses and validates; throws ValidationError naming the field ("step_name: expected string,
  /// got number", "success: required field is missing"). Unknown keys are ignored so that
  /// producers may add fields.
  static StepCompletion from_json(const nlohmann::json& j);
  /// Parses JSON text; throws ParseError for bad JSON, ValidationError for bad fields.
  static StepCompletion parse(std::string_view json_text);
  nlohmann::json to_json() const;

  friend bool operator==(const StepCompletion&, const StepCompletion&) = default;
};

// ADL hooks so that nlohmann::json converts StepCompletion both ways.
void to_json(nlohmann::json& j, const StepCompletion& c);
void from_json(const nlohmann::json& j, StepCompletion& c);

}  // namespace herald
