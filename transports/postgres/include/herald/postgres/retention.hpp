// DurableRetention: prunes streams on a schedule, for a running worker (issue 14: "retention
// ... as a documented command and an option of a running worker"). durable::prune is the
// one-shot form (admin.hpp, `herald durable prune`).
#pragma once

#include <herald/postgres/admin.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace herald {

struct DurableRetentionOptions {
  std::string dsn;
  std::string schema = std::string(durable::kDefaultSchema);
  std::vector<std::string> streams;  ///< empty: every stream in <schema>.streams
  durable::PruneOptions prune;       ///< max_age and/or max_events (at least one)
  std::chrono::milliseconds interval{60'000};
  std::string name = "retention";
};

/// Runs durable::prune for its streams every `interval` on its own thread and connection
/// (reconnecting when needed). A failed run is logged and counted; the next run tries again.
/// Thread safety: stats() from any thread; start(), stop() and run_once() from one controlling
/// thread. Not copyable, not movable. The destructor calls stop().
class DurableRetention {
 public:
  /// Throws DurableError(invalid_argument) without a limit, invalid_name for a bad name.
  explicit DurableRetention(DurableRetentionOptions options);
  ~DurableRetention();
  DurableRetention(const DurableRetention&) = delete;
  DurableRetention& operator=(const DurableRetention&) = delete;

  /// Starts the thread; the first run is immediate. Throws StateError when started twice.
  void start();
  /// Stops after the run in progress. Idempotent.
  void stop();
  /// One run on the calling thread (own connection); returns the events deleted. Throws
  /// DurableError.
  std::int64_t run_once();
  /// {"runs", "deleted", "errors", "last_error"}.
  nlohmann::json stats() const;

 private:
  struct Impl;
  DurableRetentionOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald
