#include "signals.hpp"

#include <cerrno>
#include <ctime>

namespace herald::cli {

SignalWaiter::SignalWaiter(std::initializer_list<int> signals) : owner_(pthread_self()) {
  sigemptyset(&set_);
  for (int s : signals) sigaddset(&set_, s);
  sigaddset(&set_, kWoken);
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
}

int SignalWaiter::wait(std::optional<std::chrono::steady_clock::time_point> deadline) {
  for (;;) {
    int sig = 0;
    if (!deadline) {
      if (sigwait(&set_, &sig) == 0) return sig;
      continue;
    }
    auto left = *deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return 0;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    sig = sigtimedwait(&set_, nullptr, &ts);
    if (sig > 0) return sig;
    if (errno == EAGAIN) return 0;
    // EINTR: an unblocked signal interrupted us; wait again.
  }
}

void SignalWaiter::wake() noexcept { pthread_kill(owner_, kWoken); }

}  // namespace herald::cli
