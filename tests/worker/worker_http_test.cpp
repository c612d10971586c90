// The worker's HTTP endpoint (http.listen): /metrics, /health and /status scraped over a real
// socket with cpp-httplib's client; binding errors; stop with a connection left open.
#include <herald/events/error.hpp>
#include <herald/worker/worker.hpp>

#include <gtest/gtest.h>
#include <httplib.h>
#include <wait_for.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <map>
#include <set>
#include <netinet/in.h>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

using herald::StepCompletion;
using herald::Worker;
using herald::WorkerConfig;
using herald::WorkerState;
using herald::testing::wait_for;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

WorkerConfig http_config(const std::string& listen = "127.0.0.1:0") {
  return WorkerConfig::from_json(json{
      {"worker", {{"name", "http-worker"}, {"dispatcher_threads", 2}}},
      {"http", {{"listen", listen}}},
      {"steps",
       {{{"name", "process_payment"},
         {"publishes_events",
          {{{"name", "payment.processed"}, {"condition", "success"}},
           {{"name", "payment.failed"}, {"condition", "permanent_failure"}}}}}}}});
}

StepCompletion completion(bool success, int n) {
  StepCompletion c;
  c.step_name = "process_payment";
  c.success = success;
  c.result = {{"n", n}};
  c.correlation_id = "corr-" + std::to_string(n);
  return c;
}

class CountingSubscriber : public herald::Subscriber {
 public:
  std::string name() const override { return "counter"; }
  std::vector<std::string> subscribes_to() const override { return {"payment.#"}; }
  herald::SubscriberResult handle(const herald::EventPtr&) override {
    ++handled;
    return {};
  }
  bool health_check() override { return healthy.load(); }
  std::atomic<int> handled{0};
  std::atomic<bool> healthy{true};
};

// "host:port" -> a client for it.
httplib::Client client_for(const std::string& address) {
  const auto colon = address.rfind(':');
  httplib::Client client(address.substr(0, colon), std::stoi(address.substr(colon + 1)));
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(5, 0);
  return client;
}

// Parses the exposition text: "name{labels}" (as written) -> value. Checks every line is a
// comment or a sample, and that each sample's family was declared by # TYPE first.
std::map<std::string, double> parse_exposition(const std::string& text) {
  std::map<std::string, double> samples;
  std::set<std::string> typed;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream fields(line.substr(7));
      std::string name, type;
      fields >> name >> type;
      EXPECT_TRUE(type == "counter" || type == "gauge") << line;
      typed.insert(name);
      continue;
    }
    const auto space = line.rfind(' ');
    EXPECT_NE(space, std::string::npos) << line;
    if (space == std::string::npos) continue;
    const std::string key = line.substr(0, space);
    const std::string family = key.substr(0, key.find('{'));
    EXPECT_TRUE(typed.count(family)) << "sample before its # TYPE: " << line;
    EXPECT_EQ(family.rfind("herald_", 0), 0u) << line;
    samples[key] = std::stod(line.substr(space + 1));
  }
  return samples;
}

double sample(const std::map<std::string, double>& samples, const std::string& key) {
  const auto it = samples.find(key);
  EXPECT_NE(it, samples.end()) << "no sample " << key;
  return it == samples.end() ? -1 : it->second;
}

}  // namespace

class WorkerHttpTest : public ::testing::Test {
 protected:
  herald::PublisherRegistry publishers_;
};

