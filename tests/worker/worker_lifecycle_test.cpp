// Worker: misuse and failure paths of the lifecycle (state errors, throwing hooks and listeners,
// transports that fail to start or stop), intake back-pressure, stop past its deadline, health,
// reload of subscribers and from the file, and the signals run() handles.
#include <herald/events/error.hpp>
#include <herald/events/log.hpp>
#include <herald/worker/worker.hpp>

#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <temp_dir.hpp>
#include <wait_for.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdlib.h>
#include <thread>
#include <unistd.h>

using herald::StepCompletion;
using herald::Worker;
using herald::WorkerConfig;
using herald::WorkerState;
using herald::testing::TempDir;
using herald::testing::wait_for;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

WorkerConfig config_with(const std::string& delivery_mode = "in_process", std::size_t threads = 1) {
  return WorkerConfig::from_json(json{
      {"worker", {{"name", "lifecycle"}, {"dispatcher_threads", threads}}},
      {"steps",
       {{{"name", "process_payment"},
         {"publishes_events", {{{"name", "payment.processed"}, {"delivery_mode", delivery_mode}}}}}}}});
}

StepCompletion completion(int n = 0, std::string step = "process_payment") {
  StepCompletion c;
  c.step_name = std::move(step);
  c.success = true;
  c.result = {{"n", n}};
  return c;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

class Recorder : public herald::Subscriber {
 public:
  explicit Recorder(std::string name, std::vector<std::string> patterns = {"#"})
      : name_(std::move(name)), patterns_(std::move(patterns)) {}
  std::string name() const override { return name_; }
  std::vector<std::string> subscribes_to() const override { return patterns_; }
  herald::SubscriberResult handle(const herald::EventPtr& event) override {
    std::lock_guard lock(mutex_);
    names_.push_back(event->event_name());
    return {};
  }
  void on_stop() override { stopped_ = true; }
  std::vector<std::string> names() const {
    std::lock_guard lock(mutex_);
    return names_;
  }
  bool stopped() const { return stopped_; }

 private:
  std::string name_;
  std::vector<std::string> patterns_;
  mutable std::mutex mutex_;
  std::vector<std::string> names_;
  std::atomic<bool> stopped_{false};
};

// A Transport under the test's control.
class FakeTransport : public herald::Transport {
 public:
  std::string name() const override { return "fake"; }
  void start() override {
    if (fail_start) throw herald::TransportError("fake: cannot bind tcp://nowhere:1");
    started = true;
  }
  void send(const herald::EventPtr& event) override {
    std::lock_guard lock(mutex_);
    sent_.push_back(event->event_name());
  }
  void stop() override {
    ++stops;
    if (fail_stop) throw herald::TransportError("fake: flush failed");
  }
  json stats() const override {
    std::lock_guard lock(mutex_);
    return {{"sent", sent_.size()}};
  }
  bool healthy() const override { return healthy_flag; }
  std::vector<std::string> sent() const {
    std::lock_guard lock(mutex_);
    return sent_;
  }

  bool fail_start = false;
  bool fail_stop = false;
  std::atomic<bool> healthy_flag{true};
  std::atomic<bool> started{false};
  std::atomic<int> stops{0};

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> sent_;
};

// Captures herald's log while alive (restores the previous logger after).
class LogCapture {
 public:
  LogCapture() : previous_(herald::logger()), sink_(std::make_shared<Sink>()) {
    auto logger = std::make_shared<spdlog::logger>("herald-test", sink_);
    logger->set_level(spdlog::level::info);
    herald::set_logger(logger);
  }
  ~LogCapture() { herald::set_logger(previous_); }
  bool saw(const std::string& part) const { return sink_->saw(part); }
  std::string text() const { return sink_->text(); }

 private:
  class Sink : public spdlog::sinks::base_sink<std::mutex> {
   public:
    bool saw(const std::string& part) {
      std::lock_guard lock(mutex_);
      return text_.find(part) != std::string::npos;
    }
    std::string text() {
      std::lock_guard lock(mutex_);
      return text_;
    }

   protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
      text_.append(msg.payload.data(), msg.payload.size());
      text_ += '\n';
    }
    void flush_() override {}

   private:
    std::string text_;
  };
  std::shared_ptr<spdlog::logger> previous_;
  std::shared_ptr<Sink> sink_;
};

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Holds the intake thread inside on_success until released.
struct IntakeGate {
  std::atomic<bool> release{false};
  std::atomic<int> entered{0};
  void install(Worker& worker) {
    worker.on_success([this](const StepCompletion&) {
      ++entered;
      while (!release) std::this_thread::sleep_for(1ms);
    });
  }
};

}  // namespace

