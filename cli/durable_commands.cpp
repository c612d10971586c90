// herald consume: reads a PostgreSQL stream as one consumer group, printing each event as a JSON
// line (the event's JSON with "stream" and "offset" in front), committing as it goes.
// herald durable init|groups|replay|prune|dead-letters: the operations of docs/durable.md.
//
// The DSN comes from --dsn or, better (argv is visible to every user of the host), from the
// environment variable named by --dsn-env. Errors (unreachable server, wrong password, missing
// schema, bad names) are herald::DurableError: main prints them and exits 1.
#include "durable_commands.hpp"
#include "signals.hpp"

#include <herald/events/log.hpp>
#include <herald/events/pattern.hpp>
#include <herald/postgres/postgres.hpp>

#include <CLI/CLI.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>

namespace herald::cli {

namespace {

struct DsnFlags {
  std::string dsn;
  std::string dsn_env;
  std::string schema = std::string(durable::kDefaultSchema);

  std::string resolve() const {
    if (!dsn.empty()) return dsn;
    if (!dsn_env.empty()) {
      const char* v = std::getenv(dsn_env.c_str());
      if (v == nullptr || *v == '\0') {
        throw ConfigError("--dsn-env", "environment variable '" + dsn_env + "' is not set or empty");
      }
      return v;
    }
    throw ConfigError("--dsn", "give --dsn DSN or --dsn-env VARIABLE");
  }
};

void add_dsn_flags(CLI::App& cmd, DsnFlags& f) {
  auto* dsn = cmd.add_option("--dsn", f.dsn, "libpq connection string or URI (the password is never logged)");
  cmd.add_option("--dsn-env", f.dsn_env, "Name of an environment variable holding the DSN (keeps it out of argv)")
      ->excludes(dsn);
  cmd.add_option("--schema", f.schema, "Schema of herald's tables")->capture_default_str();
}

void print_line(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// --- herald consume -------------------------------------------------------------------------

struct ConsumeArgs {
  DsnFlags db;
  std::string stream;
  std::string group;
  std::string from = "end";
  std::vector<std::string> patterns;
  std::uint64_t count = 0;
  int timeout_ms = 0;
  std::size_t batch_size = 100;
  int lease_ms = 10'000;
  std::uint32_t max_attempts = 5;
};

int run_consume(const ConsumeArgs& a) {
  SignalWaiter signals{SIGINT, SIGTERM};  // before any thread starts
  DurableConsumerOptions o;
  o.dsn = a.db.resolve();
  o.schema = a.db.schema;
  o.stream = a.stream;
  o.group = a.group;
  o.start = durable::StartPosition::parse(a.from);
  o.patterns = a.patterns;
  o.batch_size = a.batch_size;
  o.lease = std::chrono::milliseconds(a.lease_ms);
  o.max_attempts = a.max_attempts;
  o.name = "consume";

  std::atomic<std::uint64_t> printed{0};
  DurableConsumer* self = nullptr;
  DurableHandlers h;
  h.handle = [&](const EventPtr& e, const DurableRecord& r) {
    // The consumer's thread is the only writer of stdout.
    const std::string& body = e->json_text();
    std::string line = "{\"stream\":\"" + r.stream + "\",\"offset\":" + std::to_string(r.offset);
    line += body.size() > 2 ? "," + body.substr(1) : "}";
    print_line(line);
    if (++printed == a.count) {
      self->request_stop();  // commits this event, handles no further one
      signals.wake();
    }
    return DurableResult::ok();
  };
  DurableConsumer consumer(o, h);
  self = &consumer;
  consumer.start();
  std::fprintf(stderr, "consume: group '%s' of stream '%s' (%s), member %s\n", a.group.c_str(), a.stream.c_str(),
               durable::redact_dsn(o.dsn).c_str(), consumer.member_id().c_str());

  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (a.timeout_ms > 0) deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(a.timeout_ms);
  bool timed_out = false;
  for (;;) {
    if (a.count != 0 && printed.load() >= a.count) break;
    const int sig = signals.wait(deadline);
    if (sig == 0) {
      timed_out = true;
      break;
    }
    if (sig == SIGINT || sig == SIGTERM) break;
  }
  consumer.stop();
  auto stats = consumer.stats();
  stats["printed"] = printed.load();
  stats["timed_out"] = timed_out;
  std::fprintf(stderr, "%s\n", stats.dump().c_str());
  return timed_out && a.count != 0 ? 1 : 0;
}

void add_consume(CLI::App& app) {
  auto a = std::make_shared<ConsumeArgs>();
  auto* cmd = app.add_subcommand(
      "consume",
      "Read a PostgreSQL stream as consumer group GROUP and print each matching event as a JSON\n"
      "line on stdout (the event with \"stream\" and \"offset\" in front); offsets are committed\n"
      "as events are printed (at least once). Exits after --count events (0), --timeout-ms (1 if\n"
      "--count was not reached), or SIGINT/SIGTERM (0); a summary goes to stderr.");
  add_dsn_flags(*cmd, a->db);
  cmd->add_option("--stream", a->stream, "Stream name (e.g. payments_domain_events)")->required();
  cmd->add_option("--group", a->group, "Consumer group name")->required();
  cmd->add_option("--from", a->from, "Where a new group starts: beginning, end, an offset, or an RFC 3339 time")
      ->capture_default_str();
  cmd->add_option("PATTERN", a->patterns, "Glob pattern(s): '*' one token, '#' any tokens")
      ->required()
      ->check(CLI::Validator(
          [](std::string& v) {
            try {
              (void)Pattern::compile(v);
              return std::string();
            } catch (const PatternError& e) {
              return std::string(e.what());
            }
          },
          "PATTERN"));
  cmd->add_option("--count", a->count, "Exit after N events (0: no limit)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--timeout-ms", a->timeout_ms, "Exit after T milliseconds (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch-size", a->batch_size, "Rows read and committed at a time")->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--lease-ms", a->lease_ms, "Group lease; a killed member holds the group this long")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->callback([a] {
    if (int code = run_consume(*a); code != 0) throw CLI::RuntimeError(code);
  });
}

// --- herald durable ... ---------------------------------------------------------------------

struct AdminArgs {
  DsnFlags db;
  std::string stream;
  std::string group;
  std::string from;
  std::int64_t max_age_s = -1;
  std::int64_t max_events = -1;
  std::size_t limit = 1000;
  std::int64_t redrive_id = 0;
  bool redrive = false;
};

durable::Connection open(const DsnFlags& f) {
  durable::validate_schema_name(f.schema);
  return durable::Connection::open(f.resolve());
}

void add_admin(CLI::App& app) {
  auto* durable_cmd = app.add_subcommand(
      "durable", "Operate the PostgreSQL event log (docs/durable.md): init, groups, replay, prune, dead-letters");
  durable_cmd->require_subcommand(1);

  {
    auto a = std::make_shared<AdminArgs>();
    auto* cmd = durable_cmd->add_subcommand("init", "Create the schema and its tables (idempotent)");
    add_dsn_flags(*cmd, a->db);
    cmd->callback([a] {
      auto c = open(a->db);
      durable::ensure_schema(c.get(), a->db.schema);
      print_line(nlohmann::json{{"schema", a->db.schema}, {"created_or_present", true}}.dump());
    });
  }
  {
    auto a = std::make_shared<AdminArgs>();
    auto* cmd = durable_cmd->add_subcommand("groups", "List consumer groups with their offsets and lag (JSON lines)");
    add_dsn_flags(*cmd, a->db);
    cmd->add_option("--stream", a->stream, "Only this stream");
    cmd->callback([a] {
      auto c = open(a->db);
      durable::require_schema(c.get(), a->db.schema);
      for (const auto& g : durable::list_groups(c.get(), a->stream, a->db.schema)) {
        print_line(nlohmann::json{{"stream", g.stream}, {"group", g.group}, {"committed_offset", g.committed_offset},
                                  {"last_offset", g.last_offset}, {"lag", g.lag}, {"owner", g.owner},
                                  {"lease_valid", g.lease_valid}}
                       .dump());
      }
    });
  }
  {
    auto a = std::make_shared<AdminArgs>();
    auto* cmd = durable_cmd->add_subcommand(
        "replay", "Move GROUP so that its next event is --from (beginning, end, an offset, or a time); "
                  "its active member re-reads from there");
    add_dsn_flags(*cmd, a->db);
    cmd->add_option("--stream", a->stream, "Stream name")->required();
    cmd->add_option("--group", a->group, "Consumer group")->required();
    cmd->add_option("--from", a->from, "beginning, end, an offset >= 1, or an RFC 3339 time")->required();
    cmd->callback([a] {
      const auto position = durable::StartPosition::parse(a->from);
      auto c = open(a->db);
      durable::require_schema(c.get(), a->db.schema);
      const auto committed = durable::replay(c.get(), a->stream, a->group, position, a->db.schema);
      print_line(nlohmann::json{{"stream", a->stream}, {"group", a->group}, {"committed_offset", committed}}.dump());
    });
  }
  {
    auto a = std::make_shared<AdminArgs>();
    auto* cmd = durable_cmd->add_subcommand("prune", "Delete a stream's events older than --max-age-s and/or "
                                                     "beyond the newest --max-events");
    add_dsn_flags(*cmd, a->db);
    cmd->add_option("--stream", a->stream, "Stream name")->required();
    cmd->add_option("--max-age-s", a->max_age_s, "Delete events stored more than this many seconds ago")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--max-events", a->max_events, "Keep at most this many newest events")
        ->check(CLI::NonNegativeNumber);
    cmd->callback([a] {
      durable::PruneOptions p;
      if (a->max_age_s >= 0) p.max_age = std::chrono::seconds(a->max_age_s);
      if (a->max_events >= 0) p.max_events = a->max_events;
      auto c = open(a->db);
      durable::require_schema(c.get(), a->db.schema);
      const auto deleted = durable::prune(c.get(), a->stream, p, a->db.schema);
      print_line(nlohmann::json{{"stream", a->stream}, {"deleted", deleted}}.dump());
    });
  }
  {
    auto a = std::make_shared<AdminArgs>();
    auto* cmd = durable_cmd->add_subcommand(
        "dead-letters", "List a stream's dead letters (JSON lines), or with --redrive mark a group's "
                        "dead letters (all, or --id) to be handled again by its consumer");
    add_dsn_flags(*cmd, a->db);
    cmd->add_option("--stream", a->stream, "Stream name")->required();
    cmd->add_option("--group", a->group, "Only this group (required with --redrive)");
    cmd->add_option("--limit", a->limit, "At most this many")->capture_default_str();
    cmd->add_flag("--redrive", a->redrive, "Mark for re-drive instead of listing");
    cmd->add_option("--id", a->redrive_id, "With --redrive: only this dead letter");
    cmd->callback([a] {
      auto c = open(a->db);
      durable::require_schema(c.get(), a->db.schema);
      if (a->redrive) {
        if (a->group.empty()) throw ConfigError("--group", "--redrive needs --group");
        std::optional<std::int64_t> id;
        if (a->redrive_id > 0) id = a->redrive_id;
        const auto marked = durable::redrive_dead_letters(c.get(), a->stream, a->group, id, a->db.schema);
        print_line(nlohmann::json{{"stream", a->stream}, {"group", a->group}, {"marked", marked}}.dump());
        return;
      }
      for (const auto& d : durable::list_dead_letters(c.get(), a->stream, a->group, a->limit, a->db.schema)) {
        print_line(nlohmann::json{{"id", d.id}, {"stream", d.stream}, {"group", d.group}, {"offset", d.offset},
                                  {"event_id", d.event_id}, {"event_name", d.event_name}, {"error", d.error},
                                  {"attempts", d.attempts}, {"state", d.state}, {"failed_at", d.failed_at}}
                       .dump());
      }
    });
  }
}

}  // namespace

void add_consume_command(CLI::App& app) { add_consume(app); }
void add_durable_command(CLI::App& app) { add_admin(app); }

}  // namespace herald::cli
