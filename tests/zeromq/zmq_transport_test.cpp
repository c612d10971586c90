// ZeroMQ transports end to end: publisher -> subscriber over inproc, ipc and tcp, prefix
// subscriptions, gaps, duplicates, bad input, reconnects, CURVE, the proxy and clean stops.
#include <herald/events/error.hpp>
#include <herald/events/event_bus.hpp>
#include <herald/zeromq/proxy.hpp>
#include <herald/zeromq/transport.hpp>

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <temp_dir.hpp>
#include <zmq_helpers.hpp>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

namespace {

using namespace std::chrono_literals;
using herald::EventPtr;
using herald::testing::pub_options;
using herald::testing::sub_options;
using herald::testing::TempDir;
using herald::testing::unique_inproc;
using nlohmann::json;

// Collects received events; waits on a condition variable, not on sleeps.
class Collector {
 public:
  void add(const EventPtr& e) {
    {
      std::lock_guard lock(mutex_);
      events_.push_back(e);
    }
    cv_.notify_all();
  }
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return events_.size() >= n; });
  }
  std::vector<EventPtr> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::size_t size() {
    std::lock_guard lock(mutex_);
    return events_.size();
  }
  herald::ReceiveCallback callback() {
    return [this](const herald::WireMessage& m) { add(m.event); };
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<EventPtr> events_;
};

EventPtr event(const std::string& name, int i = 0) {
  return herald::DomainEvent::create(name, {{"i", i}});
}

// Sends N numbered events and checks they arrive complete and in order.
void expect_round_trip(herald::ZmqPublisher& pub, herald::ZmqSubscriber& sub, Collector& got, int n) {
  ASSERT_TRUE(pub.wait_for_subscribers(1, 10s));
  for (int i = 0; i < n; ++i) pub.send(event("order.created", i));
  ASSERT_TRUE(got.wait_for(n)) << sub.stats().dump();
  auto events = got.events();
  for (int i = 0; i < n; ++i) EXPECT_EQ(events[i]->payload()["i"], i);
  EXPECT_EQ(sub.gaps(), 0u);
  EXPECT_EQ(sub.rejected_total(), 0u);
}

TEST(ZmqTransport, InprocPublisherDeliversIntoSubscriberEventBus) {
  const auto ep = unique_inproc("bus");
  herald::ZmqPublisher pub(pub_options(ep));
  pub.start();
  herald::EventBus bus;
  Collector got;
  auto subscription = bus.subscribe({"order.#"}, [&](const EventPtr& e) { got.add(e); });
  herald::ZmqSubscriber sub(sub_options(ep), bus);
  sub.start();
  expect_round_trip(pub, sub, got, 100);
  pub.stop();  // joins the I/O thread, so its counters are final
  EXPECT_EQ(pub.stats()["sent"], 100);
}

TEST(ZmqTransport, IpcEndpointInTempDirIsOwnerOnly) {
  TempDir dir;
  const auto path = (dir.path / "events.sock").string();
  herald::ZmqPublisher pub(pub_options("ipc://" + path));
  pub.start();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Collector got;
  herald::ZmqSubscriber sub(sub_options("ipc://" + path), got.callback());
  sub.start();
  expect_round_trip(pub, sub, got, 50);
}

TEST(ZmqTransport, TcpWithFreePortAndMsgpackEncoding) {
  auto options = pub_options("tcp://127.0.0.1:*");
  options.encoding = herald::WireEncoding::msgpack;
  herald::ZmqPublisher pub(options);
  pub.start();
  const auto ep = pub.endpoints().at(0);
  EXPECT_EQ(ep.rfind("tcp://127.0.0.1:", 0), 0u);
  EXPECT_EQ(ep.find('*'), std::string::npos);
  Collector got;
  herald::ZmqSubscriber sub(sub_options(ep), got.callback());
  sub.start();
  expect_round_trip(pub, sub, got, 50);
}

