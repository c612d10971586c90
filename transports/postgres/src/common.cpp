// Names, start positions, DSN redaction, connections and checked execution.
#include "pq.hpp"

#include <herald/events/log.hpp>
#include <herald/postgres/common.hpp>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

namespace herald {

std::string_view to_string(DurableErrorKind kind) noexcept {
  switch (kind) {
    case DurableErrorKind::connection: return "connection";
    case DurableErrorKind::authentication: return "authentication";
    case DurableErrorKind::missing_schema: return "missing_schema";
    case DurableErrorKind::permission: return "permission";
    case DurableErrorKind::invalid_name: return "invalid_name";
    case DurableErrorKind::invalid_argument: return "invalid_argument";
    case DurableErrorKind::state: return "state";
    case DurableErrorKind::query: return "query";
  }
  return "unknown";
}

namespace durable {
namespace {

std::string describe_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (std::isprint(u)) return std::string("'") + c + "'";
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", u);
  return buf;
}

}  // namespace

void validate_stream_name(std::string_view name, std::string_view what) {
  auto fail = [&](const std::string& reason) {
    throw DurableError(DurableErrorKind::invalid_name,
                       "invalid " + std::string(what) + " name '" + std::string(name) + "': " + reason);
  };
  if (name.empty()) fail("empty");
  if (name.size() > kMaxStreamNameLength) {
    fail("longer than " + std::to_string(kMaxStreamNameLength) + " characters");
  }
  bool token_empty = true;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == '.') {
      if (token_empty) fail("empty token at position " + std::to_string(i));
      token_empty = true;
      continue;
    }
    const auto u = static_cast<unsigned char>(c);
    if (!(std::isalnum(u) && u < 0x80) && c != '_' && c != '-') {
      fail("character " + describe_char(c) + " at position " + std::to_string(i) +
           " (allowed: letters, digits, '_', '-', and '.' between tokens)");
    }
    token_empty = false;
  }
  if (token_empty) fail("ends with '.'");
}

bool is_valid_stream_name(std::string_view name) noexcept {
  try {
    validate_stream_name(name);
    return true;
  } catch (...) {
    return false;
  }
}

void validate_schema_name(std::string_view name) {
  auto fail = [&](const std::string& reason) {
    throw DurableError(DurableErrorKind::invalid_name,
                       "invalid schema name '" + std::string(name) + "': " + reason);
  };
  if (name.empty()) fail("empty");
  if (name.size() > 63) fail("longer than 63 characters");
  for (std::size_t i = 0; i < name.size(); ++i) {
    const auto u = static_cast<unsigned char>(name[i]);
    const bool ok = u < 0x80 && (std::isalpha(u) || name[i] == '_' || (i > 0 && std::isdigit(u)));
    if (!ok) {
      fail("character " + describe_char(name[i]) + " at position " + std::to_string(i) +
           " (allowed: letters, '_', and digits after the first character)");
    }
  }
}

std::string stream_for_namespace(std::string_view namespace_name) {
  std::string base = namespace_name.empty() ? std::string("default") : std::string(namespace_name);
  for (char& c : base) {
    const auto u = static_cast<unsigned char>(c);
    if (!((std::isalnum(u) && u < 0x80) || c == '_' || c == '-' || c == '.')) c = '_';
  }
  return base + "_domain_events";
}

std::string redact_dsn(const std::string& dsn) {
  char* err = nullptr;
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &err);
  if (options == nullptr) {
    if (err != nullptr) PQfreemem(err);
    return "<unparseable DSN>";
  }
  std::string out;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0') continue;
    if (!out.empty()) out += ' ';
    out += o->keyword;
    out += '=';
    if (std::strcmp(o->keyword, "password") == 0) {
      out += "***";
      continue;
    }
    std::string v = o->val;
    const bool quote = v.find_first_of(" '\\") != std::string::npos;
    if (quote) out += '\'';
    for (char c : v) {
      if (c == '\'' || c == '\\') out += '\\';
      out += c;
    }
    if (quote) out += '\'';
  }
  PQconninfoFree(options);
  return out.empty() ? std::string("<default connection>") : out;
}

