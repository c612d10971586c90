// herald::postgres library functions on a caller's connection: creating the schema, the
// transactional outbox, replay, retention, dead letters and their re-drive, role grants.
// The tables are described in docs/durable.md.
//
// Threads: these are plain functions; each uses only the PGconn* it is given, which (as always
// with libpq) must not be used by two threads at once. They throw DurableError naming what is
// wrong (names, missing schema, permission, connection).
#pragma once

#include <herald/events/domain_event.hpp>
#include <herald/postgres/common.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::durable {

/// Creates the schema and its tables and indexes if they do not exist (idempotent; serialised
/// with an advisory lock, so concurrent callers do not race). Needs CREATE on the database.
void ensure_schema(PGconn* conn, std::string_view schema = kDefaultSchema);
/// True when the schema's four tables exist and are visible to this role.
bool schema_exists(PGconn* conn, std::string_view schema = kDefaultSchema);
/// Throws DurableError(missing_schema) naming the schema unless schema_exists().
void require_schema(PGconn* conn, std::string_view schema = kDefaultSchema);

/// The transactional outbox: appends `event` to `stream` through the caller's connection, inside
/// the caller's open transaction (PQtransactionStatus must be PQTRANS_INTRANS, else
/// DurableError(state)); the event exists if and only if that transaction commits. Consumers are
/// woken by a NOTIFY that PostgreSQL delivers at commit. Returns the event's offset.
/// Note: the stream's offset counter row stays locked until the caller's transaction ends, so
/// outbox transactions on one stream commit one after another (this is what keeps offsets in
/// commit order; see docs/durable.md).
std::int64_t write_outbox(PGconn* conn, const DomainEvent& event, std::string_view stream,
                          std::string_view schema = kDefaultSchema);

/// The NOTIFY channel of a schema: "<schema>_events" (payload: the stream name).
std::string notify_channel(std::string_view schema);

/// Moves a consumer group (creating it if absent) so that its next event is `position`, and
/// revokes its lease: an active member's next commit fails, and it re-reads the group's offset.
/// Returns the new committed offset.
std::int64_t replay(PGconn* conn, std::string_view stream, std::string_view group,
                    const StartPosition& position, std::string_view schema = kDefaultSchema);

struct PruneOptions {
  std::optional<std::chrono::seconds> max_age;  ///< delete events stored longer ago than this
  std::optional<std::int64_t> max_events;       ///< keep at most this many newest events
};
/// Retention for one stream: deletes events older than max_age and/or beyond the newest
/// max_events. Groups behind the deleted range skip it (counted as a gap by consumers). Returns
/// the number of deleted events. Offsets are never reused.
std::int64_t prune(PGconn* conn, std::string_view stream, const PruneOptions& options,
                   std::string_view schema = kDefaultSchema);

struct DeadLetter {
  std::int64_t id = 0;
  std::string stream;
  std::string group;
  std::int64_t offset = 0;
  std::string event_id;
  std::string event_name;
  std::string body;
  std::string error;
  int attempts = 0;
  std::string state;  ///< "dead", "redrive" (waiting for the group to retry it), "redriven"
  std::string failed_at;
};
/// Dead letters of a stream (and group when not empty), oldest first, at most `limit`.
std::vector<DeadLetter> list_dead_letters(PGconn* conn, std::string_view stream,
                                          std::string_view group = {}, std::size_t limit = 1000,
                                          std::string_view schema = kDefaultSchema);
/// Marks dead letters of a group (all in state "dead", or the one with `id`) for re-drive: the
/// group's active consumer handles them again before new events; success marks them
/// "redriven", failure puts them back to "dead" with the new error. Returns how many were marked.
std::int64_t redrive_dead_letters(PGconn* conn, std::string_view stream, std::string_view group,
                                  std::optional<std::int64_t> id = std::nullopt,
                                  std::string_view schema = kDefaultSchema);

struct GroupInfo {
  std::string stream;
  std::string group;
  std::int64_t committed_offset = 0;
  std::int64_t last_offset = 0;  ///< the stream's newest offset
  std::int64_t lag = 0;          ///< last_offset - committed_offset
  std::string owner;             ///< active member id, empty when none
  bool lease_valid = false;
};
/// Groups of a stream (all streams when empty).
std::vector<GroupInfo> list_groups(PGconn* conn, std::string_view stream = {},
                                   std::string_view schema = kDefaultSchema);
/// The stream's newest offset (0 when it has no events yet or does not exist).
std::int64_t last_offset(PGconn* conn, std::string_view stream,
                         std::string_view schema = kDefaultSchema);

/// What a role may do. publisher: append events (DurablePublisher with create_schema=false,
/// write_outbox). consumer: read events, keep group offsets and dead letters (DurableConsumer).
enum class DurableRole { publisher, consumer };
/// The GRANT statements for `role` on `schema` (as documented in docs/durable.md).
std::vector<std::string> grant_statements(PGconn* conn, DurableRole what, std::string_view role,
                                          std::string_view schema = kDefaultSchema);
/// Runs grant_statements() in one transaction (the caller must own the schema or be superuser).
void grant(PGconn* conn, DurableRole what, std::string_view role,
           std::string_view schema = kDefaultSchema);

}  // namespace herald::durable