TEST(ZmqTransport, SubscribesToLiteralPrefixAndMatchesExactly) {
  const auto ep = unique_inproc("prefix");
  herald::ZmqPublisher pub(pub_options(ep));
  pub.start();
  Collector got;
  herald::ZmqSubscriber sub(sub_options(ep, {"payment.*"}), got.callback());
  sub.start();
  ASSERT_TRUE(pub.wait_for_subscribers(1, 10s));
  pub.send(event("payment.card.declined"));  // prefix "payment." matches, the glob does not
  pub.send(event("order.created"));          // not even the prefix: filtered by ZeroMQ
  pub.send(event("payment.done"));
  ASSERT_TRUE(got.wait_for(1));
  // The sentinel: after it arrives, everything sent before it has been processed.
  pub.send(event("payment.sentinel"));
  ASSERT_TRUE(got.wait_for(2));
  auto events = got.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]->event_name(), "payment.done");
  EXPECT_EQ(events[1]->event_name(), "payment.sentinel");
  auto stats = sub.stats();
  EXPECT_EQ(stats["filtered"], 1);
  EXPECT_EQ(stats["received"], 3);  // order.created never reached the socket
}

TEST(ZmqTransport, ManyThreadsSendConcurrentlyWithoutGaps) {
  const auto ep = unique_inproc("threads");
  herald::ZmqPublisher pub(pub_options(ep));
  pub.start();
  Collector got;
  herald::ZmqSubscriber sub(sub_options(ep), got.callback());
  sub.start();
  ASSERT_TRUE(pub.wait_for_subscribers(1, 10s));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 250; ++i) pub.send(event("load.t" + std::to_string(t), i));
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(got.wait_for(1000));
  EXPECT_EQ(sub.gaps(), 0u);
  EXPECT_EQ(sub.stats()["publishers"][pub.publisher_id()]["last_seq"], 1000);
}