TEST_F(WorkerHttpTest, MetricsCountCompletionsEventsAndSubscribersOverARealSocket) {
  Worker worker(http_config(), &publishers_);
  auto subscriber = std::make_shared<CountingSubscriber>();
  worker.add_subscriber(subscriber);
  worker.start();
  const auto address = worker.http_address();
  ASSERT_TRUE(address.has_value());
  EXPECT_EQ(address->rfind("127.0.0.1:", 0), 0u) << *address;
  EXPECT_NE(*address, "127.0.0.1:0");  // the port the kernel chose

  for (int i = 0; i < 5; ++i) ASSERT_TRUE(worker.complete_step(completion(true, i)));
  for (int i = 5; i < 7; ++i) ASSERT_TRUE(worker.complete_step(completion(false, i)));
  ASSERT_TRUE(worker.drain(60s));

  auto client = client_for(*address);
  const auto response = client.Get("/metrics");
  ASSERT_TRUE(response) << httplib::to_string(response.error());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const auto m = parse_exposition(response->body);
  EXPECT_EQ(sample(m, "herald_completions_accepted_total"), 7);
  EXPECT_EQ(sample(m, "herald_completions_rejected_total"), 0);
  EXPECT_EQ(sample(m, "herald_completions_processed_total"), 7);
  EXPECT_EQ(sample(m, "herald_events_published_total{event_name=\"payment.processed\"}"), 5);
  EXPECT_EQ(sample(m, "herald_events_published_total{event_name=\"payment.failed\"}"), 2);
  EXPECT_EQ(sample(m, "herald_events_skipped_total{event_name=\"payment.failed\",reason=\"condition\"}"), 5);
  EXPECT_EQ(sample(m, "herald_events_skipped_total{event_name=\"payment.processed\",reason=\"condition\"}"), 2);
  EXPECT_EQ(sample(m, "herald_subscriber_received_total{subscriber=\"counter\"}"), 7);
  EXPECT_EQ(sample(m, "herald_subscriber_handled_total{subscriber=\"counter\"}"), 7);
  EXPECT_EQ(sample(m, "herald_subscriber_failed_total{subscriber=\"counter\"}"), 0);
  EXPECT_EQ(sample(m, "herald_subscriber_dropped_total{subscriber=\"counter\"}"), 0);
  EXPECT_EQ(sample(m, "herald_intake_queue_depth"), 0);
  EXPECT_EQ(sample(m, "herald_intake_queue_capacity"), 10'000);
  EXPECT_EQ(sample(m, "herald_worker_state{state=\"RUNNING\"}"), 1);
  EXPECT_EQ(sample(m, "herald_worker_state{state=\"STOPPED\"}"), 0);
  EXPECT_EQ(subscriber->handled.load(), 7);
  (void)worker.stop();
  EXPECT_FALSE(worker.http_address().has_value());
}

TEST_F(WorkerHttpTest, HealthAnswers200WhenHealthyAnd503WhenASubscriberOrTheHealthCheckSaysNo) {
  Worker worker(http_config(), &publishers_);
  auto subscriber = std::make_shared<CountingSubscriber>();
  worker.add_subscriber(subscriber);
  std::atomic<bool> own_check{true};
  worker.set_health_check([&] { return own_check.load(); });
  worker.start();
  auto client = client_for(*worker.http_address());

  auto response = client.Get("/health");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->get_header_value("Content-Type"), "application/json");
  auto body = json::parse(response->body);
  EXPECT_TRUE(body["healthy"].get<bool>());
  EXPECT_TRUE(body["health_check"].get<bool>());

  subscriber->healthy = false;
  response = client.Get("/health");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 503);
  body = json::parse(response->body);
  EXPECT_FALSE(body["healthy"].get<bool>());
  EXPECT_FALSE(body["subscribers"]["subscribers"]["counter"]["healthy"].get<bool>());

  subscriber->healthy = true;
  own_check = false;
  response = client.Get("/health");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 503);
  EXPECT_FALSE(json::parse(response->body)["health_check"].get<bool>());

  own_check = true;
  response = client.Get("/health");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
}

TEST_F(WorkerHttpTest, AHealthCheckThatThrowsIs503WithTheReason) {
  Worker worker(http_config(), &publishers_);
  worker.set_health_check([]() -> bool { throw herald::Error("database unreachable"); });
  worker.start();
  auto client = client_for(*worker.http_address());
  const auto response = client.Get("/health");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 503);
  EXPECT_EQ(json::parse(response->body)["health_check_error"], "database unreachable");
}

