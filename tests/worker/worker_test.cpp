#include <herald/events/error.hpp>
#include <herald/worker/worker.hpp>

#include <gtest/gtest.h>
#include <wait_for.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

using herald::StepCompletion;
using herald::Worker;
using herald::WorkerConfig;
using herald::WorkerState;
using herald::testing::wait_for;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

WorkerConfig payments_config(std::size_t threads = 2) {
  return WorkerConfig::from_json(json{
      {"worker", {{"name", "test-worker"}, {"dispatcher_threads", threads}}},
      {"steps",
       {{{"name", "process_payment"},
         {"publishes_events",
          {{{"name", "payment.processed"}, {"condition", "success"}},
           {{"name", "payment.failed"}, {"condition", "permanent_failure"}},
           {{"name", "payment.retrying"}, {"condition", "retryable_failure"}}}}}}}});
}

StepCompletion completion(bool success, int n = 0, bool retryable = false) {
  StepCompletion c;
  c.step_name = "process_payment";
  c.success = success;
  c.retryable = retryable;
  c.max_retries = 3;
  c.result = {{"n", n}};
  c.correlation_id = "corr-" + std::to_string(n);
  return c;
}

// Records every event it sees, in order.
class RecordingSubscriber : public herald::Subscriber {
 public:
  explicit RecordingSubscriber(std::string name, std::vector<std::string> patterns = {"#"})
      : name_(std::move(name)), patterns_(std::move(patterns)) {}
  std::string name() const override { return name_; }
  std::vector<std::string> subscribes_to() const override { return patterns_; }
  herald::SubscriberResult handle(const herald::EventPtr& event) override {
    std::lock_guard lock(mutex_);
    events_.push_back(event);
    return {};
  }
  std::vector<herald::EventPtr> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  std::string name_;
  std::vector<std::string> patterns_;
  mutable std::mutex mutex_;
  std::vector<herald::EventPtr> events_;
};

std::vector<std::string> names_of(const std::vector<herald::EventPtr>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e->event_name());
  return out;
}

}  // namespace

class WorkerTest : public ::testing::Test {
 protected:
  herald::PublisherRegistry publishers_;
};

TEST_F(WorkerTest, GoesThroughEveryStateOfAGracefulLife) {
  Worker worker(payments_config(), &publishers_);
  std::vector<std::string> transitions;
  worker.on_state_change([&](WorkerState from, WorkerState to) {
    transitions.push_back(std::string(herald::to_string(from)) + "->" + std::string(herald::to_string(to)));
  });
  EXPECT_EQ(worker.state(), WorkerState::initializing);
  worker.start();
  EXPECT_EQ(worker.state(), WorkerState::running);
  (void)worker.stop();
  EXPECT_EQ(worker.state(), WorkerState::stopped);
  EXPECT_EQ(transitions, (std::vector<std::string>{"INITIALIZING->STARTING", "STARTING->RUNNING",
                                                   "RUNNING->STOPPING", "STOPPING->STOPPED"}));
}

TEST_F(WorkerTest, CompletionsBecomeEventsForSubscribersByCondition) {
  Worker worker(payments_config(), &publishers_);
  auto recorder = std::make_shared<RecordingSubscriber>("recorder");
  worker.add_subscriber(recorder);
  worker.start();
  EXPECT_TRUE(worker.complete_step(completion(true, 1)));
  EXPECT_TRUE(worker.complete_step(completion(false, 2, /*retryable=*/true)));
  EXPECT_TRUE(worker.complete_step(completion(false, 3, /*retryable=*/false)));
  ASSERT_TRUE(worker.drain(60s));
  EXPECT_EQ(names_of(recorder->events()),
            (std::vector<std::string>{"payment.processed", "payment.retrying", "payment.failed"}));
  EXPECT_EQ(recorder->events()[0]->metadata().correlation_id, "corr-1");
  (void)worker.stop();
}

TEST_F(WorkerTest, HooksRunInOrderAndShutdownHooksInReverse) {
  Worker worker(payments_config(), &publishers_);
  std::vector<std::string> calls;
  std::mutex m;
  auto note = [&](std::string what) {
    std::lock_guard lock(m);
    calls.push_back(std::move(what));
  };
  worker.on_startup([&] { note("startup1"); });
  worker.on_startup([&] { note("startup2"); });
  worker.on_shutdown([&] { note("shutdown1"); });
  worker.on_shutdown([&] { note("shutdown2"); });
  worker.on_success([&](const StepCompletion& c) { note("success " + c.correlation_id); });
  worker.on_error([&](const StepCompletion& c, const herald::PublishFailure&) { note("error " + c.correlation_id); });
  worker.start();
  worker.complete_step(completion(true, 1));
  ASSERT_TRUE(worker.drain(60s));
  (void)worker.stop();
  EXPECT_EQ(calls, (std::vector<std::string>{"startup1", "startup2", "success corr-1", "shutdown2", "shutdown1"}));
}

TEST_F(WorkerTest, AFailingStartupHookNamesTheHookRunsShutdownHooksAndProcessesNothing) {
  Worker worker(payments_config(), &publishers_);
  std::vector<std::string> calls;
  std::vector<std::string> states;
  worker.on_state_change([&](WorkerState, WorkerState to) { states.emplace_back(herald::to_string(to)); });
  worker.on_startup([&] { calls.push_back("startup1"); }, "open_db");
  worker.on_startup([] { throw std::runtime_error("connection refused"); }, "connect_cache");
  worker.on_startup([&] { calls.push_back("startup3"); }, "never");
  worker.on_shutdown([&] { calls.push_back("shutdown"); });
  try {
    worker.start();
    FAIL() << "start() should have thrown";
  } catch (const herald::StartupError& e) {
    EXPECT_EQ(e.hook(), "connect_cache");
    EXPECT_NE(std::string(e.what()).find("connection refused"), std::string::npos);
  }
  EXPECT_EQ(calls, (std::vector<std::string>{"startup1", "shutdown"}));
  EXPECT_EQ(states, (std::vector<std::string>{"STARTING", "ERROR", "STOPPING", "STOPPED"}));
  EXPECT_EQ(worker.state(), WorkerState::stopped);
  EXPECT_FALSE(worker.complete_step(completion(true)));
}

TEST_F(WorkerTest, RunReportsAFailingStartupHookWithANonZeroExitCode) {
  Worker worker(payments_config(), &publishers_);
  worker.on_startup([] { throw std::runtime_error("nope"); }, "broken");
  EXPECT_EQ(worker.run(/*handle_signals=*/false), 1);
  EXPECT_EQ(worker.state(), WorkerState::stopped);
}

TEST_F(WorkerTest, EveryShutdownHookRunsEvenWhenOneThrowsAndErrorsAreReported) {
  Worker worker(payments_config(), &publishers_);
  std::vector<int> ran;
  worker.on_shutdown([&] { ran.push_back(1); }, "first");
  worker.on_shutdown([&] { ran.push_back(2); throw std::runtime_error("disk gone"); }, "second");
  worker.on_shutdown([&] { ran.push_back(3); }, "third");
  worker.start();
  const auto report = worker.stop();
  EXPECT_EQ(ran, (std::vector<int>{3, 2, 1}));
  ASSERT_EQ(report.hook_errors.size(), 1u);
  EXPECT_NE(report.hook_errors[0].find("second"), std::string::npos);
  EXPECT_NE(report.hook_errors[0].find("disk gone"), std::string::npos);
}

TEST_F(WorkerTest, RegisteringAHookAfterStartIsAnError) {
  Worker worker(payments_config(), &publishers_);
  worker.start();
  EXPECT_THROW(worker.on_startup([] {}), herald::StateError);
  EXPECT_THROW(worker.on_success([](const StepCompletion&) {}), herald::StateError);
  EXPECT_THROW(worker.on_worker_startup([] {}), herald::StateError);
  (void)worker.stop();
}

TEST_F(WorkerTest, PerWorkerHooksRunOnEachDispatcherThread) {
  Worker worker(payments_config(/*threads=*/3), &publishers_);
  std::mutex m;
  std::set<std::thread::id> started, stopped;
  worker.on_worker_startup([&] { std::lock_guard l(m); started.insert(std::this_thread::get_id()); });
  worker.on_worker_shutdown([&] { std::lock_guard l(m); stopped.insert(std::this_thread::get_id()); });
  worker.start();
  ASSERT_TRUE(wait_for([&] { std::lock_guard l(m); return started.size() == 3; }));
  (void)worker.stop();
  EXPECT_EQ(started, stopped);
  EXPECT_EQ(started.count(std::this_thread::get_id()), 0u);
}