// A raw XPUB socket standing in for a foreign publisher: sends arbitrary frames.
class RawPublisher {
 public:
  explicit RawPublisher(const std::string& endpoint)
      : ctx_(herald::shared_zmq_context()), socket_(*ctx_, zmq::socket_type::xpub) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::rcvtimeo, 10'000);
    socket_.bind(endpoint);
  }
  // Waits for a herald subscriber's marker subscription.
  bool wait_for_subscriber() {
    zmq::message_t msg;
    while (socket_.recv(msg)) {
      if (msg.to_string_view().substr(1).rfind(herald::kSubscriberMarkerPrefix, 0) == 0) return true;
    }
    return false;
  }
  void send(std::vector<std::string> frames) {
    for (std::size_t i = 0; i < frames.size(); ++i) {
      socket_.send(zmq::buffer(frames[i]),
                   i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  void send_event(const herald::DomainEvent& e, std::uint64_t seq, const std::string& pid = "raw") {
    send({e.event_name(), herald::encode_envelope(e, herald::WireEncoding::json, {pid, seq, 0})});
  }
  ~RawPublisher() { socket_.close(); }

 private:
  std::shared_ptr<zmq::context_t> ctx_;
  zmq::socket_t socket_;
};

TEST(ZmqTransport, CountsGapsPerPublisherBySequence) {
  const auto ep = unique_inproc("gaps");
  RawPublisher raw(ep);
  Collector got;
  herald::ZmqSubscriber sub(sub_options(ep), got.callback());
  sub.start();
  ASSERT_TRUE(raw.wait_for_subscriber());
  for (std::uint64_t seq : {1, 2, 5, 6, 10}) raw.send_event(*event("a.b"), seq);
  raw.send_event(*event("a.b"), 3, "other");  // a new publisher that missed 1 and 2
  ASSERT_TRUE(got.wait_for(6));
  EXPECT_EQ(sub.gaps(), 2u + 3u + 2u);
  auto stats = sub.stats();
  EXPECT_EQ(stats["publishers"]["raw"]["gaps"], 5);
  EXPECT_EQ(stats["publishers"]["raw"]["last_seq"], 10);
  EXPECT_EQ(stats["publishers"]["other"]["gaps"], 2);
}

TEST(ZmqTransport, SuppressesDuplicateEventIds) {
  const auto ep = unique_inproc("dup");
  RawPublisher raw(ep);
  Collector got;
  herald::ZmqSubscriber sub(sub_options(ep), got.callback());
  sub.start();
  ASSERT_TRUE(raw.wait_for_subscriber());
  auto e = event("a.b");
  raw.send_event(*e, 1);
  raw.send_event(*e, 1, "second-road");
  raw.send_event(*e, 2);
  raw.send_event(*event("a.c"), 3);
  ASSERT_TRUE(got.wait_for(2));
  EXPECT_EQ(got.size(), 2u);
  EXPECT_EQ(sub.duplicates(), 2u);
  EXPECT_EQ(sub.stats()["duplicates"], 2);
}

TEST(ZmqTransport, BadInputIsDroppedCountedByReasonAndReceivingContinues) {
  const auto ep = unique_inproc("bad");
  RawPublisher raw(ep);
  Collector got;
  auto options = sub_options(ep);
  options.max_message_size = 1024;
  herald::ZmqSubscriber sub(options, got.callback());
  sub.start();
  ASSERT_TRUE(raw.wait_for_subscriber());
  raw.send({"a.b"});                                      // one frame
  raw.send({"a.b", "{}", "extra"});                       // three frames
  raw.send({"a.b", "\xff\xfe garbage"});                  // neither JSON nor MessagePack
  raw.send({"a.b", "{\"wire_version\":1}"});              // missing fields
  raw.send({"a.b", std::string(2000, '{')});              // oversized
  auto e = event("a.b");
  raw.send({"a.c", herald::encode_envelope(*e, herald::WireEncoding::json, {"raw", 1, 0})});
  raw.send_event(*event("a.ok"), 2);
  ASSERT_TRUE(got.wait_for(1));
  EXPECT_EQ(got.events()[0]->event_name(), "a.ok");
  using R = herald::WireReject;
  EXPECT_EQ(sub.rejected(R::frame_count), 2u);
  EXPECT_EQ(sub.rejected(R::invalid_encoding), 1u);
  EXPECT_EQ(sub.rejected(R::missing_field), 1u);
  EXPECT_EQ(sub.rejected(R::oversized), 1u);
  EXPECT_EQ(sub.rejected(R::topic_mismatch), 1u);
  EXPECT_EQ(sub.stats()["rejected"]["oversized"], 1);
  EXPECT_EQ(sub.rejected_total(), 6u);
}

TEST(ZmqTransport, SubscriberStartedBeforePublisherReceivesOnceItBinds) {
  TempDir dir;
  const auto ep = "ipc://" + (dir.path / "late.sock").string();
  Collector got;
  herald::ZmqSubscriber sub(sub_options(ep), got.callback());
  sub.start();
  herald::ZmqPublisher pub(pub_options(ep));
  pub.start();
  expect_round_trip(pub, sub, got, 10);
}

TEST(ZmqTransport, SubscriberReconnectsAfterPublisherRestart) {
  Collector got;
  std::string ep;
  std::unique_ptr<herald::ZmqSubscriber> sub;
  {
    herald::ZmqPublisher first(pub_options("tcp://127.0.0.1:*"));
    first.start();
    ep = first.endpoints().at(0);
    sub = std::make_unique<herald::ZmqSubscriber>(sub_options(ep), got.callback());
    sub->start();
    ASSERT_TRUE(first.wait_for_subscribers(1, 10s));
    first.send(event("run.first"));
    ASSERT_TRUE(got.wait_for(1));
    first.stop();
  }
  // Same port, new publisher id. libzmq closes listeners asynchronously (the context lives on in
  // the subscriber), so the port may take a moment to be free again: retry with a deadline.
  std::unique_ptr<herald::ZmqPublisher> restarted;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    restarted = std::make_unique<herald::ZmqPublisher>(pub_options(ep));
    try {
      restarted->start();
      break;
    } catch (const herald::TransportError&) {
      if (std::chrono::steady_clock::now() > deadline) throw;
      std::this_thread::sleep_for(10ms);
    }
  }
  auto& second = *restarted;
  ASSERT_TRUE(second.wait_for_subscribers(1, 10s));
  second.send(event("run.second"));
  ASSERT_TRUE(got.wait_for(2));
  EXPECT_EQ(got.events()[1]->event_name(), "run.second");
  EXPECT_EQ(sub->gaps(), 0u);
}

TEST(ZmqTransport, StopFlushesQueuedEventsAndIsIdempotent) {
  const auto ep = unique_inproc("flush");
  Collector got;
  herald::ZmqSubscriber sub(sub_options(ep), got.callback());
  auto options = pub_options(ep);
  herald::ZmqPublisher pub(options);
  pub.start();
  sub.start();
  ASSERT_TRUE(pub.wait_for_subscribers(1, 10s));
  for (int i = 0; i < 2000; ++i) pub.send(event("bulk.item", i));
  const auto t0 = std::chrono::steady_clock::now();
  pub.stop();
  pub.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_EQ(pub.queue_depth(), 0u);
  ASSERT_TRUE(got.wait_for(2000));
  EXPECT_THROW(pub.send(event("late.event")), herald::TransportError);
  EXPECT_FALSE(pub.healthy());
}

TEST(ZmqTransport, FullQueueAndUnstartedPublisherThrowTransportError) {
  auto options = pub_options(unique_inproc("unstarted"));
  options.max_queue = 1;
  herald::ZmqPublisher pub(options);
  EXPECT_THROW(pub.send(event("a.b")), herald::TransportError);
}

TEST(ZmqTransport, WaitForSubscribersTimesOutWhenNobodySubscribes) {
  herald::ZmqPublisher pub(pub_options(unique_inproc("lonely")));
  pub.start();
  EXPECT_FALSE(pub.wait_for_subscribers(1, 50ms));
  EXPECT_TRUE(pub.wait_for_subscribers(0, 0ms));
}

TEST(ZmqTransport, BadEndpointAndAddressInUseNameTheEndpoint) {
  herald::ZmqPublisher bad(pub_options("nonsense://where"));
  try {
    bad.start();
    FAIL() << "expected TransportError";
  } catch (const herald::TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("nonsense://where"), std::string::npos) << e.what();
  }
  herald::ZmqPublisher first(pub_options("tcp://127.0.0.1:*"));
  first.start();
  const auto ep = first.endpoints().at(0);
  herald::ZmqPublisher second(pub_options(ep));
  try {
    second.start();
    FAIL() << "expected TransportError";
  } catch (const herald::TransportError& e) {
    EXPECT_NE(std::string(e.what()).find(ep), std::string::npos) << e.what();
  }
  herald::ZmqSubscriber sub(sub_options("tcp://no-such-host-xyz.invalid"), [](const herald::WireMessage&) {});
  EXPECT_THROW(sub.start(), herald::TransportError);
}