namespace {

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

int two(std::string_view s, std::size_t at) { return (s[at] - '0') * 10 + (s[at + 1] - '0'); }

// "YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)"; 'T' may be ' ' or 't'.
bool parse_rfc3339(std::string_view s, std::chrono::system_clock::time_point& out) {
  if (s.size() < 20) return false;
  auto digits_at = [&](std::size_t at, std::size_t n) {
    return at + n <= s.size() && all_digits(s.substr(at, n));
  };
  if (!digits_at(0, 4) || s[4] != '-' || !digits_at(5, 2) || s[7] != '-' || !digits_at(8, 2) ||
      (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits_at(11, 2) || s[13] != ':' ||
      !digits_at(14, 2) || s[16] != ':' || !digits_at(17, 2)) {
    return false;
  }
  std::tm tm{};
  tm.tm_year = std::stoi(std::string(s.substr(0, 4))) - 1900;
  tm.tm_mon = two(s, 5) - 1;
  tm.tm_mday = two(s, 8);
  tm.tm_hour = two(s, 11);
  tm.tm_min = two(s, 14);
  tm.tm_sec = two(s, 17);
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60) {
    return false;
  }
  std::size_t i = 19;
  std::int64_t micros = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    std::size_t start = i;
    int scale = 100000;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (scale > 0) micros += (s[i] - '0') * scale;
      scale /= 10;
      ++i;
    }
    if (i == start) return false;
  }
  std::int64_t offset_seconds = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    if (!digits_at(i + 1, 2) || i + 3 >= s.size() || s[i + 3] != ':' || !digits_at(i + 4, 2)) {
      return false;
    }
    offset_seconds = (two(s, i + 1) * 3600 + two(s, i + 4) * 60) * (s[i] == '+' ? 1 : -1);
    i += 6;
  } else {
    return false;
  }
  if (i != s.size()) return false;
  const std::time_t t = ::timegm(&tm);
  out = std::chrono::system_clock::time_point(std::chrono::seconds(t - offset_seconds)) +
        std::chrono::microseconds(micros);
  return true;
}

}  // namespace

StartPosition StartPosition::parse(std::string_view text) {
  if (text == "beginning") return beginning();
  if (text == "end") return end();
  if (all_digits(text) && text.size() <= 18) {
    const auto n = std::stoll(std::string(text));
    if (n >= 1) return at_offset(n);
  }
  std::chrono::system_clock::time_point t;
  if (parse_rfc3339(text, t)) return at_time(t);
  throw DurableError(DurableErrorKind::invalid_argument,
                     "invalid start position '" + std::string(text) +
                         "' (expected beginning, end, an offset >= 1, or an RFC 3339 time such as "
                         "2026-12-03T06:00:00Z)");
}

std::string StartPosition::to_string() const {
  switch (kind) {
    case Kind::beginning: return "beginning";
    case Kind::end: return "end";
    case Kind::offset: return std::to_string(offset);
    case Kind::time: return detail::format_timestamp(time);
  }
  return "?";
}

Connection Connection::open(const std::string& dsn) {
  const char* keys[] = {"connect_timeout", "client_encoding", "fallback_application_name", "dbname",
                        nullptr};
  const char* values[] = {"10", "UTF8", "herald", dsn.c_str(), nullptr};
  Connection c(PQconnectdbParams(keys, values, /*expand_dbname=*/1));
  if (!c) {
    throw DurableError(DurableErrorKind::connection,
                       "cannot connect to PostgreSQL (" + redact_dsn(dsn) + "): out of memory");
  }
  if (PQstatus(c.get()) != CONNECTION_OK) {
    const std::string reason = detail::connection_message(c.get());
    const bool auth = PQconnectionNeedsPassword(c.get()) ||
                      reason.find("authentication failed") != std::string::npos ||
                      reason.find("no password supplied") != std::string::npos ||
                      reason.find("password") != std::string::npos;
    throw DurableError(auth ? DurableErrorKind::authentication : DurableErrorKind::connection,
                       std::string(auth ? "PostgreSQL refused the credentials"
                                        : "cannot connect to PostgreSQL") +
                           " (" + redact_dsn(dsn) + "): " + reason);
  }
  // Server notices and warnings ("terminating connection due to ...") go to herald's log at
  // debug level instead of libpq's default, stderr.
  PQsetNoticeProcessor(
      c.get(),
      [](void*, const char* message) {
        std::string m = message != nullptr ? message : "";
        while (!m.empty() && m.back() == '\n') m.pop_back();
        logger()->debug("postgres: {}", m);
      },
      nullptr);
  return c;
}

}  // namespace durable

