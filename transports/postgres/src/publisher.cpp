// DurablePublisher: bounded queue, one writer thread, one transaction per batch (publisher.hpp).
#include "pq.hpp"
#include "spool.hpp"

#include <herald/events/enums.hpp>
#include <herald/events/json_fields.hpp>
#include <herald/events/log.hpp>
#include <herald/postgres/admin.hpp>
#include <herald/postgres/publisher.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <span>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace herald {

namespace {
constexpr std::array<std::pair<DurableOverflow, std::string_view>, 3> kOverflowNames{{
    {DurableOverflow::reject, "reject"},
    {DurableOverflow::drop_oldest, "drop_oldest"},
    {DurableOverflow::block, "block"},
}};

// COPY text format: backslash, newline, carriage return and tab are escaped.
void append_copy_field(std::string& out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: out += c;
    }
  }
}
}  // namespace

std::string_view to_string(DurableOverflow policy) noexcept {
  return detail::enum_name(policy, kOverflowNames);
}

DurableOverflow parse_durable_overflow(std::string_view text) {
  return detail::parse_enum("durable overflow policy", text, kOverflowNames);
}

using durable::detail::exec;
using durable::detail::exec_params;

struct DurablePublisher::Impl {
  struct Pending {
    EventPtr event;
    std::string stream;
    std::int64_t offset = 0;      // assigned inside the writing transaction
    std::uint64_t spool_end = 0;  // read from the spool: its line ends here (0: from memory)
  };

  explicit Impl(const DurablePublisherOptions& options)
      : o(options), redacted(durable::redact_dsn(options.dsn)) {}

  const DurablePublisherOptions& o;
  const std::string redacted;

  mutable std::mutex mu;
  std::condition_variable cv_work;   // writer: queue not empty / stopping
  std::condition_variable cv_space;  // block policy: room in the queue
  std::condition_variable cv_done;   // flush(), stop(): progress of the writer
  std::deque<Pending> queue;
  std::size_t inflight = 0;  // events the writer holds in its current batch
  bool running = false;
  bool stopping = false;
  bool hard_stop = false;
  bool writer_done = false;
  bool started_once = false;
  bool connected = false;
  std::uint64_t accepted = 0;
  std::uint64_t rejected = 0;
  std::uint64_t dropped = 0;
  std::uint64_t batches = 0;
  std::uint64_t reconnects = 0;
  std::uint64_t write_errors = 0;
  std::uint64_t ambiguous_commits = 0;
  std::uint64_t unwritten_at_stop = 0;
  std::uint64_t rejected_by_server = 0;
  std::uint64_t spooled = 0;            // events appended to the spool by this process
  std::uint64_t in_spool = 0;           // ... and not yet committed
  std::uint64_t recovered = 0;          // events a previous process left in the spool, committed
  std::uint64_t spooled_at_stop = 0;
  std::uint64_t spool_corrupt = 0;
  std::unique_ptr<durable::detail::Spool> spool;  // under mu
  bool spooling = false;  // send() appends to the spool until it is empty again
  std::string last_error;
  std::atomic<std::uint64_t> committed{0};
  RateLimiter overflow_log{5, std::chrono::seconds(1)};
  RateLimiter error_log{5, std::chrono::seconds(1)};

  // Writer thread only (and start(), before the thread exists).
  durable::Connection conn;
  bool schema_ready = false;
  std::thread writer;

  std::string stream_of(const DomainEvent& e) const {
    if (!o.stream.empty()) return o.stream;
    std::string s = o.stream_of ? o.stream_of(e) : durable::stream_for_namespace(e.metadata().namespace_name);
    durable::validate_stream_name(s);
    return s;
  }

  // Connects and prepares the schema. Throws DurableError.
  void connect() {
    durable::Connection c = durable::Connection::open(o.dsn);
    if (!schema_ready) {
      if (o.create_schema) {
        durable::ensure_schema(c.get(), o.schema);
      } else {
        durable::require_schema(c.get(), o.schema);
      }
      schema_ready = true;
    }
    conn = std::move(c);
  }

  void record_error(const std::string& what) {
    std::uint64_t suppressed = 0;
    {
      std::lock_guard lock(mu);
      ++write_errors;
      last_error = what;
    }
    if (error_log.allow(&suppressed)) {
      logger()->warn("durable publisher '{}': {}{}", o.name, what,
                     suppressed ? fmt::format(" ({} similar messages suppressed)", suppressed) : "");
    }
  }

