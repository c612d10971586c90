// The Worker: the process-level host of publishers and subscribers. It takes in step
// completions, publishes their events, delivers them to subscribers and transports, and runs a
// lifecycle with hooks and graceful shutdown.
//
//   INITIALIZING -> STARTING -> RUNNING -> STOPPING -> STOPPED
//                       \           \------> ERROR ---^
//                        \---------> ERROR ---^
#pragma once

#include <herald/events/event_bus.hpp>
#include <herald/events/step_completion.hpp>
#include <herald/events/transport.hpp>
#include <herald/publishers/pipeline.hpp>
#include <herald/publishers/registry.hpp>
#include <herald/subscribers/registry.hpp>
#include <herald/worker/config.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace herald {

enum class WorkerState { initializing, starting, running, stopping, stopped, error };
/// "INITIALIZING", "STARTING", "RUNNING", "STOPPING", "STOPPED", "ERROR".
std::string_view to_string(WorkerState state) noexcept;
WorkerState parse_worker_state(std::string_view text);

/// A startup hook failed; what() names the hook.
class StartupError : public Error {
 public:
  StartupError(std::string hook, const std::string& cause)
      : Error("on_startup hook '" + hook + "' failed: " + cause), hook_(std::move(hook)) {}
  const std::string& hook() const noexcept { return hook_; }

 private:
  std::string hook_;
};

/// The HTTP endpoint (`http.listen`) could not start: the address is malformed or cannot be
/// bound (in use, not an address of this host). what() names the address.
class HttpError : public Error {
 public:
  HttpError(std::string address, const std::string& problem)
      : Error("http: cannot serve on '" + address + "': " + problem), address_(std::move(address)) {}
  const std::string& address() const noexcept { return address_; }

 private:
  std::string address_;
};

/// What stop() did. [[nodiscard]]: graceful = false means completions or events were lost.
struct [[nodiscard]] WorkerStopReport {
  bool graceful = true;             ///< every queue drained before the deadline
  std::uint64_t intake_undelivered = 0;  ///< completions accepted but never processed
  std::uint64_t events_undelivered = 0;  ///< events dropped at the subscriber queues at stop
  std::vector<std::string> hook_errors;  ///< on_shutdown hooks that threw
  std::chrono::milliseconds duration{0};
  nlohmann::json to_json() const;
};

/// HTTP: with `config.http` set, start() binds `http.listen` first (HttpError if it cannot, before
/// anything else starts) and serves GET /metrics (prometheus_text()), /health (health(); 200 when
/// healthy, 503 otherwise) and /status (status()) on threads of its own until stop() begins.
///
/// Thread safety: complete_step(), complete_steps(), process_steps(), intake_has_room(), state(),
/// status(), health(), prometheus_text(), http_address(), request_stop() may be called from any
/// thread. Hooks must be registered before start() (StateError after). start(), stop() and run()
/// are meant for one controlling thread; stop() is idempotent. The destructor stops the worker
/// (graceful, with the configured drain timeout). Not copyable or movable.
class Worker {
 public:
  using Hook = std::function<void()>;
  using CompletionHook = std::function<void(const StepCompletion&)>;
  using ErrorHook = std::function<void(const StepCompletion&, const PublishFailure&)>;
  using StateListener = std::function<void(WorkerState from, WorkerState to)>;

  /// `publishers` defaults to PublisherRegistry::instance(); it must outlive the worker.
  explicit Worker(WorkerConfig config, PublisherRegistry* publishers = nullptr);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Hooks (registration order; shutdown hooks run in reverse). `name` is used in errors.
  void on_startup(Hook hook, std::string name = {});
  void on_shutdown(Hook hook, std::string name = {});
  void on_success(CompletionHook hook);
  void on_error(ErrorHook hook);
  /// Run on each dispatcher thread as it starts / before it exits (never in inline mode).
  void on_worker_startup(Hook hook);
  void on_worker_shutdown(Hook hook);
  /// Observes every state change (called on the thread that made the change).
  void on_state_change(StateListener listener);
  /// A check of the embedder's own that health() consults (on the calling thread, e.g. an HTTP
  /// thread for /health): false or an exception makes the worker unhealthy; the answer is under
  /// "health_check". Before start() (StateError after); one per worker, a second replaces it.
  void set_health_check(std::function<bool()> check);