class WorkerLifecycle : public ::testing::Test {
 protected:
  herald::PublisherRegistry publishers_;
};

TEST_F(WorkerLifecycle, StartingTwiceIsAnIllegalTransitionAndTheWorkerKeepsRunning) {
  Worker worker(config_with(), &publishers_);
  auto recorder = std::make_shared<Recorder>("recorder");
  worker.add_subscriber(recorder);
  worker.start();
  try {
    worker.start();
    FAIL() << "second start() did not throw";
  } catch (const herald::StateError& e) {
    EXPECT_TRUE(contains(e.what(), "illegal transition RUNNING -> STARTING")) << e.what();
    EXPECT_TRUE(contains(e.what(), "lifecycle")) << e.what();  // names the worker
  }
  EXPECT_EQ(worker.state(), WorkerState::running);
  EXPECT_TRUE(worker.complete_step(completion(1)));
  ASSERT_TRUE(worker.drain(60s));
  EXPECT_EQ(recorder->names(), std::vector<std::string>{"payment.processed"});
  (void)worker.stop();
}

TEST_F(WorkerLifecycle, WhatNeedsARunningWorkerSaysSoBeforeStart) {
  Worker worker(config_with(), &publishers_);
  EXPECT_EQ(worker.name(), "lifecycle");
  try {
    worker.bus();
    FAIL();
  } catch (const herald::StateError& e) {
    EXPECT_TRUE(contains(e.what(), "has not started")) << e.what();
  }
  EXPECT_THROW(worker.subscribers(), herald::StateError);
  try {
    worker.reload(config_with());
    FAIL();
  } catch (const herald::StateError& e) {
    EXPECT_TRUE(contains(e.what(), "is not running")) << e.what();
  }
  EXPECT_FALSE(worker.complete_step(completion()));  // intake closed until start
  EXPECT_EQ(worker.status()["completions"]["rejected"], 1);
  EXPECT_FALSE(worker.health()["healthy"].get<bool>());
  EXPECT_TRUE(worker.drain(10ms));  // nothing to drain
}

TEST_F(WorkerLifecycle, StoppingAWorkerThatNeverStartedEndsStoppedWithAnEmptyReport) {
  Worker worker(config_with(), &publishers_);
  bool shutdown_ran = false;
  worker.on_shutdown([&] { shutdown_ran = true; });
  const auto report = worker.stop();
  EXPECT_TRUE(report.graceful);
  EXPECT_EQ(report.intake_undelivered, 0u);
  EXPECT_TRUE(report.hook_errors.empty());
  EXPECT_EQ(worker.state(), WorkerState::stopped);
  EXPECT_FALSE(shutdown_ran);  // nothing started, nothing to shut down
  EXPECT_THROW(worker.start(), herald::StateError);  // a stopped worker does not start again
  EXPECT_EQ(worker.stop().to_json()["graceful"], true);  // idempotent
}

TEST_F(WorkerLifecycle, AddSubscriberChecksItsArgumentTheNameAndTheState) {
  auto config = config_with();
  config.subscribers.push_back(herald::SubscriberConfig{.type = herald::SubscriberType::metrics, .name = "metrics", .subscribes_to = {"#"}});
  Worker worker(config, &publishers_);
  EXPECT_THROW(worker.add_subscriber(nullptr), herald::Error);
  try {
    worker.add_subscriber(std::make_shared<Recorder>("metrics"));  // taken by the configuration
    FAIL();
  } catch (const herald::RegistryError& e) {
    EXPECT_TRUE(contains(e.what(), "'metrics' is already registered")) << e.what();
  }
  worker.add_subscriber(std::make_shared<Recorder>("early"));
  EXPECT_THROW(worker.add_subscriber(std::make_shared<Recorder>("early")), herald::RegistryError);
  worker.start();
  EXPECT_EQ(worker.subscribers().names(), (std::vector<std::string>{"metrics", "early"}));

  auto late = std::make_shared<Recorder>("late");
  worker.add_subscriber(late);  // starts at once
  worker.complete_step(completion(1));
  ASSERT_TRUE(worker.drain(60s));
  EXPECT_EQ(late->names(), std::vector<std::string>{"payment.processed"});
  (void)worker.stop();
  EXPECT_TRUE(late->stopped());
  try {
    worker.add_subscriber(std::make_shared<Recorder>("too-late"));
    FAIL();
  } catch (const herald::StateError& e) {
    EXPECT_TRUE(contains(e.what(), "is STOPPED")) << e.what();
  }
  EXPECT_THROW(worker.set_transport(std::make_shared<FakeTransport>()), herald::StateError);
}

TEST_F(WorkerLifecycle, ThrowingListenersAndHooksAreContainedAndCounted) {
  Worker worker(config_with("in_process", /*threads=*/2), &publishers_);
  LogCapture log;
  std::vector<std::string> seen;
  worker.on_state_change([](WorkerState, WorkerState) { throw std::runtime_error("listener broke"); });
  worker.on_state_change([&](WorkerState, WorkerState to) { seen.emplace_back(herald::to_string(to)); });
  worker.on_worker_startup([] { throw std::runtime_error("thread init broke"); });
  std::atomic<int> successes{0};
  worker.on_success([&](const StepCompletion&) {
    ++successes;
    throw std::runtime_error("success hook broke");
  });
  auto recorder = std::make_shared<Recorder>("recorder");
  worker.add_subscriber(recorder);
  worker.start();
  for (int i = 0; i < 3; ++i) worker.complete_step(completion(i));
  ASSERT_TRUE(worker.drain(60s));
  // One failing thread hook per dispatcher thread, one failing success hook per completion.
  ASSERT_TRUE(wait_for([&] { return worker.status()["hook_errors"] == 5; })) << worker.status().dump();
  EXPECT_EQ(successes.load(), 3);
  EXPECT_EQ(recorder->names().size(), 3u);  // delivery is not affected
  EXPECT_EQ(worker.status()["completions"]["succeeded"], 3);
  (void)worker.stop();
  // The second listener saw every transition although the first always throws.
  EXPECT_EQ(seen, (std::vector<std::string>{"STARTING", "RUNNING", "STOPPING", "STOPPED"}));
  EXPECT_TRUE(log.saw("state listener threw: listener broke")) << log.text();
  EXPECT_TRUE(log.saw("on_worker_startup hook failed: thread init broke")) << log.text();
  EXPECT_TRUE(log.saw("on_success hook failed for step 'process_payment': success hook broke")) << log.text();
}

TEST_F(WorkerLifecycle, AFailedStartRunsEveryShutdownHookEvenWhenOneThrows) {
  Worker worker(config_with(), &publishers_);
  LogCapture log;
  std::vector<std::string> calls;
  worker.on_shutdown([&] { calls.push_back("close_db"); }, "close_db");
  worker.on_shutdown([&] { calls.push_back("flush"); throw std::runtime_error("flush failed"); }, "flush");
  worker.on_startup([] { throw std::runtime_error("no database"); }, "open_db");
  try {
    worker.start();
    FAIL();
  } catch (const herald::StartupError& e) {
    EXPECT_EQ(e.hook(), "open_db");
  }
  EXPECT_EQ(calls, (std::vector<std::string>{"flush", "close_db"}));  // reverse order, both ran
  EXPECT_EQ(worker.state(), WorkerState::stopped);
  EXPECT_TRUE(log.saw("on_shutdown hook 'flush' failed: flush failed")) << log.text();
}

