// Publisher: the hooks that turn a step completion into domain events (DESIGN.md "Vocabulary").
// The publishing pipeline calls them in this order for each declared event whose condition
// holds:
//   should_publish -> transform_payload -> additional_metadata -> (schema check) ->
//   before_publish -> (route) -> after_publish
// and on_publish_error when any stage throws or fails. Override only what you need; the defaults
// publish the step's result as the payload.
#pragma once

#include <herald/events/domain_event.hpp>
#include <herald/events/step_completion.hpp>
#include <herald/publishers/declaration.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

namespace herald {

/// What a publisher's hooks see: the step's completion and the declaration being published.
/// Both references live for the duration of one publish() call only; do not keep the context.
struct StepEventContext {
  const StepCompletion& completion;
  const EventDeclaration& declaration;

  const std::string& step_name() const noexcept { return completion.step_name; }
  const std::string& namespace_name() const noexcept { return completion.namespace_name; }
  const std::string& task_uuid() const noexcept { return completion.task_uuid; }
  const std::string& step_uuid() const noexcept { return completion.step_uuid; }
  const std::string& correlation_id() const noexcept { return completion.correlation_id; }
  bool success() const noexcept { return completion.success; }
  const nlohmann::json& result() const noexcept { return completion.result; }
  const std::string& event_name() const noexcept { return declaration.name; }
};

/// Where publishing one declared event failed. Closed set; to_string gives the name that logs,
/// PublishResult::to_json, the pipeline's stats ("failed_by_stage") and Python use.
enum class PublishStage {
  publisher,            ///< the declared publisher is not registered
  should_publish,
  transform_payload,
  additional_metadata,
  schema,               ///< the payload schema check
  build_event,          ///< DomainEvent::create (e.g. an invalid event name) or the metadata
  before_publish,
  route,                ///< handing the event to its road(s)
  after_publish,        ///< the event was delivered, the hook threw
  internal,             ///< the pipeline's own bookkeeping (out of memory)
  lookup,               ///< the worker: no declarations for the completion's step
};
inline constexpr std::size_t kPublishStageCount = 11;
std::string_view to_string(PublishStage stage) noexcept;
/// "route" -> PublishStage::route; throws UnknownValueError naming the value and the stages.
PublishStage parse_publish_stage(std::string_view text);

/// Why one declared event was not published.
struct PublishFailure {
  PublishStage stage = PublishStage::internal;  ///< where it failed
  std::string event_name;
  std::string message;           ///< the exception's what(), e.g. "/amount: expected number, got string"
  std::exception_ptr exception;  ///< the original exception (rethrow to inspect its type)
  std::string publisher;         ///< the publisher in charge ("default" for an unknown one)
};

/// Base of every publisher. A publisher is shared (std::shared_ptr) by the registry and called
/// from whichever threads publish, possibly concurrently: implementations must make their hooks
/// thread safe (the defaults are stateless). name() and publishes_for() are read once, when the
/// publisher is registered; they must not change afterwards.
class Publisher {
 public:
  virtual ~Publisher() = default;

  /// Unique name within a registry; declarations refer to it as `publisher`.
  virtual std::string name() const = 0;
  /// Step names this publisher serves when a declaration names no publisher (get_for_step).
  virtual std::vector<std::string> publishes_for() const { return {}; }

  /// False skips the event (reported as skipped "should_publish", not as an error).
  virtual bool should_publish(const StepEventContext& ctx, const EventDeclaration& declaration);
  /// The event's payload. Default: the step's result.
  virtual nlohmann::json transform_payload(const StepEventContext& ctx,
                                           const EventDeclaration& declaration);
  /// A JSON object merged into the event's metadata last (its keys win); null adds nothing.
  /// Default: null (an empty object would cost an allocation per event).
  virtual nlohmann::json additional_metadata(const StepEventContext& ctx,
                                             const EventDeclaration& declaration);
  /// Sees the built event before it is routed; false skips it quietly (skipped
  /// "before_publish": no after_publish, no error).
  virtual bool before_publish(const StepEventContext& ctx, const EventPtr& event);
  /// Called after the event was handed to its road(s).
  virtual void after_publish(const StepEventContext& ctx, const EventPtr& event);
  /// Called for any failure while publishing `declaration`. Exceptions thrown from here are
  /// caught and logged by the pipeline. Default: nothing (the pipeline logs every failure).
  virtual void on_publish_error(const StepEventContext& ctx, const EventDeclaration& declaration,
                                const PublishFailure& failure);
};

/// The publisher used when nothing more specific applies. Name "default"; all hooks default.
class GenericPublisher : public Publisher {
 public:
  static constexpr std::string_view kName = "default";
  std::string name() const override { return std::string(kName); }
};

}  // namespace herald