namespace durable::detail {

DurableErrorKind classify(PGconn* conn, const char* sqlstate) noexcept {
  if (sqlstate == nullptr || *sqlstate == '\0') {
    return DurableErrorKind::connection;  // no server answer: the connection failed
  }
  const std::string_view s(sqlstate);
  if (s == "42501") return DurableErrorKind::permission;
  if (s == "3F000" || s == "42P01") return DurableErrorKind::missing_schema;
  if (s == "28P01" || s == "28000") return DurableErrorKind::authentication;
  if (s.substr(0, 2) == "08" || s == "57P01" || s == "57P02" || s == "57P03") {
    return DurableErrorKind::connection;
  }
  if (conn != nullptr && PQstatus(conn) != CONNECTION_OK) return DurableErrorKind::connection;
  return DurableErrorKind::query;
}

std::string connection_message(PGconn* conn) {
  std::string m = conn != nullptr ? PQerrorMessage(conn) : "no connection";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  // libpq may prefix several lines; keep them on one line for logs.
  for (char& c : m) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  return m.empty() ? std::string("unknown libpq error") : m;
}

void throw_error(PGconn* conn, const PGresult* res, std::string_view what) {
  const char* sqlstate = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  std::string message;
  if (res != nullptr) {
    const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (primary != nullptr) message = primary;
  }
  if (message.empty()) message = connection_message(conn);
  std::string text = std::string(what) + ": " + message;
  if (sqlstate != nullptr) text += std::string(" (SQLSTATE ") + sqlstate + ")";
  throw DurableError(classify(conn, sqlstate), text, sqlstate != nullptr ? sqlstate : "");
}

bool connection_lost(PGconn* conn) noexcept {
  return conn == nullptr || PQstatus(conn) != CONNECTION_OK;
}

namespace {
void check(PGconn* conn, const Result& r, std::string_view what) {
  if (!r) throw_error(conn, nullptr, what);
  const auto st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) throw_error(conn, r.get(), what);
}
}  // namespace

Result exec(PGconn* conn, const std::string& sql, std::string_view what) {
  Result r(PQexec(conn, sql.c_str()));
  check(conn, r, what);
  return r;
}

Result exec_params(PGconn* conn, const std::string& sql, const std::vector<std::string>& params,
                   std::string_view what) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.c_str());
  Result r(PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                        nullptr, nullptr, 0));
  check(conn, r, what);
  return r;
}

std::string quote_ident(PGconn* conn, std::string_view name) {
  char* q = PQescapeIdentifier(conn, name.data(), name.size());
  if (q == nullptr) {
    throw DurableError(DurableErrorKind::query,
                       "cannot quote identifier '" + std::string(name) + "': " +
                           connection_message(conn));
  }
  std::string out(q);
  PQfreemem(q);
  return out;
}

std::string cell(const PGresult* res, int row, int col) {
  return std::string(PQgetvalue(res, row, col), static_cast<std::size_t>(PQgetlength(res, row, col)));
}

std::int64_t cell_int(const PGresult* res, int row, int col) {
  if (PQgetisnull(res, row, col)) return 0;
  return std::stoll(PQgetvalue(res, row, col));
}

bool cell_null(const PGresult* res, int row, int col) { return PQgetisnull(res, row, col) != 0; }

Tables Tables::of(PGconn* conn, std::string_view schema) {
  validate_schema_name(schema);
  Tables t;
  t.schema = quote_ident(conn, schema);
  t.streams = t.schema + ".streams";
  t.events = t.schema + ".events";
  t.groups = t.schema + ".consumer_groups";
  t.dead_letters = t.schema + ".dead_letters";
  return t;
}

std::string format_timestamp(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto us = duration_cast<microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
  long frac = static_cast<long>(us % 1'000'000);
  if (frac < 0) {
    frac += 1'000'000;
    --secs;
  }
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return buf;
}

}  // namespace durable::detail
}  // namespace herald
