// DurableConsumer: reads one stream for one consumer group, in offset order, at least once.
//
// A member must hold the group's lease to read: a row in <schema>.consumer_groups names the
// owner and the time its lease ends (database clock). The active member renews it with every
// commit and at least every lease/3; a member that stops gracefully releases it; a member that
// was killed (kill -9) or lost its connection holds it no longer than `lease`, after which a
// standby member takes over from the committed offset. Commits are fenced by the owner column:
// a member whose lease was taken over (or revoked by replay()) fails its next commit, counts
// `lease_lost`, and goes back to acquiring the lease. So one member handles a group at a time,
// and events after the last commit may be handled twice across a takeover (at least once).
//
// For each event after the committed offset the consumer thread runs
//   before_handle(event, record) -- false: skipped (counted), the offset moves on
//   handle(event, record)        -- DurableResult{success, message}
//   after_handle(event, record, result)
// An exception from any of them, or success=false, is a failed attempt: on_handle_error runs,
// and the event is tried again after a backoff (retry_initial, doubling up to retry_max) until
// max_attempts; then it is written to <schema>.dead_letters with the error and the group moves
// on. The offset is committed after each batch (and before a lease renewal), so a crash
// re-delivers at most the events handled since the last commit. Rows whose body is not a valid
// herald event (bad JSON, bad name: rows inserted by hand) are counted as `malformed`, logged
// with their offset, and skipped. Events no pattern matches are `filtered` and skipped.
//
// Wake-up: LISTEN on the schema's channel, with a polling fallback (poll_interval). Connection
// loss: reconnect with backoff, re-acquire the lease, resume from the committed offset.
#pragma once

#include <herald/events/domain_event.hpp>
#include <herald/postgres/common.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace herald {

/// Where an event came from.
struct DurableRecord {
  std::string stream;
  std::int64_t offset = 0;
  std::string stored_at;   ///< server time of the insert, as PostgreSQL prints it
  int attempt = 1;         ///< 1 for the first try
  bool redrive = false;    ///< a dead letter being re-driven
};

/// What handle() reports (the shape of a subscriber's SubscriberResult).
struct DurableResult {
  bool success = true;
  std::string message;
  static DurableResult ok(std::string message = {}) { return {true, std::move(message)}; }
  static DurableResult failure(std::string message) { return {false, std::move(message)}; }
};

/// Which hook failed.
enum class DurableStage { before_handle, handle, after_handle };
std::string_view to_string(DurableStage stage) noexcept;

/// What on_handle_error receives: the exception (null for a success=false result), its message
/// and the stage.
struct DurableHandleError {
  std::exception_ptr exception;
  std::string message;
  DurableStage stage = DurableStage::handle;
};

/// The hooks. Only `handle` is required. All run on the consumer's thread, one at a time.
struct DurableHandlers {
  std::function<DurableResult(const EventPtr&, const DurableRecord&)> handle;
  std::function<bool(const EventPtr&, const DurableRecord&)> before_handle;
  std::function<void(const EventPtr&, const DurableRecord&, const DurableResult&)> after_handle;
  std::function<void(const EventPtr&, const DurableRecord&, const DurableHandleError&)>
      on_handle_error;
};

struct DurableConsumerOptions {
  std::string dsn;
  std::string schema = std::string(durable::kDefaultSchema);
  std::string stream;
  std::string group;
  /// Where a group that does not exist yet starts (an existing group keeps its offset; use
  /// durable::replay to move it).
  durable::StartPosition start = durable::StartPosition::end();
  std::vector<std::string> patterns{"#"};  ///< globs (herald::Pattern); others are `filtered`
  std::size_t batch_size = 100;            ///< rows fetched (and committed) at a time
  std::uint32_t max_attempts = 5;          ///< tries per event before it is dead-lettered
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{5'000};
  std::chrono::milliseconds poll_interval{1'000};  ///< fallback when no NOTIFY arrives
  std::chrono::milliseconds lease{10'000};         ///< see the header comment
  std::chrono::milliseconds reconnect_initial{50};
  std::chrono::milliseconds reconnect_max{5'000};
  std::string member_id;  ///< default: a new UUID; names the owner in consumer_groups
  std::string name = "durable-consumer";
};

/// Thread safety: stats() and the counters may be called from any thread; start() and stop()
/// from one controlling thread. The hooks run on the consumer's own thread. Not copyable, not
/// movable. The destructor calls stop().
class DurableConsumer {
 public:
  DurableConsumer(DurableConsumerOptions options, DurableHandlers handlers);
  ~DurableConsumer();
  DurableConsumer(const DurableConsumer&) = delete;
  DurableConsumer& operator=(const DurableConsumer&) = delete;

  /// Validates names (DurableError invalid_name) and patterns (PatternError), connects
  /// (DurableError connection / authentication), checks the schema (missing_schema), creates
  /// the group at its start position if it does not exist, and starts the consumer thread.
  /// A second call (even after stop()) throws StateError.
  void start();
  /// Finishes the event in hand (a retry backoff is cut short: that event is not committed and
  /// comes again), commits, releases the lease, closes. Idempotent.
  void stop();

  /// Asks the consumer thread to stop after the event in hand (which is then committed) without
  /// waiting for it: callable from a hook (e.g. "stop after N events"). stop() still joins.
  void request_stop() noexcept;

  /// {"handled", "failed_attempts", "retries", "dead_lettered", "malformed", "filtered",
  ///  "skipped", "redriven", "gaps", "reconnects", "leases_acquired", "lease_lost", "active",
  ///  "position", "committed_offset", "member_id", "last_error"}.
  nlohmann::json stats() const;
  std::uint64_t handled() const noexcept;        ///< handle() returned success
  std::uint64_t malformed() const noexcept;
  std::uint64_t dead_lettered() const noexcept;
  /// The last offset this member committed (0 before the first commit).
  std::int64_t committed_offset() const noexcept;
  /// True while this member holds the group's lease.
  bool active() const noexcept;
  const std::string& member_id() const noexcept { return options_.member_id; }

 private:
  struct Impl;
  DurableConsumerOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald
