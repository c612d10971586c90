#include <herald/worker/worker.hpp>

#include <herald/events/detail/bounded_queue.hpp>
#include <herald/events/enums.hpp>
#include <herald/events/log.hpp>
#include <herald/postgres/publisher.hpp>
#include <herald/postgres/retention.hpp>
#include <herald/subscribers/audit.hpp>
#include <herald/subscribers/metrics.hpp>

#include "http_endpoint.hpp"
#include "prometheus_status.hpp"
#include "signals.hpp"
#include "transport_factory.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>

namespace herald {

namespace {
constexpr std::array<std::pair<WorkerState, std::string_view>, 6> kStateNames{{
    {WorkerState::initializing, "INITIALIZING"},
    {WorkerState::starting, "STARTING"},
    {WorkerState::running, "RUNNING"},
    {WorkerState::stopping, "STOPPING"},
    {WorkerState::stopped, "STOPPED"},
    {WorkerState::error, "ERROR"},
}};

bool transition_allowed(WorkerState from, WorkerState to) {
  using S = WorkerState;
  switch (from) {
    case S::initializing: return to == S::starting;
    case S::starting: return to == S::running || to == S::error;
    case S::running: return to == S::stopping || to == S::error;
    case S::error: return to == S::stopping;
    case S::stopping: return to == S::stopped;
    case S::stopped: return false;
  }
  return false;
}

// A subscriber declared in the configuration: the built-in it wraps, with the configuration's
// mailbox, overflow, slow-handler and circuit-breaker settings.
class ConfiguredSubscriber final : public Subscriber {
 public:
  ConfiguredSubscriber(std::shared_ptr<Subscriber> inner, SubscriberConfig config)
      : inner_(std::move(inner)), config_(std::move(config)) {}
  std::string name() const override { return config_.name; }
  std::vector<std::string> subscribes_to() const override { return config_.subscribes_to; }
  SubscriberResult handle(const EventPtr& event) override { return inner_->handle(event); }
  bool handles_batches() const override { return inner_->handles_batches(); }
  SubscriberResult handle_batch(std::span<const EventPtr> events, std::span<HandleOutcome> outcomes) override {
    return inner_->handle_batch(events, outcomes);
  }
  bool before_handle(const EventPtr& event) override { return inner_->before_handle(event); }
  void after_handle(const EventPtr& event, const SubscriberResult& result) override {
    inner_->after_handle(event, result);
  }
  void on_handle_error(const EventPtr& event, const HandleError& error) override {
    inner_->on_handle_error(event, error);
  }
  void on_start() override { inner_->on_start(); }
  void on_stop() override { inner_->on_stop(); }
  bool health_check() override { return inner_->health_check(); }
  SubscribeOptions subscribe_options() const override {
    SubscribeOptions o;
    o.name = config_.name;
    o.capacity = config_.capacity;
    o.overflow = config_.overflow;
    o.block_timeout = config_.block_timeout;
    o.slow_threshold = config_.dispatch_timeout;
    return o;
  }
  CircuitBreakerOptions circuit_breaker() const override {
    return {config_.breaker_failure_threshold, config_.breaker_cooldown};
  }
  const SubscriberConfig& config() const { return config_; }

 private:
  std::shared_ptr<Subscriber> inner_;
  SubscriberConfig config_;
};

std::shared_ptr<Subscriber> make_configured_subscriber(const SubscriberConfig& c) {
  std::shared_ptr<Subscriber> inner;
  if (c.type == SubscriberType::audit) {
    AuditOptions options;
    options.fsync = c.fsync;
    inner = std::make_shared<AuditSubscriber>(c.name, c.subscribes_to, *c.path, options);
  } else {
    inner = std::make_shared<MetricsSubscriber>(c.name, c.subscribes_to, c.path);
  }
  return std::make_shared<ConfiguredSubscriber>(std::move(inner), c);
}

using StepTable = std::map<std::string, std::vector<EventDeclaration>>;

// This thread runs a worker's pipeline (its intake thread, or a process_steps() run): a
// process_steps() here would wait for itself.
constinit thread_local bool t_runs_pipeline = false;

struct RunsPipelineScope {
  bool outer = t_runs_pipeline;
  RunsPipelineScope() noexcept { t_runs_pipeline = true; }
  ~RunsPipelineScope() { t_runs_pipeline = outer; }
  RunsPipelineScope(const RunsPipelineScope&) = delete;
  RunsPipelineScope& operator=(const RunsPipelineScope&) = delete;
};

}  // namespace

std::string_view to_string(WorkerState state) noexcept { return detail::enum_name(state, kStateNames); }
WorkerState parse_worker_state(std::string_view text) {
  return detail::parse_enum("worker state", text, kStateNames);
}

nlohmann::json WorkerStopReport::to_json() const {
  return {{"graceful", graceful},
          {"intake_undelivered", intake_undelivered},
          {"events_undelivered", events_undelivered},
          {"hook_errors", hook_errors},
          {"duration_ms", duration.count()}};
}

struct Worker::Impl {
  WorkerConfig config;
  PublisherRegistry& publishers;

