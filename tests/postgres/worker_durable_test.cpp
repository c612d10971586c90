// delivery_mode durable and broadcast through a Worker (issue 14), against a real PostgreSQL:
// the worker's configuration names transports.postgres, the pipeline routes to the durable road,
// status reports it, and the events are read back from the log by a consumer group.
#include "pg_fixture.hpp"

#include <herald/worker/worker.hpp>

#include <watchdog.hpp>

#include <map>
#include <set>

using namespace std::chrono_literals;
using herald::testing::DurableTest;
using herald::testing::Handled;
using herald::testing::Watchdog;
using herald::testing::wait_for;
using nlohmann::json;

namespace herald::testing {
namespace {

// Counts the in-process events by id.
class InProcess : public Subscriber {
 public:
  std::string name() const override { return "in_process"; }
  std::vector<std::string> subscribes_to() const override { return {"#"}; }
  SubscriberResult handle(const EventPtr& e) override {
    std::lock_guard lock(mutex);
    ids.push_back(e->event_id());
    names.push_back(e->event_name());
    return {};
  }
  SubscribeOptions subscribe_options() const override {
    auto o = Subscriber::subscribe_options();
    o.overflow = OverflowPolicy::block;
    return o;
  }
  std::mutex mutex;
  std::vector<std::string> ids, names;
};

}  // namespace

TEST_F(DurableTest, AWorkerRoutesDurableAndBroadcastEventsToTheLogOnceEach) {
  Watchdog watchdog("worker durable", std::chrono::seconds(240));
  const json config = {
      {"worker", {{"name", "durable-worker"}, {"dispatcher_threads", 2}}},
      {"transports", {{"postgres", {{"dsn", dsn()}}}}},
      {"steps",
       {{{"name", "process_payment"},
         {"publishes_events",
          {{{"name", "payment.processed"}, {"condition", "success"}, {"delivery_mode", "durable"}},
           {{"name", "payment.audited"}, {"condition", "success"}, {"delivery_mode", "broadcast"}},
           {{"name", "payment.local"}, {"condition", "success"}}}}}}}};
  PublisherRegistry publishers;
  Worker worker(WorkerConfig::from_json(config), &publishers);
  auto local = std::make_shared<InProcess>();
  worker.add_subscriber(local);
  worker.start();
  constexpr int kCompletions = 300;
  for (int i = 0; i < kCompletions; ++i) {
    StepCompletion c;
    c.step_name = "process_payment";
    c.success = true;
    c.namespace_name = "payments";
    c.result = {{"i", i}};
    ASSERT_TRUE(worker.complete_step(std::move(c)));
  }
  ASSERT_TRUE(worker.drain(60s));
  const auto status = worker.status();
  ASSERT_TRUE(status["transports"].contains("postgres")) << status["transports"].dump();
  EXPECT_EQ(status["events"]["published_by_delivery_mode"]["durable"], kCompletions);
  EXPECT_EQ(status["events"]["published_by_delivery_mode"]["broadcast"], kCompletions);
  EXPECT_TRUE(worker.health()["transports"]["postgres"]["healthy"].get<bool>());
  const auto report = worker.stop();  // the durable road flushes what it holds
  EXPECT_TRUE(report.graceful);

  // The log holds each durable and broadcast event exactly once, in completion order; the
  // in-process-only events are not there.
  auto names = column("SELECT event_name FROM herald.events WHERE stream = 'payments_domain_events' ORDER BY event_offset");
  ASSERT_EQ(names.size(), 2u * kCompletions);
  for (int i = 0; i < kCompletions; ++i) {
    EXPECT_EQ(names[2 * i], "payment.processed") << i;
    EXPECT_EQ(names[2 * i + 1], "payment.audited") << i;
  }
  const auto stored_ids = column("SELECT event_id FROM herald.events WHERE event_name = 'payment.audited'");
  // Broadcast: the event the in-process subscriber saw is the one stored (same event_id).
  std::set<std::string> local_audited;
  {
    std::lock_guard lock(local->mutex);
    for (std::size_t k = 0; k < local->ids.size(); ++k) {
      if (local->names[k] == "payment.audited") local_audited.insert(local->ids[k]);
      EXPECT_NE(local->names[k], "payment.processed");  // durable only: not in process
    }
    EXPECT_EQ(local->ids.size(), 2u * kCompletions);   // audited (broadcast) + local
  }
  EXPECT_EQ(std::set<std::string>(stored_ids.begin(), stored_ids.end()), local_audited);

  // A consumer group reads them back, each once.
  Handled handled;
  auto o = consumer_options("billing");
  DurableConsumer consumer(o, handled.handlers());
  consumer.start();
  ASSERT_TRUE(wait_for([&] { return handled.size() >= 2u * kCompletions; }, 60s)) << handled.size();
  consumer.stop();
  std::set<std::string> seen;
  for (const auto& e : handled.entries()) EXPECT_TRUE(seen.insert(e.event_id).second) << "twice: " << e.event_id;
  EXPECT_EQ(seen.size(), 2u * kCompletions);
}

TEST_F(DurableTest, AWorkerWhoseDatabaseIsUnreachableFailsToStartNamingItWithoutThePassword) {
  const json config = {
      {"worker", {{"name", "unreachable"}}},
      {"transports", {{"postgres", {{"dsn", "host=/nonexistent/herald-socket dbname=x user=u password=hunter2"}}}}},
      {"steps", {{{"name", "s"}, {"publishes_events", {{{"name", "a.b"}, {"delivery_mode", "durable"}}}}}}}};
  PublisherRegistry publishers;
  Worker worker(WorkerConfig::from_json(config), &publishers);
  try {
    worker.start();
    FAIL() << "started without its database";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("/nonexistent/herald-socket"), std::string::npos) << what;
    EXPECT_EQ(what.find("hunter2"), std::string::npos) << what;
  }
  EXPECT_EQ(worker.state(), WorkerState::stopped);
}

}  // namespace herald::testing

