// Schema, outbox, replay, retention, dead letters, groups and grants (admin.hpp).
#include "pq.hpp"

#include <herald/postgres/admin.hpp>

#include <string>

namespace herald::durable {

using detail::cell;
using detail::cell_int;
using detail::exec;
using detail::exec_params;
using detail::Tables;

namespace detail {

std::string reserve_offsets_sql(const Tables& t) {
  return "INSERT INTO " + t.streams + " AS s (stream, last_offset) VALUES ($1, $2::bigint) "
         "ON CONFLICT (stream) DO UPDATE SET last_offset = s.last_offset + EXCLUDED.last_offset "
         "RETURNING last_offset";
}

std::int64_t resolve_position(PGconn* conn, const Tables& t, std::string_view stream,
                              const StartPosition& position) {
  const std::string s(stream);
  const std::string last =
      "COALESCE((SELECT last_offset FROM " + t.streams + " WHERE stream = $1), 0)";
  switch (position.kind) {
    case StartPosition::Kind::beginning: return 0;
    case StartPosition::Kind::offset:
      if (position.offset < 1) {
        throw DurableError(DurableErrorKind::invalid_argument,
                           "start offset must be >= 1, got " + std::to_string(position.offset));
      }
      return position.offset - 1;
    case StartPosition::Kind::end: {
      auto r = exec_params(conn, "SELECT " + last, {s}, "reading the end of stream '" + s + "'");
      return cell_int(r.get(), 0, 0);
    }
    case StartPosition::Kind::time: {
      auto r = exec_params(conn,
                           "SELECT COALESCE((SELECT min(event_offset) - 1 FROM " + t.events +
                               " WHERE stream = $1 AND stored_at >= $2::timestamptz), " + last + ")",
                           {s, format_timestamp(position.time)},
                           "finding the first event of stream '" + s + "' at " +
                               format_timestamp(position.time));
      return cell_int(r.get(), 0, 0);
    }
  }
  return 0;
}

}  // namespace detail

void ensure_schema(PGconn* conn, std::string_view schema) {
  const Tables t = Tables::of(conn, schema);
  const std::string sql =
      "BEGIN;"
      "SELECT pg_advisory_xact_lock(hashtext('herald.durable.schema'));"
      "SET LOCAL client_min_messages = warning;"
      "CREATE SCHEMA IF NOT EXISTS " + t.schema + ";"
      "CREATE TABLE IF NOT EXISTS " + t.streams + " ("
      " stream text PRIMARY KEY,"
      " last_offset bigint NOT NULL DEFAULT 0,"
      " created_at timestamptz NOT NULL DEFAULT now());"
      "CREATE TABLE IF NOT EXISTS " + t.events + " ("
      " stream text NOT NULL,"
      " event_offset bigint NOT NULL,"
      " event_id text NOT NULL,"
      " event_name text NOT NULL,"
      " body text NOT NULL,"
      " stored_at timestamptz NOT NULL DEFAULT now(),"
      " PRIMARY KEY (stream, event_offset));"
      "CREATE INDEX IF NOT EXISTS events_stream_stored_at ON " + t.events + " (stream, stored_at);"
      "CREATE TABLE IF NOT EXISTS " + t.groups + " ("
      " stream text NOT NULL,"
      " group_name text NOT NULL,"
      " committed_offset bigint NOT NULL DEFAULT 0,"
      " owner text,"
      " lease_until timestamptz,"
      " updated_at timestamptz NOT NULL DEFAULT now(),"
      " PRIMARY KEY (stream, group_name));"
      "CREATE TABLE IF NOT EXISTS " + t.dead_letters + " ("
      " id bigserial PRIMARY KEY,"
      " stream text NOT NULL,"
      " group_name text NOT NULL,"
      " event_offset bigint NOT NULL,"
      " event_id text NOT NULL DEFAULT '',"
      " event_name text NOT NULL DEFAULT '',"
      " body text NOT NULL,"
      " error text NOT NULL,"
      " attempts integer NOT NULL,"
      " state text NOT NULL DEFAULT 'dead' CHECK (state IN ('dead', 'redrive', 'redriven')),"
      " failed_at timestamptz NOT NULL DEFAULT now(),"
      " redriven_at timestamptz);"
      "CREATE INDEX IF NOT EXISTS dead_letters_redrive ON " + t.dead_letters +
      " (stream, group_name, id) WHERE state = 'redrive';"
      "COMMIT;";
  try {
    exec(conn, sql, "creating schema '" + std::string(schema) + "'");
  } catch (...) {
    if (!detail::connection_lost(conn)) PQclear(PQexec(conn, "ROLLBACK"));
    throw;
  }
}

bool schema_exists(PGconn* conn, std::string_view schema) {
  const Tables t = Tables::of(conn, schema);
  auto r = exec_params(conn,
                       "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AND "
                       "to_regclass($3) IS NOT NULL AND to_regclass($4) IS NOT NULL",
                       {t.streams, t.events, t.groups, t.dead_letters},
                       "checking schema '" + std::string(schema) + "'");
  return cell(r.get(), 0, 0) == "t";
}

void require_schema(PGconn* conn, std::string_view schema) {
  if (!schema_exists(conn, schema)) {
    throw DurableError(DurableErrorKind::missing_schema,
                       "schema '" + std::string(schema) +
                           "' does not exist or lacks herald's tables (create it with "
                           "durable::ensure_schema, `herald durable init`, or the SQL in "
                           "docs/durable.md)");
  }
}

std::string notify_channel(std::string_view schema) { return std::string(schema) + "_events"; }

std::int64_t write_outbox(PGconn* conn, const DomainEvent& event, std::string_view stream,
                          std::string_view schema) {
  validate_stream_name(stream);
  if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
    throw DurableError(DurableErrorKind::state,
                       "write_outbox needs an open transaction on the caller's connection "
                       "(BEGIN first): the event must commit or roll back with the business change");
  }
  const Tables t = Tables::of(conn, schema);
  const std::string sql = "WITH r AS (" + detail::reserve_offsets_sql(t) + "), "
                          "e AS (INSERT INTO " + t.events +
                          " (stream, event_offset, event_id, event_name, body) "
                          "SELECT $1, last_offset, $3, $4, $5 FROM r RETURNING event_offset) "
                          "SELECT event_offset, pg_notify($6, $1) FROM e";
  auto r = exec_params(conn, sql,
                       {std::string(stream), "1", event.event_id(), event.event_name(),
                        event.json_text(), notify_channel(schema)},
                       "writing event '" + event.event_name() + "' to the outbox of stream '" +
                           std::string(stream) + "'");
  return cell_int(r.get(), 0, 0);
}

