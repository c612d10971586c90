// Test helper: wait for a condition instead of sleeping a fixed time.
#pragma once

#include <chrono>
#include <thread>

namespace herald::testing {

/// Polls `condition` until it holds or `timeout` passes; returns its last value.
template <typename Condition>
bool wait_for(Condition condition, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace herald::testing