TEST_F(WorkerLifecycle, ATransportThatCannotStartFailsStartWithItsOwnError) {
  Worker worker(config_with("zeromq"), &publishers_);
  auto transport = std::make_shared<FakeTransport>();
  transport->fail_start = true;
  worker.set_transport(transport);
  bool startup_ran = false;
  worker.on_startup([&] { startup_ran = true; });
  try {
    worker.start();
    FAIL();
  } catch (const herald::StartupError&) {
    FAIL() << "a transport failure is not a startup hook failure";
  } catch (const herald::TransportError& e) {
    EXPECT_TRUE(contains(e.what(), "tcp://nowhere:1")) << e.what();
  }
  EXPECT_EQ(worker.state(), WorkerState::stopped);
  EXPECT_FALSE(startup_ran);  // the transport starts before the startup hooks
  EXPECT_EQ(transport->stops.load(), 0);  // never started, never stopped
}

TEST_F(WorkerLifecycle, EventsForTheTransportReachItAndAFailingTransportStopIsOnlyLogged) {
  Worker worker(config_with("broadcast"), &publishers_);
  LogCapture log;
  auto transport = std::make_shared<FakeTransport>();
  transport->fail_stop = true;
  worker.set_transport(transport);
  auto recorder = std::make_shared<Recorder>("recorder");
  worker.add_subscriber(recorder);
  worker.start();
  EXPECT_TRUE(transport->started.load());
  worker.complete_step(completion(1));
  worker.complete_step(completion(2));
  ASSERT_TRUE(worker.drain(60s));
  EXPECT_EQ(transport->sent(), (std::vector<std::string>{"payment.processed", "payment.processed"}));
  EXPECT_EQ(recorder->names().size(), 2u);  // broadcast: in process too
  EXPECT_EQ(worker.status()["transports"]["fake"]["sent"], 2);
  EXPECT_EQ(worker.health()["transports"]["fake"]["healthy"], true);
  transport->healthy_flag = false;
  const auto health = worker.health();
  EXPECT_EQ(health["transports"]["fake"]["healthy"], false);
  EXPECT_FALSE(health["healthy"].get<bool>());

  const auto report = worker.stop();
  EXPECT_EQ(worker.state(), WorkerState::stopped);
  EXPECT_EQ(transport->stops.load(), 1);
  EXPECT_TRUE(report.hook_errors.empty());
  EXPECT_TRUE(log.saw("transport stop failed: fake: flush failed")) << log.text();
}

TEST_F(WorkerLifecycle, BlockingIntakeWaitsItsTimeoutThenRefusesAndCountsRejected) {
  auto config = config_with();
  config.intake_capacity = 1;
  config.intake_overflow = herald::OverflowPolicy::block;
  config.intake_block_timeout = 500ms;
  Worker worker(config, &publishers_);
  IntakeGate gate;
  gate.install(worker);
  worker.start();
  ASSERT_TRUE(worker.complete_step(completion(0)));
  ASSERT_TRUE(wait_for([&] { return gate.entered.load() == 1; }));  // intake thread held
  ASSERT_TRUE(worker.complete_step(completion(1)));                // fills the queue
  const auto health = worker.health();
  EXPECT_EQ(health["intake"]["full"], true);
  EXPECT_FALSE(health["healthy"].get<bool>());

  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(worker.complete_step(completion(2)));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 450ms);  // waited for room first
  EXPECT_EQ(worker.status()["completions"]["rejected"], 1);

  // A blocked producer gets in as soon as there is room.
  std::atomic<int> late_result{-1};
  std::thread producer([&] { late_result = worker.complete_step(completion(3)) ? 1 : 0; });
  std::this_thread::sleep_for(20ms);
  gate.release = true;
  producer.join();
  EXPECT_EQ(late_result.load(), 1);
  ASSERT_TRUE(worker.drain(60s));
  const auto counts = worker.status()["completions"];
  EXPECT_EQ(counts["received"], 3);
  EXPECT_EQ(counts["processed"], 3);
  EXPECT_TRUE(worker.health()["healthy"].get<bool>());
  (void)worker.stop();
}