  mutable std::mutex state_mutex;  // serializes transitions and hook registration
  std::atomic<WorkerState> state{WorkerState::initializing};
  std::vector<std::pair<std::string, Hook>> startup_hooks, shutdown_hooks;
  std::vector<CompletionHook> success_hooks;
  std::vector<ErrorHook> error_hooks;
  std::vector<Hook> thread_start_hooks, thread_stop_hooks;
  std::vector<StateListener> listeners;
  std::function<bool()> health_check;  // set_health_check()

  // The HTTP endpoint (config.http): created first in start(), stopped first in stop().
  mutable std::mutex http_mutex;  // guards `http` for http_address() from other threads
  std::unique_ptr<detail::HttpEndpoint> http;
  void stop_http() {
    std::unique_ptr<detail::HttpEndpoint> endpoint;
    {
      std::lock_guard lock(http_mutex);
      endpoint = std::move(http);
    }
    if (endpoint) endpoint->stop();  // joins its threads; a request in progress finishes first
  }

  std::vector<std::shared_ptr<Subscriber>> pending_subscribers;
  std::shared_ptr<Transport> transport;
  bool transport_started = false;
  // The durable road (transports.postgres): its own transport beside the ZeroMQ one.
  std::unique_ptr<DurablePublisher> durable;
  bool durable_started = false;
  std::unique_ptr<DurableRetention> retention;  // transports.postgres.retention

  // Stops the out-of-process roads: each flushes what it holds (ZeroMQ within its linger, the
  // durable road within its own) and a failure of one does not skip the other.
  void stop_transports() {
    if (retention) retention->stop();  // after its run in progress
    if (transport_started) {
      try {
        transport->stop();
      } catch (const std::exception& e) {
        logger()->error("worker '{}': transport stop failed: {}", config.name, e.what());
      }
      transport_started = false;
    }
    if (durable_started) {
      try {
        durable->stop();
      } catch (const std::exception& e) {
        logger()->error("worker '{}': durable road stop failed: {}", config.name, e.what());
      }
      durable_started = false;
    }
  }

  std::unique_ptr<EventBus> bus;
  std::unique_ptr<SubscriberRegistry> subscribers;
  std::unique_ptr<EventRouter> router;
  std::unique_ptr<PublishingPipeline> pipeline;

  // The step table is swapped whole on reload; the intake thread reads a snapshot per completion.
  mutable std::mutex steps_mutex;
  std::shared_ptr<const StepTable> steps;

  // Intake: a bounded queue drained by one thread, so events are published in completion order.
  // intake_mutex guards `intake` (the same BoundedQueue as a bus mailbox's: capacity, overflow
  // policy and block timeout from the config; closed until start()) and `intake_busy`.
  using IntakeLock = std::unique_lock<std::mutex>;
  mutable std::mutex intake_mutex;
  std::condition_variable intake_idle;
  detail::BoundedQueue<StepCompletion> intake;
  bool intake_busy = false;
  std::thread intake_thread;
  // Taken from `intake` by the intake thread, not yet started (fewer than kIntakeBatch).
  std::atomic<std::size_t> intake_in_hand{0};
  // stop() passed its deadline: the intake thread leaves the rest of its batch (counted there).
  std::atomic<bool> intake_abandoned{false};
  // What a process_steps() caller left unprocessed when stop() gave up (under intake_mutex;
  // stop() collects it once the caller has let go of the intake).
  std::uint64_t caller_left = 0;

  // received == processed + dropped + queued; rejected were never accepted.
  std::atomic<std::uint64_t> received{0}, processed{0}, rejected{0}, dropped{0}, succeeded{0},
      failed{0}, unknown_step{0}, hook_errors{0}, overcommitted{0};
  RateLimiter overcommit_log{1, std::chrono::seconds(10)};
  std::chrono::steady_clock::time_point started_at = std::chrono::steady_clock::now();

  std::mutex run_mutex;
  std::condition_variable run_cv;
  bool stop_requested = false;
  bool stop_done = false;
  WorkerStopReport last_stop;
  RateLimiter error_log{10, std::chrono::seconds(1)};

  Impl(WorkerConfig c, PublisherRegistry& p)
      : config(std::move(c)),
        publishers(p),
        steps(std::make_shared<const StepTable>(config.steps)),
        intake({config.intake_capacity, config.intake_overflow, config.intake_block_timeout},
               /*closed=*/true) {}

  void transition(WorkerState to) {
    WorkerState from;
    std::vector<StateListener> to_notify;
    {
      std::lock_guard lock(state_mutex);
      from = state.load();
      if (!transition_allowed(from, to)) {
        throw StateError("worker '" + config.name + "': illegal transition " +
                         std::string(to_string(from)) + " -> " + std::string(to_string(to)));
      }
      state.store(to);
      to_notify = listeners;
    }
    logger()->info("worker '{}': {} -> {}", config.name, to_string(from), to_string(to));
    for (auto& l : to_notify) {
      try {
        l(from, to);
      } catch (const std::exception& e) {
        logger()->error("worker '{}': state listener threw: {}", config.name, e.what());
      }
    }
  }

