// DurableConsumer: lease, fetch, hooks with retry, dead letters, commit (consumer.hpp).
#include "pq.hpp"

#include <herald/events/ids.hpp>
#include <herald/events/json_fields.hpp>
#include <herald/events/log.hpp>
#include <herald/events/pattern.hpp>
#include <herald/postgres/admin.hpp>
#include <herald/postgres/consumer.hpp>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>

namespace herald {

std::string_view to_string(DurableStage stage) noexcept {
  switch (stage) {
    case DurableStage::before_handle: return "before_handle";
    case DurableStage::handle: return "handle";
    case DurableStage::after_handle: return "after_handle";
  }
  return "unknown";
}

using durable::detail::cell;
using durable::detail::cell_int;
using durable::detail::exec;
using durable::detail::exec_params;

namespace {

std::string seconds_text(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

std::string exception_message(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

struct DurableConsumer::Impl {
  Impl(const DurableConsumerOptions& options, DurableHandlers handlers)
      : o(options), h(std::move(handlers)), redacted(durable::redact_dsn(options.dsn)) {}
  ~Impl() {
    if (wake_fd >= 0) ::close(wake_fd);
  }

  // What one event's hooks came to.
  enum class Outcome { handled, skipped, dead, aborted };

  const DurableConsumerOptions& o;
  DurableHandlers h;
  const std::string redacted;
  PatternSet patterns;
  int wake_fd = -1;
  std::atomic<bool> stop_flag{false};
  std::atomic<bool> running{false};
  bool started_once = false;  // start()/stop() thread only
  std::thread thread;

  std::atomic<std::uint64_t> handled{0}, failed_attempts{0}, retries{0}, dead_lettered{0},
      malformed{0}, filtered{0}, skipped{0}, redriven{0}, gaps{0}, reconnects{0},
      leases_acquired{0}, lease_lost{0};
  std::atomic<std::int64_t> position_seen{0};
  std::atomic<std::int64_t> committed{0};
  std::atomic<bool> is_active{false};
  mutable std::mutex error_mu;
  std::string last_error;
  RateLimiter log_limit{10, std::chrono::seconds(1)};

  // Consumer thread only (and start(), before the thread exists).
  durable::Connection conn;
  durable::detail::Tables t;
  std::int64_t position = 0;  // last offset handled (or skipped) by this member
  std::int64_t position_committed = 0;
  std::chrono::steady_clock::time_point last_renew{};

  std::string where() const { return "stream '" + o.stream + "', group '" + o.group + "'"; }

  void set_error(const std::string& e) {
    std::lock_guard lock(error_mu);
    last_error = e;
  }

  template <typename... Args>
  void warn(fmt::format_string<Args...> f, Args&&... args) {
    std::uint64_t suppressed = 0;
    if (log_limit.allow(&suppressed)) {
      logger()->warn("durable consumer '{}' ({}): {}{}", o.name, where(),
                     fmt::format(f, std::forward<Args>(args)...),
                     suppressed ? fmt::format(" ({} similar messages suppressed)", suppressed) : "");
    }
  }

  // --- connection, group, lease -------------------------------------------------------------

  void open_connection() {
    durable::Connection c = durable::Connection::open(o.dsn);
    durable::require_schema(c.get(), o.schema);
    t = durable::detail::Tables::of(c.get(), o.schema);
    const std::int64_t initial = durable::detail::resolve_position(c.get(), t, o.stream, o.start);
    exec_params(c.get(),
                "INSERT INTO " + t.groups + " (stream, group_name, committed_offset) VALUES "
                "($1, $2, $3::bigint) ON CONFLICT (stream, group_name) DO NOTHING",
                {o.stream, o.group, std::to_string(initial)}, "creating group '" + o.group + "'");
    exec(c.get(), "LISTEN " + durable::detail::quote_ident(c.get(), durable::notify_channel(o.schema)),
         "listening for notifications");
    conn = std::move(c);
  }

  bool try_acquire() {
    auto r = exec_params(conn.get(),
                         "UPDATE " + t.groups + " SET owner = $3, lease_until = now() + "
                         "make_interval(secs => $4::double precision), updated_at = now() "
                         "WHERE stream = $1 AND group_name = $2 AND (owner IS NULL OR owner = $3 OR "
                         "lease_until IS NULL OR lease_until < now()) RETURNING committed_offset",
                         {o.stream, o.group, o.member_id, seconds_text(o.lease)},
                         "acquiring the lease of " + where());
    if (PQntuples(r.get()) != 1) return false;
    position = position_committed = cell_int(r.get(), 0, 0);
    position_seen.store(position, std::memory_order_relaxed);
    committed.store(position, std::memory_order_relaxed);
    last_renew = std::chrono::steady_clock::now();
    is_active.store(true, std::memory_order_release);
    leases_acquired.fetch_add(1, std::memory_order_relaxed);
    logger()->info("durable consumer '{}' ({}): member {} holds the lease, resuming after offset {}",
                   o.name, where(), o.member_id, position);
    return true;
  }

  void lose_lease() {
    is_active.store(false, std::memory_order_release);
    lease_lost.fetch_add(1, std::memory_order_relaxed);
    warn("member {} lost the lease (taken over or revoked by a replay); events after offset {} "
         "may be handled again by the new owner",
         o.member_id, position_committed);
  }

  // Commits `position` and renews the lease; false when the lease is no longer ours.
  bool commit() {
    auto r = exec_params(conn.get(),
                         "UPDATE " + t.groups + " SET committed_offset = $4::bigint, lease_until = now() + "
                         "make_interval(secs => $5::double precision), updated_at = now() "
                         "WHERE stream = $1 AND group_name = $2 AND owner = $3",
                         {o.stream, o.group, o.member_id, std::to_string(position), seconds_text(o.lease)},
                         "committing offset " + std::to_string(position) + " of " + where());
    last_renew = std::chrono::steady_clock::now();
    if (std::string(PQcmdTuples(r.get())) != "1") {
      lose_lease();
      return false;
    }
    position_committed = position;
    committed.store(position, std::memory_order_release);
    return true;
  }

  bool renew_due() const {
    return std::chrono::steady_clock::now() - last_renew >= o.lease / 3;
  }

  void release() {
    if (!conn || !is_active.load()) return;
    try {
      commit();
      exec_params(conn.get(),
                  "UPDATE " + t.groups + " SET owner = NULL, lease_until = NULL WHERE stream = $1 "
                  "AND group_name = $2 AND owner = $3",
                  {o.stream, o.group, o.member_id}, "releasing the lease of " + where());
    } catch (const std::exception& e) {
      warn("could not release the lease at stop (it expires by itself): {}", e.what());
    }
    is_active.store(false, std::memory_order_release);
  }

  // --- waiting ------------------------------------------------------------------------------

  bool drain_notifies() {
    bool ours = false;
    while (PGnotify* n = PQnotifies(conn.get())) {
      if (n->extra != nullptr && o.stream == n->extra) ours = true;
      PQfreemem(n);
    }
    return ours;
  }

  // Waits up to `d` for a notification about our stream (when connected) or stop.
  void wait(std::chrono::milliseconds d) {
    if (stop_flag.load()) return;
    pollfd fds[2] = {{wake_fd, POLLIN, 0}, {-1, POLLIN, 0}};
    nfds_t n = 1;
    if (conn) {
      if (PQconsumeInput(conn.get()) == 0) {
        durable::detail::throw_error(conn.get(), nullptr, "reading notifications");
      }
      if (drain_notifies()) return;
      fds[1].fd = PQsocket(conn.get());
      n = 2;
    }
    const int rc = ::poll(fds, n, static_cast<int>(std::max<std::int64_t>(1, d.count())));
    if (rc < 0 && errno != EINTR) return;
    if (n == 2 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (PQconsumeInput(conn.get()) == 0) {
        durable::detail::throw_error(conn.get(), nullptr, "reading notifications");
      }
      drain_notifies();
    }
  }

  // --- one event ----------------------------------------------------------------------------

  // Runs the hooks once. Returns the failure message, or nullopt on success (`skip` set when
  // before_handle said no).
  std::optional<std::string> attempt_once(const EventPtr& ev, const DurableRecord& rec, bool& skip) {
    DurableStage stage = DurableStage::before_handle;
    try {
      if (h.before_handle && !h.before_handle(ev, rec)) {
        skip = true;
        return std::nullopt;
      }
      stage = DurableStage::handle;
      DurableResult res = h.handle(ev, rec);
      stage = DurableStage::after_handle;
      if (h.after_handle) h.after_handle(ev, rec, res);
      if (res.success) return std::nullopt;
      std::string msg = res.message.empty() ? std::string("handler reported failure") : res.message;
      report(ev, rec, {nullptr, msg, DurableStage::handle});
      return msg;
    } catch (...) {
      auto eptr = std::current_exception();
      std::string msg = std::string(to_string(stage)) + ": " + exception_message(eptr);
      report(ev, rec, {eptr, exception_message(eptr), stage});
      return msg;
    }
  }

  void report(const EventPtr& ev, const DurableRecord& rec, const DurableHandleError& err) {
    if (!h.on_handle_error) return;
    try {
      h.on_handle_error(ev, rec, err);
    } catch (const std::exception& e) {
      warn("on_handle_error threw for offset {}: {}", rec.offset, e.what());
    } catch (...) {
      warn("on_handle_error threw a non-std exception for offset {}", rec.offset);
    }
  }

  // Tries the event up to max_attempts times. `error`/`attempts` describe a dead event.
  Outcome process(const EventPtr& ev, DurableRecord rec, std::string& error, int& attempts) {
    auto delay = o.retry_initial;
    for (std::uint32_t attempt = 1;; ++attempt) {
      rec.attempt = static_cast<int>(attempt);
      bool skip = false;
      auto failure = attempt_once(ev, rec, skip);
      if (!failure) {
        if (skip) {
          skipped.fetch_add(1, std::memory_order_relaxed);
          return Outcome::skipped;
        }
        handled.fetch_add(1, std::memory_order_relaxed);
        return Outcome::handled;
      }
      failed_attempts.fetch_add(1, std::memory_order_relaxed);
      if (attempt >= std::max<std::uint32_t>(1, o.max_attempts)) {
        error = *failure;
        attempts = static_cast<int>(attempt);
        return Outcome::dead;
      }
      warn("'{}' at offset {} failed (attempt {} of {}), retrying in {} ms: {}", ev->event_name(),
           rec.offset, attempt, o.max_attempts, delay.count(), *failure);
      retries.fetch_add(1, std::memory_order_relaxed);
      // Back off without holding the lease hostage: renew it while we wait.
      auto until = std::chrono::steady_clock::now() + delay;
      while (std::chrono::steady_clock::now() < until) {
        if (stop_flag.load()) return Outcome::aborted;
        if (!rec.redrive && renew_due() && !commit()) return Outcome::aborted;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            until - std::chrono::steady_clock::now());
        pollfd fd{wake_fd, POLLIN, 0};
        ::poll(&fd, 1, static_cast<int>(std::clamp<std::int64_t>(left.count(), 1, 100)));
      }
      if (stop_flag.load()) return Outcome::aborted;
      delay = std::min(o.retry_max, delay * 2);
    }
  }

  // Parses a stored body; nullptr (and `why`) for a malformed row.
  static EventPtr parse_body(const std::string& body, std::string& why) {
    try {
      return DomainEvent::from_json(json_fields::parse_bounded(body));
    } catch (const std::exception& e) {
      why = e.what();
      return nullptr;
    }
  }

  // Dead-letters the event at `position + 1 == offset` and commits past it, atomically.
  bool dead_letter(std::int64_t offset, const EventPtr& ev, const std::string& body,
                   const std::string& error, int attempts) {
    exec(conn.get(), "BEGIN", "starting a dead-letter transaction");
    try {
      auto r = exec_params(conn.get(),
                           "UPDATE " + t.groups + " SET committed_offset = $4::bigint, lease_until = now() + "
                           "make_interval(secs => $5::double precision), updated_at = now() "
                           "WHERE stream = $1 AND group_name = $2 AND owner = $3",
                           {o.stream, o.group, o.member_id, std::to_string(offset), seconds_text(o.lease)},
                           "committing past a dead letter");
      if (std::string(PQcmdTuples(r.get())) != "1") {
        exec(conn.get(), "ROLLBACK", "rolling back");
        lose_lease();
        return false;
      }
      exec_params(conn.get(),
                  "INSERT INTO " + t.dead_letters + " (stream, group_name, event_offset, event_id, "
                  "event_name, body, error, attempts) VALUES ($1, $2, $3::bigint, $4, $5, $6, $7, $8::integer)",
                  {o.stream, o.group, std::to_string(offset), ev->event_id(), ev->event_name(), body,
                   error, std::to_string(attempts)},
                  "writing a dead letter");
      exec(conn.get(), "COMMIT", "committing a dead letter");
    } catch (...) {
      if (!durable::detail::connection_lost(conn.get())) PQclear(PQexec(conn.get(), "ROLLBACK"));
      throw;
    }
    position = position_committed = offset;
    committed.store(offset, std::memory_order_release);
    last_renew = std::chrono::steady_clock::now();
    dead_lettered.fetch_add(1, std::memory_order_relaxed);
    logger()->error("durable consumer '{}' ({}): '{}' at offset {} dead-lettered after {} attempts: {}",
                    o.name, where(), ev->event_name(), offset, attempts, error);
    return true;
  }

  // One batch of the stream; returns how many rows it went through.
  std::size_t consume_batch() {
    auto r = exec_params(conn.get(),
                         "SELECT event_offset, body, stored_at FROM " + t.events +
                             " WHERE stream = $1 AND event_offset > $2::bigint ORDER BY event_offset LIMIT $3::bigint",
                         {o.stream, std::to_string(position), std::to_string(o.batch_size)},
                         "reading " + where());
    const int rows = PQntuples(r.get());
    std::size_t done = 0;
    for (int i = 0; i < rows && is_active.load(std::memory_order_relaxed); ++i) {
      if (stop_flag.load()) break;
      const std::int64_t offset = cell_int(r.get(), i, 0);
      const std::string body = cell(r.get(), i, 1);
      if (offset != position + 1) {
        gaps.fetch_add(1, std::memory_order_relaxed);
        warn("offsets {} to {} are not in the log (pruned); continuing at {}", position + 1, offset - 1,
             offset);
      }
      std::string why;
      EventPtr ev = parse_body(body, why);
      if (!ev) {
        malformed.fetch_add(1, std::memory_order_relaxed);
        warn("skipped malformed row at offset {}: {}", offset, why);
      } else if (patterns.match(ev->event_name()).empty()) {
        filtered.fetch_add(1, std::memory_order_relaxed);
      } else {
        DurableRecord rec{o.stream, offset, cell(r.get(), i, 2), 1, false};
        std::string error;
        int attempts = 0;
        const Outcome out = process(ev, rec, error, attempts);
        if (out == Outcome::aborted) break;
        if (out == Outcome::dead) {
          if (!dead_letter(offset, ev, body, error, attempts)) break;
        }
      }
      position = offset;
      position_seen.store(offset, std::memory_order_relaxed);
      ++done;
      if (renew_due() && !commit()) return done;
    }
    if (is_active.load() && position != position_committed) commit();
    return done;
  }

  // Re-drives dead letters marked 'redrive'; returns how many it went through.
  std::size_t redrive_batch() {
    auto r = exec_params(conn.get(),
                         "SELECT id, event_offset, body, failed_at FROM " + t.dead_letters +
                             " WHERE stream = $1 AND group_name = $2 AND state = 'redrive' ORDER BY id LIMIT $3::bigint",
                         {o.stream, o.group, std::to_string(o.batch_size)}, "reading re-driven dead letters");
    std::size_t done = 0;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      if (stop_flag.load()) break;
      const std::string id = cell(r.get(), i, 0);
      const std::int64_t offset = cell_int(r.get(), i, 1);
      std::string why;
      EventPtr ev = parse_body(cell(r.get(), i, 2), why);
      std::string error;
      int attempts = 0;
      Outcome out = Outcome::dead;
      if (ev) {
        out = process(ev, DurableRecord{o.stream, offset, cell(r.get(), i, 3), 1, true}, error, attempts);
        if (out == Outcome::aborted) break;
      } else {
        error = "malformed: " + why;
      }
      if (out == Outcome::dead) {
        exec_params(conn.get(),
                    "UPDATE " + t.dead_letters + " SET state = 'dead', error = $2, attempts = attempts + "
                    "$3::integer, failed_at = now() WHERE id = $1::bigint",
                    {id, error, std::to_string(attempts)}, "returning a re-driven dead letter");
        warn("re-driven dead letter {} (offset {}) failed again: {}", id, offset, error);
      } else {
        exec_params(conn.get(),
                    "UPDATE " + t.dead_letters + " SET state = 'redriven', redriven_at = now() WHERE id = $1::bigint",
                    {id}, "marking a dead letter re-driven");
        redriven.fetch_add(1, std::memory_order_relaxed);
      }
      ++done;
    }
    return done;
  }

  // --- the thread ---------------------------------------------------------------------------

  void run() {
    auto delay = o.reconnect_initial;
    const auto standby_wait = std::min(o.poll_interval, std::max(std::chrono::milliseconds(10), o.lease / 4));
    const auto idle_wait = std::min(o.poll_interval, std::max(std::chrono::milliseconds(10), o.lease / 3));
    while (!stop_flag.load()) {
      try {
        if (!conn) {
          open_connection();
          logger()->info("durable consumer '{}' ({}) reconnected ({})", o.name, where(), redacted);
          delay = o.reconnect_initial;
        }
        if (!is_active.load()) {
          if (!try_acquire()) {
            wait(standby_wait);
            continue;
          }
        }
        std::size_t done = redrive_batch();
        if (is_active.load()) done += consume_batch();
        if (done == 0) {
          if (is_active.load() && renew_due()) commit();
          wait(idle_wait);
        }
      } catch (const std::exception& e) {
        set_error(e.what());
        const bool lost = durable::detail::connection_lost(conn.get()) ||
                          (dynamic_cast<const DurableError*>(&e) != nullptr &&
                           static_cast<const DurableError&>(e).kind() == DurableErrorKind::connection);
        warn("{}; retrying in {} ms", e.what(), delay.count());
        if (lost) {
          conn.reset();
          is_active.store(false, std::memory_order_release);
          reconnects.fetch_add(1, std::memory_order_relaxed);
        }
        pollfd fd{wake_fd, POLLIN, 0};
        ::poll(&fd, 1, static_cast<int>(delay.count()));
        delay = std::min(o.reconnect_max, delay * 2);
      }
    }
    release();
    conn.reset();
  }
};

DurableConsumer::DurableConsumer(DurableConsumerOptions options, DurableHandlers handlers)
    : options_(std::move(options)) {
  if (options_.member_id.empty()) options_.member_id = new_uuid_v7();
  if (options_.batch_size == 0) options_.batch_size = 1;
  impl_ = std::make_unique<Impl>(options_, std::move(handlers));
}

DurableConsumer::~DurableConsumer() {
  try {
    stop();
  } catch (...) {
  }
}

void DurableConsumer::start() {
  auto& m = *impl_;
  if (m.started_once) {
    throw StateError("durable consumer '" + options_.name + "' already started (a consumer is not restartable; "
                     "create a new one)");
  }
  m.started_once = true;
  if (!m.h.handle) {
    throw DurableError(DurableErrorKind::invalid_argument,
                       "durable consumer '" + options_.name + "' has no handle function");
  }
  durable::validate_schema_name(options_.schema);
  durable::validate_stream_name(options_.stream);
  durable::validate_stream_name(options_.group, "group");
  std::vector<std::pair<Pattern, std::size_t>> entries;
  for (const auto& p : options_.patterns) entries.emplace_back(Pattern::compile(p), 0);
  m.patterns = PatternSet(entries);
  m.open_connection();
  m.wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (m.wake_fd < 0) throw DurableError(DurableErrorKind::state, "eventfd failed");
  m.running.store(true);
  logger()->info("durable consumer '{}' ({}) started as member {} ({})", options_.name, m.where(),
                 options_.member_id, m.redacted);
  m.thread = std::thread([&m] { m.run(); });
}

void DurableConsumer::stop() {
  auto& m = *impl_;
  if (!m.thread.joinable()) return;
  m.stop_flag.store(true);
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(m.wake_fd, &one, sizeof one);
  m.thread.join();
  m.running.store(false);
}

void DurableConsumer::request_stop() noexcept {
  auto& m = *impl_;
  m.stop_flag.store(true);
  if (m.wake_fd >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(m.wake_fd, &one, sizeof one);
  }
}

nlohmann::json DurableConsumer::stats() const {
  auto& m = *impl_;
  auto get = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  std::string err;
  {
    std::lock_guard lock(m.error_mu);
    err = m.last_error;
  }
  return {{"handled", get(m.handled)},          {"failed_attempts", get(m.failed_attempts)},
          {"retries", get(m.retries)},          {"dead_lettered", get(m.dead_lettered)},
          {"malformed", get(m.malformed)},      {"filtered", get(m.filtered)},
          {"skipped", get(m.skipped)},          {"redriven", get(m.redriven)},
          {"gaps", get(m.gaps)},                {"reconnects", get(m.reconnects)},
          {"leases_acquired", get(m.leases_acquired)}, {"lease_lost", get(m.lease_lost)},
          {"active", m.is_active.load()},       {"position", m.position_seen.load()},
          {"committed_offset", m.committed.load()}, {"member_id", options_.member_id},
          {"stream", options_.stream},          {"group", options_.group},
          {"last_error", err}};
}

std::uint64_t DurableConsumer::handled() const noexcept { return impl_->handled.load(); }
std::uint64_t DurableConsumer::malformed() const noexcept { return impl_->malformed.load(); }
std::uint64_t DurableConsumer::dead_lettered() const noexcept { return impl_->dead_lettered.load(); }
std::int64_t DurableConsumer::committed_offset() const noexcept { return impl_->committed.load(); }
bool DurableConsumer::active() const noexcept { return impl_->is_active.load(); }

}  // namespace herald