std::int64_t replay(PGconn* conn, std::string_view stream, std::string_view group,
                    const StartPosition& position, std::string_view schema) {
  validate_stream_name(stream);
  validate_stream_name(group, "group");
  const Tables t = Tables::of(conn, schema);
  const std::int64_t committed = detail::resolve_position(conn, t, stream, position);
  exec_params(conn,
              "INSERT INTO " + t.groups + " AS g (stream, group_name, committed_offset) "
              "VALUES ($1, $2, $3::bigint) ON CONFLICT (stream, group_name) DO UPDATE SET "
              "committed_offset = EXCLUDED.committed_offset, owner = NULL, lease_until = NULL, "
              "updated_at = now()",
              {std::string(stream), std::string(group), std::to_string(committed)},
              "replaying group '" + std::string(group) + "' of stream '" + std::string(stream) + "'");
  return committed;
}

std::int64_t prune(PGconn* conn, std::string_view stream, const PruneOptions& options,
                   std::string_view schema) {
  validate_stream_name(stream);
  if (!options.max_age && !options.max_events) {
    throw DurableError(DurableErrorKind::invalid_argument,
                       "prune of stream '" + std::string(stream) +
                           "' needs a maximum age and/or a maximum number of events");
  }
  if (options.max_events && *options.max_events < 0) {
    throw DurableError(DurableErrorKind::invalid_argument, "prune: max_events must be >= 0");
  }
  const Tables t = Tables::of(conn, schema);
  const std::string s(stream);
  std::int64_t deleted = 0;
  if (options.max_age) {
    auto r = exec_params(conn,
                         "DELETE FROM " + t.events +
                             " WHERE stream = $1 AND stored_at < now() - make_interval(secs => $2::bigint)",
                         {s, std::to_string(options.max_age->count())},
                         "pruning stream '" + s + "' by age");
    deleted += std::stoll(PQcmdTuples(r.get()));
  }
  if (options.max_events) {
    auto r = exec_params(conn,
                         "DELETE FROM " + t.events + " WHERE stream = $1 AND event_offset <= "
                         "COALESCE((SELECT last_offset FROM " + t.streams +
                             " WHERE stream = $1), 0) - $2::bigint",
                         {s, std::to_string(*options.max_events)},
                         "pruning stream '" + s + "' by size");
    deleted += std::stoll(PQcmdTuples(r.get()));
  }
  return deleted;
}

std::vector<DeadLetter> list_dead_letters(PGconn* conn, std::string_view stream,
                                          std::string_view group, std::size_t limit,
                                          std::string_view schema) {
  validate_stream_name(stream);
  if (!group.empty()) validate_stream_name(group, "group");
  const Tables t = Tables::of(conn, schema);
  auto r = exec_params(conn,
                       "SELECT id, stream, group_name, event_offset, event_id, event_name, body, "
                       "error, attempts, state, failed_at FROM " + t.dead_letters +
                           " WHERE stream = $1 AND ($2 = '' OR group_name = $2) ORDER BY id LIMIT $3::bigint",
                       {std::string(stream), std::string(group), std::to_string(limit)},
                       "listing dead letters of stream '" + std::string(stream) + "'");
  std::vector<DeadLetter> out;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    DeadLetter d;
    d.id = cell_int(r.get(), i, 0);
    d.stream = cell(r.get(), i, 1);
    d.group = cell(r.get(), i, 2);
    d.offset = cell_int(r.get(), i, 3);
    d.event_id = cell(r.get(), i, 4);
    d.event_name = cell(r.get(), i, 5);
    d.body = cell(r.get(), i, 6);
    d.error = cell(r.get(), i, 7);
    d.attempts = static_cast<int>(cell_int(r.get(), i, 8));
    d.state = cell(r.get(), i, 9);
    d.failed_at = cell(r.get(), i, 10);
    out.push_back(std::move(d));
  }
  return out;
}

