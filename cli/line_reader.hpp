// Reads lines from a file descriptor without blocking forever, so that a reader thread can
// notice a stop request while its input (a pipe, a terminal) is idle.
#pragma once

#include <cerrno>
#include <functional>
#include <poll.h>
#include <string>
#include <unistd.h>

namespace herald::cli {

class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}

  /// Next line without its newline; false at end of input or when `should_stop` returns true
  /// while waiting. A last line without a newline is returned too.
  bool next(std::string& line, const std::function<bool()>& should_stop) {
    while (true) {
      const auto nl = buffer_.find('\n', scan_from_);
      if (nl != std::string::npos) {
        line.assign(buffer_, 0, nl);
        buffer_.erase(0, nl + 1);
        scan_from_ = 0;
        return true;
      }
      scan_from_ = buffer_.size();
      if (eof_) {
        if (buffer_.empty()) return false;
        line.swap(buffer_);
        buffer_.clear();
        scan_from_ = 0;
        return true;
      }
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, 100);
      if (ready < 0 && errno != EINTR) return false;
      if (ready <= 0) {
        if (should_stop()) return false;
        continue;
      }
      char chunk[65536];
      const auto n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return false;
      }
      if (n == 0) {
        eof_ = true;
        continue;
      }
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

 private:
  int fd_;
  std::string buffer_;
  std::size_t scan_from_ = 0;
  bool eof_ = false;
};

}  // namespace herald::cli