TEST_F(WorkerLifecycle, AProducerBlockedOnAFullIntakeIsRefusedWhenTheWorkerStops) {
  auto config = config_with();
  config.intake_capacity = 1;
  config.intake_block_timeout = 30s;
  Worker worker(config, &publishers_);
  IntakeGate gate;
  gate.install(worker);
  worker.start();
  ASSERT_TRUE(worker.complete_step(completion(0)));
  ASSERT_TRUE(wait_for([&] { return gate.entered.load() == 1; }));
  ASSERT_TRUE(worker.complete_step(completion(1)));
  std::atomic<int> blocked_result{-1};
  std::thread producer([&] { blocked_result = worker.complete_step(completion(2)) ? 1 : 0; });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(blocked_result.load(), -1);  // still waiting for room
  std::thread stopper([&] { (void)worker.stop(10s); });
  producer.join();  // woken by the stop, not by its 30 s timeout
  EXPECT_EQ(blocked_result.load(), 0);
  gate.release = true;
  stopper.join();
  EXPECT_EQ(worker.state(), WorkerState::stopped);
  EXPECT_EQ(worker.status()["completions"]["processed"], 2);  // what was accepted is processed
}

TEST_F(WorkerLifecycle, StopPastItsDeadlineReportsAndCountsUndeliveredCompletions) {
  Worker worker(config_with(), &publishers_);
  IntakeGate gate;
  gate.install(worker);
  worker.start();
  ASSERT_TRUE(worker.complete_step(completion(0)));
  ASSERT_TRUE(wait_for([&] { return gate.entered.load() == 1; }));
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(worker.complete_step(completion(i)));
  // Release the held completion only after stop's deadline has passed.
  std::thread releaser([&] {
    std::this_thread::sleep_for(300ms);
    gate.release = true;
  });
  const auto report = worker.stop(50ms);
  releaser.join();
  EXPECT_FALSE(report.graceful);
  EXPECT_EQ(report.intake_undelivered, 3u);
  EXPECT_EQ(report.to_json()["intake_undelivered"], 3);
  EXPECT_EQ(worker.state(), WorkerState::stopped);
  const auto counts = worker.status()["completions"];
  EXPECT_EQ(counts["received"], 4);
  EXPECT_EQ(counts["processed"], 1);
  // received == processed + dropped + queued: the completions stop gave up on are dropped.
  EXPECT_EQ(counts["dropped"], 3) << counts.dump();
  EXPECT_EQ(worker.status()["queues"]["intake_depth"], 0);
}

TEST_F(WorkerLifecycle, TheDestructorStopsARunningWorkerGracefully) {
  auto recorder = std::make_shared<Recorder>("recorder");
  {
    Worker worker(config_with(), &publishers_);
    worker.add_subscriber(recorder);
    worker.start();
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(worker.complete_step(completion(i)));
  }
  EXPECT_EQ(recorder->names().size(), 50u);
  EXPECT_TRUE(recorder->stopped());
}