  // Writes the batch as one transaction. Sets `commit_sent` before COMMIT goes out.
  void write_batch(std::span<Pending> batch, bool& commit_sent) {
    PGconn* c = conn.get();
    const durable::detail::Tables t = durable::detail::Tables::of(c, o.schema);
    // Streams in order of first appearance; each stream's events keep their queue order.
    std::vector<std::pair<std::string, std::vector<std::size_t>>> streams;
    std::unordered_map<std::string_view, std::size_t> index;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto [it, fresh] = index.try_emplace(batch[i].stream, streams.size());
      if (fresh) streams.push_back({batch[i].stream, {}});
      streams[it->second].second.push_back(i);
    }
    exec(c, "BEGIN", "starting a transaction");
    const std::string reserve = durable::detail::reserve_offsets_sql(t);
    for (auto& [stream, rows] : streams) {
      auto r = exec_params(c, reserve, {stream, std::to_string(rows.size())},
                           "reserving offsets of stream '" + stream + "'");
      const std::int64_t last = durable::detail::cell_int(r.get(), 0, 0);
      std::int64_t next = last - static_cast<std::int64_t>(rows.size()) + 1;
      for (std::size_t i : rows) batch[i].offset = next++;
    }
    if (o.write_method == DurableWriteMethod::copy) {
      write_copy(c, t, batch);
    } else {
      write_insert(c, t, batch);
    }
    std::string list = "{";
    for (std::size_t i = 0; i < streams.size(); ++i) {
      if (i) list += ',';
      list += '"' + streams[i].first + '"';  // validated names: no quotes or backslashes
    }
    list += '}';
    exec_params(c, "SELECT pg_notify($1, s) FROM unnest($2::text[]) AS s",
                {durable::notify_channel(o.schema), list}, "notifying consumers");
    commit_sent = true;
    exec(c, "COMMIT", "committing a batch of " + std::to_string(batch.size()) + " events");
  }

  void write_copy(PGconn* c, const durable::detail::Tables& t, std::span<const Pending> batch) {
    auto start = durable::detail::Result(PQexec(
        c, ("COPY " + t.events + " (stream, event_offset, event_id, event_name, body) FROM STDIN").c_str()));
    if (!start || PQresultStatus(start.get()) != PGRES_COPY_IN) {
      durable::detail::throw_error(c, start.get(), "starting COPY into " + t.events);
    }
    std::string buf;
    buf.reserve(64 * 1024);
    auto put = [&] {
      if (PQputCopyData(c, buf.data(), static_cast<int>(buf.size())) != 1) {
        durable::detail::throw_error(c, nullptr, "sending COPY data");
      }
      buf.clear();
    };
    for (const auto& p : batch) {
      append_copy_field(buf, p.stream);
      buf += '\t';
      buf += std::to_string(p.offset);
      buf += '\t';
      append_copy_field(buf, p.event->event_id());
      buf += '\t';
      append_copy_field(buf, p.event->event_name());
      buf += '\t';
      append_copy_field(buf, p.event->json_text());
      buf += '\n';
      if (buf.size() >= 60 * 1024) put();
    }
    if (!buf.empty()) put();
    if (PQputCopyEnd(c, nullptr) != 1) durable::detail::throw_error(c, nullptr, "ending COPY");
    bool failed = false;
    durable::detail::Result first_error;
    while (PGresult* raw = PQgetResult(c)) {
      durable::detail::Result r(raw);
      if (PQresultStatus(raw) != PGRES_COMMAND_OK && !failed) {
        failed = true;
        first_error = std::move(r);
      }
    }
    if (failed) durable::detail::throw_error(c, first_error.get(), "COPY into " + t.events);
  }

  void write_insert(PGconn* c, const durable::detail::Tables& t, std::span<const Pending> batch) {
    constexpr std::size_t kRowsPerStatement = 1000;  // 5 parameters a row, far below 65,535
    for (std::size_t from = 0; from < batch.size(); from += kRowsPerStatement) {
      const std::size_t to = std::min(batch.size(), from + kRowsPerStatement);
      std::string sql = "INSERT INTO " + t.events + " (stream, event_offset, event_id, event_name, body) VALUES ";
      std::vector<std::string> params;
      params.reserve((to - from) * 5);
      for (std::size_t i = from; i < to; ++i) {
        const std::size_t b = (i - from) * 5;
        if (i != from) sql += ',';
        sql += "($" + std::to_string(b + 1) + ",$" + std::to_string(b + 2) + "::bigint,$" +
               std::to_string(b + 3) + ",$" + std::to_string(b + 4) + ",$" + std::to_string(b + 5) + ")";
        params.push_back(batch[i].stream);
        params.push_back(std::to_string(batch[i].offset));
        params.push_back(batch[i].event->event_id());
        params.push_back(batch[i].event->event_name());
        params.push_back(batch[i].event->json_text());
      }
      exec_params(c, sql, params, "inserting events into " + t.events);
    }
  }

  // After a COMMIT whose answer was lost: is the batch in the log? Its first stream's last row
  // carries the offset and event id the transaction wrote.
  bool batch_is_committed(std::span<const Pending> batch) {
    const auto& first_stream = batch.front().stream;
    const Pending* last = nullptr;
    for (const auto& p : batch) {
      if (p.stream == first_stream) last = &p;
    }
    const durable::detail::Tables t = durable::detail::Tables::of(conn.get(), o.schema);
    auto r = exec_params(conn.get(),
                         "SELECT event_id FROM " + t.events + " WHERE stream = $1 AND event_offset = $2::bigint",
                         {last->stream, std::to_string(last->offset)}, "checking an unconfirmed commit");
    return PQntuples(r.get()) == 1 && durable::detail::cell(r.get(), 0, 0) == last->event->event_id();
  }

  // The first `written + poisoned` events of the batch are done: `written` are in the log,
  // `poisoned` were refused by the server on their own (counted as rejected_by_server).
  void settle(std::vector<Pending>& batch, std::size_t written, std::size_t poisoned) {
    const std::size_t n = written + poisoned;
    {
      // One critical section: flush() reads committed, recovered and the rest together.
      std::lock_guard lock(mu);
      std::uint64_t spool_end = 0;
      for (std::size_t i = 0; i < n; ++i) {
        if (batch[i].spool_end == 0) continue;
        spool_end = batch[i].spool_end;
        if (spool && batch[i].spool_end <= spool->recovered_end()) {
          ++recovered;
        } else if (in_spool > 0) {
          --in_spool;
        }
      }
      if (spool_end > 0) commit_spool(spool_end);
      batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(n));
      inflight = batch.size();
      if (written > 0) ++batches;
      rejected_by_server += poisoned;
      committed.fetch_add(written, std::memory_order_release);
    }
    cv_done.notify_all();
    cv_space.notify_all();
  }

  // Under mu. Marks spool lines up to `end` committed; leaves spooling mode once it is empty.
  void commit_spool(std::uint64_t end) {
    try {
      spool->commit(end);
      if (spool->empty()) spooling = false;
    } catch (const DurableError& e) {
      last_error = e.what();
      logger()->error("durable publisher '{}': {} (these events may be written again)", o.name, e.what());
    }
  }

  // Under mu. Reads up to max_batch events from the spool into `batch`. Corrupt lines are
  // counted, logged, and skipped.
  void take_from_spool(std::vector<Pending>& batch) {
    std::uint64_t skipped_end = 0;
    for (auto& line : spool->read(o.max_batch)) {
      std::string why;
      EventPtr e;
      try {
        if (!durable::is_valid_stream_name(line.stream)) throw DurableError(DurableErrorKind::invalid_name, "bad stream");
        e = DomainEvent::from_json(json_fields::parse_bounded(line.body));
      } catch (const std::exception& x) {
        why = x.what();
      }
      if (!e) {
        ++spool_corrupt;
        logger()->error("durable publisher '{}': skipped a corrupt line of spool '{}' ending at byte {}: {}",
                        o.name, spool->path(), line.end, why);
        skipped_end = line.end;
        continue;
      }
      batch.push_back({std::move(e), std::move(line.stream), 0, line.end});
    }
    if (batch.empty() && skipped_end > 0) commit_spool(skipped_end);
  }

  // SQLSTATE classes 22 (data exception), 23 (integrity constraint) and 54 (program limit, such
  // as a row too large): errors caused by a row itself, which writing it again will not fix.
  static bool about_the_data(const DurableError& e) {
    const auto& s = e.sqlstate();
    return s.size() == 5 && (s.starts_with("22") || s.starts_with("23") || s.starts_with("54"));
  }

  // Waits `d` unless a hard stop arrives; true when it should go on.
  bool backoff(std::chrono::milliseconds d) {
    std::unique_lock lock(mu);
    return !cv_work.wait_for(lock, d, [&] { return hard_stop; });
  }

  void run() {
    std::vector<Pending> batch;
    std::size_t verify_scope = 0;  // > 0: the COMMIT of the first verify_scope events is unconfirmed
    bool isolate = false;          // write the batch one event at a time (a data error)
    auto delay = o.reconnect_initial;
    auto grow = [&] { delay = std::min(o.reconnect_max, delay * 2); };
    for (;;) {
      {
        std::unique_lock lock(mu);
        if (batch.empty()) {
          auto spool_ready = [&] { return spool && spool->has_unread(); };
          cv_work.wait(lock, [&] { return !queue.empty() || spool_ready() || stopping; });
          if (hard_stop || (queue.empty() && !spool_ready())) break;  // stopping with nothing left
          if (!queue.empty()) {
            // Memory first: while the spool has events, new ones go to the spool, so what is in
            // memory is older.
            const std::size_t n = std::min(queue.size(), o.max_batch);
            batch.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
              batch.push_back(std::move(queue.front()));
              queue.pop_front();
            }
          } else {
            take_from_spool(batch);
            if (batch.empty()) continue;
          }
          inflight = batch.size();
        } else if (hard_stop) {
          break;
        }
      }
      cv_space.notify_all();
      if (!conn) {
        try {
          connect();
          {
            std::lock_guard lock(mu);
            connected = true;
          }
          logger()->info("durable publisher '{}' connected ({})", o.name, redacted);
        } catch (const DurableError& e) {
          record_error(e.what());
          if (!backoff(delay)) break;
          grow();
          continue;
        }
      }
      bool commit_sent = false;
      try {
        if (verify_scope > 0) {
          const std::size_t scope = std::exchange(verify_scope, 0);
          if (batch_is_committed(std::span<const Pending>(batch).first(scope))) {
            logger()->info("durable publisher '{}': {} events whose commit was unconfirmed are in "
                           "the log; not writing them again", o.name, scope);
            settle(batch, scope, 0);
            delay = o.reconnect_initial;
            continue;
          }
        }
        if (!isolate) {
          write_batch(batch, commit_sent);
          settle(batch, batch.size(), 0);
        } else {
          // The batch failed with an error about its data: find the event(s) the server refuses
          // by writing one at a time; those are counted and logged, the rest go on.
          while (!batch.empty()) {
            commit_sent = false;
            try {
              write_batch(std::span<Pending>(batch).first(1), commit_sent);
              settle(batch, 1, 0);
            } catch (const DurableError& e) {
              if (!about_the_data(e) || durable::detail::connection_lost(conn.get())) throw;
              PQclear(PQexec(conn.get(), "ROLLBACK"));
              logger()->error("durable publisher '{}': the server refuses event '{}' ({}) for stream '{}'; "
                              "dropped and counted as rejected_by_server: {}",
                              o.name, batch.front().event->event_name(), batch.front().event->event_id(),
                              batch.front().stream, e.what());
              settle(batch, 0, 1);
            }
          }
          isolate = false;
        }
        delay = o.reconnect_initial;
      } catch (const std::exception& e) {
        const auto* de = dynamic_cast<const DurableError*>(&e);
        const bool lost = durable::detail::connection_lost(conn.get()) ||
                          (de != nullptr && de->kind() == DurableErrorKind::connection);
        record_error(e.what());
        if (lost) {
          if (commit_sent) {
            verify_scope = isolate ? 1 : batch.size();
            std::lock_guard lock(mu);
            ++ambiguous_commits;
          }
          conn.reset();
          std::lock_guard lock(mu);
          connected = false;
          ++reconnects;
        } else {
          PQclear(PQexec(conn.get(), "ROLLBACK"));
          // A server error about the rows (bad encoding, a value too large, a check): isolate
          // the event(s) responsible. Anything else (permissions, a missing table, a full disk,
          // a read-only server) is retried with backoff until the operator fixes it.
          if (de != nullptr && about_the_data(*de)) isolate = true;
        }
        if (!backoff(delay)) break;
        grow();
      }
    }
    conn.reset();
    std::size_t left = 0;
    {
      std::lock_guard lock(mu);
      if (spool) {
        // Memory events are older than the spool's: put them in front of it. Spool events in
        // `batch` are still in the file.
        std::vector<std::pair<std::string, std::string>> lines;
        for (const auto& p : batch) {
          if (p.spool_end == 0) lines.emplace_back(p.stream, p.event->json_text());
        }
        for (const auto& p : queue) lines.emplace_back(p.stream, p.event->json_text());
        try {
          spool->prepend(lines);
          spooled_at_stop += lines.size() + in_spool;
          in_spool = 0;
          batch.clear();
          queue.clear();
          if (!lines.empty()) {
            logger()->warn("durable publisher '{}' stopped with {} events saved in spool '{}'", o.name,
                           lines.size(), spool->path());
          }
        } catch (const DurableError& e) {
          logger()->error("durable publisher '{}': {}", o.name, e.what());
          std::erase_if(batch, [](const Pending& p) { return p.spool_end != 0; });
        }
      }
      left = queue.size() + batch.size();
      unwritten_at_stop += left;
      queue.clear();
      inflight = 0;
      connected = false;
      writer_done = true;
    }
    if (left > 0) {
      logger()->error("durable publisher '{}' stopped with {} events not written ({}); last error: {}",
                      o.name, left, redacted, last_error_copy());
    }
    cv_done.notify_all();
    cv_space.notify_all();
  }

  std::string last_error_copy() {
    std::lock_guard lock(mu);
    return last_error;
  }
};

