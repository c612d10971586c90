#include <herald/events/error.hpp>
#include <herald/worker/config.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using herald::ConfigError;
using herald::WorkerConfig;
using nlohmann::json;

namespace {

json example() {
  return json::parse(R"({
    "worker": {"name": "payments-worker", "dispatcher_threads": 2, "shutdown_drain_timeout_ms": 5000},
    "transports": {"zeromq": {"publish": ["ipc:///tmp/herald-demo.ipc"], "encoding": "json"}},
    "steps": [
      {"name": "process_payment",
       "publishes_events": [
         {"name": "payment.processed", "condition": "success", "delivery_mode": "broadcast",
          "schema": {"type": "object", "required": ["amount"]}},
         {"name": "payment.failed", "condition": "permanent_failure"}]}
    ],
    "subscribers": [
      {"type": "audit", "name": "audit", "subscribes_to": ["#"], "path": "audit.jsonl"},
      {"type": "metrics", "name": "metrics", "subscribes_to": ["payment.*"], "path": "metrics.prom"}
    ]
  })");
}

// The ConfigError a modified example raises: its key path and message.
std::pair<std::string, std::string> error_of(const std::function<void(json&)>& edit) {
  auto j = example();
  edit(j);
  try {
    WorkerConfig::from_json(j, "/etc/herald");
  } catch (const ConfigError& e) {
    return {e.key_path(), e.what()};
  }
  return {"", "no error"};
}

}  // namespace

TEST(WorkerConfigParsing, TheIssuesExampleParsesWithEveryValue) {
  const auto c = WorkerConfig::from_json(example(), "/etc/herald");
  EXPECT_EQ(c.name, "payments-worker");
  EXPECT_EQ(c.dispatcher_threads, 2u);
  ASSERT_TRUE(c.zeromq);
  EXPECT_EQ(c.zeromq->publish, std::vector<std::string>{"ipc:///tmp/herald-demo.ipc"});
  ASSERT_EQ(c.steps.at("process_payment").size(), 2u);
  EXPECT_EQ(c.steps.at("process_payment")[0].delivery_mode, herald::DeliveryMode::broadcast);
  EXPECT_TRUE(c.steps.at("process_payment")[0].schema.has_value());
  EXPECT_EQ(c.steps.at("process_payment")[1].condition, herald::PublicationCondition::permanent_failure);
  ASSERT_EQ(c.subscribers.size(), 2u);
  EXPECT_EQ(*c.subscribers[0].path, std::filesystem::path("/etc/herald/audit.jsonl"));  // relative to the file
  EXPECT_EQ(c.subscribers[1].subscribes_to, std::vector<std::string>{"payment.*"});
}

TEST(WorkerConfigErrors, AnUnknownKeyIsNamedWithItsPathAndASuggestion) {
  auto [path, message] = error_of([](json& j) { j["worker"]["dispatcher_thread"] = 2; });
  EXPECT_EQ(path, "worker.dispatcher_thread");
  EXPECT_NE(message.find("did you mean 'dispatcher_threads'?"), std::string::npos) << message;
  std::tie(path, message) = error_of([](json& j) { j["steps"][0]["publishes_events"][1]["conditon"] = "success"; });
  EXPECT_EQ(path, "steps[0].publishes_events[1].conditon");
  EXPECT_NE(message.find("did you mean 'condition'?"), std::string::npos) << message;
  std::tie(path, message) = error_of([](json& j) { j["subscriber"] = json::array(); });
  EXPECT_EQ(path, "subscriber");
  EXPECT_NE(message.find("did you mean 'subscribers'?"), std::string::npos) << message;
}

TEST(WorkerConfigErrors, WrongTypesAndValuesNameTheKeyPath) {
  EXPECT_EQ(error_of([](json& j) { j["worker"]["dispatcher_threads"] = "two"; }).first, "worker.dispatcher_threads");
  EXPECT_EQ(error_of([](json& j) { j["steps"] = json::object(); }).first, "steps");
  EXPECT_EQ(error_of([](json& j) { j["steps"][0]["publishes_events"][0]["condition"] = "sucess"; }).first,
            "steps[0].publishes_events[0].condition");
  EXPECT_EQ(error_of([](json& j) { j["steps"][0]["publishes_events"][0]["delivery_mode"] = "carrier_pigeon"; }).first,
            "steps[0].publishes_events[0].delivery_mode");
  EXPECT_EQ(error_of([](json& j) { j["subscribers"][1]["subscribes_to"] = {"payment..x"}; }).first,
            "subscribers[1].subscribes_to[0]");
  EXPECT_EQ(error_of([](json& j) { j["subscribers"][0]["type"] = "kafka"; }).first, "subscribers[0].type");
  EXPECT_EQ(error_of([](json& j) { j["subscribers"][0].erase("path"); }).first, "subscribers[0].path");
  EXPECT_EQ(error_of([](json& j) { j["subscribers"][1]["name"] = "audit"; }).first, "subscribers[1].name");
  EXPECT_EQ(error_of([](json& j) { j["transports"]["zeromq"]["publish"] = {"http://x"}; }).first,
            "transports.zeromq.publish[0]");
  EXPECT_EQ(error_of([](json& j) { j["transports"]["zeromq"]["encoding"] = "xml"; }).first,
            "transports.zeromq.encoding");
  EXPECT_EQ(error_of([](json& j) { j["steps"].push_back(j["steps"][0]); }).first, "steps[1].name");
  EXPECT_EQ(error_of([](json& j) { j["worker"]["intake_overflow"] = "spill"; }).first, "worker.intake_overflow");
}