  void require_not_started(std::string_view what) const {
    if (state.load() != WorkerState::initializing) {
      throw StateError("worker '" + config.name + "': " + std::string(what) +
                       " must be registered before start() (state " +
                       std::string(to_string(state.load())) + ")");
    }
  }

  std::shared_ptr<const StepTable> current_steps() const {
    std::lock_guard lock(steps_mutex);
    return steps;
  }

  void run_thread_hooks(const std::vector<Hook>& hooks, std::string_view which) {
    for (const auto& h : hooks) {
      try {
        h();
      } catch (const std::exception& e) {
        hook_errors.fetch_add(1);
        logger()->error("worker '{}': {} hook failed: {}", config.name, which, e.what());
      }
    }
  }

  void report_error(const StepCompletion& c, const PublishFailure& failure) {
    failed.fetch_add(1);
    for (const auto& h : error_hooks) {
      try {
        h(c, failure);
      } catch (const std::exception& e) {
        hook_errors.fetch_add(1);
        logger()->error("worker '{}': on_error hook failed for step '{}': {}", config.name,
                        c.step_name, e.what());
      }
    }
  }

  void process(const StepCompletion& c) {
    const auto table = current_steps();
    const auto it = table->find(c.step_name);
    if (it == table->end()) {
      unknown_step.fetch_add(1);
      std::string known;
      for (const auto& [name, d] : *table) known += (known.empty() ? "" : ", ") + name;
      PublishFailure f;
      f.stage = PublishStage::lookup;
      f.message = "unknown step '" + c.step_name + "' (configured steps: " +
                  (known.empty() ? "none" : known) + ")";
      f.exception = std::make_exception_ptr(Error(f.message));
      if (error_log.allow()) {
        logger()->warn("worker '{}': {} correlation_id={}", config.name, f.message, c.correlation_id);
      }
      report_error(c, f);
      return;
    }
    const auto result = pipeline->publish(c, it->second);
    if (result.ok()) {
      succeeded.fetch_add(1);
      for (const auto& h : success_hooks) {
        try {
          h(c);
        } catch (const std::exception& e) {
          hook_errors.fetch_add(1);
          logger()->error("worker '{}': on_success hook failed for step '{}': {}", config.name,
                          c.step_name, e.what());
        }
      }
    } else {
      report_error(c, result.failed.front());
    }
  }

  // process() for the intake thread and a process_steps() run, then counted processed. Hooks are
  // guarded inside process(); this is the last resort, for anything at all (something that is
  // not a std::exception included): escaping, it would end the intake thread or leave the
  // intake held busy by a run.
  void process_contained(const StepCompletion& c) noexcept {
    try {
      process(c);
    } catch (const std::exception& e) {
      logger()->error("worker '{}': processing step '{}' failed: {}", config.name, c.step_name, e.what());
    } catch (...) {
      logger()->error("worker '{}': processing step '{}' failed: a non-standard exception", config.name, c.step_name);
    }
    processed.fetch_add(1);
  }

  // Takes completions in batches of up to kIntakeBatch: one lock, one wake-up of the blocked
  // submitters and one DeferWakes scope (a dispatcher wake-up per mailbox, not per event) per
  // batch. A hand-over per completion cost about one context switch each (issue 16's profile).
  // Completions are still processed one by one, in order.
  static constexpr std::size_t kIntakeBatch = 64;
  void intake_main() {
    const RunsPipelineScope runs_pipeline;
    std::vector<StepCompletion> batch;
    batch.reserve(kIntakeBatch);
    while (true) {
      {
        IntakeLock lock(intake_mutex);
        if (!intake.wait_for_items(lock)) break;  // closed and drained
        // A process_steps() caller holds the intake: what is queued waits for it.
        intake_idle.wait(lock, [&] { return !intake_busy; });
        // Wakes the submitters blocked for room (only if there are any).
        const std::size_t n = intake.take(lock, kIntakeBatch, batch);
        intake_in_hand.store(n, std::memory_order_relaxed);
        intake_busy = true;
      }
      {
        std::optional<EventBus::DeferWakes> defer;
        if (bus) defer.emplace(*bus);
        for (auto& c : batch) {
          if (intake_abandoned.load(std::memory_order_relaxed)) break;  // stop() gave up: counted there
          intake_in_hand.fetch_sub(1, std::memory_order_relaxed);
          process_contained(c);
        }
      }
      batch.clear();
      {
        IntakeLock lock(intake_mutex);
        intake_busy = false;
        if (intake.empty(lock)) intake_idle.notify_all();
      }
    }
    std::lock_guard lock(intake_mutex);
    intake_idle.notify_all();
  }

  bool wait_intake_idle(std::chrono::steady_clock::time_point deadline) {
    IntakeLock lock(intake_mutex);
    return intake_idle.wait_until(lock, deadline, [&] { return intake.empty(lock) && !intake_busy; });
  }