namespace herald::testing {

TEST_F(DurableTest, ARunningWorkerAppliesItsRetentionToTheLog) {
  Watchdog watchdog("worker retention", std::chrono::seconds(240));
  publish(50);  // an older stretch of the stream: the retention keeps the newest 10
  const json config = {
      {"worker", {{"name", "retention-worker"}}},
      {"transports", {{"postgres", {{"dsn", dsn()}, {"retention", {{"max_events", 10}, {"interval_ms", 200}}}}}}},
      {"steps", {{{"name", "s"}, {"publishes_events", {{{"name", "payment.processed"}, {"delivery_mode", "durable"}}}}}}}};
  PublisherRegistry publishers;
  Worker worker(WorkerConfig::from_json(config), &publishers);
  worker.start();
  // The worker reports what it deleted once the run that deleted it has finished (a moment
  // after the rows are gone): wait for both.
  const auto deleted = [&] {
    return worker.status()["transports"]["postgres"]["retention"]["deleted"].get<std::int64_t>();
  };
  ASSERT_TRUE(wait_for([&] { return scalar("SELECT count(*) FROM herald.events") == "10" && deleted() >= 40; }, 60s))
      << scalar("SELECT count(*) FROM herald.events") << " rows, " << deleted() << " reported deleted";
  // The newest ten are the ones kept.
  EXPECT_EQ(scalar("SELECT min(event_offset) FROM herald.events"), "41");
  EXPECT_EQ(deleted(), 40);
  (void)worker.stop();
}

TEST_F(DurableTest, RetentionOptionsAreCheckedWithTheirKeyPath) {
  auto config = [&](json retention) {
    return json{{"transports", {{"postgres", {{"dsn", dsn()}, {"retention", std::move(retention)}}}}}};
  };
  const auto key_path_of = [&](json retention) -> std::string {
    try {
      WorkerConfig::from_json(config(std::move(retention)));
    } catch (const ConfigError& e) {
      return e.key_path();
    }
    return "accepted";
  };
  EXPECT_EQ(key_path_of(json::object()), "transports.postgres.retention");  // no limit given
  EXPECT_EQ(key_path_of({{"max_events", 5}, {"max_age", 3}}), "transports.postgres.retention.max_age");
  EXPECT_EQ(key_path_of({{"max_age_s", -1}}), "transports.postgres.retention.max_age_s");
  EXPECT_EQ(key_path_of({{"max_events", 5}, {"interval_ms", 5}}), "transports.postgres.retention.interval_ms");
  EXPECT_EQ(key_path_of({{"max_age_s", 3600}}), "accepted");
}

}  // namespace herald::testing
