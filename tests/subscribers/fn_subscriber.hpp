// Test helper: a Subscriber whose hooks are std::functions, recording what was called.
#pragma once

#include <herald/subscribers/subscriber.hpp>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace herald::testing {

/// Thread-safe log of hook calls ("before:payment.processed", "handle:...", ...).
class CallLog {
 public:
  void add(std::string call) {
    std::lock_guard lock(mutex_);
    calls_.push_back(std::move(call));
  }
  std::vector<std::string> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return calls_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> calls_;
};

/// Configure the hooks before registering; they run on dispatcher threads afterwards.
class FnSubscriber : public Subscriber {
 public:
  FnSubscriber(std::string name, std::vector<std::string> patterns)
      : name_(std::move(name)), patterns_(std::move(patterns)) {}

  std::function<SubscriberResult(const EventPtr&)> on_handle;
  std::function<bool(const EventPtr&)> on_before;
  std::function<void(const EventPtr&, const SubscriberResult&)> on_after;
  std::function<void(const EventPtr&, const HandleError&)> on_error;
  std::function<void()> start_hook;
  std::function<void()> stop_hook;
  SubscribeOptions options;
  CircuitBreakerOptions breaker;
  std::atomic<bool> healthy{true};
  std::atomic<int> health_checks{0};
  std::atomic<int> starts{0};
  std::atomic<int> stops{0};
  CallLog log;

  std::string name() const override { return name_; }
  std::vector<std::string> subscribes_to() const override { return patterns_; }
  SubscribeOptions subscribe_options() const override { return options; }
  CircuitBreakerOptions circuit_breaker() const override { return breaker; }

  bool before_handle(const EventPtr& e) override {
    log.add("before:" + e->event_name());
    return on_before ? on_before(e) : true;
  }
  SubscriberResult handle(const EventPtr& e) override {
    log.add("handle:" + e->event_name());
    return on_handle ? on_handle(e) : SubscriberResult{};
  }
  void after_handle(const EventPtr& e, const SubscriberResult& r) override {
    log.add("after:" + e->event_name() + (r.success ? ":ok" : ":failed"));
    if (on_after) on_after(e, r);
  }
  void on_handle_error(const EventPtr& e, const HandleError& err) override {
    log.add("error:" + e->event_name() + ":" + std::string(to_string(err.stage)) + ":" +
            err.message);
    if (on_error) on_error(e, err);
  }
  void on_start() override {
    ++starts;
    if (start_hook) start_hook();
  }
  void on_stop() override {
    ++stops;
    if (stop_hook) stop_hook();
  }
  bool health_check() override {
    ++health_checks;
    return healthy.load();
  }

 private:
  std::string name_;
  std::vector<std::string> patterns_;
};

/// An event named `name` with payload {"n": n}.
inline EventPtr make(const std::string& name, int n = 0) { return DomainEvent::create(name, {{"n", n}}); }

/// A FnSubscriber subscribed to `patterns`.
inline std::shared_ptr<FnSubscriber> fn(std::string name, std::vector<std::string> patterns = {"#"}) {
  return std::make_shared<FnSubscriber>(std::move(name), std::move(patterns));
}

}  // namespace herald::testing