  void start_subscriber(const std::shared_ptr<Subscriber>& s) { subscribers->register_subscriber(s); }
};

Worker::Worker(WorkerConfig config, PublisherRegistry* publishers)
    : impl_(std::make_unique<Impl>(std::move(config),
                                   publishers ? *publishers : PublisherRegistry::instance())) {
  for (const auto& sc : impl_->config.subscribers) {
    impl_->pending_subscribers.push_back(make_configured_subscriber(sc));
  }
}

Worker::~Worker() {
  const auto s = impl_->state.load();
  if (s == WorkerState::running || s == WorkerState::error || s == WorkerState::starting) {
    try {
      (void)stop();
    } catch (const std::exception& e) {
      logger()->error("worker '{}': stop in destructor failed: {}", impl_->config.name, e.what());
    }
  }
}

void Worker::on_startup(Hook hook, std::string name) {
  std::lock_guard lock(impl_->state_mutex);
  impl_->require_not_started("on_startup hooks");
  if (name.empty()) name = "on_startup#" + std::to_string(impl_->startup_hooks.size() + 1);
  impl_->startup_hooks.emplace_back(std::move(name), std::move(hook));
}
void Worker::on_shutdown(Hook hook, std::string name) {
  std::lock_guard lock(impl_->state_mutex);
  impl_->require_not_started("on_shutdown hooks");
  if (name.empty()) name = "on_shutdown#" + std::to_string(impl_->shutdown_hooks.size() + 1);
  impl_->shutdown_hooks.emplace_back(std::move(name), std::move(hook));
}
void Worker::on_success(CompletionHook hook) {
  std::lock_guard lock(impl_->state_mutex);
  impl_->require_not_started("on_success hooks");
  impl_->success_hooks.push_back(std::move(hook));
}
void Worker::on_error(ErrorHook hook) {
  std::lock_guard lock(impl_->state_mutex);
  impl_->require_not_started("on_error hooks");
  impl_->error_hooks.push_back(std::move(hook));
}
void Worker::on_worker_startup(Hook hook) {
  std::lock_guard lock(impl_->state_mutex);
  impl_->require_not_started("on_worker_startup hooks");
  impl_->thread_start_hooks.push_back(std::move(hook));
}
void Worker::on_worker_shutdown(Hook hook) {
  std::lock_guard lock(impl_->state_mutex);
  impl_->require_not_started("on_worker_shutdown hooks");
  impl_->thread_stop_hooks.push_back(std::move(hook));
}
void Worker::on_state_change(StateListener listener) {
  std::lock_guard lock(impl_->state_mutex);
  impl_->require_not_started("state listeners");
  impl_->listeners.push_back(std::move(listener));
}

void Worker::set_health_check(std::function<bool()> check) {
  std::lock_guard lock(impl_->state_mutex);
  impl_->require_not_started("a health check");
  impl_->health_check = std::move(check);
}

void Worker::add_subscriber(std::shared_ptr<Subscriber> subscriber) {
  if (!subscriber) throw Error("add_subscriber: null subscriber");
  std::unique_lock lock(impl_->state_mutex);
  if (impl_->state.load() == WorkerState::initializing) {
    for (const auto& s : impl_->pending_subscribers) {
      if (s->name() == subscriber->name()) {
        throw RegistryError("subscriber '" + subscriber->name() + "' is already registered");
      }
    }
    impl_->pending_subscribers.push_back(std::move(subscriber));
    return;
  }
  if (impl_->state.load() != WorkerState::running) {
    throw StateError("add_subscriber: worker '" + impl_->config.name + "' is " +
                     std::string(to_string(impl_->state.load())));
  }
  lock.unlock();
  impl_->start_subscriber(subscriber);
}

void Worker::set_transport(std::shared_ptr<Transport> transport) {
  std::lock_guard lock(impl_->state_mutex);
  impl_->require_not_started("a transport");
  impl_->transport = std::move(transport);
}

void Worker::start() {
  auto& w = *impl_;
  w.transition(WorkerState::starting);
  w.started_at = std::chrono::steady_clock::now();
  std::size_t startup_done = 0;
  std::string failed_hook;
  try {
    // Publishers named by declarations must exist before anything runs.
    w.publishers.validate_required(w.config.declared_publishers());
    // The HTTP endpoint binds first: an address in use fails start() before anything else runs.
    if (w.config.http) {
      // Until start() has built the bus, registries and transports (state RUNNING, or ERROR
      // after a failed start), the routes report the state alone: status() and health() read
      // members that start() is still assigning on this thread. The state is published after
      // those assignments (an atomic store in transition()), so a route that sees it sees them.
      const auto built = [&w] {
        const auto s = w.state.load();
        return s != WorkerState::initializing && s != WorkerState::starting;
      };
      const auto starting_report = [&w] {
        return nlohmann::json{{"worker", w.config.name}, {"state", std::string(to_string(w.state.load()))}};
      };
      auto endpoint = std::make_unique<detail::HttpEndpoint>(
          w.config.http->listen,
          detail::HttpRoutes{
              .metrics = [this, built, starting_report] {
                return built() ? prometheus_text() : detail::render_prometheus(starting_report());
              },
              .health = [this, built, starting_report] {
                if (built()) return health();
                auto j = starting_report();
                j["healthy"] = false;
                return j;
              },
              .status = [this, built, starting_report] { return built() ? status() : starting_report(); }});
      std::lock_guard lock(w.http_mutex);
      w.http = std::move(endpoint);
    }

    BusOptions bus_options;
    bus_options.name = w.config.name;
    bus_options.dispatcher_threads = w.config.dispatcher_threads;
    bus_options.dispatch = w.config.dispatch;
    if (!w.thread_start_hooks.empty()) {
      bus_options.on_dispatcher_start = [&w] { w.run_thread_hooks(w.thread_start_hooks, "on_worker_startup"); };
    }
    if (!w.thread_stop_hooks.empty()) {
      bus_options.on_dispatcher_stop = [&w] { w.run_thread_hooks(w.thread_stop_hooks, "on_worker_shutdown"); };
    }
    w.bus = std::make_unique<EventBus>(bus_options);
    w.subscribers = std::make_unique<SubscriberRegistry>(*w.bus);

    if (!w.transport && w.config.zeromq) w.transport = make_zmq_transport(*w.config.zeromq);
    if (w.transport) {
      w.transport->start();
      w.transport_started = true;
    }
    if (w.config.postgres) {
      w.durable = std::make_unique<DurablePublisher>(*w.config.postgres);
      w.durable->start();  // DurableError naming the (redacted) DSN when the database is unreachable
      w.durable_started = true;
      if (w.config.retention) {
        w.retention = std::make_unique<DurableRetention>(*w.config.retention);
        w.retention->start();
      }
    }
    w.router = std::make_unique<EventRouter>(w.bus.get(), w.transport.get());
    w.router->set_durable(w.durable.get());
    w.pipeline = std::make_unique<PublishingPipeline>(w.publishers, *w.router);

    for (const auto& s : w.pending_subscribers) w.subscribers->register_subscriber(s);
    w.subscribers->start_all();

    for (const auto& [name, hook] : w.startup_hooks) {
      failed_hook = name;
      hook();
      ++startup_done;
    }
    failed_hook.clear();
  } catch (const std::exception& e) {
    const std::string cause = e.what();
    logger()->error("worker '{}': start failed: {}{}", w.config.name,
                    failed_hook.empty() ? "" : "on_startup hook '" + failed_hook + "': ", cause);
    w.transition(WorkerState::error);
    w.stop_http();
    w.transition(WorkerState::stopping);
    // Tear down what already started: shutdown hooks (reverse), subscribers, transport, bus.
    for (auto it = w.shutdown_hooks.rbegin(); it != w.shutdown_hooks.rend(); ++it) {
      try {
        it->second();
      } catch (const std::exception& he) {
        logger()->error("worker '{}': on_shutdown hook '{}' failed: {}", w.config.name, it->first, he.what());
      }
    }
    if (w.subscribers) w.subscribers->stop_all(std::chrono::milliseconds(0));
    w.stop_transports();
    if (w.bus) (void)w.bus->stop(std::chrono::milliseconds(0));  // nothing was published yet
    w.transition(WorkerState::stopped);
    {
      std::lock_guard lock(w.run_mutex);
      w.stop_done = true;
    }
    if (!failed_hook.empty()) throw StartupError(failed_hook, cause);
    throw;
  }

  {
    Impl::IntakeLock lock(w.intake_mutex);
    w.intake.reopen(lock);
    w.intake_abandoned.store(false);
  }
  w.intake_thread = std::thread([&w] { w.intake_main(); });
  w.transition(WorkerState::running);
}

bool Worker::intake_has_room() const {
  auto& w = *impl_;
  Impl::IntakeLock lock(w.intake_mutex);
  return w.intake.closed(lock) || w.intake.has_room(lock);
}

bool Worker::complete_step(StepCompletion completion, PublishWait wait) {
  auto& w = *impl_;
  Impl::IntakeLock lock(w.intake_mutex);
  // A full intake follows its overflow policy. Unlike a mailbox, a completion refused here was
  // never accepted: `rejected`, not `dropped` (a drop_oldest displacement is a drop).
  switch (w.intake.make_room(lock, wait, nullptr, [] {})) {
    case detail::Admission::room:
      break;
    case detail::Admission::displaced:  // accepted earlier, displaced now: dropped, not rejected
      w.dropped.fetch_add(1);
      break;
    case detail::Admission::overcommitted:
      // The caller may not wait (an event loop's own thread): take it beyond capacity.
      w.overcommitted.fetch_add(1);
      if (w.overcommit_log.allow()) {
        logger()->warn("worker '{}': intake full (capacity {}) and the caller may not wait (an event "
                       "loop's own thread): accepted beyond capacity; await complete_step_async() "
                       "to wait for room instead",
                       w.config.name, w.config.intake_capacity);
      }
      break;
    case detail::Admission::full:
    case detail::Admission::may_not_wait:
    case detail::Admission::timed_out:
    case detail::Admission::closed:
      w.rejected.fetch_add(1);
      return false;
  }
  const bool wake = w.intake.push(lock, std::move(completion));
  w.received.fetch_add(1);
  lock.unlock();
  if (wake) w.intake.notify_consumer();
  return true;
}

std::size_t Worker::complete_steps(std::span<StepCompletion> completions, PublishWait wait) {
  auto& w = *impl_;
  std::size_t accepted = 0, i = 0;
  while (i < completions.size()) {
    // Those that find room now, under one lock and with one notify.
    std::size_t taken = 0;
    bool wake = false;
    {
      Impl::IntakeLock lock(w.intake_mutex);
      if (w.intake.closed(lock)) break;
      while (i < completions.size() && w.intake.has_room(lock)) {
        wake = w.intake.push(lock, std::move(completions[i++]));
        ++taken;
      }
    }
    if (taken > 0) {
      w.received.fetch_add(taken);
      accepted += taken;
      if (wake) w.intake.notify_consumer();
    }
    // A full intake: this one goes through complete_step() and its overflow policy.
    if (i < completions.size()) accepted += complete_step(std::move(completions[i++]), wait) ? 1 : 0;
  }
  if (i < completions.size()) w.rejected.fetch_add(completions.size() - i);  // intake closed
  return accepted;
}

std::size_t Worker::process_steps(std::span<StepCompletion> completions) {
  auto& w = *impl_;
  if (completions.empty()) return 0;
  if (t_runs_pipeline || EventBus::in_handler()) return complete_steps(completions, PublishWait::allowed);
  const RunsPipelineScope runs_pipeline;
  {
    // Take the intake's place: after what is queued, never beside the intake thread or
    // another caller.
    Impl::IntakeLock lock(w.intake_mutex);
    w.intake_idle.wait(lock, [&] { return w.intake.closed(lock) || (w.intake.empty(lock) && !w.intake_busy); });
    if (w.intake.closed(lock)) {
      w.rejected.fetch_add(completions.size());
      return 0;
    }
    w.intake_busy = true;
  }
  w.received.fetch_add(completions.size());
  std::size_t done = 0;
  {
    std::optional<EventBus::DeferWakes> defer;
    if (w.bus) defer.emplace(*w.bus);
    for (const auto& c : completions) {
      if (w.intake_abandoned.load(std::memory_order_relaxed)) break;  // stop() gave up
      w.process_contained(c);
      ++done;
    }
  }
  {
    Impl::IntakeLock lock(w.intake_mutex);
    w.caller_left += completions.size() - done;
    w.intake_busy = false;
  }
  w.intake_idle.notify_all();
  return done;
}

bool Worker::drain(std::chrono::milliseconds timeout) {
  auto& w = *impl_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (!w.wait_intake_idle(deadline)) return false;
  if (!w.bus) return true;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return w.bus->drain(std::max(left, std::chrono::milliseconds(0)));
}

WorkerStopReport Worker::stop(std::optional<std::chrono::milliseconds> deadline) {
  auto& w = *impl_;
  {
    std::lock_guard lock(w.run_mutex);
    if (w.stop_done) return w.last_stop;
  }
  const auto s = w.state.load();
  if (s == WorkerState::initializing) {
    // Never started: nothing to drain.
    w.transition(WorkerState::starting);
    w.transition(WorkerState::error);
    w.transition(WorkerState::stopping);
    w.transition(WorkerState::stopped);
    std::lock_guard lock(w.run_mutex);
    w.stop_done = true;
    return {};
  }
  const auto timeout = deadline.value_or(w.config.shutdown_drain_timeout);
  const auto start = std::chrono::steady_clock::now();
  const auto until = start + timeout;
  WorkerStopReport report;
  w.transition(WorkerState::stopping);
  // 0. The HTTP endpoint closes first, while everything its routes call (a Python health check
  // and the loop it may run on included) is still up.
  w.stop_http();

  // 1. Close intake; the intake thread publishes what is queued, then exits.
  {
    Impl::IntakeLock lock(w.intake_mutex);
    w.intake.close(lock);  // wakes the intake thread and the blocked submitters
  }
  bool intake_timed_out = false;
  if (!w.wait_intake_idle(until)) {
    Impl::IntakeLock lock(w.intake_mutex);
    // The intake thread (or a process_steps() caller) stops after its current completion.
    w.intake_abandoned.store(true);
    // Accepted but given up on: dropped, so that received == processed + dropped + queued holds.
    report.intake_undelivered = w.intake.clear(lock);
    w.dropped.fetch_add(report.intake_undelivered);
    intake_timed_out = true;
    report.graceful = false;
  }
  if (w.intake_thread.joinable()) w.intake_thread.join();
  if (intake_timed_out) {
    // The rest of the batch the intake thread held when it gave up, and of a process_steps()
    // run (its caller lets go after its current completion).
    std::uint64_t left_in_hand = w.intake_in_hand.exchange(0);
    {
      Impl::IntakeLock lock(w.intake_mutex);
      w.intake_idle.wait(lock, [&] { return !w.intake_busy; });
      left_in_hand += std::exchange(w.caller_left, 0);
    }
    report.intake_undelivered += left_in_hand;
    w.dropped.fetch_add(left_in_hand);
  }

  // 2. Drain subscriber queues, then stop subscribers (on_stop).
  const auto left = [&] {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()));
  };
  if (!w.bus->drain(left())) report.graceful = false;
  w.subscribers->stop_all(left());

  // 3. Shutdown hooks, in reverse order; all run even if one throws.
  for (auto it = w.shutdown_hooks.rbegin(); it != w.shutdown_hooks.rend(); ++it) {
    try {
      it->second();
    } catch (const std::exception& e) {
      report.hook_errors.push_back(it->first + ": " + e.what());
      logger()->error("worker '{}': on_shutdown hook '{}' failed: {}", w.config.name, it->first, e.what());
    }
  }

  // 4. Transports flush (bounded by linger), then the bus stops its pool.
  w.stop_transports();
  const auto bus_report = w.bus->stop(left());
  report.events_undelivered = bus_report.undelivered;
  if (bus_report.undelivered > 0) report.graceful = false;
  report.duration = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  w.transition(WorkerState::stopped);
  logger()->info("worker '{}': stopped in {} ms ({})", w.config.name, report.duration.count(),
                 report.graceful ? "graceful" : "with undelivered work");
  {
    std::lock_guard lock(w.run_mutex);
    w.stop_done = true;
    w.last_stop = report;
  }
  w.run_cv.notify_all();
  return report;
}

