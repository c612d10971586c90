// DurableRetention (retention.hpp).
#include "pq.hpp"

#include <herald/events/log.hpp>
#include <herald/postgres/retention.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>

namespace herald {

struct DurableRetention::Impl {
  mutable std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  bool started = false;
  std::uint64_t runs = 0;
  std::int64_t deleted = 0;
  std::uint64_t errors = 0;
  std::string last_error;
  std::thread thread;
};

DurableRetention::DurableRetention(DurableRetentionOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  durable::validate_schema_name(options_.schema);
  for (const auto& s : options_.streams) durable::validate_stream_name(s);
  if (!options_.prune.max_age && !options_.prune.max_events) {
    throw DurableError(DurableErrorKind::invalid_argument,
                       "retention '" + options_.name + "' needs a maximum age and/or a maximum number of events");
  }
}

DurableRetention::~DurableRetention() { stop(); }

std::int64_t DurableRetention::run_once() {
  auto conn = durable::Connection::open(options_.dsn);
  std::vector<std::string> streams = options_.streams;
  if (streams.empty()) {
    const auto t = durable::detail::Tables::of(conn.get(), options_.schema);
    auto r = durable::detail::exec(conn.get(), "SELECT stream FROM " + t.streams + " ORDER BY stream",
                                   "listing streams for retention");
    for (int i = 0; i < PQntuples(r.get()); ++i) streams.push_back(durable::detail::cell(r.get(), i, 0));
  }
  std::int64_t deleted = 0;
  for (const auto& s : streams) {
    if (!durable::is_valid_stream_name(s)) continue;  // a row inserted by hand; never spliced anyway
    deleted += durable::prune(conn.get(), s, options_.prune, options_.schema);
  }
  std::lock_guard lock(impl_->mu);
  ++impl_->runs;
  impl_->deleted += deleted;
  return deleted;
}

void DurableRetention::start() {
  auto& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    if (m.started) throw StateError("retention '" + options_.name + "' already started");
    m.started = true;
  }
  m.thread = std::thread([this, &m] {
    for (;;) {
      try {
        const auto n = run_once();
        if (n > 0) logger()->info("retention '{}': pruned {} events", options_.name, n);
      } catch (const std::exception& e) {
        std::lock_guard lock(m.mu);
        ++m.errors;
        m.last_error = e.what();
        logger()->warn("retention '{}': {}", options_.name, e.what());
      }
      std::unique_lock lock(m.mu);
      if (m.cv.wait_for(lock, options_.interval, [&] { return m.stopping; })) return;
    }
  });
}

void DurableRetention::stop() {
  auto& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    m.stopping = true;
  }
  m.cv.notify_all();
  if (m.thread.joinable()) m.thread.join();
}

nlohmann::json DurableRetention::stats() const {
  std::lock_guard lock(impl_->mu);
  return {{"runs", impl_->runs}, {"deleted", impl_->deleted}, {"errors", impl_->errors},
          {"last_error", impl_->last_error}};
}

}  // namespace herald
