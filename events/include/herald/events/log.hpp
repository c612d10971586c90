// herald's logger: one named spdlog logger ("herald"), never the default logger, plus a rate
// limiter for warnings that could otherwise flood the log (drops, bad network input).
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

namespace herald {

/// The "herald" logger, created on first use (stderr, colour when a terminal). Thread safe.
/// Embedders may replace it with set_logger() before using herald.
std::shared_ptr<spdlog::logger> logger();

/// Replaces herald's logger (e.g. with one that writes to the embedder's sinks).
void set_logger(std::shared_ptr<spdlog::logger> logger);

/// Allows at most `burst` messages per `interval`; the rest are counted as suppressed and
/// reported with the next allowed message. Thread safe (lock free).
class RateLimiter {
 public:
  explicit RateLimiter(std::uint32_t burst = 10,
                       std::chrono::milliseconds interval = std::chrono::seconds(1))
      : burst_(burst), interval_ns_(std::chrono::nanoseconds(interval).count()) {}

  /// True when a message may be logged now; `suppressed` receives how many were held back
  /// since the last allowed message.
  bool allow(std::uint64_t* suppressed = nullptr) noexcept;

 private:
  std::uint32_t burst_;
  std::int64_t interval_ns_;
  std::atomic<std::int64_t> window_start_{0};
  std::atomic<std::uint32_t> in_window_{0};
  std::atomic<std::uint64_t> suppressed_{0};
};

}  // namespace herald
