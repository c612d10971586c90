// AuditSubscriber: appends every event it receives to a JSON Lines file.
//
// Each event is written as its json_text() plus "\n" to a file opened with
// O_RDWR|O_APPEND|O_CREAT|O_CLOEXEC, straight from the event's cached text (no copy into a
// buffer of ours): handle() writes one event, handle_batch() a run of consecutive events in one
// writev(2) (IOV_MAX vectors per call; a short write is continued where it stopped), so every
// line reaches the kernel whole before handle() or handle_batch() returns and reports it
// handled. Nothing is held in user space between calls: what a kill -9 can cost is only what
// the section below says. The newline is the line's last
// byte and JSON text never contains a raw newline, so every newline-terminated line in the file
// is a complete event. What a kill -9 can leave is a fragment *after* the last newline: Linux
// stops a large write to a regular file at a page boundary when a fatal signal is pending, so a
// line longer than a page can be cut. on_start() removes such a fragment (it truncates the file
// to its last newline, logs a warning and counts the bytes in torn_bytes_repaired()) unless
// another audit writer has the file open (each holds a shared flock while open), as during a
// worker reload, when the fragment may be that writer's line in progress; readers
// that tail a live file should, as with any JSON Lines file, ignore a last line without its
// newline. (A machine crash can lose lines the kernel had not written back; set
// AuditOptions::fsync to fdatasync after each handle() or handle_batch() call, before it reports
// its events handled.) If a write fails after part of a line was
// written (disk full), the file is truncated back to the end of the last complete line, which
// assumes this subscriber is the file's only writer.
//
// Write errors are counted, logged (rate-limited) and reported as a failed SubscriberResult.
// After one, health_check() is false for AuditOptions::recheck_after (or until a write
// succeeds), then true again, so that an open circuit breaker lets the next event try the disk:
// if that write fails too, the breaker opens again.
#pragma once

#include <herald/subscribers/subscriber.hpp>

#include <herald/events/log.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace herald {

struct AuditOptions {
  bool fsync = false;              ///< fdatasync after each write call (handle, handle_batch)
  std::uint32_t file_mode = 0644;  ///< permissions of a newly created file (before umask)
  /// How long health_check() stays false after a write error.
  std::chrono::milliseconds recheck_after{10'000};
  /// Capacity, overflow policy, block timeout, slow threshold (name is the subscriber's).
  SubscribeOptions subscribe = hosted_subscribe_options();
  CircuitBreakerOptions breaker{};
};

/// Thread safe: handle(), health_check() and the accessors may run concurrently; on_start and
/// on_stop open and close the file under the same lock as the writes.
class AuditSubscriber : public Subscriber {
 public:
  AuditSubscriber(std::string name, std::vector<std::string> patterns, std::filesystem::path path,
                  AuditOptions options = {});
  ~AuditSubscriber() override;
  AuditSubscriber(const AuditSubscriber&) = delete;
  AuditSubscriber& operator=(const AuditSubscriber&) = delete;

  std::string name() const override { return name_; }
  std::vector<std::string> subscribes_to() const override { return patterns_; }
  SubscribeOptions subscribe_options() const override;
  CircuitBreakerOptions circuit_breaker() const override { return options_.breaker; }

  /// Opens (creating if needed) the file for appending. Throws Error naming the path and the
  /// system's reason ("... cannot open '/x/audit.jsonl': No such file or directory"). The parent
  /// directory must exist. A fragment after the file's last newline (a line cut by a kill -9)
  /// is truncated away first. Calling it again while open does nothing.
  void on_start() override;
  /// Closes the file.
  void on_stop() override;
  /// Writes the line. A write error is a failure result naming the path and the reason.
  SubscriberResult handle(const EventPtr& event) override;
  /// Writes one line per event, in order, with one writev(2) per IOV_MAX/2 events, and sets
  /// `outcomes` (at least events.size() of them, pre-set to handled by the caller): after a write
  /// error, the events whose lines were written whole before it stay handled, a line cut by the
  /// error is truncated away, and the rest are marked failed (all of them with fsync on: none is
  /// known to be durable). Returns the failure (naming the path and the reason) or success.
  /// For a batch-capable host (EventBus::subscribe_batch); handle() is the one-event case.
  SubscriberResult handle_batch(std::span<const EventPtr> events, std::span<HandleOutcome> outcomes) override;
  bool handles_batches() const override { return true; }
  /// Open, and no write error within the last recheck_after (see the header comment).
  bool health_check() override;

  const std::filesystem::path& path() const noexcept { return path_; }
  bool is_open() const;
  std::uint64_t lines_written() const noexcept { return lines_.load(std::memory_order_relaxed); }
  std::uint64_t write_errors() const noexcept { return errors_.load(std::memory_order_relaxed); }
  /// Bytes of cut-off last lines that on_start() removed over this object's life.
  std::uint64_t torn_bytes_repaired() const noexcept {
    return repaired_.load(std::memory_order_relaxed);
  }

 private:
  SubscriberResult write_events(std::span<const EventPtr> events, std::span<HandleOutcome> outcomes);
  void close_locked() noexcept;
  void repair_torn_tail(int fd);

  std::string name_;
  std::vector<std::string> patterns_;
  std::filesystem::path path_;
  AuditOptions options_;

  mutable std::mutex mutex_;  // guards fd_, last_errno_, last_error_at_
  int fd_ = -1;
  int last_errno_ = 0;  // errno of the last failed write, 0 after a success
  std::chrono::steady_clock::time_point last_error_at_{};
  std::atomic<std::uint64_t> lines_{0};
  std::atomic<std::uint64_t> errors_{0};
  std::atomic<std::uint64_t> repaired_{0};
  RateLimiter error_log_{5, std::chrono::seconds(10)};
};

}  // namespace herald
