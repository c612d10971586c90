// DurablePublisher and the outbox against a real PostgreSQL.
#include "pg_fixture.hpp"

#include <herald/events/log.hpp>

#include <spdlog/sinks/ostream_sink.h>

#include <poll.h>

#include <set>
#include <sstream>
#include <thread>

namespace herald::testing {
namespace {

using namespace std::chrono_literals;

TEST_F(DurableTest, PublishedEventsAreStoredInOrderWithDenseOffsets) {
  auto published = publish(1000);
  auto ids = column("SELECT event_id FROM herald.events WHERE stream = 'payments_domain_events' ORDER BY event_offset");
  ASSERT_EQ(ids.size(), 1000u);
  for (std::size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], published[i]->event_id()) << i;
  EXPECT_EQ(scalar("SELECT min(event_offset) || '-' || max(event_offset) FROM herald.events"), "1-1000");
  EXPECT_EQ(scalar("SELECT last_offset FROM herald.streams WHERE stream = 'payments_domain_events'"), "1000");
  // The body is the event's own JSON, readable by any SQL consumer.
  EXPECT_EQ(scalar("SELECT body::jsonb -> 'payload' ->> 'i' FROM herald.events WHERE event_offset = 7"), "7");
  EXPECT_EQ(scalar("SELECT body FROM herald.events WHERE event_offset = 1"), published[0]->json_text());
}

TEST_F(DurableTest, InsertWriteMethodStoresTheSameRows) {
  auto o = publisher_options("s_insert");
  o.write_method = DurableWriteMethod::insert;
  o.max_batch = 1500;
  DurablePublisher p(o);
  p.start();
  std::vector<EventPtr> sent;
  for (int i = 0; i < 2500; ++i) {
    sent.push_back(event(i));
    p.send(sent.back());
  }
  ASSERT_TRUE(p.flush(30s));
  p.stop();
  auto ids = column("SELECT event_id FROM herald.events WHERE stream = 's_insert' ORDER BY event_offset");
  ASSERT_EQ(ids.size(), sent.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], sent[i]->event_id());
}

TEST_F(DurableTest, EventsGoToTheirNamespaceStreamAndCommitsAreCountedAndNotified) {
  PQclear(PQexec(admin_.get(), "LISTEN herald_events"));
  auto o = publisher_options("");
  DurablePublisher p(o);
  p.start();
  EventMetadata billing;
  billing.namespace_name = "billing";
  p.send(event(1));
  p.send(DomainEvent::create("invoice.sent", {}, billing));
  ASSERT_TRUE(p.flush(10s));
  EXPECT_EQ(p.committed(), 2u);
  EXPECT_EQ(p.stats()["committed"], 2);
  EXPECT_TRUE(p.healthy());
  EXPECT_EQ(scalar("SELECT event_name FROM herald.events WHERE stream = 'billing_domain_events'"), "invoice.sent");
  EXPECT_EQ(scalar("SELECT count(*) FROM herald.events WHERE stream = 'payments_domain_events'"), "1");
  std::set<std::string> notified;
  ASSERT_TRUE(wait_for([&] {
    PQconsumeInput(admin_.get());
    while (PGnotify* n = PQnotifies(admin_.get())) {
      notified.insert(n->extra);
      PQfreemem(n);
    }
    return notified.size() == 2;
  }));
  EXPECT_TRUE(notified.count("billing_domain_events"));
  p.stop();
  EXPECT_FALSE(p.healthy());
  EXPECT_THROW(p.send(event(3)), TransportError);
}

TEST_F(DurableTest, APasswordNeverReachesTheLogOrTheErrors) {
  std::ostringstream captured;
  auto previous = logger();
  set_logger(std::make_shared<spdlog::logger>("captured", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured)));
  {
    DurablePublisher ok(publisher_options());
    ok.start();
    ok.send(event(1));
    ASSERT_TRUE(ok.flush(10s));
    ok.stop();
    auto wrong = publisher_options();
    wrong.dsn = cluster_->dsn("postgres", "not-the-Secret-42");
    DurablePublisher bad(wrong);
    try {
      bad.start();
      ADD_FAILURE() << "wrong password accepted";
    } catch (const DurableError& e) {
      EXPECT_EQ(e.kind(), DurableErrorKind::authentication) << e.what();
      EXPECT_EQ(std::string(e.what()).find("not-the-Secret-42"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("password=***"), std::string::npos) << e.what();
    }
  }
  set_logger(previous);
  const std::string log = captured.str();
  EXPECT_NE(log.find("connected"), std::string::npos) << log;
  EXPECT_EQ(log.find(cluster_->password()), std::string::npos) << log;
}