TEST(ZmqTransport, SubscriberRejectsInvalidPattern) {
  herald::ZmqSubscriber sub(sub_options(unique_inproc("pattern"), {"pay*"}), [](const herald::WireMessage&) {});
  EXPECT_THROW(sub.start(), herald::PatternError);
}

TEST(ZmqTransport, PublisherStatsReportCounters) {
  const auto ep = unique_inproc("stats");
  herald::ZmqPublisher pub(pub_options(ep));
  pub.start();
  Collector got;
  herald::ZmqSubscriber sub(sub_options(ep, {"x.#", "y.*"}), got.callback());
  sub.start();
  ASSERT_TRUE(pub.wait_for_subscribers(1, 10s));
  ASSERT_TRUE(pub.wait_for_subscriptions(2, 10s));
  pub.send(event("x.one"));
  ASSERT_TRUE(got.wait_for(1));
  pub.stop();  // joins the I/O thread, so its counters are final
  auto s = pub.stats();
  for (const char* key : {"sent", "bytes", "send_errors", "queue_depth", "subscribers_seen",
                          "subscriptions_seen", "queue_full", "publisher_id", "endpoints"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
  EXPECT_EQ(s["sent"], 1);
  EXPECT_GT(s["bytes"].get<int>(), 100);
  EXPECT_EQ(s["subscribers_seen"], 1);
}

// ---- proxy ------------------------------------------------------------------------------------

TEST(ZmqProxy, ForwardsManyPublishersToManySubscribers) {
  herald::ZmqProxyOptions po;
  po.frontend = {"tcp://127.0.0.1:*"};
  po.backend = {"tcp://127.0.0.1:*"};
  herald::ZmqProxy proxy(po);
  proxy.start();
  const auto front = proxy.frontend_endpoints().at(0);
  const auto back = proxy.backend_endpoints().at(0);
  Collector a, b;
  herald::ZmqSubscriber sa(sub_options(back, {"#"}), a.callback());
  herald::ZmqSubscriber sb(sub_options(back, {"p1.#"}), b.callback());
  sa.start();
  sb.start();
  herald::ZmqPublisher p1(pub_options(front, false));
  herald::ZmqPublisher p2(pub_options(front, false));
  p1.start();
  p2.start();
  ASSERT_TRUE(p1.wait_for_subscribers(2, 10s));
  ASSERT_TRUE(p2.wait_for_subscribers(2, 10s));
  for (int i = 0; i < 20; ++i) {
    p1.send(event("p1.item", i));
    p2.send(event("p2.item", i));
  }
  ASSERT_TRUE(a.wait_for(40)) << sa.stats().dump();
  ASSERT_TRUE(b.wait_for(20)) << sb.stats().dump();
  EXPECT_EQ(sa.gaps(), 0u);
  EXPECT_EQ(sb.gaps(), 0u);
  int p1_seen = 0;
  for (const auto& e : a.events()) {
    if (e->event_name() == "p1.item") {
      EXPECT_EQ(e->payload()["i"], p1_seen++);
    }
  }
  EXPECT_EQ(p1_seen, 20);
  const auto t0 = std::chrono::steady_clock::now();
  proxy.stop();
  proxy.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  auto stats = proxy.stats();  // final once the proxy thread has been joined
  EXPECT_EQ(stats.messages_in, 40u);
  EXPECT_EQ(stats.messages_out, 40u);
  EXPECT_GT(stats.bytes_in, 0u);
  EXPECT_GT(stats.subscriptions, 0u);
}

// ---- CURVE ------------------------------------------------------------------------------------

class ZmqCurve : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!herald::curve_available()) GTEST_SKIP() << "libzmq built without CURVE";
  }
};