DurablePublisher::DurablePublisher(DurablePublisherOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(options_)) {
  if (options_.max_batch == 0) options_.max_batch = 1;
  if (options_.max_queue == 0) options_.max_queue = 1;
}

DurablePublisher::~DurablePublisher() {
  try {
    stop();
  } catch (...) {
  }
}

void DurablePublisher::start() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->started_once) throw StateError("durable publisher '" + options_.name + "' already started");
    impl_->started_once = true;
  }
  durable::validate_schema_name(options_.schema);
  if (!options_.stream.empty()) durable::validate_stream_name(options_.stream);
  if (!options_.spool_path.empty()) {
    auto spool = std::make_unique<durable::detail::Spool>(options_.spool_path);
    std::lock_guard lock(impl_->mu);
    impl_->spooling = !spool->empty();
    if (impl_->spooling) {
      logger()->info("durable publisher '{}': spool '{}' holds {} bytes of events from before; writing them first",
                     options_.name, options_.spool_path, spool->pending_bytes());
    }
    impl_->spool = std::move(spool);
  }
  if (options_.require_connection_at_start) {
    impl_->connect();
    impl_->connected = true;
    logger()->info("durable publisher '{}' connected ({}), schema '{}'", options_.name,
                   impl_->redacted, options_.schema);
  }
  {
    std::lock_guard lock(impl_->mu);
    impl_->running = true;
  }
  impl_->writer = std::thread([this] { impl_->run(); });
}

