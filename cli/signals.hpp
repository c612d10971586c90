// Async-signal-safe signal handling for CLI commands: the signals are blocked in every thread
// and taken synchronously with sigtimedwait by the thread that waits. No handler runs.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <initializer_list>
#include <optional>

namespace herald::cli {

/// Blocks `signals` (and SIGUSR2, used by wake()) in the calling thread and in every thread it
/// creates afterwards: construct it before any other thread starts (before transports start).
/// wait() belongs to the constructing thread; wake() is thread safe.
class SignalWaiter {
 public:
  static constexpr int kWoken = SIGUSR2;

  explicit SignalWaiter(std::initializer_list<int> signals);
  SignalWaiter(const SignalWaiter&) = delete;
  SignalWaiter& operator=(const SignalWaiter&) = delete;

  /// Waits for one of the signals, wake(), or the deadline. Returns the signal number, kWoken
  /// for wake(), or 0 when the deadline passed.
  int wait(std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);
  /// Makes the current or next wait() return kWoken. Safe from any thread.
  void wake() noexcept;

 private:
  sigset_t set_{};
  pthread_t owner_;
};

}  // namespace herald::cli