void Worker::request_stop() noexcept {
  {
    std::lock_guard lock(impl_->run_mutex);
    impl_->stop_requested = true;
  }
  impl_->run_cv.notify_all();
}

int Worker::run(bool handle_signals) {
  auto& w = *impl_;
  std::unique_ptr<detail::SignalWatcher> signals;
  if (handle_signals) {
    signals = std::make_unique<detail::SignalWatcher>(detail::SignalWatcher::Handlers{
        .on_stop = [this] { request_stop(); },
        .on_status = [this] { logger()->info("worker '{}' status: {}", impl_->config.name, status().dump()); },
        .on_reload = [this] {
          try {
            reload_from_file();
          } catch (const std::exception& e) {
            logger()->error("worker '{}': reload refused, keeping the old configuration: {}", impl_->config.name, e.what());
          }
        }});
  }
  if (w.state.load() == WorkerState::initializing) {
    try {
      start();
    } catch (const std::exception& e) {
      logger()->error("worker '{}': {}", w.config.name, e.what());
      return 1;
    }
  }
  {
    std::unique_lock lock(w.run_mutex);
    w.run_cv.wait(lock, [&] { return w.stop_requested || w.stop_done; });
  }
  const auto report = stop();
  return report.hook_errors.empty() ? 0 : 1;
}