TEST_F(WorkerTest, OnErrorSeesPublishFailuresAndAThrowingOnErrorIsNotFatal) {
  auto config = WorkerConfig::from_json(json{
      {"worker", {{"dispatcher_threads", 1}}},
      {"steps", {{{"name", "process_payment"},
                  {"publishes_events", {{{"name", "payment.processed"},
                                         {"schema", {{"type", "object"}, {"required", {"amount"}}}}}}}}}}});
  Worker worker(config, &publishers_);
  std::vector<std::string> errors;
  worker.on_error([&](const StepCompletion&, const herald::PublishFailure& f) {
    errors.push_back(std::string(to_string(f.stage)) + ": " + f.message);
    throw std::runtime_error("hook blew up");
  });
  worker.start();
  worker.complete_step(completion(true, 1));  // result {"n":1} lacks "amount"
  ASSERT_TRUE(worker.drain(60s));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("schema"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("amount"), std::string::npos) << errors[0];
  EXPECT_EQ(worker.state(), WorkerState::running);
  const auto status = worker.status();
  EXPECT_EQ(status["completions"]["failed"], 1);
  EXPECT_EQ(status["hook_errors"], 1);
  (void)worker.stop();
}

TEST_F(WorkerTest, AnUnknownStepIsReportedToOnErrorNamingTheStep) {
  Worker worker(payments_config(), &publishers_);
  std::string message;
  worker.on_error([&](const StepCompletion&, const herald::PublishFailure& f) { message = f.message; });
  worker.start();
  auto c = completion(true);
  c.step_name = "ship_order";
  worker.complete_step(c);
  ASSERT_TRUE(worker.drain(60s));
  EXPECT_NE(message.find("unknown step 'ship_order'"), std::string::npos) << message;
  EXPECT_NE(message.find("process_payment"), std::string::npos) << message;
  EXPECT_EQ(worker.status()["completions"]["unknown_step"], 1);
  (void)worker.stop();
}

TEST_F(WorkerTest, StopDrainsEveryAcceptedCompletionAndItsEvents) {
  Worker worker(payments_config(), &publishers_);
  auto recorder = std::make_shared<RecordingSubscriber>("recorder", std::vector<std::string>{"payment.processed"});
  worker.add_subscriber(recorder);
  worker.start();
  constexpr int kCount = 5000;
  for (int i = 0; i < kCount; ++i) ASSERT_TRUE(worker.complete_step(completion(true, i)));
  const auto report = worker.stop(30s);
  EXPECT_TRUE(report.graceful);
  EXPECT_EQ(report.intake_undelivered, 0u);
  EXPECT_EQ(report.events_undelivered, 0u);
  const auto events = recorder->events();
  ASSERT_EQ(events.size(), static_cast<std::size_t>(kCount));
  for (int i = 0; i < kCount; ++i) EXPECT_EQ(events[i]->payload()["n"], i);  // completion order kept
  EXPECT_FALSE(worker.complete_step(completion(true)));                     // intake closed
}

TEST_F(WorkerTest, CompleteStepIsSafeFromManyThreads) {
  Worker worker(payments_config(), &publishers_);
  auto recorder = std::make_shared<RecordingSubscriber>("recorder");
  worker.add_subscriber(recorder);
  worker.start();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) worker.complete_step(completion(true, i));
    });
  }
  for (auto& th : threads) th.join();
  (void)worker.stop(30s);
  EXPECT_EQ(recorder->events().size(), 4000u);
  EXPECT_EQ(worker.status()["completions"]["processed"], 4000);
}

TEST_F(WorkerTest, StatusReportsStateCountsQueuesAndSubscribers) {
  Worker worker(payments_config(), &publishers_);
  worker.add_subscriber(std::make_shared<RecordingSubscriber>("recorder"));
  worker.start();
  worker.complete_step(completion(true, 1));
  worker.complete_step(completion(false, 2));
  ASSERT_TRUE(worker.drain(60s));
  const auto s = worker.status();
  EXPECT_EQ(s["state"], "RUNNING");
  EXPECT_EQ(s["worker"], "test-worker");
  EXPECT_EQ(s["completions"]["received"], 2);
  EXPECT_EQ(s["completions"]["processed"], 2);
  EXPECT_EQ(s["events"]["published_by_event"]["payment.processed"], 1);
  EXPECT_EQ(s["events"]["published_by_event"]["payment.failed"], 1);
  EXPECT_TRUE(s["queues"].contains("intake_depth"));
  EXPECT_TRUE(s["subscribers"].dump().find("recorder") != std::string::npos) << s.dump();
  EXPECT_TRUE(worker.health()["healthy"].get<bool>());
  (void)worker.stop();
  EXPECT_FALSE(worker.health()["healthy"].get<bool>());
}

TEST_F(WorkerTest, RequestStopEndsRunGracefully) {
  Worker worker(payments_config(), &publishers_);
  auto recorder = std::make_shared<RecordingSubscriber>("recorder");
  worker.add_subscriber(recorder);
  std::thread runner([&] { EXPECT_EQ(worker.run(/*handle_signals=*/false), 0); });
  ASSERT_TRUE(wait_for([&] { return worker.state() == WorkerState::running; }));
  for (int i = 0; i < 100; ++i) worker.complete_step(completion(true, i));
  worker.request_stop();
  runner.join();
  EXPECT_EQ(worker.state(), WorkerState::stopped);
  EXPECT_EQ(recorder->events().size(), 100u);
}

TEST_F(WorkerTest, MissingDeclaredPublishersFailStartNamingThem) {
  auto config = WorkerConfig::from_json(json{
      {"steps", {{{"name", "s"}, {"publishes_events", {{{"name", "a.b"}, {"publisher", "ghost"}}}}}}}});
  Worker worker(config, &publishers_);
  try {
    worker.start();
    FAIL();
  } catch (const herald::RegistryError& e) {
    EXPECT_NE(std::string(e.what()).find("ghost"), std::string::npos) << e.what();
  }
  EXPECT_EQ(worker.state(), WorkerState::stopped);
}

TEST_F(WorkerTest, ReloadAppliesNewDeclarationsToLaterCompletions) {
  Worker worker(payments_config(), &publishers_);
  auto recorder = std::make_shared<RecordingSubscriber>("recorder");
  worker.add_subscriber(recorder);
  worker.start();
  worker.complete_step(completion(true, 1));
  ASSERT_TRUE(worker.drain(60s));
  worker.reload(WorkerConfig::from_json(json{
      {"steps", {{{"name", "process_payment"},
                  {"publishes_events", {{{"name", "payment.settled"}, {"condition", "always"}}}}}}}}));
  worker.complete_step(completion(true, 2));
  ASSERT_TRUE(worker.drain(60s));
  EXPECT_EQ(names_of(recorder->events()), (std::vector<std::string>{"payment.processed", "payment.settled"}));
  (void)worker.stop();
}

TEST(WorkerStates, ParseAndPrintEveryState) {
  for (auto s : {WorkerState::initializing, WorkerState::starting, WorkerState::running,
                 WorkerState::stopping, WorkerState::stopped, WorkerState::error}) {
    EXPECT_EQ(herald::parse_worker_state(herald::to_string(s)), s);
  }
  EXPECT_THROW(herald::parse_worker_state("PAUSED"), herald::UnknownValueError);
}

TEST(WorkerIntake, DropOldestDisplacesQueuedCompletionsAndCountsThem) {
  herald::PublisherRegistry publishers;
  auto config = payments_config(1);
  config.intake_capacity = 2;
  config.intake_overflow = herald::OverflowPolicy::drop_oldest;
  Worker worker(config, &publishers);
  std::atomic<bool> release{false};
  std::atomic<int> seen{0};
  worker.on_success([&](const StepCompletion&) {
    ++seen;
    while (!release) std::this_thread::yield();  // hold the intake thread on the first completion
  });
  worker.start();
  worker.complete_step(completion(true, 0));
  ASSERT_TRUE(wait_for([&] { return seen.load() == 1; }));
  for (int i = 1; i <= 5; ++i) EXPECT_TRUE(worker.complete_step(completion(true, i)));  // 1..3 displaced
  release = true;
  ASSERT_TRUE(worker.drain(60s));
  const auto c = worker.status()["completions"];
  EXPECT_EQ(c["received"], 6);
  EXPECT_EQ(c["dropped"], 3);
  EXPECT_EQ(c["processed"], 3);
  EXPECT_EQ(c["rejected"], 0);
  (void)worker.stop();
}

TEST(WorkerIntake, DropNewestRefusesWhenFull) {
  herald::PublisherRegistry publishers;
  auto config = payments_config(1);
  config.intake_capacity = 1;
  config.intake_overflow = herald::OverflowPolicy::drop_newest;
  Worker worker(config, &publishers);
  std::atomic<bool> release{false};
  std::atomic<int> seen{0};
  worker.on_success([&](const StepCompletion&) {
    ++seen;
    while (!release) std::this_thread::yield();
  });
  worker.start();
  worker.complete_step(completion(true, 0));
  ASSERT_TRUE(wait_for([&] { return seen.load() == 1; }));
  EXPECT_TRUE(worker.complete_step(completion(true, 1)));
  EXPECT_FALSE(worker.complete_step(completion(true, 2)));
  release = true;
  ASSERT_TRUE(worker.drain(60s));
  EXPECT_EQ(worker.status()["completions"]["rejected"], 1);
  EXPECT_EQ(worker.status()["completions"]["processed"], 2);
  (void)worker.stop();
}

// ---- process_steps: the caller runs the pipeline ------------------------------------------

TEST_F(WorkerTest, ProcessStepsPublishesOnTheCallersThreadInOrder) {
  Worker worker(payments_config(), &publishers_);
  auto recorder = std::make_shared<RecordingSubscriber>("recorder");
  worker.add_subscriber(recorder);
  std::mutex mutex;
  std::vector<std::thread::id> hook_threads;
  worker.on_success([&](const StepCompletion&) {
    std::lock_guard lock(mutex);
    hook_threads.push_back(std::this_thread::get_id());
  });
  worker.start();
  std::vector<StepCompletion> run;
  for (int i = 0; i < 100; ++i) run.push_back(completion(true, i));
  EXPECT_EQ(worker.process_steps(run), 100u);
  {
    std::lock_guard lock(mutex);
    ASSERT_EQ(hook_threads.size(), 100u);  // processed before process_steps returned
    for (const auto& id : hook_threads) EXPECT_EQ(id, std::this_thread::get_id());
  }
  ASSERT_TRUE(worker.drain(60s));
  const auto events = recorder->events();
  ASSERT_EQ(events.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(events[i]->payload()["n"], i);
  const auto c = worker.status()["completions"];
  EXPECT_EQ(c["received"], 100);
  EXPECT_EQ(c["processed"], 100);
  (void)worker.stop();
  std::vector<StepCompletion> late{completion(true, 7)};
  EXPECT_EQ(worker.process_steps(late), 0u);  // stopped: refused and counted
  EXPECT_EQ(worker.status()["completions"]["rejected"], 1);
}

TEST_F(WorkerTest, CompletionsSubmittedDuringProcessStepsQueueBehindThem) {
  Worker worker(payments_config(), &publishers_);
  std::mutex mutex;
  std::vector<std::string> order;
  std::vector<std::thread::id> threads;
  worker.on_success([&](const StepCompletion& c) {
    {
      std::lock_guard lock(mutex);
      order.push_back(c.correlation_id);
      threads.push_back(std::this_thread::get_id());
    }
    // Submitted to the intake while the caller holds it: the intake thread must wait.
    if (c.correlation_id == "corr-0") {
      EXPECT_TRUE(worker.complete_step(completion(true, 1000)));
    }
  });
  worker.start();
  std::vector<StepCompletion> run;
  for (int i = 0; i < 50; ++i) run.push_back(completion(true, i));
  EXPECT_EQ(worker.process_steps(run), 50u);
  ASSERT_TRUE(worker.drain(60s));
  (void)worker.stop();
  std::lock_guard lock(mutex);
  ASSERT_EQ(order.size(), 51u);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(order[i], "corr-" + std::to_string(i));
    EXPECT_EQ(threads[i], std::this_thread::get_id());
  }
  EXPECT_EQ(order[50], "corr-1000");                   // after the whole run
  EXPECT_NE(threads[50], std::this_thread::get_id());  // by the intake thread
}

TEST_F(WorkerTest, StopPastItsDeadlineAccountsForWhatAProcessStepsRunLeft) {
  Worker worker(payments_config(), &publishers_);
  std::atomic<int> seen{0};
  std::atomic<bool> queued{false};
  worker.on_success([&](const StepCompletion&) {
    if (seen++ != 0) return;
    // The first completion of the run queues one more behind it and holds the run until
    // stop() (deadline 0 ms) has given up on the intake: it drops the queued one (what this
    // waits for) after telling the run to stop.
    queued = worker.complete_step(completion(true, 1000));
    EXPECT_TRUE(wait_for([&] { return worker.status()["completions"]["dropped"] == 1; }));
  });
  worker.start();
  std::vector<StepCompletion> run;
  for (int i = 0; i < 10; ++i) run.push_back(completion(true, i));
  std::size_t processed_by_run = 0;
  std::thread caller([&] { processed_by_run = worker.process_steps(run); });
  ASSERT_TRUE(wait_for([&] { return queued.load(); }));
  const auto report = worker.stop(0ms);
  caller.join();
  EXPECT_FALSE(report.graceful);
  EXPECT_EQ(processed_by_run, 1u);  // the run stopped after its current completion
  // The 9 the run left and the 1 queued: nothing accepted goes unaccounted.
  EXPECT_EQ(report.intake_undelivered, 10u);
  const auto c = worker.status()["completions"];
  EXPECT_EQ(c["received"], 11);
  EXPECT_EQ(c["processed"], 1);
  EXPECT_EQ(c["dropped"], 10);
}

