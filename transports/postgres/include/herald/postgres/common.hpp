// herald::postgres, the durable road (DESIGN.md decision 11): shared pieces — the error type,
// stream/group/schema name rules, start positions, and an owning libpq connection.
//
// Why libpq and not libpqxx: libpq is the C library every PostgreSQL client is built on; it gives
// COPY FROM STDIN (the publisher's batch write), asynchronous notifications read from
// PQsocket() (the consumer's LISTEN/NOTIFY wake-up, polled together with a stop eventfd), and
// it lets the outbox take the caller's own PGconn*, which is what applications already hold
// (psycopg and most drivers expose it). libpqxx would add a second exception hierarchy to map
// into herald::Error at every call and hide the socket we need to poll. See docs/durable.md.
#pragma once

#include <herald/events/error.hpp>

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace herald {

/// What went wrong on the durable road, so callers (and the CLI's exit codes) can tell an
/// operator what to fix.
enum class DurableErrorKind {
  connection,      ///< server unreachable, connection lost, bad DSN
  authentication,  ///< wrong password or no password for a role that needs one
  missing_schema,  ///< the schema (or its tables) does not exist and was not to be created
  permission,      ///< the role lacks a privilege (SQLSTATE 42501)
  invalid_name,    ///< a stream, group or schema name breaks the naming rules
  invalid_argument,
  state,           ///< e.g. outbox called outside a transaction, start() twice
  query,           ///< any other server error (message carries SQLSTATE and text)
};
std::string_view to_string(DurableErrorKind kind) noexcept;

/// Every error of herald::postgres. A TransportError, so code that handles transports handles it.
/// Messages name what is wrong and, for connections, the DSN with its password redacted.
class DurableError : public TransportError {
 public:
  DurableError(DurableErrorKind kind, const std::string& message, std::string sqlstate = {})
      : TransportError(message), kind_(kind), sqlstate_(std::move(sqlstate)) {}
  DurableErrorKind kind() const noexcept { return kind_; }
  /// Five-character SQLSTATE when the server sent one, else empty.
  const std::string& sqlstate() const noexcept { return sqlstate_; }

 private:
  DurableErrorKind kind_;
  std::string sqlstate_;
};

namespace durable {

/// Default schema holding herald's tables.
inline constexpr std::string_view kDefaultSchema = "herald";
inline constexpr std::size_t kMaxStreamNameLength = 200;

/// Streams and groups are named like events (dot-separated tokens of [A-Za-z0-9_-], so
/// `payments_domain_events` and `billing.v2` are fine) and at most 200 characters. Throws
/// DurableError(invalid_name) naming the `what` ("stream", "group"), the name and the offending
/// character. Names are always passed to SQL as bound parameters, never spliced.
void validate_stream_name(std::string_view name, std::string_view what = "stream");
/// True when validate_stream_name would not throw.
bool is_valid_stream_name(std::string_view name) noexcept;
/// A schema is one SQL identifier: [A-Za-z_][A-Za-z0-9_]*, at most 63 characters. It is
/// validated and then still quoted with PQescapeIdentifier wherever it appears in SQL.
void validate_schema_name(std::string_view name);

/// tasker-core's stream for a namespace: "{namespace}_domain_events" ("default_domain_events"
/// for an empty namespace; characters outside [A-Za-z0-9_-.] become '_').
std::string stream_for_namespace(std::string_view namespace_name);

/// The DSN with the password replaced by "***" (key=value or URI input; output key=value).
/// Unparseable input gives "<unparseable DSN>": the text is never echoed, it may hold a secret.
std::string redact_dsn(const std::string& dsn);

/// Where a new consumer group starts, or where replay() moves a group. `offset` N means "the next
/// event handled is N" (the group's committed offset becomes N - 1); `time` means "the first
/// event stored at or after T".
struct StartPosition {
  enum class Kind { beginning, end, offset, time };
  Kind kind = Kind::end;
  std::int64_t offset = 0;
  std::chrono::system_clock::time_point time{};

  static StartPosition beginning() { return {Kind::beginning, 0, {}}; }
  static StartPosition end() { return {Kind::end, 0, {}}; }
  static StartPosition at_offset(std::int64_t n) { return {Kind::offset, n, {}}; }
  static StartPosition at_time(std::chrono::system_clock::time_point t) { return {Kind::time, 0, t}; }
  /// "beginning", "end", a decimal offset >= 1, or an RFC 3339 time ("2026-12-03T06:00:00Z",
  /// fractional seconds and +hh:mm offsets allowed). Throws DurableError(invalid_argument).
  static StartPosition parse(std::string_view text);
  std::string to_string() const;
};

/// An owning libpq connection (PQfinish on destruction). Movable, not copyable. Like PGconn
/// itself, one Connection must be used by one thread at a time.
class Connection {
 public:
  Connection() = default;
  /// Connects (client_encoding UTF8, connect_timeout 10 s unless the DSN says otherwise).
  /// Throws DurableError(connection | authentication) with the redacted DSN and libpq's reason.
  static Connection open(const std::string& dsn);
  explicit Connection(PGconn* conn) noexcept : conn_(conn) {}
  PGconn* get() const noexcept { return conn_.get(); }
  explicit operator bool() const noexcept { return conn_ != nullptr; }
  void reset() noexcept { conn_.reset(); }

 private:
  struct Finish {
    void operator()(PGconn* c) const noexcept { PQfinish(c); }
  };
  std::unique_ptr<PGconn, Finish> conn_;
};

}  // namespace durable
}  // namespace herald
