// Test doubles shared by the publishers tests: step completions, a recording Transport, a
// publisher whose hooks are lambdas and which records what the pipeline told it.
#pragma once

#include <herald/publishers.hpp>

#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace herald::test_support {

inline StepCompletion completion(bool success = true) {
  StepCompletion c;
  c.task_uuid = "task-1";
  c.step_uuid = "step-1";
  c.step_name = "charge_card";
  c.namespace_name = "payments";
  c.correlation_id = "corr-1";
  c.success = success;
  c.result = {{"amount", 42}, {"currency", "EUR"}};
  return c;
}

inline EventDeclaration declare(std::string name, DeliveryMode mode = DeliveryMode::in_process) {
  EventDeclaration d;
  d.name = std::move(name);
  d.delivery_mode = mode;
  return d;
}

/// Records every event it is given; optionally refuses them.
class RecordingTransport : public Transport {
 public:
  std::string name() const override { return "recording"; }
  void start() override {}
  void send(const EventPtr& event) override {
    std::lock_guard lock(mutex_);
    if (refuse_) throw TransportError("recording transport refuses events");
    sent_.push_back(event);
  }
  void stop() override {}
  nlohmann::json stats() const override {
    std::lock_guard lock(mutex_);
    return {{"sent", sent_.size()}};
  }
  std::vector<EventPtr> sent() const {
    std::lock_guard lock(mutex_);
    return sent_;
  }
  void refuse(bool on) {
    std::lock_guard lock(mutex_);
    refuse_ = on;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<EventPtr> sent_;
  bool refuse_ = false;
};

/// Collects what an EventBus subscription receives.
class Collector {
 public:
  void add(const EventPtr& event) {
    std::lock_guard lock(mutex_);
    events_.push_back(event);
  }
  std::vector<EventPtr> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::vector<std::string> names() const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (const auto& e : events_) out.push_back(e->event_name());
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<EventPtr> events_;
};

/// A publisher whose hooks can be replaced by lambdas; records hook calls and failures.
class ScriptedPublisher : public Publisher {
 public:
  explicit ScriptedPublisher(std::string name, std::vector<std::string> steps = {})
      : name_(std::move(name)), steps_(std::move(steps)) {}

  std::function<bool(const StepEventContext&)> should;
  std::function<nlohmann::json(const StepEventContext&)> transform;
  std::function<nlohmann::json(const StepEventContext&)> metadata;
  std::function<bool(const StepEventContext&, const EventPtr&)> before;
  std::function<void(const EventPtr&)> after;
  std::function<void(const PublishFailure&)> on_error;

  std::string name() const override { return name_; }
  std::vector<std::string> publishes_for() const override { return steps_; }
  bool should_publish(const StepEventContext& ctx, const EventDeclaration& d) override {
    return should ? should(ctx) : Publisher::should_publish(ctx, d);
  }
  nlohmann::json transform_payload(const StepEventContext& ctx, const EventDeclaration& d) override {
    return transform ? transform(ctx) : Publisher::transform_payload(ctx, d);
  }
  nlohmann::json additional_metadata(const StepEventContext& ctx,
                                     const EventDeclaration& d) override {
    return metadata ? metadata(ctx) : Publisher::additional_metadata(ctx, d);
  }
  bool before_publish(const StepEventContext& ctx, const EventPtr& event) override {
    return before ? before(ctx, event) : true;
  }
  void after_publish(const StepEventContext&, const EventPtr& event) override {
    {
      std::lock_guard lock(mutex_);
      after_published_.push_back(event);
    }
    if (after) after(event);
  }
  void on_publish_error(const StepEventContext&, const EventDeclaration&,
                        const PublishFailure& failure) override {
    {
      std::lock_guard lock(mutex_);
      failures_.push_back(failure);
    }
    if (on_error) on_error(failure);
  }

  std::vector<PublishFailure> failures() const {
    std::lock_guard lock(mutex_);
    return failures_;
  }
  std::vector<EventPtr> after_published() const {
    std::lock_guard lock(mutex_);
    return after_published_;
  }

 private:
  std::string name_;
  std::vector<std::string> steps_;
  mutable std::mutex mutex_;
  std::vector<PublishFailure> failures_;
  std::vector<EventPtr> after_published_;
};

}  // namespace herald::test_support
