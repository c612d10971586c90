// The publishing pipeline (DESIGN.md "The flow"): for a step completion and the step's event
// declarations, decide which events fire, let the chosen publisher shape them, check their
// payload schema, build each event once and route it by delivery mode. Publishing never fails
// the step (DESIGN.md decision 4): every error is contained, handed to on_publish_error,
// counted and logged.
#pragma once

#include <herald/events/domain_event.hpp>
#include <herald/events/event_bus.hpp>
#include <herald/events/log.hpp>
#include <herald/events/step_completion.hpp>
#include <herald/events/transport.hpp>
#include <herald/publishers/declaration.hpp>
#include <herald/publishers/publisher.hpp>
#include <herald/publishers/registry.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace herald {

/// Sends an event down the road(s) its delivery mode names. Holds non-owning pointers: the bus
/// and the transports (the ZeroMQ one, `transport`, and the durable one) must outlive the
/// router. Thread safe: route() may run on many threads, and set_transport() / set_durable()
/// may swap a transport at any time (a route() in progress may still use the previous one, so
/// keep it alive until publishing has stopped).
class EventRouter {
 public:
  explicit EventRouter(EventBus* bus, Transport* transport = nullptr) noexcept
      : bus_(bus), transport_(transport) {}
  EventRouter(const EventRouter&) = delete;
  EventRouter& operator=(const EventRouter&) = delete;

  /// in_process: bus->publish; zeromq: transport->send; durable: durable->send (queued for the
  /// database: the durable transport's stats say when it is committed); broadcast: the same
  /// event object to the bus and to every configured out-of-process road (ZeroMQ and/or
  /// durable). Throws TransportError naming the event and the mode when a road is missing (no
  /// bus; no transport for zeromq; no durable road for durable; neither for broadcast) or
  /// refuses the event (bus stopped, transport send failed). A road that is missing delivers
  /// nothing; a broadcast whose send fails on one road was still delivered on the others (the
  /// error says so).
  void route(const EventPtr& event, DeliveryMode mode) const;

  EventBus* bus() const noexcept { return bus_; }
  Transport* transport() const noexcept { return transport_.load(std::memory_order_acquire); }
  void set_transport(Transport* transport) noexcept {
    transport_.store(transport, std::memory_order_release);
  }
  Transport* durable() const noexcept { return durable_.load(std::memory_order_acquire); }
  void set_durable(Transport* durable) noexcept { durable_.store(durable, std::memory_order_release); }

 private:
  void to_bus(const EventPtr& event, DeliveryMode mode) const;
  void to_transport(Transport& transport, const EventPtr& event, DeliveryMode mode) const;

  EventBus* bus_;
  std::atomic<Transport*> transport_;
  std::atomic<Transport*> durable_{nullptr};
};

/// Why a declared event was deliberately not published. Closed set; to_string gives the name
/// that PublishResult::to_json and the stats ("skipped_by_reason") use.
enum class SkipReason {
  condition,       ///< the declaration's condition does not hold for the completion
  should_publish,  ///< the publisher's should_publish returned false
  before_publish,  ///< the publisher's before_publish returned false
};
inline constexpr std::size_t kSkipReasonCount = 3;
std::string_view to_string(SkipReason reason) noexcept;
/// "condition" -> SkipReason::condition; throws UnknownValueError naming the value.
SkipReason parse_skip_reason(std::string_view text);

/// A declared event that was deliberately not published.
struct SkippedEvent {
  std::string name;
  SkipReason reason = SkipReason::condition;
  friend bool operator==(const SkippedEvent&, const SkippedEvent&) = default;
};

/// What one publish() call did, declaration by declaration.
struct PublishResult {
  /// Events handed to their road(s), in declaration order. An event whose after_publish threw
  /// is here and in `failed` (stage "after_publish").
  std::vector<EventPtr> published;
  std::vector<SkippedEvent> skipped;
  std::vector<PublishFailure> failed;

