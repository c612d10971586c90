// MetricsSubscriber: counts by name, namespace and step outcome; JSON and Prometheus text.
#include <herald/events/error.hpp>
#include <herald/subscribers/metrics.hpp>
#include <herald/subscribers/registry.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>

using herald::DomainEvent;
using herald::EventBus;
using herald::EventPtr;
using herald::ExecutionResult;
using herald::MetricsSubscriber;
using herald::StepOutcome;
using herald::SubscriberRegistry;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {
EventPtr make(const std::string& name, const std::string& ns, ExecutionResult result = {}) {
  herald::EventMetadata meta;
  meta.namespace_name = ns;
  return DomainEvent::create(name, nlohmann::json::object(), meta, result);
}
const ExecutionResult kRetryable{.success = false, .retryable = true, .retry_count = 1, .max_retries = 3};
const ExecutionResult kRetriesExhausted{.success = false, .retryable = true, .retry_count = 3, .max_retries = 3};
const ExecutionResult kPermanent{.success = false, .retryable = false, .retry_count = 3};

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
}  // namespace

TEST(MetricsOutcome, FailedAndRetryableIsRetryableOtherwisePermanent) {
  EXPECT_EQ(herald::step_outcome_of({}), StepOutcome::success);
  EXPECT_EQ(herald::step_outcome_of(kRetryable), StepOutcome::retryable_failure);
  EXPECT_EQ(herald::step_outcome_of(kRetriesExhausted), StepOutcome::permanent_failure);
  EXPECT_EQ(herald::step_outcome_of(kPermanent), StepOutcome::permanent_failure);
}

TEST(MetricsSubscriber, CountsEventsByNameNamespaceAndStepOutcome) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto metrics = std::make_shared<MetricsSubscriber>("metrics", std::vector<std::string>{"#"});
  registry.register_subscriber(metrics);
  registry.start_all();
  bus.publish(make("payment.processed", "payments"));
  bus.publish(make("payment.processed", "payments"));
  bus.publish(make("payment.failed", "payments", kRetryable));
  bus.publish(make("order.cancelled", "orders", kPermanent));
  ASSERT_TRUE(bus.drain(60s));
  const auto snap = metrics->snapshot();
  EXPECT_EQ(snap["total"], 4);
  EXPECT_EQ(snap["by_event_name"], (nlohmann::json{{"payment.processed", 2},
                                                   {"payment.failed", 1},
                                                   {"order.cancelled", 1}}));
  EXPECT_EQ(snap["by_namespace"], (nlohmann::json{{"payments", 3}, {"orders", 1}}));
  EXPECT_EQ(snap["by_outcome"], (nlohmann::json{{"success", 2},
                                                {"retryable_failure", 1},
                                                {"permanent_failure", 1}}));
}

TEST(MetricsSubscriber, HandleBatchCountsExactlyWhatOneEventAtATimeCounts) {
  // Runs of equal names and namespaces (the remembered-counter path) mixed with changes.
  std::vector<EventPtr> events;
  const char* names[] = {"payment.processed", "payment.processed", "payment.failed",
                         "payment.processed", "order.created", "order.created"};
  const char* namespaces[] = {"payments", "payments", "payments", "billing", "billing", "payments"};
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 6; ++i) {
      events.push_back(make(names[i], namespaces[(i + round) % 6],
                            round % 3 == 0 ? kPermanent : ExecutionResult{}));
    }
  }
  MetricsSubscriber one_by_one("one", {"#"});
  for (const auto& e : events) ASSERT_TRUE(one_by_one.handle(e).success);
  MetricsSubscriber batched("batched", {"#"});
  std::vector<herald::HandleOutcome> outcomes(events.size(), herald::HandleOutcome::handled);
  const std::span<const EventPtr> all(events);
  ASSERT_TRUE(batched.handle_batch(all.first(100), std::span(outcomes).first(100)).success);
  ASSERT_TRUE(batched.handle_batch(all.subspan(100), std::span(outcomes).subspan(100)).success);
  EXPECT_EQ(batched.snapshot(), one_by_one.snapshot());
  EXPECT_EQ(batched.total(), events.size());
  EXPECT_EQ(batched.snapshot()["by_event_name"]["payment.processed"], 150);
  for (const auto o : outcomes) EXPECT_EQ(o, herald::HandleOutcome::handled);
}

TEST(MetricsSubscriber, PrometheusTextFollowsTheExpositionFormat) {
  MetricsSubscriber metrics("metrics", {"#"});
  for (int i = 0; i < 3; ++i) metrics.handle(make("payment.processed", "payments"));
  metrics.handle(make("order.created", "orders", kRetryable));
  const std::string expected =
      "# HELP herald_events_total Domain events received, by event name.\n"
      "# TYPE herald_events_total counter\n"
      "herald_events_total{event_name=\"order.created\"} 1\n"
      "herald_events_total{event_name=\"payment.processed\"} 3\n"
      "# HELP herald_events_by_namespace_total Domain events received, by step namespace.\n"
      "# TYPE herald_events_by_namespace_total counter\n"
      "herald_events_by_namespace_total{namespace=\"orders\"} 1\n"
      "herald_events_by_namespace_total{namespace=\"payments\"} 3\n"
      "# HELP herald_step_outcomes_total Domain events received, by the outcome of the step that "
      "caused them.\n"
      "# TYPE herald_step_outcomes_total counter\n"
      "herald_step_outcomes_total{outcome=\"success\"} 3\n"
      "herald_step_outcomes_total{outcome=\"retryable_failure\"} 1\n"
      "herald_step_outcomes_total{outcome=\"permanent_failure\"} 0\n";
  EXPECT_EQ(metrics.prometheus_text(), expected);
}

TEST(MetricsSubscriber, PrometheusLabelValuesAreEscaped) {
  EXPECT_EQ(herald::escape_prometheus_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  MetricsSubscriber metrics("metrics", {"#"});
  metrics.handle(make("payment.processed", "we\"ird\\ns\n"));
  EXPECT_NE(metrics.prometheus_text().find(
                "herald_events_by_namespace_total{namespace=\"we\\\"ird\\\\ns\\n\"} 1\n"),
            std::string::npos)
      << metrics.prometheus_text();
}

TEST(MetricsSubscriber, OnStopWritesThePrometheusFileAtomically) {
  const auto dir = fs::temp_directory_path() / ("herald-metrics-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const auto path = dir / "metrics.prom";
  {
    std::ofstream old(path);
    old << "old contents\n";
  }
  EventBus bus({.dispatcher_threads = 1});
  SubscriberRegistry registry(bus);
  auto metrics =
      std::make_shared<MetricsSubscriber>("metrics", std::vector<std::string>{"#"}, path);
  registry.register_subscriber(metrics);
  registry.start_all();
  bus.publish(make("payment.processed", "payments"));
  ASSERT_TRUE(registry.stop_all(60s).success);
  EXPECT_EQ(read_file(path), metrics->prometheus_text());
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1u) << "no temporary file is left behind";
  fs::remove_all(dir);
}

TEST(MetricsSubscriber, WriteFileWithoutAPathOrToAMissingDirectoryIsAClearError) {
  MetricsSubscriber metrics("metrics", {"#"});
  EXPECT_THROW(metrics.write_file(), herald::Error);
  try {
    metrics.write_file("/nonexistent-herald-dir/metrics.prom");
    FAIL() << "expected herald::Error";
  } catch (const herald::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-herald-dir/metrics.prom"),
              std::string::npos)
        << e.what();
  }
}
