// WorkerConfig: the subscriber section (overflow, circuit breaker, timeouts), list-typed fields,
// the ZeroMQ section's CURVE key paths, SubscriberConfig::to_json and declared_publishers.
// Every error must be a ConfigError whose key_path() names the offending key.
#include <herald/events/error.hpp>
#include <herald/worker/config.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

using herald::ConfigError;
using herald::WorkerConfig;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

json base() {
  return json::parse(R"({
    "steps": [{"name": "process_payment", "publishes_events": [{"name": "payment.processed"}]}],
    "subscribers": [
      {"type": "audit", "name": "audit", "subscribes_to": ["#"], "path": "audit.jsonl"},
      {"type": "metrics", "subscribes_to": ["payment.*"]}
    ]
  })");
}

struct Failure {
  std::string key_path;
  std::string message;
};

// The ConfigError of base() after `edit`; fails the test when no error (or another type) is thrown.
Failure failure_of(const std::function<void(json&)>& edit) {
  auto j = base();
  edit(j);
  try {
    WorkerConfig::from_json(j, "/srv/herald");
  } catch (const ConfigError& e) {
    return {e.key_path(), e.what()};
  }
  ADD_FAILURE() << "no ConfigError for " << j.dump();
  return {};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST(WorkerConfigSubscribers, DefaultsAndEveryOptionalKey) {
  auto j = base();
  auto c = WorkerConfig::from_json(j, "/srv/herald");
  ASSERT_EQ(c.subscribers.size(), 2u);
  const auto& metrics = c.subscribers[1];
  EXPECT_EQ(metrics.name, "metrics");  // the type is the default name
  EXPECT_FALSE(metrics.path.has_value());  // metrics without a file is allowed
  EXPECT_EQ(metrics.capacity, 10'000u);
  // Isolation by default: a full mailbox never makes the worker's intake wait.
  EXPECT_EQ(metrics.overflow, herald::OverflowPolicy::drop_oldest);
  EXPECT_EQ(metrics.breaker_failure_threshold, 0u);

  j["subscribers"][0].update(json{{"fsync", true},
                                  {"capacity", 64},
                                  {"overflow", "block"},
                                  {"block_timeout_ms", 250},
                                  {"dispatch_timeout_ms", 40},
                                  {"circuit_breaker", {{"failure_threshold", 3}, {"cooldown_ms", 1500}}}});
  c = WorkerConfig::from_json(j, "/srv/herald");
  const auto& audit = c.subscribers[0];
  EXPECT_TRUE(audit.fsync);
  EXPECT_EQ(audit.capacity, 64u);
  EXPECT_EQ(audit.overflow, herald::OverflowPolicy::block);
  EXPECT_EQ(audit.block_timeout, 250ms);
  EXPECT_EQ(audit.dispatch_timeout, 40ms);
  EXPECT_EQ(audit.breaker_failure_threshold, 3u);
  EXPECT_EQ(audit.breaker_cooldown, 1500ms);
  EXPECT_EQ(*audit.path, std::filesystem::path("/srv/herald/audit.jsonl"));

  // A circuit breaker with only a threshold keeps the default cooldown.
  j["subscribers"][0]["circuit_breaker"] = {{"failure_threshold", 2}};
  c = WorkerConfig::from_json(j, "/srv/herald");
  EXPECT_EQ(c.subscribers[0].breaker_failure_threshold, 2u);
  EXPECT_EQ(c.subscribers[0].breaker_cooldown, 5000ms);
}

TEST(WorkerConfigSubscribers, BadValuesNameTheirKeyPath) {
  auto f = failure_of([](json& j) { j["subscribers"][0]["overflow"] = "spill"; });
  EXPECT_EQ(f.key_path, "subscribers[0].overflow");
  EXPECT_TRUE(contains(f.message, "unknown overflow policy 'spill'")) << f.message;
  EXPECT_TRUE(contains(f.message, "drop_oldest")) << f.message;  // lists the allowed values

  f = failure_of([](json& j) { j["subscribers"][1]["circuit_breaker"] = json::array(); });
  EXPECT_EQ(f.key_path, "subscribers[1].circuit_breaker");
  EXPECT_TRUE(contains(f.message, "expected object, got array")) << f.message;

  f = failure_of([](json& j) { j["subscribers"][1]["circuit_breaker"] = {{"failure_treshold", 3}}; });
  EXPECT_EQ(f.key_path, "subscribers[1].circuit_breaker.failure_treshold");
  EXPECT_TRUE(contains(f.message, "did you mean 'failure_threshold'?")) << f.message;

  f = failure_of([](json& j) { j["subscribers"][1]["circuit_breaker"] = {{"failure_threshold", -1}}; });
  EXPECT_EQ(f.key_path, "subscribers[1].circuit_breaker.failure_threshold");
  EXPECT_TRUE(contains(f.message, "expected integer >= 0, got -1")) << f.message;

  f = failure_of([](json& j) { j["subscribers"][1]["capacity"] = 0; });
  EXPECT_EQ(f.key_path, "subscribers[1].capacity");

  f = failure_of([](json& j) { j["subscribers"][1]["block_timeout_ms"] = 1.5; });
  EXPECT_EQ(f.key_path, "subscribers[1].block_timeout_ms");
  EXPECT_TRUE(contains(f.message, "expected integer, got 1.5")) << f.message;

  f = failure_of([](json& j) { j["subscribers"][1]["name"] = ""; });
  EXPECT_EQ(f.key_path, "subscribers[1].name");
  EXPECT_TRUE(contains(f.message, "must not be empty")) << f.message;

  f = failure_of([](json& j) { j["subscribers"][1]["subscribes_to"] = json::array(); });
  EXPECT_EQ(f.key_path, "subscribers[1].subscribes_to");
  EXPECT_TRUE(contains(f.message, "needs at least one pattern")) << f.message;

  f = failure_of([](json& j) { j["subscribers"][1].erase("subscribes_to"); });
  EXPECT_EQ(f.key_path, "subscribers[1].subscribes_to");
  EXPECT_TRUE(contains(f.message, "required field is missing")) << f.message;

  f = failure_of([](json& j) { j["subscribers"][1]["subscribes_to"] = "payment.*"; });
  EXPECT_EQ(f.key_path, "subscribers[1].subscribes_to");
  EXPECT_TRUE(contains(f.message, "expected array of strings, got string")) << f.message;

  f = failure_of([](json& j) { j["subscribers"][1]["subscribes_to"] = {"payment.*", 7}; });
  EXPECT_EQ(f.key_path, "subscribers[1].subscribes_to[1]");
  EXPECT_TRUE(contains(f.message, "expected string, got number")) << f.message;

  f = failure_of([](json& j) { j["subscribers"][0] = "audit"; });
  EXPECT_EQ(f.key_path, "subscribers[0]");
  EXPECT_TRUE(contains(f.message, "expected object, got string")) << f.message;
}

TEST(WorkerConfigSections, SectionsOfTheWrongTypeNameTheSection) {
  auto f = failure_of([](json& j) { j["subscribers"] = json::object(); });
  EXPECT_EQ(f.key_path, "subscribers");
  EXPECT_TRUE(contains(f.message, "expected array, got object")) << f.message;

  f = failure_of([](json& j) { j["steps"][0]["publishes_events"] = {{"name", "payment.processed"}}; });
  EXPECT_EQ(f.key_path, "steps[0].publishes_events");
  EXPECT_TRUE(contains(f.message, "expected array, got object")) << f.message;

  f = failure_of([](json& j) { j["steps"][0]["name"] = ""; });
  EXPECT_EQ(f.key_path, "steps[0].name");

  f = failure_of([](json& j) { j["worker"] = {{"name", ""}}; });
  EXPECT_EQ(f.key_path, "worker.name");

  f = failure_of([](json& j) { j["worker"] = {{"intake_capacity", 0}}; });
  EXPECT_EQ(f.key_path, "worker.intake_capacity");

  f = failure_of([](json& j) { j["transports"] = {{"kafka", json::object()}}; });
  EXPECT_EQ(f.key_path, "transports.kafka");

  f = failure_of([](json& j) { j["transports"] = {{"zeromq", {{"publish", json::array()}}}}; });
  EXPECT_EQ(f.key_path, "transports.zeromq.publish");
  EXPECT_TRUE(contains(f.message, "needs at least one endpoint")) << f.message;

  f = failure_of([](json& j) { j["transports"] = {{"zeromq", {{"bind", true}}}}; });
  EXPECT_EQ(f.key_path, "transports.zeromq.publish");
  EXPECT_TRUE(contains(f.message, "required field is missing")) << f.message;

  // A configuration that is not an object at all.
  try {
    WorkerConfig::from_json(json::array());
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "configuration");
  }
}

TEST(WorkerConfigSections, DispatchNamesThePolicyAndInlineDispatchIsItsOlderSpelling) {
  auto j = base();
  j["worker"] = {{"dispatch", "inline_on_publisher"}};
  EXPECT_EQ(WorkerConfig::from_json(j).dispatch, herald::DispatchPolicy::inline_on_publisher);
  j["worker"] = {{"dispatch", "dispatcher_pool"}, {"inline_dispatch", false}};
  EXPECT_EQ(WorkerConfig::from_json(j).dispatch, herald::DispatchPolicy::dispatcher_pool);
  j["worker"] = {{"inline_dispatch", false}};
  EXPECT_EQ(WorkerConfig::from_json(j).dispatch, herald::DispatchPolicy::dispatcher_pool);
  j["worker"] = json::object();
  EXPECT_EQ(WorkerConfig::from_json(j).dispatch, herald::DispatchPolicy::dispatcher_pool);
}

TEST(WorkerConfigSections, AnUnknownOrContradictedDispatchIsRejectedByName) {
  auto j = base();
  j["worker"] = {{"dispatch", "inline"}};
  try {
    (void)WorkerConfig::from_json(j);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "worker.dispatch");
    EXPECT_NE(std::string(e.what()).find("inline"), std::string::npos) << e.what();
  }
  j["worker"] = {{"dispatch", "dispatcher_pool"}, {"inline_dispatch", true}};
  try {
    (void)WorkerConfig::from_json(j);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "worker.inline_dispatch");
  }
}

TEST(WorkerConfigSections, WorkerSectionValuesAreRead) {
  auto j = base();
  j["worker"] = {{"name", "w"},
                 {"inline_dispatch", true},
                 {"intake_capacity", 5},
                 {"intake_overflow", "drop_newest"},
                 {"intake_block_timeout_ms", 20},
                 {"shutdown_drain_timeout_ms", 700}};
  const auto c = WorkerConfig::from_json(j);
  EXPECT_EQ(c.name, "w");
  EXPECT_EQ(c.dispatch, herald::DispatchPolicy::inline_on_publisher);  // the older key
  EXPECT_EQ(c.intake_capacity, 5u);
  EXPECT_EQ(c.intake_overflow, herald::OverflowPolicy::drop_newest);
  EXPECT_EQ(c.intake_block_timeout, 20ms);
  EXPECT_EQ(c.shutdown_drain_timeout, 700ms);
}

TEST(WorkerConfigZeromq, CurveKeyFilesResolveAgainstTheConfigurationsFolder) {
  auto j = base();
  j["transports"] = {{"zeromq",
                      {{"publish", {"tcp://127.0.0.1:5555", "inproc://x"}},
                       {"bind", false},
                       {"encoding", "msgpack"},
                       {"send_hwm", 10},
                       {"linger_ms", 0},
                       {"curve_secret_key", "keys/worker.key"},
                       {"curve_server_key", "/etc/keys/server.pub"},
                       {"curve_allow", {"clients/a.pub", "/abs/b.pub"}}}}};
  const auto c = WorkerConfig::from_json(j, "/srv/herald");
  ASSERT_TRUE(c.zeromq);
  const auto& z = *c.zeromq;
  EXPECT_FALSE(z.bind);
  EXPECT_EQ(z.encoding, herald::WireEncoding::msgpack);
  EXPECT_EQ(z.send_hwm, 10);
  EXPECT_EQ(z.linger, 0ms);
  EXPECT_EQ(*z.curve_secret_key, std::filesystem::path("/srv/herald/keys/worker.key"));
  EXPECT_EQ(*z.curve_server_key, std::filesystem::path("/etc/keys/server.pub"));
  EXPECT_EQ(z.curve_allow, (std::vector<std::filesystem::path>{"/srv/herald/clients/a.pub", "/abs/b.pub"}));

  auto f = failure_of([](json& j) { j["transports"] = {{"zeromq", {{"publish", {"inproc://x"}}, {"curve_allow", "a.pub"}}}}; });
  EXPECT_EQ(f.key_path, "transports.zeromq.curve_allow");
  f = failure_of([](json& j) { j["transports"] = {{"zeromq", {{"publish", {"inproc://x"}}, {"curve_secret_key", 1}}}}; });
  EXPECT_EQ(f.key_path, "transports.zeromq.curve_secret_key");
  EXPECT_TRUE(contains(f.message, "expected string, got number")) << f.message;
}