// Calls `on_event` for every event it handles (on a dispatcher thread).
class CallingSubscriber : public herald::Subscriber {
 public:
  explicit CallingSubscriber(std::function<void(const herald::EventPtr&)> on_event)
      : on_event_(std::move(on_event)) {}
  std::string name() const override { return "calling"; }
  std::vector<std::string> subscribes_to() const override { return {"payment.processed"}; }
  herald::SubscriberResult handle(const herald::EventPtr& event) override {
    on_event_(event);
    return {};
  }

 private:
  std::function<void(const herald::EventPtr&)> on_event_;
};

TEST_F(WorkerTest, ProcessStepsFromAHookOrAHandlerIsQueuedInsteadOfWaitingForItself) {
  // Run in place, each of these would wait for the intake to be idle: from the intake thread's
  // hook, for itself; from a hook inside a run, for its own run; from a handler, for an intake
  // that may be waiting for that handler's mailbox. They are queued instead.
  Worker worker(payments_config(), &publishers_);
  std::mutex mutex;
  std::map<std::string, std::thread::id> processed_on;
  std::thread::id handler_thread;
  const auto follow_up = [&](int n) {
    std::vector<StepCompletion> one{completion(true, n)};
    EXPECT_EQ(worker.process_steps(one), 1u);  // accepted into the intake
  };
  worker.add_subscriber(std::make_shared<CallingSubscriber>([&](const herald::EventPtr& e) {
    if (e->payload()["n"] != 3) return;
    {
      std::lock_guard lock(mutex);
      handler_thread = std::this_thread::get_id();
    }
    follow_up(103);
  }));
  worker.on_success([&](const StepCompletion& c) {
    {
      std::lock_guard lock(mutex);
      processed_on[c.correlation_id] = std::this_thread::get_id();
    }
    if (c.correlation_id == "corr-1") follow_up(101);  // on the intake thread
    if (c.correlation_id == "corr-2") follow_up(102);  // inside the run below
  });
  worker.start();
  ASSERT_TRUE(worker.complete_step(completion(true, 1)));
  std::vector<StepCompletion> run{completion(true, 2), completion(true, 3)};
  EXPECT_EQ(worker.process_steps(run), 2u);
  ASSERT_TRUE(wait_for([&] { return worker.status()["completions"]["processed"] == 6; }));
  ASSERT_TRUE(worker.drain(60s));
  std::lock_guard lock(mutex);
  const auto self = std::this_thread::get_id();
  const auto intake = processed_on.at("corr-1");
  EXPECT_NE(intake, self);
  EXPECT_EQ(processed_on.at("corr-2"), self);
  EXPECT_EQ(processed_on.at("corr-3"), self);
  for (const char* queued : {"corr-101", "corr-102", "corr-103"}) {
    EXPECT_EQ(processed_on.at(queued), intake) << queued;  // by the intake thread
  }
  EXPECT_NE(handler_thread, std::thread::id{});
  EXPECT_NE(handler_thread, intake);
  const auto c = worker.status()["completions"];
  EXPECT_EQ(c["received"], 6);
  EXPECT_EQ(c["rejected"], 0);
  (void)worker.stop();
}

TEST_F(WorkerTest, AHookThrowingANonStandardExceptionIsContainedOnBothPaths) {
  Worker worker(payments_config(), &publishers_);
  std::atomic<int> calls{0};
  worker.on_success([&](const StepCompletion&) {
    ++calls;
    throw 42;  // not a std::exception
  });
  worker.start();
  std::vector<StepCompletion> run{completion(true, 0), completion(true, 1), completion(true, 2)};
  EXPECT_EQ(worker.process_steps(run), 3u);  // the run went on, and let go of the intake
  EXPECT_TRUE(worker.complete_step(completion(true, 3)));
  ASSERT_TRUE(worker.drain(60s));
  EXPECT_EQ(calls.load(), 4);
  EXPECT_EQ(worker.status()["completions"]["processed"], 4);
  const auto report = worker.stop();
  EXPECT_TRUE(report.graceful);
}