TEST_F(ZmqCurve, KeyPairsAreZ85AndPublicKeyDerivesFromSecret) {
  auto keys = herald::generate_curve_keypair();
  EXPECT_EQ(keys.public_key.size(), 40u);
  EXPECT_TRUE(herald::is_valid_curve_key(keys.secret_key));
  EXPECT_EQ(herald::curve_public_key(keys.secret_key), keys.public_key);
  EXPECT_FALSE(herald::is_valid_curve_key("short"));
}

TEST_F(ZmqCurve, KeyFilesRoundTripAndGroupReadableSecretIsRefused) {
  TempDir dir;
  const auto prefix = (dir.path / "server").string();
  auto keys = herald::generate_curve_keypair();
  herald::write_curve_keypair(keys, prefix);
  struct stat st {};
  ASSERT_EQ(::stat((prefix + ".key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(herald::read_curve_secret_key(prefix + ".key"), keys.secret_key);
  EXPECT_EQ(herald::read_curve_public_key(prefix + ".pub"), keys.public_key);
  ::chmod((prefix + ".key").c_str(), 0640);
  try {
    herald::read_curve_secret_key(prefix + ".key");
    FAIL() << "expected TransportError";
  } catch (const herald::TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("server.key"), std::string::npos) << e.what();
  }
  EXPECT_THROW(herald::read_curve_public_key(dir.path / "missing.pub"), herald::TransportError);
}

TEST_F(ZmqCurve, AllowedClientReceivesAndRefusedClientReceivesNothing) {
  auto server = herald::generate_curve_keypair();
  auto good = herald::generate_curve_keypair();
  auto bad = herald::generate_curve_keypair();
  auto options = pub_options("tcp://127.0.0.1:*");
  options.curve = herald::CurveOptions::make_server(server.secret_key, {good.public_key});
  herald::ZmqPublisher pub(options);
  pub.start();
  const auto ep = pub.endpoints().at(0);

  Collector got_good, got_bad;
  auto good_options = sub_options(ep);
  good_options.curve = herald::CurveOptions::make_client(server.public_key, good.secret_key);
  auto bad_options = sub_options(ep);
  bad_options.curve = herald::CurveOptions::make_client(server.public_key, bad.secret_key);
  herald::ZmqSubscriber refused(bad_options, got_bad.callback());
  refused.start();
  herald::ZmqSubscriber allowed(good_options, got_good.callback());
  allowed.start();
  ASSERT_TRUE(pub.wait_for_subscribers(1, 10s));

  auto zap = herald::ZapHandler::for_context(herald::shared_zmq_context());
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (zap->denied() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_GE(zap->denied(), 1u);
  EXPECT_GE(zap->allowed(), 1u);

  for (int i = 0; i < 5; ++i) pub.send(event("secret.thing", i));
  ASSERT_TRUE(got_good.wait_for(5));
  EXPECT_FALSE(got_bad.wait_for(1, 200ms));
  EXPECT_EQ(pub.stats()["subscribers_seen"], 1);
}

TEST_F(ZmqCurve, MalformedKeysAreTransportErrors) {
  auto options = pub_options(unique_inproc("curve-bad"));
  options.curve = herald::CurveOptions::make_server("not-a-key");
  herald::ZmqPublisher pub(options);
  EXPECT_THROW(pub.start(), herald::TransportError);
}

}  // namespace