  bool ok() const noexcept { return failed.empty(); }
  /// {"published": [{"event_name", "event_id"}...], "skipped": [...], "failed": [{"stage",
  /// "event_name", "publisher", "message"}...]}
  nlohmann::json to_json() const;
};

/// Runs the publishing pipeline. Thread safe: publish() may be called from many threads at once
/// (publishers' hooks then run concurrently too); counters are atomics or guarded by a mutex.
/// The registry and the router must outlive the pipeline. Not copyable, not movable.
class PublishingPipeline {
 public:
  PublishingPipeline(PublisherRegistry& registry, EventRouter& router) noexcept
      : registry_(registry), router_(router) {}
  PublishingPipeline(const PublishingPipeline&) = delete;
  PublishingPipeline& operator=(const PublishingPipeline&) = delete;

  /// For each declaration whose condition holds: pick the publisher (the declared one, which
  /// must be registered; else registry.get_for_step; else the generic) -> should_publish ->
  /// transform_payload -> additional_metadata -> schema check -> build the event ->
  /// before_publish -> route by delivery mode -> after_publish.
  ///
  /// Event metadata: the base fields (task_uuid, step_uuid, step_name, namespace,
  /// correlation_id, fired_by = the publisher's name), then the step's `metadata`, then
  /// additional_metadata, later keys winning; then `publisher` (the publisher's name) and
  /// `event_version` ("1.0"), which are the pipeline's own and always win.
  ///
  /// Never throws: a failure at any stage is passed to the publisher's on_publish_error (an
  /// unknown declared publisher's to the generic one's), counted, logged (rate limited), and the
  /// remaining declarations still publish.
  PublishResult publish(const StepCompletion& completion,
                        const std::vector<EventDeclaration>& declarations) noexcept;

  std::uint64_t published_count() const noexcept;
  std::uint64_t skipped_count() const noexcept;
  std::uint64_t failed_count() const noexcept;
  /// {"published", "skipped", "failed", "hook_errors", "published_by_event",
  ///  "published_by_delivery_mode", "published_by_publisher", "skipped_by_reason",
  ///  "failed_by_stage", "skipped_by_event": {name: {reason: n}}, "failed_by_event": {name:
  ///  {stage: n}}}. hook_errors counts exceptions thrown by on_publish_error itself. An
  ///  event whose after_publish threw counts as published and as failed ("after_publish").
  nlohmann::json stats() const;

 private:
  void publish_one(const StepCompletion& completion,
                   const std::vector<EventDeclaration>& declarations,
                   const EventDeclaration& declaration, PublishResult& result);
  void fail(const StepEventContext& ctx, Publisher& publisher, PublishStage stage,
            const std::string& event_id, std::exception_ptr error,
            PublishResult& result) noexcept;
  void skip(const EventDeclaration& declaration, SkipReason reason,
            PublishResult& result);
  void count_published(const EventDeclaration& declaration, const std::string& publisher);

  PublisherRegistry& registry_;
  EventRouter& router_;

  std::atomic<std::uint64_t> published_{0};
  std::atomic<std::uint64_t> skipped_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::uint64_t> hook_errors_{0};
  std::array<std::atomic<std::uint64_t>, 4> by_mode_{};    // indexed by DeliveryMode
  std::array<std::atomic<std::uint64_t>, kSkipReasonCount> by_reason_{};  // indexed by SkipReason
  std::array<std::atomic<std::uint64_t>, kPublishStageCount> by_stage_{};  // indexed by PublishStage
  mutable std::mutex counts_mutex_;  // guards the per-name maps below (one short lock per event)
  std::map<std::string, std::uint64_t, std::less<>> by_event_;
  std::map<std::string, std::uint64_t, std::less<>> by_publisher_;
  // event name -> count per skip reason / per failure stage (indexed by the enum)
  std::map<std::string, std::array<std::uint64_t, kSkipReasonCount>, std::less<>> skipped_by_event_;
  std::map<std::string, std::array<std::uint64_t, kPublishStageCount>, std::less<>> failed_by_event_;
  RateLimiter failure_log_limit_{20, std::chrono::seconds(1)};
};

}  // namespace herald