void Worker::reload(WorkerConfig next) {
  auto& w = *impl_;
  if (w.state.load() != WorkerState::running) {
    throw StateError("reload: worker '" + w.config.name + "' is not running");
  }
  w.publishers.validate_required(next.declared_publishers());  // refuse before changing anything
  if (next.zeromq.has_value() != w.config.zeromq.has_value() ||
      (next.zeromq && next.zeromq->publish != w.config.zeromq->publish) ||
      next.postgres.has_value() != w.config.postgres.has_value() ||
      (next.postgres && (next.postgres->dsn != w.config.postgres->dsn ||
                         next.postgres->schema != w.config.postgres->schema ||
                         next.postgres->stream != w.config.postgres->stream))) {
    logger()->warn("worker '{}': transport changes take effect at the next restart", w.config.name);
  }
  if (next.http != w.config.http) {
    logger()->warn("worker '{}': http.listen changes take effect at the next restart", w.config.name);
  }
  std::map<std::string, SubscriberConfig> old_by_name, new_by_name;
  for (const auto& s : w.config.subscribers) old_by_name[s.name] = s;
  for (const auto& s : next.subscribers) new_by_name[s.name] = s;
  // Open new and changed subscribers before changing anything: one that cannot start (an audit
  // file that cannot be opened) refuses the whole reload, and the old configuration keeps running
  // untouched. (Registering them below calls on_start again, which does nothing once open.)
  std::map<std::string, std::shared_ptr<Subscriber>> fresh_subscribers;
  for (std::size_t i = 0; i < next.subscribers.size(); ++i) {
    const auto& fresh = next.subscribers[i];
    auto it = old_by_name.find(fresh.name);
    if (it != old_by_name.end() && it->second == fresh) continue;
    auto subscriber = make_configured_subscriber(fresh);
    try {
      subscriber->on_start();
    } catch (const std::exception& e) {
      throw ConfigError("subscribers[" + std::to_string(i) + "]", std::string("cannot start: ") + e.what());
    }
    fresh_subscribers.emplace(fresh.name, std::move(subscriber));
  }
  {
    std::lock_guard lock(w.steps_mutex);
    w.steps = std::make_shared<const StepTable>(next.steps);
  }
  // Subscribers: drop those gone or changed (after their queues drain), add new ones.
  for (const auto& [name, old] : old_by_name) {
    auto it = new_by_name.find(name);
    if (it == new_by_name.end() || !(it->second == old)) {
      if (!w.bus->drain(w.config.shutdown_drain_timeout)) {
        logger()->warn("worker '{}': reload: the bus did not drain within {} ms before removing "
                       "subscriber '{}'; its queued events are dropped (counted)",
                       w.config.name, w.config.shutdown_drain_timeout.count(), name);
      }
      w.subscribers->remove(name);
    }
  }
  for (auto& [name, subscriber] : fresh_subscribers) w.start_subscriber(subscriber);
  const auto step_count = next.steps.size();
  {
    // Only the parts a reload changes; name, queues and transports stay as started.
    std::lock_guard lock(w.steps_mutex);
    w.config.steps = std::move(next.steps);
    w.config.subscribers = std::move(next.subscribers);
  }
  logger()->info("worker '{}': configuration reloaded ({} steps, {} subscribers)", w.config.name,
                 step_count, new_by_name.size());
}