TEST(WorkerConfigSubscribers, ToJsonRoundTripsThroughTheParser) {
  auto j = base();
  j["subscribers"][0].update(json{{"fsync", true},
                                  {"capacity", 8},
                                  {"overflow", "drop_newest"},
                                  {"block_timeout_ms", 12},
                                  {"dispatch_timeout_ms", 34},
                                  {"circuit_breaker", {{"failure_threshold", 4}, {"cooldown_ms", 56}}}});
  const auto c = WorkerConfig::from_json(j, "/srv/herald");
  for (const auto& s : c.subscribers) {
    const auto out = s.to_json();
    EXPECT_EQ(out["type"], to_string(s.type));
    EXPECT_EQ(out.contains("path"), s.path.has_value()) << out.dump();
    EXPECT_EQ(out.contains("circuit_breaker"), s.breaker_failure_threshold > 0) << out.dump();
    // What to_json writes is a valid subscriber entry that parses back to the same config.
    const auto again = WorkerConfig::from_json(json{{"subscribers", {out}}}, "/elsewhere");
    ASSERT_EQ(again.subscribers.size(), 1u);
    EXPECT_EQ(again.subscribers[0], s) << out.dump();
  }
  const auto audit = c.subscribers[0].to_json();
  EXPECT_EQ(audit["overflow"], "drop_newest");
  EXPECT_EQ(audit["path"], "/srv/herald/audit.jsonl");
  EXPECT_EQ(audit["circuit_breaker"], (json{{"failure_threshold", 4}, {"cooldown_ms", 56}}));
}

TEST(WorkerConfigSteps, DeclaredPublishersAreTheDistinctNamedOnes) {
  const auto c = WorkerConfig::from_json(json::parse(R"({"steps": [
      {"name": "a", "publishes_events": [{"name": "x.one", "publisher": "zeta"},
                                          {"name": "x.two", "publisher": "alpha"},
                                          {"name": "x.three"}]},
      {"name": "b", "publishes_events": [{"name": "y.one", "publisher": "zeta"}]},
      {"name": "c"}]})"));
  EXPECT_EQ(c.declared_publishers(), (std::vector<std::string>{"alpha", "zeta"}));
  EXPECT_TRUE(c.steps.at("c").empty());  // a step without publishes_events publishes nothing
  EXPECT_TRUE(WorkerConfig{}.declared_publishers().empty());
}