void DurablePublisher::send(const EventPtr& event) {
  std::string stream = impl_->stream_of(*event);
  try {
    (void)event->json_text();  // encoded here (cached on the event): the writer never fails on it
  } catch (const std::exception& e) {
    throw TransportError("durable publisher '" + options_.name + "': cannot encode event '" +
                         event->event_name() + "' (" + event->event_id() + "): " + e.what());
  }
  auto& m = *impl_;
  std::unique_lock lock(m.mu);
  if (!m.running || m.stopping) {
    throw TransportError("durable publisher '" + options_.name + "' is not running");
  }
  auto full = [&] { return m.queue.size() + m.inflight >= options_.max_queue; };
  if (m.spool && (m.spooling || full())) {
    // Once spooling, every event goes to the spool until it is empty (order), or is rejected.
    try {
      if (m.spool->pending_bytes() >= options_.spool_max_bytes) {
        throw DurableError(DurableErrorKind::state, "spool '" + m.spool->path() + "' is full (" +
                                                        std::to_string(options_.spool_max_bytes) + " bytes)");
      }
      m.spool->append(stream, event->json_text());
    } catch (const DurableError& e) {
      ++m.rejected;
      std::uint64_t suppressed = 0;
      if (m.overflow_log.allow(&suppressed)) {
        logger()->warn("durable publisher '{}': rejected '{}': {}", options_.name, event->event_name(), e.what());
      }
      throw TransportError("durable publisher '" + options_.name + "': " + e.what());
    }
    if (!m.spooling) {
      logger()->warn("durable publisher '{}': memory queue full ({} events), spooling to '{}'", options_.name,
                     options_.max_queue, m.spool->path());
    }
    m.spooling = true;
    ++m.spooled;
    ++m.in_spool;
    ++m.accepted;
    lock.unlock();
    m.cv_work.notify_one();
    return;
  }
  if (full()) {
    bool room = false;
    if (options_.overflow == DurableOverflow::drop_oldest && !m.queue.empty()) {
      m.queue.pop_front();
      ++m.dropped;
      room = true;
      std::uint64_t suppressed = 0;
      if (m.overflow_log.allow(&suppressed)) {
        logger()->warn("durable publisher '{}': queue full ({} events), dropped the oldest ({} dropped so far)",
                       options_.name, options_.max_queue, m.dropped);
      }
    } else if (options_.overflow == DurableOverflow::block) {
      room = m.cv_space.wait_for(lock, options_.block_timeout,
                                 [&] { return !full() || !m.running || m.stopping; }) &&
             m.running && !m.stopping;
    }
    if (!room) {
      ++m.rejected;
      std::uint64_t suppressed = 0;
      if (m.overflow_log.allow(&suppressed)) {
        logger()->warn("durable publisher '{}': queue full ({} events), rejected '{}' ({} rejected so far)",
                       options_.name, options_.max_queue, event->event_name(), m.rejected);
      }
      throw TransportError("durable publisher '" + options_.name + "': queue full (" +
                           std::to_string(options_.max_queue) + " events not yet committed)");
    }
  }
  m.queue.push_back({event, std::move(stream), 0});
  ++m.accepted;
  lock.unlock();
  m.cv_work.notify_one();
}