TEST_F(WorkerLifecycle, ReloadAddsRemovesAndReplacesConfiguredSubscribers) {
  TempDir dir;
  const auto make = [&](json subscribers) {
    json step = {{"name", "process_payment"},
                 {"publishes_events", json::array({{{"name", "payment.processed"}}, {{"name", "order.placed"}}})}};
    json config = {{"worker", {{"name", "reloading"}, {"dispatcher_threads", 1}}},
                   {"steps", json::array({step})},
                   {"subscribers", std::move(subscribers)}};
    return WorkerConfig::from_json(config, dir.path);
  };
  const json audit_all = {{"type", "audit"}, {"name", "audit"}, {"subscribes_to", {"#"}}, {"path", "all.jsonl"}};
  const json metrics_pay = {{"type", "metrics"}, {"name", "metrics"}, {"subscribes_to", {"payment.*"}},
                            {"path", "metrics.prom"}};
  Worker worker(make({audit_all, metrics_pay}), &publishers_);
  LogCapture log;
  worker.start();
  worker.complete_step(completion(1));
  ASSERT_TRUE(worker.drain(60s));
  EXPECT_EQ(worker.health()["subscribers"]["subscribers"]["audit"]["health_check"], true);

  // audit unchanged; metrics now counts orders only (replaced); a second audit file added.
  json metrics_orders = metrics_pay;
  metrics_orders["subscribes_to"] = {"order.*"};
  const json audit_orders = {{"type", "audit"}, {"name", "orders"}, {"subscribes_to", {"order.#"}},
                             {"path", "orders.jsonl"}};
  worker.reload(make({audit_all, metrics_orders, audit_orders}));
  // The replaced metrics subscriber was stopped, which writes its file: one payment counted.
  const auto first_metrics = read_file(dir.path / "metrics.prom");
  EXPECT_TRUE(contains(first_metrics, "herald_events_total{event_name=\"payment.processed\"} 1")) << first_metrics;
  worker.complete_step(completion(2));
  ASSERT_TRUE(worker.drain(60s));
  EXPECT_EQ(worker.subscribers().names().size(), 3u);

  // metrics and orders removed: stopped and forgotten.
  worker.reload(make({audit_all}));
  EXPECT_EQ(worker.subscribers().names(), std::vector<std::string>{"audit"});
  EXPECT_EQ(worker.config().subscribers.size(), 1u);
  const auto second_metrics = read_file(dir.path / "metrics.prom");
  EXPECT_TRUE(contains(second_metrics, "herald_events_total{event_name=\"order.placed\"} 1")) << second_metrics;
  EXPECT_FALSE(contains(second_metrics, "payment.processed")) << second_metrics;
  (void)worker.stop();

  // The unchanged audit subscriber saw all four events, without a gap across the reloads.
  std::istringstream all(read_file(dir.path / "all.jsonl"));
  int lines = 0;
  for (std::string line; std::getline(all, line);) ++lines;
  EXPECT_EQ(lines, 4);
  std::istringstream orders(read_file(dir.path / "orders.jsonl"));
  int order_lines = 0;
  for (std::string line; std::getline(orders, line);) {
    ++order_lines;
    EXPECT_TRUE(contains(line, "\"order.placed\"")) << line;
  }
  EXPECT_EQ(order_lines, 1);
  EXPECT_TRUE(log.saw("configuration reloaded (1 steps, 3 subscribers)")) << log.text();
}

TEST_F(WorkerLifecycle, ReloadRefusesUnknownPublishersAndKeepsTheOldDeclarations) {
  Worker worker(config_with(), &publishers_);
  auto recorder = std::make_shared<Recorder>("recorder");
  worker.add_subscriber(recorder);
  worker.start();
  auto next = WorkerConfig::from_json(json{
      {"steps", {{{"name", "process_payment"},
                  {"publishes_events", {{{"name", "payment.settled"}, {"publisher", "ghost"}}}}}}}});
  try {
    worker.reload(next);
    FAIL();
  } catch (const herald::RegistryError& e) {
    EXPECT_TRUE(contains(e.what(), "ghost")) << e.what();
  }
  worker.complete_step(completion(1));
  ASSERT_TRUE(worker.drain(60s));
  EXPECT_EQ(recorder->names(), std::vector<std::string>{"payment.processed"});
  (void)worker.stop();
}

TEST_F(WorkerLifecycle, ReloadWarnsThatTransportChangesWaitForARestart) {
  Worker worker(config_with(), &publishers_);
  LogCapture log;
  worker.start();
  auto next = config_with();
  next.zeromq = herald::ZmqTransportConfig{.publish = {"inproc://herald-never-bound"}};
  worker.reload(next);
  EXPECT_TRUE(log.saw("transport changes take effect at the next restart")) << log.text();
  EXPECT_TRUE(worker.health()["transports"].is_null()) << worker.health().dump();  // still none
  (void)worker.stop();
}

