// DurablePublisher: the Transport that appends events to PostgreSQL streams (DESIGN.md 11).
//
// send() only queues (bounded); one writer thread owns the connection and writes whatever is
// queued as one transaction per batch: for each stream in the batch it reserves a range of
// offsets (one upsert of the stream's counter row, which also serialises writers of that stream
// so offsets commit in order), COPYs the rows in, NOTIFYs the schema's channel, and commits.
// stats() says how many events are committed. When the server goes away the writer keeps the
// batch, reconnects with exponential backoff and writes it again; a COMMIT whose answer was lost
// is checked after reconnecting (is the batch's last row there, with its event id?), so a batch
// is never written twice. While the server is away, send() keeps queueing up to max_queue; the
// overflow policy decides what happens beyond (never silently: every rejected or dropped event
// is counted and logged with a rate limit).
#pragma once

#include <herald/events/transport.hpp>
#include <herald/postgres/common.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace herald {

/// What send() does when max_queue events are waiting.
enum class DurableOverflow {
  reject,       ///< send() throws TransportError (counted as `rejected`); the default
  drop_oldest,  ///< the oldest queued event is dropped (counted as `dropped`) for the new one
  block,        ///< send() waits up to block_timeout for room, then rejects
};
std::string_view to_string(DurableOverflow policy) noexcept;
DurableOverflow parse_durable_overflow(std::string_view text);

/// How a batch's rows are sent. Measured on PostgreSQL 15 over a Unix socket (bench/ and
/// docs/durable.md): COPY is the faster; multi-row INSERT is kept for comparison.
enum class DurableWriteMethod { copy, insert };

struct DurablePublisherOptions {
  std::string dsn;                                    ///< libpq key=value or URI
  std::string schema = std::string(durable::kDefaultSchema);
  /// The stream of every event; empty: stream_of, or durable::stream_for_namespace(namespace).
  std::string stream;
  std::function<std::string(const DomainEvent&)> stream_of;
  bool create_schema = true;           ///< ensure_schema() at start (needs CREATE privilege)
  std::size_t max_queue = 100'000;     ///< events queued and not yet committed
  std::size_t max_batch = 1'000;       ///< events per transaction
  DurableOverflow overflow = DurableOverflow::reject;
  std::chrono::milliseconds block_timeout{1'000};
  std::chrono::milliseconds reconnect_initial{50};
  std::chrono::milliseconds reconnect_max{5'000};
  /// stop() keeps writing (and reconnecting) this long before giving up on what is queued.
  std::chrono::milliseconds linger{5'000};
  /// start() fails (DurableError) when the first connection fails; false: start anyway and
  /// connect in the background (events queue meanwhile).
  bool require_connection_at_start = true;
  DurableWriteMethod write_method = DurableWriteMethod::copy;
  /// A local file for events that do not fit in memory while the database is away (empty: no
  /// spool). When the queue is full, send() appends to the spool instead of applying the
  /// overflow policy, and keeps doing so (order) until the writer has committed all of it; the
  /// writer reads it back after the memory queue. stop() saves what it could not write into the
  /// spool, and a publisher started on the same file writes it first. Events committed but not
  /// yet marked in the spool when the process dies are written again (at least once).
  std::string spool_path;
  std::uint64_t spool_max_bytes = 1ull << 30;  ///< beyond it, the overflow policy applies
  std::string name = "postgres";
};

/// Thread safety: send(), stats(), committed(), flush(), healthy() may be called from any thread;
/// start() and stop() from one controlling thread. Not copyable, not movable. The destructor
/// calls stop().
class DurablePublisher : public Transport {
 public:
  explicit DurablePublisher(DurablePublisherOptions options);
  ~DurablePublisher() override;
  DurablePublisher(const DurablePublisher&) = delete;
  DurablePublisher& operator=(const DurablePublisher&) = delete;

  std::string name() const override { return options_.name; }
  /// Validates the schema and fixed stream names, connects (unless require_connection_at_start
  /// is false), creates or checks the schema, starts the writer. Throws DurableError (connection,
  /// authentication, missing_schema, permission, invalid_name) or StateError when started twice.
  void start() override;
  /// Queues the event for its stream. Throws DurableError(invalid_name) for a stream name the
  /// rules reject, TransportError when not running or when the queue is full (policy reject,
  /// or block after block_timeout). Never waits on the database.
  void send(const EventPtr& event) override;
  /// Writes what is queued for up to `linger`, then stops the writer and closes the connection.
  /// Events still queued then are counted (`unwritten_at_stop`) and logged. Idempotent.
  void stop() override;
  /// {"accepted", "committed", "rejected", "dropped", "queue_depth", "batches", "reconnects",
  ///  "write_errors", "ambiguous_commits", "unwritten_at_stop", "connected", "last_error", "dsn"
  ///  (redacted), "rejected_by_server", "spooled", "spool_bytes", "recovered_from_spool",
  ///  "in_spool", "spooled_at_stop", "spool_corrupt"}. Always: accepted == committed -
  ///  recovered_from_spool + dropped + rejected_by_server + queue_depth + in_spool +
  ///  unwritten_at_stop + spooled_at_stop (recovered_from_spool: events a previous process left
  ///  in the spool and this one committed). An event the server refuses on its own (a data
  ///  error) is logged with its id and counted as rejected_by_server; the rest of its batch is
  ///  written.
  nlohmann::json stats() const override;
  bool healthy() const override;

  /// Events committed so far.
  std::uint64_t committed() const noexcept;
  /// Waits until everything accepted before the call is committed (or dropped); false on timeout.
  bool flush(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  DurablePublisherOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald
