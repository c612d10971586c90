// Worker with the ZeroMQ transport built from its configuration (transports.zeromq): endpoints,
// encoding, bind or connect, CURVE as server (secret key + allow-list) and as client (server key),
// and key-file errors at start. In process: a ZmqSubscriber of the same process receives.
#include <herald/zeromq/curve.hpp>
#include <herald/events/error.hpp>
#include <herald/zeromq/transport.hpp>
#include <herald/worker/worker.hpp>

#include <gtest/gtest.h>
#include <temp_dir.hpp>
#include <wait_for.hpp>
#include <zmq_helpers.hpp>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdlib.h>
#include <sys/stat.h>

using herald::StepCompletion;
using herald::Worker;
using herald::WorkerConfig;
using herald::WorkerState;
using herald::testing::Received;
using herald::testing::sub_options;
using herald::testing::TempDir;
using herald::testing::wait_for;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

WorkerConfig zmq_config(const std::filesystem::path& dir, json zeromq) {
  json declaration = {{"name", "payment.processed"}, {"delivery_mode", "zeromq"}};
  json step = {{"name", "process_payment"}, {"publishes_events", json::array({declaration})}};
  json config = {{"worker", {{"name", "zmq-worker"}, {"dispatcher_threads", 1}}},
                 {"transports", {{"zeromq", std::move(zeromq)}}},
                 {"steps", json::array({step})}};
  return WorkerConfig::from_json(config, dir);
}

StepCompletion completion(int n) {
  StepCompletion c;
  c.step_name = "process_payment";
  c.success = true;
  c.result = {{"amount", n}};
  return c;
}

// The worker's ZeroMQ publisher has seen `n` herald subscribers (its stats, through status()).
bool subscribers_seen(Worker& worker, int n) {
  return wait_for([&] { return worker.status()["transports"]["zeromq"]["subscribers_seen"] == n; });
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

class WorkerZmq : public ::testing::Test {
 protected:
  herald::PublisherRegistry publishers_;
  TempDir dir_{"herald-wzmq"};
};

TEST_F(WorkerZmq, TheConfiguredPublisherSendsEventsInTheConfiguredEncoding) {
  const auto ep = "ipc://" + (dir_.path / "worker.ipc").string();
  Worker worker(zmq_config(dir_.path, {{"publish", {ep}}, {"encoding", "msgpack"}, {"linger_ms", 500}}), &publishers_);
  worker.start();
  Received got;
  herald::ZmqSubscriber sub(sub_options(ep, {"payment.#"}), got.callback());
  sub.start();
  ASSERT_TRUE(subscribers_seen(worker, 1)) << worker.status().dump();
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(worker.complete_step(completion(i)));
  ASSERT_TRUE(got.wait_for(3));
  const auto messages = got.messages();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(messages[i].event->event_name(), "payment.processed");
    EXPECT_EQ(messages[i].event->payload()["amount"], i + 1);
    EXPECT_EQ(messages[i].encoding, herald::WireEncoding::msgpack);
    EXPECT_EQ(messages[i].header.seq, static_cast<std::uint64_t>(i + 1));
  }
  // The I/O thread counts an event after the send returns, which can be after it arrived.
  EXPECT_TRUE(wait_for([&] { return worker.status()["transports"]["zeromq"]["sent"] == 3; }))
      << worker.status()["transports"]["zeromq"].dump();
  const auto transport = worker.status()["transports"]["zeromq"];
  EXPECT_EQ(transport["encoding"], "msgpack");
  EXPECT_EQ(worker.health()["transports"]["zeromq"]["healthy"], true);
  (void)worker.stop();
  EXPECT_EQ(worker.health()["transports"]["zeromq"]["healthy"], false);  // stopped with the worker
}

TEST_F(WorkerZmq, CurveServerAcceptsOnlyTheAllowedClients) {
  const auto server = herald::generate_curve_keypair();
  const auto good = herald::generate_curve_keypair();
  const auto bad = herald::generate_curve_keypair();
  herald::write_curve_keypair(server, (dir_.path / "server").string());
  herald::write_curve_keypair(good, (dir_.path / "good").string());
  const auto ep = "ipc://" + (dir_.path / "curve.ipc").string();
  // Relative key paths resolve against the configuration's folder.
  Worker worker(zmq_config(dir_.path, {{"publish", {ep}},
                                       {"curve_secret_key", "server.key"},
                                       {"curve_allow", {"good.pub"}}}),
                &publishers_);
  worker.start();

  Received got_good, got_bad;
  auto good_options = sub_options(ep, {"payment.#"});
  good_options.curve = herald::CurveOptions::make_client(server.public_key, good.secret_key);
  auto bad_options = sub_options(ep, {"payment.#"});
  bad_options.curve = herald::CurveOptions::make_client(server.public_key, bad.secret_key);
  herald::ZmqSubscriber refused(bad_options, got_bad.callback());
  refused.start();
  herald::ZmqSubscriber allowed(good_options, got_good.callback());
  allowed.start();
  ASSERT_TRUE(subscribers_seen(worker, 1)) << worker.status().dump();
  for (int i = 1; i <= 2; ++i) worker.complete_step(completion(i));
  ASSERT_TRUE(got_good.wait_for(2));
  EXPECT_FALSE(got_bad.wait_for(1, 300ms));
  EXPECT_EQ(worker.status()["transports"]["zeromq"]["subscribers_seen"], 1);
  (void)worker.stop();
}

TEST_F(WorkerZmq, CurveClientConnectsToABindingSubscriberWithTheServersKey) {
  const auto receiver = herald::generate_curve_keypair();
  const auto worker_keys = herald::generate_curve_keypair();
  herald::write_curve_keypair(receiver, (dir_.path / "receiver").string());
  herald::write_curve_keypair(worker_keys, (dir_.path / "worker").string());

  Received got;
  auto options = sub_options("tcp://127.0.0.1:*", {"payment.#"});
  options.bind = true;
  options.curve = herald::CurveOptions::make_server(receiver.secret_key, {worker_keys.public_key});
  herald::ZmqSubscriber sub(options, got.callback());
  sub.start();
  const auto ep = sub.endpoints().at(0);

  Worker worker(zmq_config(dir_.path, {{"publish", {ep}},
                                       {"bind", false},
                                       {"curve_server_key", "receiver.pub"},
                                       {"curve_secret_key", "worker.key"}}),
                &publishers_);
  worker.start();
  ASSERT_TRUE(subscribers_seen(worker, 1)) << worker.status().dump();
  worker.complete_step(completion(7));
  ASSERT_TRUE(got.wait_for(1));
  EXPECT_EQ(got.messages()[0].event->payload()["amount"], 7);
  (void)worker.stop();
}

TEST_F(WorkerZmq, UnusableKeyFilesFailStartNamingTheFile) {
  const auto ep = "ipc://" + (dir_.path / "keys.ipc").string();
  {
    Worker worker(zmq_config(dir_.path, {{"publish", {ep}}, {"curve_secret_key", "absent.key"}}), &publishers_);
    try {
      worker.start();
      FAIL();
    } catch (const herald::TransportError& e) {
      EXPECT_TRUE(contains(e.what(), (dir_.path / "absent.key").string())) << e.what();
    }
    EXPECT_EQ(worker.state(), WorkerState::stopped);
  }
  {
    herald::write_curve_keypair(herald::generate_curve_keypair(), (dir_.path / "open").string());
    ::chmod((dir_.path / "open.key").c_str(), 0640);
    Worker worker(zmq_config(dir_.path, {{"publish", {ep}}, {"curve_secret_key", "open.key"}}), &publishers_);
    try {
      worker.start();
      FAIL();
    } catch (const herald::TransportError& e) {
      EXPECT_TRUE(contains(e.what(), "open.key")) << e.what();
      EXPECT_TRUE(contains(e.what(), "chmod 600")) << e.what();
    }
  }
  {
    herald::write_curve_keypair(herald::generate_curve_keypair(), (dir_.path / "server").string());
    std::ofstream(dir_.path / "garbage.pub") << "not a key\n";
    Worker worker(zmq_config(dir_.path, {{"publish", {ep}},
                                         {"curve_secret_key", "server.key"},
                                         {"curve_allow", {"garbage.pub"}}}),
                  &publishers_);
    try {
      worker.start();
      FAIL();
    } catch (const herald::TransportError& e) {
      EXPECT_TRUE(contains(e.what(), "garbage.pub")) << e.what();
    }
    EXPECT_EQ(worker.state(), WorkerState::stopped);
  }
}