  /// Adds a subscriber (before or after start; after start it starts at once).
  void add_subscriber(std::shared_ptr<Subscriber> subscriber);
  /// Replaces the ZeroMQ transport from the configuration (e.g. a custom Transport). Before start.
  void set_transport(std::shared_ptr<Transport> transport);

  /// Starts everything; throws StartupError (state ERROR, then STOPPED) if an on_startup hook
  /// throws, TransportError / Error for subsystems that cannot start.
  void start();
  /// Thread-safe intake. Returns false when the completion was not accepted (worker not
  /// running, or intake full past its policy); never throws for publishing problems. `wait`
  /// says what a full `block` intake does (PublishWait: wait up to intake_block_timeout, take
  /// it beyond capacity, or refuse it at once).
  bool complete_step(StepCompletion completion, PublishWait wait = PublishWait::allowed);
  /// complete_step() for a run of completions, in order, each under the same rules, but with
  /// one lock and one wake-up of the intake thread for all those that find room (a caller
  /// with many completions at hand, such as a line reader or Python's complete_steps(), saves
  /// a hand-over per completion). Returns how many were accepted; the completions are moved
  /// from (those refused too).
  std::size_t complete_steps(std::span<StepCompletion> completions,
                             PublishWait wait = PublishWait::allowed);
  /// Publishes a run of completions on the calling thread ("caller runs") instead of handing
  /// them to the intake thread: for one producer with nothing else to do meanwhile (`herald run
  /// --steps FILE`), it saves the hand-over, the intake's wake-ups and a busy thread (issue 16:
  /// S7 measured in the commit and the README). It takes the intake's place: it waits until the
  /// intake is empty and idle, then processes the completions in order, one at a time, while
  /// the intake thread waits (completions submitted meanwhile queue behind them); the
  /// on_success / on_error hooks run on this thread. There is no queue, so the intake's
  /// capacity and overflow policy do not apply: the caller goes at the pipeline's pace (a
  /// `block` subscriber queue still holds it back). Returns how many were processed: 0 when
  /// the worker is not running (counted as rejected), fewer when stop() passed its deadline
  /// meanwhile (the rest are counted as undelivered, as the intake's would be). drain() and
  /// stop() wait for a run in progress as for the intake. The completions are only read.
  /// On a thread that must not wait for the intake (the intake thread or a run, i.e. from one
  /// of this or another worker's hooks, or inside a subscriber's handler: the intake may be
  /// waiting for that very handler's mailbox) it is complete_steps(completions) instead: the
  /// completions are queued (moved from) and the count is of those accepted.
  std::size_t process_steps(std::span<StepCompletion> completions);
  /// True when complete_step() would not wait now (for cooperative back-pressure).
  [[nodiscard]] bool intake_has_room() const;
  /// Graceful stop within `deadline` (default: the configured shutdown_drain_timeout).
  WorkerStopReport stop(std::optional<std::chrono::milliseconds> deadline = std::nullopt);
  /// Asks a run() loop to stop gracefully. Safe from any thread.
  void request_stop() noexcept;
  /// Blocks until request_stop(), SIGTERM or SIGINT (when `handle_signals`), then stops.
  /// Starts the worker if needed. With signals: a second SIGTERM/SIGINT exits at once,
  /// SIGUSR1 logs the status, SIGHUP reloads the configuration file. Returns an exit code.
  int run(bool handle_signals = true);
  /// Re-reads the configuration: new step declarations and subscribers apply to completions
  /// that arrive afterwards; nothing in flight is lost. Throws ConfigError and keeps the old
  /// configuration when the new one is invalid.
  void reload(WorkerConfig new_config);
  void reload_from_file();
  /// Waits until every accepted completion has been published and every event handled.
  [[nodiscard]] bool drain(std::chrono::milliseconds timeout);

  WorkerState state() const noexcept;
  const std::string& name() const noexcept;
  nlohmann::json status() const;
  nlohmann::json health() const;
  /// status() in the Prometheus text exposition format 0.0.4 (what GET /metrics answers; the
  /// families are listed in docs/architecture.md "Observability over HTTP").
  std::string prometheus_text() const;
  /// The address the HTTP endpoint is bound to ("127.0.0.1:40123", the port chosen when the
  /// configuration asked for 0), from start() until stop() begins; empty otherwise.
  std::optional<std::string> http_address() const;

  EventBus& bus();
  SubscriberRegistry& subscribers();
  PublisherRegistry& publishers();
  const WorkerConfig& config() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald
