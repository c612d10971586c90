// Shared pieces of the ZeroMQ tests: unique inproc endpoints, default socket options, and a
// thread-safe collector of what a ZmqSubscriber callback received.
#pragma once

#include <herald/zeromq/transport.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

namespace herald::testing {

inline std::string unique_inproc(const std::string& tag) {
  static std::atomic<int> n{0};
  return "inproc://herald-test-" + tag + "-" + std::to_string(++n);
}

inline ZmqPublisherOptions pub_options(std::string endpoint, bool bind = true) {
  ZmqPublisherOptions o;
  o.endpoints = {std::move(endpoint)};
  o.bind = bind;
  return o;
}

inline ZmqSubscriberOptions sub_options(std::string endpoint,
                                        std::vector<std::string> patterns = {"#"}) {
  ZmqSubscriberOptions o;
  o.endpoints = {std::move(endpoint)};
  o.patterns = std::move(patterns);
  return o;
}

/// Collects the messages a ZmqSubscriber hands to callback(); safe from the subscriber's thread.
class Received {
 public:
  ReceiveCallback callback() {
    return [this](const WireMessage& m) {
      {
        std::lock_guard lock(mutex_);
        messages_.push_back(m);
      }
      cv_.notify_all();
    };
  }
  /// Waits until at least `n` messages arrived; false on timeout.
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return messages_.size() >= n; });
  }
  std::vector<WireMessage> messages() {
    std::lock_guard lock(mutex_);
    return messages_;
  }
  std::vector<EventPtr> events() {
    std::lock_guard lock(mutex_);
    std::vector<EventPtr> out;
    for (const auto& m : messages_) out.push_back(m.event);
    return out;
  }
  std::size_t size() {
    std::lock_guard lock(mutex_);
    return messages_.size();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<WireMessage> messages_;
};

}  // namespace herald::testing