void Worker::reload_from_file() {
  if (impl_->config.source.empty()) {
    throw ConfigError("", "worker '" + impl_->config.name + "' was not configured from a file");
  }
  reload(WorkerConfig::load(impl_->config.source));
}

WorkerState Worker::state() const noexcept { return impl_->state.load(); }
const std::string& Worker::name() const noexcept { return impl_->config.name; }

nlohmann::json Worker::status() const {
  const auto& w = *impl_;
  nlohmann::json j;
  j["worker"] = w.config.name;
  j["state"] = std::string(to_string(w.state.load()));
  j["uptime_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - w.started_at).count();
  j["completions"] = {{"received", w.received.load()},   {"processed", w.processed.load()},
                      {"rejected", w.rejected.load()},   {"dropped", w.dropped.load()},
                      {"succeeded", w.succeeded.load()},
                      {"failed", w.failed.load()},       {"unknown_step", w.unknown_step.load()},
                      {"overcommitted", w.overcommitted.load()}};
  j["hook_errors"] = w.hook_errors.load();
  {
    Impl::IntakeLock lock(w.intake_mutex);
    j["queues"] = {{"intake_depth", w.intake.size(lock) + w.intake_in_hand.load(std::memory_order_relaxed)},
                   {"intake_capacity", w.config.intake_capacity}};
  }
  if (w.bus) {
    j["queues"]["subscriber_pending"] = w.bus->pending();
    const auto bus_stats = w.bus->stats();
    j["bus"] = {{"published", bus_stats.published}, {"unmatched", bus_stats.unmatched},
                {"rejected", bus_stats.rejected}, {"dispatcher_threads", w.bus->dispatcher_threads()}};
  }
  j["events"] = w.pipeline ? w.pipeline->stats() : nlohmann::json::object();
  j["subscribers"] = w.subscribers ? w.subscribers->stats() : nlohmann::json::object();
  j["transports"] = nlohmann::json::object();
  if (w.transport) j["transports"][w.transport->name()] = w.transport->stats();
  if (w.durable) {
    j["transports"][w.durable->name()] = w.durable->stats();
    if (w.retention) j["transports"][w.durable->name()]["retention"] = w.retention->stats();
  }
  return j;
}

nlohmann::json Worker::health() const {
  const auto& w = *impl_;
  nlohmann::json j;
  const bool running = w.state.load() == WorkerState::running;
  bool healthy = running;
  j["state"] = std::string(to_string(w.state.load()));
  if (w.subscribers) {
    j["subscribers"] = w.subscribers->health();
    if (j["subscribers"].contains("healthy") && !j["subscribers"]["healthy"].get<bool>()) healthy = false;
  }
  {
    Impl::IntakeLock lock(w.intake_mutex);
    const bool intake_full = !w.intake.has_room(lock);
    j["intake"] = {{"depth", w.intake.size(lock)}, {"capacity", w.config.intake_capacity}, {"full", intake_full}};
    if (intake_full) healthy = false;
  }
  if (w.transport) {
    const bool ok = w.transport->healthy();
    j["transports"][w.transport->name()] = {{"healthy", ok}};
    if (!ok) healthy = false;
  }
  if (w.durable) {
    const bool ok = w.durable->healthy();
    j["transports"][w.durable->name()] = {{"healthy", ok}};
    if (!ok) healthy = false;
  }
  if (w.health_check) {
    bool ok = false;
    try {
      ok = w.health_check();
    } catch (const std::exception& e) {
      j["health_check_error"] = e.what();
    } catch (...) {
      j["health_check_error"] = "unknown exception";
    }
    j["health_check"] = ok;
    if (!ok) healthy = false;
  }
  j["healthy"] = healthy;
  return j;
}

std::string Worker::prometheus_text() const { return detail::render_prometheus(status()); }

std::optional<std::string> Worker::http_address() const {
  std::lock_guard lock(impl_->http_mutex);
  if (!impl_->http) return std::nullopt;
  return impl_->http->address();
}

EventBus& Worker::bus() {
  if (!impl_->bus) throw StateError("bus: worker '" + impl_->config.name + "' has not started");
  return *impl_->bus;
}
SubscriberRegistry& Worker::subscribers() {
  if (!impl_->subscribers) throw StateError("subscribers: worker '" + impl_->config.name + "' has not started");
  return *impl_->subscribers;
}
PublisherRegistry& Worker::publishers() { return impl_->publishers; }
const WorkerConfig& Worker::config() const { return impl_->config; }

}  // namespace herald
