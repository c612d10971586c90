#include "signals.hpp"

#include <herald/events/error.hpp>
#include <herald/events/log.hpp>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace herald::detail {
namespace {

std::atomic<int> signal_pipe_write{-1};
constexpr int kSignals[] = {SIGTERM, SIGINT, SIGUSR1, SIGHUP};
struct sigaction previous[sizeof kSignals / sizeof kSignals[0]];

extern "C" void on_signal(int signo) {
  const int saved = errno;
  const int fd = signal_pipe_write.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const unsigned char byte = static_cast<unsigned char>(signo);
    [[maybe_unused]] auto n = ::write(fd, &byte, 1);
  }
  errno = saved;
}

const char* signal_name(int signo) {
  switch (signo) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    case SIGHUP: return "SIGHUP";
    default: return "signal";
  }
}

}  // namespace

SignalWatcher::SignalWatcher(Handlers handlers) : handlers_(std::move(handlers)) {
  if (::pipe2(pipe_, O_CLOEXEC) != 0) {
    throw Error(std::string("signal watcher: pipe failed: ") + std::strerror(errno));
  }
  int expected = -1;
  if (!signal_pipe_write.compare_exchange_strong(expected, pipe_[1])) {
    ::close(pipe_[0]);
    ::close(pipe_[1]);
    throw StateError("signal watcher: another worker already handles signals in this process");
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (std::size_t i = 0; i < std::size(kSignals); ++i) ::sigaction(kSignals[i], &sa, &previous[i]);
  thread_ = std::thread([this] { watch(); });
}

SignalWatcher::~SignalWatcher() {
  for (std::size_t i = 0; i < std::size(kSignals); ++i) ::sigaction(kSignals[i], &previous[i], nullptr);
  signal_pipe_write.store(-1);
  const unsigned char quit = 0;
  [[maybe_unused]] auto n = ::write(pipe_[1], &quit, 1);
  if (thread_.joinable()) thread_.join();
  ::close(pipe_[0]);
  ::close(pipe_[1]);
}

void SignalWatcher::watch() {
  int stops = 0;
  while (true) {
    unsigned char byte = 0;
    const auto n = ::read(pipe_[0], &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || byte == 0) return;
    const int signo = byte;
    if (signo == SIGTERM || signo == SIGINT) {
      if (++stops == 1) {
        logger()->info("received {}: stopping gracefully (send again to stop at once)", signal_name(signo));
        if (handlers_.on_stop) handlers_.on_stop();
      } else {
        logger()->warn("received {} again: exiting at once", signal_name(signo));
        logger()->flush();
        std::_Exit(128 + signo);
      }
    } else if (signo == SIGUSR1) {
      if (handlers_.on_status) handlers_.on_status();
    } else if (signo == SIGHUP) {
      logger()->info("received SIGHUP: reloading the configuration");
      if (handlers_.on_reload) handlers_.on_reload();
    }
  }
}

}  // namespace herald::detail