TEST_F(WorkerHttpTest, StatusIsTheWorkersJsonStatus) {
  Worker worker(http_config(), &publishers_);
  worker.start();
  ASSERT_TRUE(worker.complete_step(completion(true, 1)));
  ASSERT_TRUE(worker.drain(60s));
  auto client = client_for(*worker.http_address());
  const auto response = client.Get("/status");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  const auto body = json::parse(response->body);
  EXPECT_EQ(body["worker"], "http-worker");
  EXPECT_EQ(body["state"], "RUNNING");
  EXPECT_EQ(body["completions"]["processed"], 1);
  EXPECT_EQ(body["events"]["published_by_event"]["payment.processed"], 1);
  EXPECT_EQ(client.Get("/nothing-here")->status, 404);
}

TEST_F(WorkerHttpTest, AnAddressInUseFailsStartWithAnHttpErrorNamingIt) {
  Worker first(http_config(), &publishers_);
  first.start();
  const std::string taken = *first.http_address();
  Worker second(http_config(taken), &publishers_);
  try {
    second.start();
    FAIL() << "start() bound an address in use";
  } catch (const herald::HttpError& e) {
    EXPECT_EQ(e.address(), taken);
    EXPECT_NE(std::string(e.what()).find(taken), std::string::npos) << e.what();
  }
  EXPECT_EQ(second.state(), WorkerState::stopped);
  // The first one still answers.
  EXPECT_EQ(client_for(taken).Get("/health")->status, 200);
}

TEST_F(WorkerHttpTest, AMalformedAddressIsAConfigErrorOrAnHttpErrorNamingIt) {
  for (const std::string bad : {"9464", "localhost:", ":9464", "127.0.0.1:99999", "::1:9464", "[::1:9464", "host:http"}) {
    try {
      (void)http_config(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const herald::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("http.listen"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
  // Built in code, the address is checked at start().
  WorkerConfig config = http_config();
  config.http->listen = "no-port-here";
  Worker worker(config, &publishers_);
  EXPECT_THROW(worker.start(), herald::HttpError);
  // A host that is not this machine's: cannot bind.
  config.http->listen = "192.0.2.1:0";
  Worker elsewhere(config, &publishers_);
  EXPECT_THROW(elsewhere.start(), herald::HttpError);
}

TEST_F(WorkerHttpTest, StopDoesNotWaitForeverOnAnOpenIdleConnection) {
  Worker worker(http_config(), &publishers_);
  worker.start();
  const std::string address = *worker.http_address();
  // A keep-alive client that made one request and keeps its connection open.
  auto client = client_for(address);
  client.set_keep_alive(true);
  ASSERT_EQ(client.Get("/status")->status, 200);
  // And a raw connection that never sends a byte.
  const int raw = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(raw, 0);
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1))));
  ::inet_pton(AF_INET, "127.0.0.1", &peer.sin_addr);
  ASSERT_EQ(::connect(raw, reinterpret_cast<sockaddr*>(&peer), sizeof peer), 0);

  const auto report = worker.stop();  // returns (the test's timeout would catch a hang)
  EXPECT_TRUE(report.graceful);
  EXPECT_EQ(worker.state(), WorkerState::stopped);
  // The listening socket is closed: a new connection is refused.
  auto after = client_for(address);
  after.set_connection_timeout(2, 0);
  EXPECT_FALSE(after.Get("/health"));
  ::close(raw);
}

TEST_F(WorkerHttpTest, NoHttpConfigurationServesNothing) {
  Worker worker(WorkerConfig::from_json(json::object()), &publishers_);
  worker.start();
  EXPECT_FALSE(worker.http_address().has_value());
}

TEST(WorkerHttpConfig, ListenIsReadAndUnknownKeysAreRefused) {
  const auto config = WorkerConfig::from_json(json{{"http", {{"listen", "[::1]:9464"}}}});
  ASSERT_TRUE(config.http.has_value());
  EXPECT_EQ(config.http->listen, "[::1]:9464");
  const auto split = herald::parse_host_port("[::1]:9464", "http.listen");
  EXPECT_EQ(split.host, "::1");
  EXPECT_EQ(split.port, 9464);
  EXPECT_THROW(WorkerConfig::from_json(json{{"http", {{"listen", "127.0.0.1:1"}, {"port", 1}}}}), herald::ConfigError);
  EXPECT_THROW(WorkerConfig::from_json(json{{"http", json::object()}}), herald::ConfigError);
}
