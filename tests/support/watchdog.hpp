// Test helper: turns a hang into a failure. A test that could deadlock arms a Watchdog; if the
// scope is still alive after the bound, the process prints what hung and aborts (a core dump
// and a red test, instead of a CTest timeout minutes later).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

namespace herald::testing {

class Watchdog {
 public:
  explicit Watchdog(std::string what, std::chrono::seconds bound = std::chrono::seconds(60))
      : what_(std::move(what)), thread_([this, bound] {
          std::unique_lock lock(mutex_);
          if (!cv_.wait_for(lock, bound, [&] { return done_; })) {
            std::fprintf(stderr, "watchdog: '%s' still running after %llds: deadlock\n", what_.c_str(),
                         static_cast<long long>(bound.count()));
            std::fflush(stderr);
            std::abort();
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  std::string what_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace herald::testing