void DurablePublisher::stop() {
  auto& m = *impl_;
  {
    std::unique_lock lock(m.mu);
    if (!m.running) return;
    m.stopping = true;
  }
  m.cv_work.notify_all();
  m.cv_space.notify_all();
  {
    std::unique_lock lock(m.mu);
    if (!m.cv_done.wait_for(lock, options_.linger, [&] { return m.writer_done; })) {
      m.hard_stop = true;
    }
  }
  m.cv_work.notify_all();
  if (m.writer.joinable()) m.writer.join();
  std::lock_guard lock(m.mu);
  m.running = false;
}

nlohmann::json DurablePublisher::stats() const {
  auto& m = *impl_;
  std::lock_guard lock(m.mu);
  return {{"accepted", m.accepted},
          {"committed", m.committed.load(std::memory_order_acquire)},
          {"rejected", m.rejected},
          {"dropped", m.dropped},
          {"queue_depth", m.queue.size() + m.inflight},
          {"batches", m.batches},
          {"reconnects", m.reconnects},
          {"write_errors", m.write_errors},
          {"ambiguous_commits", m.ambiguous_commits},
          {"unwritten_at_stop", m.unwritten_at_stop},
          {"rejected_by_server", m.rejected_by_server},
          {"spooled", m.spooled},
          {"in_spool", m.in_spool},
          {"spool_bytes", m.spool ? m.spool->pending_bytes() : 0},
          {"recovered_from_spool", m.recovered},
          {"spooled_at_stop", m.spooled_at_stop},
          {"spool_corrupt", m.spool_corrupt},
          {"connected", m.connected},
          {"last_error", m.last_error},
          {"dsn", m.redacted},
          {"schema", options_.schema},
          {"overflow", std::string(to_string(options_.overflow))}};
}

bool DurablePublisher::healthy() const {
  std::lock_guard lock(impl_->mu);
  return impl_->running && !impl_->stopping && impl_->connected;
}

std::uint64_t DurablePublisher::committed() const noexcept {
  return impl_->committed.load(std::memory_order_acquire);
}

bool DurablePublisher::flush(std::chrono::milliseconds timeout) {
  auto& m = *impl_;
  std::unique_lock lock(m.mu);
  const std::uint64_t target = m.accepted;
  return m.cv_done.wait_for(lock, timeout, [&] {
    return m.committed.load(std::memory_order_acquire) - m.recovered + m.dropped + m.rejected_by_server +
               m.unwritten_at_stop + m.spooled_at_stop >=
           target;
  });
}

}  // namespace herald
