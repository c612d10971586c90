// Reads lines from a file descriptor in batches without blocking forever, so that a reader thread
// can notice a stop request while its input (a pipe, a terminal) is idle.
//
// One read(2) of up to a chunk (256 KiB by default) hands back every complete line it brought in
// at once, as views into the reader's own buffer: no copy and no allocation per line, and no
// per-line shifting of the buffer (only the partial line at its end moves, once per chunk).
// Memory is bounded by the chunk plus the longest line.
#pragma once

#include <cerrno>
#include <cstring>
#include <functional>
#include <poll.h>
#include <string_view>
#include <unistd.h>
#include <vector>

namespace herald::cli {

class LineReader {
 public:
  static constexpr std::size_t kDefaultChunk = 256 * 1024;

  explicit LineReader(int fd, std::size_t chunk = kDefaultChunk)
      : fd_(fd), buffer_(chunk < 2 ? 2 : chunk) {}

  /// Replaces `lines` with the next complete lines (each without its newline), reading more
  /// input when none is buffered. The views stay valid until the next call. False at end of
  /// input, on a read error, or when `should_stop` returns true while waiting for input. A last
  /// line without a newline is returned too (alone, at end of input).
  bool next_batch(std::vector<std::string_view>& lines, const std::function<bool()>& should_stop) {
    lines.clear();
    // Move the partial line left over from the previous batch to the front.
    if (begin_ > 0) {
      const std::size_t rest = end_ - begin_;
      if (rest > 0) std::memmove(buffer_.data(), buffer_.data() + begin_, rest);
      end_ = rest;
      scan_from_ = scan_from_ > begin_ ? scan_from_ - begin_ : 0;
      begin_ = 0;
    }
    while (true) {
      if (const void* hit = scan_from_ < end_
                                ? std::memchr(buffer_.data() + scan_from_, '\n', end_ - scan_from_)
                                : nullptr) {
        // At least one complete line: hand over every complete line now buffered.
        std::size_t start = 0;
        std::size_t nl = static_cast<std::size_t>(static_cast<const char*>(hit) - buffer_.data());
        while (true) {
          lines.emplace_back(buffer_.data() + start, nl - start);
          start = nl + 1;
          const void* next =
              start < end_ ? std::memchr(buffer_.data() + start, '\n', end_ - start) : nullptr;
          if (!next) break;
          nl = static_cast<std::size_t>(static_cast<const char*>(next) - buffer_.data());
        }
        begin_ = start;
        scan_from_ = end_;
        return true;
      }
      scan_from_ = end_;
      if (eof_) {
        if (end_ == 0) return false;
        lines.emplace_back(buffer_.data(), end_);
        begin_ = end_;  // consumed: the next call finds an empty buffer at end of input
        return true;
      }
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, 100);
      if (ready < 0 && errno != EINTR) return false;
      if (ready <= 0) {
        if (should_stop()) return false;
        continue;
      }
      if (end_ == buffer_.size()) buffer_.resize(buffer_.size() * 2);  // a line longer than the buffer
      const auto n = ::read(fd_, buffer_.data() + end_, buffer_.size() - end_);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return false;
      }
      if (n == 0) {
        eof_ = true;
        continue;
      }
      end_ += static_cast<std::size_t>(n);
    }
  }

 private:
  int fd_;
  std::vector<char> buffer_;
  std::size_t begin_ = 0;      // first byte not yet handed out
  std::size_t end_ = 0;        // end of the bytes read
  std::size_t scan_from_ = 0;  // bytes before this (from begin_) hold no newline
  bool eof_ = false;
};

}  // namespace herald::cli