TEST_F(DurableTest, AnEventTheServerRefusesIsCountedAndTheRestOfItsBatchIsWritten) {
  column("ALTER TABLE herald.events ADD CONSTRAINT no_poison CHECK (event_name <> 'poison.pill')");
  auto o = publisher_options();
  o.max_batch = 100;
  DurablePublisher p(o);
  p.start();
  std::vector<std::string> kept;
  for (int i = 1; i <= 10; ++i) {
    auto e = event(i, i == 5 ? "poison.pill" : "payment.processed");
    if (i != 5) kept.push_back(e->event_id());
    p.send(e);
  }
  ASSERT_TRUE(p.flush(30s)) << p.stats().dump();
  auto s = p.stats();
  EXPECT_EQ(s["committed"], 9);
  EXPECT_EQ(s["rejected_by_server"], 1);
  EXPECT_EQ(column("SELECT event_id FROM herald.events ORDER BY event_offset"), kept);
  EXPECT_EQ(scalar("SELECT max(event_offset) FROM herald.events"), "9") << "offsets stay dense";
  // And the writer is back to batches afterwards.
  for (int i = 11; i <= 20; ++i) p.send(event(i));
  ASSERT_TRUE(p.flush(30s));
  EXPECT_EQ(p.committed(), 19u);
  p.stop();
}

TEST_F(DurableTest, OutboxEventExistsIfAndOnlyIfTheTransactionCommits) {
  auto app = durable::Connection::open(dsn());
  PQclear(PQexec(app.get(), "CREATE TABLE orders (id int)"));
  PQclear(PQexec(app.get(), "BEGIN"));
  PQclear(PQexec(app.get(), "INSERT INTO orders VALUES (1)"));
  const auto kept = event(1, "order.created");
  EXPECT_EQ(durable::write_outbox(app.get(), *kept, "orders_domain_events"), 1);
  PQclear(PQexec(app.get(), "COMMIT"));

  PQclear(PQexec(app.get(), "BEGIN"));
  PQclear(PQexec(app.get(), "INSERT INTO orders VALUES (2)"));
  EXPECT_EQ(durable::write_outbox(app.get(), *event(2, "order.created"), "orders_domain_events"), 2);
  PQclear(PQexec(app.get(), "ROLLBACK"));

  PQclear(PQexec(app.get(), "BEGIN"));
  EXPECT_EQ(durable::write_outbox(app.get(), *event(3, "order.created"), "orders_domain_events"), 2)
      << "a rolled back outbox write gives its offset back";
  PQclear(PQexec(app.get(), "COMMIT"));

  EXPECT_EQ(column("SELECT event_id FROM herald.events WHERE stream = 'orders_domain_events' ORDER BY 1").size(), 2u);
  EXPECT_EQ(scalar("SELECT event_id FROM herald.events WHERE event_offset = 1 AND stream = 'orders_domain_events'"),
            kept->event_id());
  EXPECT_EQ(scalar("SELECT count(*) FROM orders"), "1");
}

TEST_F(DurableTest, OutboxOutsideATransactionIsAStateError) {
  auto app = durable::Connection::open(dsn());
  try {
    durable::write_outbox(app.get(), *event(1), "s");
    FAIL();
  } catch (const DurableError& e) {
    EXPECT_EQ(e.kind(), DurableErrorKind::state);
    EXPECT_NE(std::string(e.what()).find("transaction"), std::string::npos);
  }
  EXPECT_EQ(scalar("SELECT count(*) FROM herald.events"), "0");
}

TEST_F(DurableTest, ConcurrentOutboxTransactionsCommitInOffsetOrder) {
  // T1 reserves offset 1 and stays open; T2 must wait for it, so a reader never sees offset 2
  // before offset 1 (the row lock on the stream's counter is what orders commits).
  auto t1 = durable::Connection::open(dsn());
  auto t2 = durable::Connection::open(dsn());
  PQclear(PQexec(t1.get(), "BEGIN"));
  EXPECT_EQ(durable::write_outbox(t1.get(), *event(1), "s"), 1);
  PQclear(PQexec(t2.get(), "BEGIN"));
  std::int64_t second = 0;
  std::thread writer([&] {
    second = durable::write_outbox(t2.get(), *event(2), "s");
    PQclear(PQexec(t2.get(), "COMMIT"));
  });
  // The second writer is blocked on the counter row: nothing is visible yet.
  ASSERT_TRUE(wait_for([&] {
    return scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") == "1";
  }));
  EXPECT_EQ(scalar("SELECT count(*) FROM herald.events"), "0");
  PQclear(PQexec(t1.get(), "COMMIT"));
  writer.join();
  EXPECT_EQ(second, 2);
  EXPECT_EQ(scalar("SELECT count(*) FROM herald.events WHERE stream = 's'"), "2");
}

}  // namespace
}  // namespace herald::testing
