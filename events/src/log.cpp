#include <herald/events/log.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace herald {
namespace {
std::mutex logger_mutex;
std::shared_ptr<spdlog::logger>& logger_slot() {
  static std::shared_ptr<spdlog::logger> slot;
  return slot;
}
}  // namespace

std::shared_ptr<spdlog::logger> logger() {
  std::lock_guard lock(logger_mutex);
  auto& slot = logger_slot();
  if (!slot) {
    // Not registered with spdlog's registry: embedders' drop_all() must not take ours away.
    slot = std::make_shared<spdlog::logger>(
        "herald", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    slot->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ herald: %v", spdlog::pattern_time_type::utc);
    slot->set_level(spdlog::level::info);
  }
  return slot;
}

void set_logger(std::shared_ptr<spdlog::logger> replacement) {
  std::lock_guard lock(logger_mutex);
  logger_slot() = std::move(replacement);
}

bool RateLimiter::allow(std::uint64_t* suppressed) noexcept {
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  auto start = window_start_.load(std::memory_order_relaxed);
  if (now - start >= interval_ns_) {
    if (window_start_.compare_exchange_strong(start, now, std::memory_order_relaxed)) {
      in_window_.store(0, std::memory_order_relaxed);
    }
  }
  if (in_window_.fetch_add(1, std::memory_order_relaxed) < burst_) {
    const auto held = suppressed_.exchange(0, std::memory_order_relaxed);
    if (suppressed) *suppressed = held;
    return true;
  }
  suppressed_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

}  // namespace herald
