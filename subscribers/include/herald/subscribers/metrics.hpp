// MetricsSubscriber: counts the events it receives by event name, by namespace and by the
// outcome of the step that caused them, and renders the counts as JSON or in the Prometheus
// text exposition format (version 0.0.4).
//
// Step outcome rule, the same as the publishers' conditions: success -> "success"; failed,
// retryable and retry_count < max_retries (ExecutionResult::will_retry) -> "retryable_failure";
// any other failure -> "permanent_failure".
#pragma once

#include <herald/subscribers/subscriber.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace herald {

enum class StepOutcome { success, retryable_failure, permanent_failure };
std::string_view to_string(StepOutcome outcome) noexcept;
/// The rule in the header comment.
StepOutcome step_outcome_of(const ExecutionResult& result) noexcept;

/// Escapes a Prometheus label value: backslash, double quote and newline.
std::string escape_prometheus_label(std::string_view value);

/// Thread safe: handle() may run while other threads read snapshot(), prometheus_text() or
/// call write_file().
class MetricsSubscriber : public Subscriber {
 public:
  /// With a path, on_stop() writes prometheus_text() there (atomically: temp file + rename).
  MetricsSubscriber(std::string name, std::vector<std::string> patterns,
                    std::optional<std::filesystem::path> path = std::nullopt,
                    SubscribeOptions options = hosted_subscribe_options());

  std::string name() const override { return name_; }
  std::vector<std::string> subscribes_to() const override { return patterns_; }
  SubscribeOptions subscribe_options() const override;
  SubscriberResult handle(const EventPtr& event) override;
  /// Counts every event of a run of consecutive events under one lock (never fails; `outcomes`
  /// stay handled). For a batch-capable host (EventBus::subscribe_batch).
  SubscriberResult handle_batch(std::span<const EventPtr> events, std::span<HandleOutcome> outcomes) override;
  bool handles_batches() const override { return true; }
  /// Writes the file when a path was given (errors propagate to the registry, which logs them).
  void on_stop() override;

  /// {"total": n, "by_event_name": {name: n}, "by_namespace": {ns: n},
  ///  "by_outcome": {"success": n, "retryable_failure": n, "permanent_failure": n}}.
  nlohmann::json snapshot() const;
  /// herald_events_total{event_name=...}, herald_events_by_namespace_total{namespace=...},
  /// herald_step_outcomes_total{outcome=...} (all three outcomes always present), each with
  /// # HELP and # TYPE ... counter lines, names and label values sorted.
  std::string prometheus_text() const;
  std::uint64_t total() const;

  /// Writes prometheus_text() to the configured path (Error if none was given) or to `path`:
  /// a temporary file in the same directory, fsynced, then renamed over the target, so readers
  /// see the old or the new file, never a partial one. Throws Error naming the path and reason.
  void write_file() const;
  void write_file(const std::filesystem::path& path) const;
  const std::optional<std::filesystem::path>& path() const noexcept { return path_; }

 private:
  void count_locked(const DomainEvent& event);

  std::string name_;
  std::vector<std::string> patterns_;
  std::optional<std::filesystem::path> path_;
  SubscribeOptions options_;

  mutable std::mutex mutex_;
  std::uint64_t total_ = 0;
  std::map<std::string, std::uint64_t, std::less<>> by_name_;
  std::map<std::string, std::uint64_t, std::less<>> by_namespace_;
  std::uint64_t by_outcome_[3] = {0, 0, 0};
  // The counters the last event hit (nodes of the maps above; never invalidated, as nothing is
  // ever erased from them).
  std::pair<const std::string, std::uint64_t>* last_name_ = nullptr;
  std::pair<const std::string, std::uint64_t>* last_namespace_ = nullptr;
};

}  // namespace herald
