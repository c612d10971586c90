// Private helpers of herald::postgres: owning PGresult, checked execution that turns libpq
// failures into typed DurableErrors, identifier quoting, and the SQL text of the schema.
#pragma once

#include <herald/postgres/common.hpp>

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace herald::durable::detail {

struct ClearResult {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ClearResult>;

/// The kind a SQLSTATE (or a lost connection) maps to.
DurableErrorKind classify(PGconn* conn, const char* sqlstate) noexcept;
/// libpq's message for the connection, trimmed of its trailing newline.
std::string connection_message(PGconn* conn);
/// Throws DurableError built from a failed result (or from the connection when `res` is null):
/// "<what>: <server message> (SQLSTATE xxxxx)".
[[noreturn]] void throw_error(PGconn* conn, const PGresult* res, std::string_view what);
/// True when the connection is gone (PQstatus is not CONNECTION_OK).
bool connection_lost(PGconn* conn) noexcept;

/// Runs `sql` (no parameters; may hold several statements); throws unless it succeeded.
Result exec(PGconn* conn, const std::string& sql, std::string_view what);
/// Runs `sql` with text parameters ($1...); throws unless it succeeded.
Result exec_params(PGconn* conn, const std::string& sql, const std::vector<std::string>& params,
                   std::string_view what);

/// The identifier quoted by PQescapeIdentifier. Throws DurableError(query) if libpq refuses.
std::string quote_ident(PGconn* conn, std::string_view name);

/// Text of a result cell; int64 of a result cell (0 for NULL).
std::string cell(const PGresult* res, int row, int col);
std::int64_t cell_int(const PGresult* res, int row, int col);
bool cell_null(const PGresult* res, int row, int col);

/// Quoted names of the schema's tables, computed once per connection user.
struct Tables {
  std::string schema;  // quoted
  std::string streams, events, groups, dead_letters;
  static Tables of(PGconn* conn, std::string_view schema);
};

/// The committed offset that makes `position` the next event of `stream` (see StartPosition).
std::int64_t resolve_position(PGconn* conn, const Tables& t, std::string_view stream,
                              const StartPosition& position);

/// SQL that reserves $2 offsets of stream $1 and returns the new last offset (an upsert of the
/// stream's counter row, whose row lock serialises writers of the stream until they commit).
std::string reserve_offsets_sql(const Tables& t);

/// RFC 3339 UTC with microseconds, for timestamptz parameters.
std::string format_timestamp(std::chrono::system_clock::time_point t);


}  // namespace herald::durable::detail