TEST(WorkerConfigParsing, TransportsPostgresIsTheDurableRoadAndDurableDeclarationsNeedIt) {
  auto j = example();
  j["steps"][0]["publishes_events"][1]["delivery_mode"] = "durable";
  // Without transports.postgres: refused, naming the declaration.
  try {
    WorkerConfig::from_json(j, "/etc/herald");
    FAIL() << "a durable declaration without transports.postgres was accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "steps[0].publishes_events[1].delivery_mode");
    EXPECT_NE(std::string(e.what()).find("transports.postgres"), std::string::npos) << e.what();
  }
  j["transports"]["postgres"] = {{"dsn", "host=/tmp dbname=herald password=s3cret"}, {"schema", "events_log"}};
  const auto c = WorkerConfig::from_json(j, "/etc/herald");
  ASSERT_TRUE(c.postgres);
  EXPECT_EQ(c.postgres->schema, "events_log");
  EXPECT_EQ(c.steps.at("process_payment")[1].delivery_mode, herald::DeliveryMode::durable);
  // Its own errors name their key path under transports.postgres.
  j["transports"]["postgres"] = {{"schema", "events_log"}};
  try {
    WorkerConfig::from_json(j, "/etc/herald");
    FAIL() << "transports.postgres without a dsn was accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "transports.postgres.dsn");
  }
}

TEST(WorkerConfigErrors, AnInvalidEventNameIsNamed) {
  const auto [path, message] = error_of([](json& j) { j["steps"][0]["publishes_events"][0]["name"] = "payment processed"; });
  EXPECT_NE(message.find("payment processed"), std::string::npos) << message;
}

TEST(WorkerConfigFiles, LoadNamesAMissingFileAndInvalidJson) {
  const auto dir = std::filesystem::temp_directory_path() / ("herald-config-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  try {
    WorkerConfig::load(dir / "missing.json");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.json"), std::string::npos);
  }
  std::ofstream(dir / "bad.json") << "{\"worker\": ";
  try {
    WorkerConfig::load(dir / "bad.json");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "good.json") << example().dump();
  const auto c = WorkerConfig::load(dir / "good.json");
  EXPECT_EQ(c.source, dir / "good.json");
  EXPECT_EQ(*c.subscribers[0].path, dir / "audit.jsonl");
  std::filesystem::remove_all(dir);
}

TEST(WorkerConfigParsing, ClosedSetsNameTheBadValueAndListTheExpectedOnes) {
  auto [path, message] = error_of([](json& j) { j["transports"]["zeromq"]["encoding"] = "xml"; });
  EXPECT_EQ(path, "transports.zeromq.encoding");
  EXPECT_NE(message.find("unknown wire encoding 'xml' (expected one of: json, msgpack)"), std::string::npos)
      << message;
  std::tie(path, message) = error_of([](json& j) { j["subscribers"][0]["type"] = "kafka"; });
  EXPECT_EQ(path, "subscribers[0].type");
  EXPECT_NE(message.find("unknown subscriber type 'kafka' (expected one of: audit, metrics)"), std::string::npos)
      << message;
}

TEST(WorkerConfigParsing, EncodingAndSubscriberTypeAreTypedAndKeepTheirNames) {
  auto j = example();
  j["transports"]["zeromq"]["encoding"] = "msgpack";
  const auto c = WorkerConfig::from_json(j, "/etc/herald");
  EXPECT_EQ(c.zeromq->encoding, herald::WireEncoding::msgpack);
  EXPECT_EQ(c.subscribers[0].type, herald::SubscriberType::audit);
  EXPECT_EQ(c.subscribers[1].type, herald::SubscriberType::metrics);
  EXPECT_EQ(c.subscribers[1].to_json().at("type"), "metrics");
  for (auto t : {herald::SubscriberType::audit, herald::SubscriberType::metrics}) {
    EXPECT_EQ(herald::parse_subscriber_type(herald::to_string(t)), t);
  }
  EXPECT_THROW(herald::parse_subscriber_type("Audit"), herald::UnknownValueError);
}