TEST_F(WorkerLifecycle, ReloadFromFileReadsTheFileTheWorkerCameFrom) {
  Worker from_code(config_with(), &publishers_);
  from_code.start();
  try {
    from_code.reload_from_file();
    FAIL();
  } catch (const herald::ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), "was not configured from a file")) << e.what();
  }
  (void)from_code.stop();

  TempDir dir;
  const auto file = dir.path / "herald.json";
  auto write_config = [&](const std::string& event) {
    std::ofstream(file) << json{{"worker", {{"dispatcher_threads", 1}}},
                                {"steps", {{{"name", "process_payment"},
                                            {"publishes_events", {{{"name", event}}}}}}}}
                                   .dump();
  };
  write_config("payment.processed");
  Worker worker(WorkerConfig::load(file), &publishers_);
  auto recorder = std::make_shared<Recorder>("recorder");
  worker.add_subscriber(recorder);
  worker.start();
  worker.complete_step(completion(1));
  ASSERT_TRUE(worker.drain(60s));
  write_config("payment.settled");
  worker.reload_from_file();
  worker.complete_step(completion(2));
  ASSERT_TRUE(worker.drain(60s));
  std::ofstream(file) << "{\"steps\": [";  // broken: refused, the running configuration stays
  EXPECT_THROW(worker.reload_from_file(), herald::ConfigError);
  worker.complete_step(completion(3));
  ASSERT_TRUE(worker.drain(60s));
  EXPECT_EQ(recorder->names(),
            (std::vector<std::string>{"payment.processed", "payment.settled", "payment.settled"}));
  (void)worker.stop();
}

TEST_F(WorkerLifecycle, RunAnswersSigusr1SighupAndSigint) {
  TempDir dir;
  const auto file = dir.path / "herald.json";
  auto write_config = [&](const std::string& step, const std::string& event) {
    std::ofstream(file) << json{{"worker", {{"name", "signalled"}, {"dispatcher_threads", 1}}},
                                {"steps", {{{"name", step}, {"publishes_events", {{{"name", event}}}}}}}}
                                   .dump();
  };
  write_config("process_payment", "payment.processed");
  Worker worker(WorkerConfig::load(file), &publishers_);
  auto recorder = std::make_shared<Recorder>("recorder");
  worker.add_subscriber(recorder);
  LogCapture log;
  std::atomic<int> exit_code{-1};
  std::thread runner([&] { exit_code = worker.run(/*handle_signals=*/true); });
  ASSERT_TRUE(wait_for([&] { return worker.state() == WorkerState::running; }));

  // Only one worker per process handles signals.
  {
    Worker second(config_with(), &publishers_);
    try {
      second.run(/*handle_signals=*/true);
      ADD_FAILURE() << "a second signal-handling run() did not throw";
    } catch (const herald::StateError& e) {
      EXPECT_TRUE(contains(e.what(), "another worker already handles signals")) << e.what();
    }
    EXPECT_EQ(second.state(), WorkerState::initializing);
  }

  ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);
  ASSERT_TRUE(wait_for([&] { return log.saw("worker 'signalled' status: {"); })) << log.text();

  // SIGHUP with a broken file: refused, logged, still running with the old configuration.
  std::ofstream(file) << "not json";
  ASSERT_EQ(::kill(::getpid(), SIGHUP), 0);
  ASSERT_TRUE(wait_for([&] { return log.saw("reload refused, keeping the old configuration"); })) << log.text();
  EXPECT_EQ(worker.state(), WorkerState::running);

  // SIGHUP with a new step: completions of that step publish once the reload is done.
  write_config("ship_order", "order.shipped");
  ASSERT_EQ(::kill(::getpid(), SIGHUP), 0);
  ASSERT_TRUE(wait_for([&] {
    worker.complete_step(completion(0, "ship_order"));
    (void)worker.drain(1s);
    const auto names = recorder->names();
    return std::find(names.begin(), names.end(), "order.shipped") != names.end();
  })) << log.text();
  EXPECT_TRUE(log.saw("received SIGHUP: reloading the configuration")) << log.text();

  ASSERT_EQ(::kill(::getpid(), SIGINT), 0);
  runner.join();
  EXPECT_EQ(exit_code.load(), 0);
  EXPECT_EQ(worker.state(), WorkerState::stopped);
  EXPECT_TRUE(log.saw("received SIGINT: stopping gracefully")) << log.text();
  EXPECT_TRUE(recorder->stopped());
}
