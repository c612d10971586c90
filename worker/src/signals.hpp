// Signal handling for Worker::run(): the handler only writes the signal number to a pipe
// (async-signal-safe); a watcher thread reads it and does the work.
#pragma once

#include <functional>
#include <thread>

namespace herald::detail {

/// Installs SIGTERM, SIGINT, SIGUSR1 and SIGHUP handlers for its lifetime (one instance at a
/// time per process) and restores the previous ones when destroyed. The first SIGTERM/SIGINT
/// calls on_stop; a second one exits the process at once (exit code 128 + signal). SIGUSR1
/// calls on_status, SIGHUP on_reload. Callbacks run on the watcher thread.
class SignalWatcher {
 public:
  struct Handlers {
    std::function<void()> on_stop;
    std::function<void()> on_status;
    std::function<void()> on_reload;
  };
  explicit SignalWatcher(Handlers handlers);
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  void watch();
  Handlers handlers_;
  int pipe_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace herald::detail