std::int64_t redrive_dead_letters(PGconn* conn, std::string_view stream, std::string_view group,
                                  std::optional<std::int64_t> id, std::string_view schema) {
  validate_stream_name(stream);
  validate_stream_name(group, "group");
  const Tables t = Tables::of(conn, schema);
  auto r = exec_params(conn,
                       "UPDATE " + t.dead_letters + " SET state = 'redrive' WHERE stream = $1 AND "
                       "group_name = $2 AND state = 'dead' AND ($3 = '' OR id = NULLIF($3, '')::bigint)",
                       {std::string(stream), std::string(group), id ? std::to_string(*id) : ""},
                       "marking dead letters of group '" + std::string(group) + "' for re-drive");
  const std::int64_t marked = std::stoll(PQcmdTuples(r.get()));
  if (marked > 0) {
    exec_params(conn, "SELECT pg_notify($1, $2)", {notify_channel(schema), std::string(stream)},
                "notifying consumers of stream '" + std::string(stream) + "'");
  }
  return marked;
}

std::vector<GroupInfo> list_groups(PGconn* conn, std::string_view stream, std::string_view schema) {
  if (!stream.empty()) validate_stream_name(stream);
  const Tables t = Tables::of(conn, schema);
  auto r = exec_params(conn,
                       "SELECT g.stream, g.group_name, g.committed_offset, COALESCE(s.last_offset, 0), "
                       "COALESCE(g.owner, ''), COALESCE(g.lease_until > now(), false) FROM " +
                           t.groups + " g LEFT JOIN " + t.streams +
                           " s ON s.stream = g.stream WHERE ($1 = '' OR g.stream = $1) "
                           "ORDER BY g.stream, g.group_name",
                       {std::string(stream)}, "listing consumer groups");
  std::vector<GroupInfo> out;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    GroupInfo g;
    g.stream = cell(r.get(), i, 0);
    g.group = cell(r.get(), i, 1);
    g.committed_offset = cell_int(r.get(), i, 2);
    g.last_offset = cell_int(r.get(), i, 3);
    g.lag = g.last_offset - g.committed_offset;
    g.owner = cell(r.get(), i, 4);
    g.lease_valid = cell(r.get(), i, 5) == "t";
    out.push_back(std::move(g));
  }
  return out;
}

std::int64_t last_offset(PGconn* conn, std::string_view stream, std::string_view schema) {
  validate_stream_name(stream);
  const Tables t = Tables::of(conn, schema);
  auto r = exec_params(conn,
                       "SELECT COALESCE((SELECT last_offset FROM " + t.streams + " WHERE stream = $1), 0)",
                       {std::string(stream)}, "reading the last offset of '" + std::string(stream) + "'");
  return cell_int(r.get(), 0, 0);
}

std::vector<std::string> grant_statements(PGconn* conn, DurableRole what, std::string_view role,
                                          std::string_view schema) {
  if (role.empty()) throw DurableError(DurableErrorKind::invalid_name, "empty role name");
  const Tables t = Tables::of(conn, schema);
  const std::string r = detail::quote_ident(conn, role);
  std::vector<std::string> out{"GRANT USAGE ON SCHEMA " + t.schema + " TO " + r};
  if (what == DurableRole::publisher) {
    out.push_back("GRANT SELECT, INSERT, UPDATE ON " + t.streams + " TO " + r);
    out.push_back("GRANT SELECT, INSERT ON " + t.events + " TO " + r);
  } else {
    out.push_back("GRANT SELECT ON " + t.streams + ", " + t.events + " TO " + r);
    out.push_back("GRANT SELECT, INSERT, UPDATE ON " + t.groups + ", " + t.dead_letters + " TO " + r);
    out.push_back("GRANT USAGE ON SEQUENCE " + t.schema + ".dead_letters_id_seq TO " + r);
  }
  return out;
}

void grant(PGconn* conn, DurableRole what, std::string_view role, std::string_view schema) {
  std::string sql = "BEGIN;";
  for (const auto& s : grant_statements(conn, what, role, schema)) sql += s + ";";
  sql += "COMMIT;";
  try {
    exec(conn, sql, "granting " + std::string(what == DurableRole::publisher ? "publisher" : "consumer") +
                        " rights to role '" + std::string(role) + "'");
  } catch (...) {
    if (!detail::connection_lost(conn)) PQclear(PQexec(conn, "ROLLBACK"));
    throw;
  }
}

}  // namespace herald::durable
