// Faults against a real PostgreSQL: a consumer killed with SIGKILL mid-batch, the server
// stopped with `pg_ctl stop -m immediate` mid-stream, unreachable servers, wrong passwords,
// missing schemas, hostile names, and the publisher/consumer role grants.
#include "pg_fixture.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <thread>

extern char** environ;

namespace herald::testing {
namespace {

using namespace std::chrono_literals;

std::vector<std::int64_t> read_offsets(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::int64_t> out;
  std::string line;
  // Only whole lines: the child may be killed in the middle of writing one.
  while (std::getline(in, line)) {
    if (!in.eof() && !line.empty()) out.push_back(std::stoll(line));
  }
  return out;
}

// The body of the child process of the kill -9 test (runs only when the parent sets the
// environment): consumes group "crash" and appends each handled offset to a file, slowly, until
// it is killed.
TEST(DurableChild, ConsumesUntilKilled) {
  const char* dsn = std::getenv("HERALD_PG_CHILD_DSN");
  const char* out = std::getenv("HERALD_PG_CHILD_OUT");
  if (dsn == nullptr || out == nullptr) GTEST_SKIP() << "helper process of KilledConsumer...";
  const int fd = ::open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0);
  DurableConsumerOptions o;
  o.dsn = dsn;
  o.stream = "payments_domain_events";
  o.group = "crash";
  o.start = durable::StartPosition::beginning();
  o.batch_size = 50;
  o.lease = 1s;
  DurableHandlers h;
  h.handle = [fd](const EventPtr&, const DurableRecord& r) {
    const std::string line = std::to_string(r.offset) + "\n";
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
    std::this_thread::sleep_for(5ms);  // slow enough that the parent kills it mid-stream
    return DurableResult::ok();
  };
  DurableConsumer c(o, h);
  c.start();
  for (;;) std::this_thread::sleep_for(100ms);  // until SIGKILL
}

TEST_F(DurableTest, AConsumerKilledMidBatchRestartsWithoutSkippingAndRedeliversOnlyTheUncommitted) {
  constexpr int kEvents = 300;
  publish(kEvents);
  const std::string out = cluster_->dir() + "/child-offsets.txt";
  std::string dsn_env = "HERALD_PG_CHILD_DSN=" + dsn();
  std::string out_env = "HERALD_PG_CHILD_OUT=" + out;
  std::vector<std::string> env_store{dsn_env, out_env};
  for (char** e = environ; *e != nullptr; ++e) env_store.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string self = "/proc/self/exe", filter = "--gtest_filter=DurableChild.ConsumesUntilKilled";
  char* argv[] = {self.data(), filter.data(), nullptr};
  pid_t child = 0;
  ASSERT_EQ(::posix_spawn(&child, "/proc/self/exe", nullptr, nullptr, argv, envp.data()), 0);
  // Kill it in the middle of its second batch (events 51..100), after the first commit.
  const bool reached = wait_for([&] { return read_offsets(out).size() >= 75; }, 60s);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(reached) << "the child never handled 75 events";
  ASSERT_TRUE(WIFSIGNALED(status));

  const auto before = read_offsets(out);
  ASSERT_EQ(before, iota(1, static_cast<std::int64_t>(before.size()))) << "the child handled in order";
  const std::int64_t child_last = before.back();
  const std::int64_t committed = std::stoll(scalar("SELECT committed_offset FROM herald.consumer_groups WHERE group_name = 'crash'"));
  EXPECT_LT(committed, kEvents) << "killed before the end";
  EXPECT_LE(committed, child_last) << "never committed what was not handled";
  EXPECT_EQ(scalar("SELECT owner IS NOT NULL AND lease_until > now() - interval '1 hour' FROM herald.consumer_groups WHERE group_name = 'crash'"), "t")
      << "the dead member still holds its lease";

  // A new member takes over once the dead member's lease (1 s) ran out, from the committed offset.
  Handled after;
  auto o = consumer_options("crash");
  o.lease = 1s;
  o.batch_size = 50;
  DurableConsumer c(o, after.handlers());
  const auto t0 = std::chrono::steady_clock::now();
  c.start();
  ASSERT_TRUE(wait_for([&] { return c.active(); }, 60s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << "takeover within the lease plus a poll";
  ASSERT_TRUE(wait_for([&] { return c.committed_offset() == kEvents; }, 60s)) << c.stats().dump();
  c.stop();
  EXPECT_EQ(after.offsets(), iota(committed + 1, kEvents)) << "resumed right after the commit, in order";
  // Every event handled at least once; exactly the handled-but-uncommitted ones twice.
  std::map<std::int64_t, int> times;
  for (auto off : before) ++times[off];
  for (auto off : after.offsets()) ++times[off];
  ASSERT_EQ(times.size(), static_cast<std::size_t>(kEvents));
  std::int64_t twice = 0;
  for (const auto& [off, n] : times) {
    ASSERT_GE(n, 1);
    ASSERT_LE(n, 2);
    if (n == 2) ++twice;
  }
  EXPECT_EQ(twice, child_last - committed);
}

// The body of the child of the publisher kill -9 test: publishes events i = 1, 2, ... and
// appends the publisher's committed count to a file after every 50 sends, until it is killed.
TEST(DurableChild, PublishesUntilKilled) {
  const char* dsn = std::getenv("HERALD_PG_CHILD_DSN");
  const char* out = std::getenv("HERALD_PG_CHILD_COMMITTED");
  if (dsn == nullptr || out == nullptr) GTEST_SKIP() << "helper process of APublisherKilled...";
  const int fd = ::open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0);
  DurablePublisherOptions o;
  o.dsn = dsn;
  o.stream = "payments_domain_events";
  o.max_batch = 25;
  DurablePublisher p(o);
  p.start();
  for (int i = 1;; ++i) {
    EventMetadata m;
    p.send(DomainEvent::create("payment.processed", {{"i", i}}, m));
    if (i % 50 == 0) {
      const std::string line = std::to_string(p.committed()) + "\n";
      if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
      std::this_thread::sleep_for(1ms);
    }
  }
}

TEST_F(DurableTest, APublisherKilledWithSigkillLeavesEveryReportedCommitInTheLog) {
  const std::string out = cluster_->dir() + "/child-committed.txt";
  std::vector<std::string> env_store{"HERALD_PG_CHILD_DSN=" + dsn(), "HERALD_PG_CHILD_COMMITTED=" + out};
  for (char** e = environ; *e != nullptr; ++e) env_store.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string self = "/proc/self/exe", filter = "--gtest_filter=DurableChild.PublishesUntilKilled";
  char* argv[] = {self.data(), filter.data(), nullptr};
  pid_t child = 0;
  ASSERT_EQ(::posix_spawn(&child, "/proc/self/exe", nullptr, nullptr, argv, envp.data()), 0);
  const bool reached = wait_for([&] {
    auto v = read_offsets(out);
    return !v.empty() && v.back() >= 500;
  }, 60s);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(reached) << "the child never reported 500 committed events";
  const std::int64_t reported = read_offsets(out).back();
  // Everything reported committed is there, densely, in publish order.
  auto is = column("SELECT body::jsonb -> 'payload' ->> 'i' FROM herald.events "
                   "WHERE stream = 'payments_domain_events' ORDER BY event_offset");
  ASSERT_GE(static_cast<std::int64_t>(is.size()), reported);
  for (std::size_t k = 0; k < is.size(); ++k) ASSERT_EQ(is[k], std::to_string(k + 1)) << k;
}

TEST_F(DurableTest, AServerRestartMidStreamLosesNothing) {
  constexpr int kEvents = 600;
  auto po = publisher_options();
  po.max_batch = 20;
  DurablePublisher p(po);
  p.start();
  Handled seen;
  auto co = consumer_options("g");
  co.batch_size = 20;
  DurableConsumer c(co, seen.handlers());
  c.start();
  std::vector<EventPtr> sent;
  for (int i = 1; i <= kEvents; ++i) {
    sent.push_back(event(i));
    p.send(sent.back());
    if (i == 200) {
      ASSERT_TRUE(wait_for([&] { return seen.size() >= 100; }, 30s));
      cluster_->stop_immediate();
    }
    if (i == 400) {
      EXPECT_LT(p.committed(), 400u) << "the server is down: events wait in the buffer";
      cluster_->start();
    }
    if (i % 50 == 0) std::this_thread::sleep_for(1ms);  // let the writer interleave with the restart
  }
  ASSERT_TRUE(p.flush(60s)) << p.stats().dump();
  auto ps = p.stats();
  p.stop();
  EXPECT_EQ(ps["committed"], kEvents);
  EXPECT_GE(ps["reconnects"].get<int>(), 1) << ps.dump();
  EXPECT_EQ(ps["rejected"], 0);

  ASSERT_TRUE(wait_for([&] { return c.committed_offset() == kEvents; }, 60s)) << c.stats().dump();
  EXPECT_GE(c.stats()["reconnects"].get<int>(), 1);
  c.stop();

  // The log holds each event exactly once, in publish order.
  admin_ = durable::Connection::open(dsn());
  auto ids = column("SELECT event_id FROM herald.events WHERE stream = 'payments_domain_events' ORDER BY event_offset");
  ASSERT_EQ(ids.size(), sent.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], sent[i]->event_id()) << i;
  // The consumer saw every event, in order, redeliveries only as a replay of a suffix.
  std::set<std::int64_t> distinct;
  std::int64_t high = 0;
  for (auto off : seen.offsets()) {
    distinct.insert(off);
    if (off <= high) continue;  // a redelivery after reconnecting
    ASSERT_EQ(off, high + 1) << "skipped from " << high;
    high = off;
  }
  EXPECT_EQ(distinct.size(), static_cast<std::size_t>(kEvents));
}

TEST_F(DurableTest, ASpoolCarriesAnOutageLongerThanTheMemoryBufferInOrder) {
  auto o = publisher_options();
  o.max_queue = 10;
  o.max_batch = 5;
  o.spool_path = cluster_->dir() + "/publisher.spool";
  DurablePublisher p(o);
  p.start();
  std::vector<EventPtr> sent;
  auto send = [&](int n) {
    for (int i = 0; i < n; ++i) {
      sent.push_back(event(static_cast<int>(sent.size()) + 1));
      p.send(sent.back());
    }
  };
  send(5);
  ASSERT_TRUE(p.flush(30s));
  cluster_->stop_immediate();
  send(100);  // ten times the memory buffer: the rest goes to the spool, nothing is rejected
  auto s = p.stats();
  EXPECT_EQ(s["rejected"], 0);
  EXPECT_GE(s["spooled"].get<int>(), 90) << s.dump();
  cluster_->start();
  ASSERT_TRUE(p.flush(60s)) << p.stats().dump();
  s = p.stats();
  EXPECT_EQ(s["committed"], 105) << s.dump();
  EXPECT_EQ(s["in_spool"], 0);
  EXPECT_EQ(s["spool_bytes"], 0);
  const auto spooled = s["spooled"].get<int>();
  send(5);  // back to memory
  ASSERT_TRUE(p.flush(30s));
  EXPECT_EQ(p.stats()["spooled"], spooled);
  p.stop();
  admin_ = durable::Connection::open(dsn());
  auto ids = column("SELECT event_id FROM herald.events ORDER BY event_offset");
  ASSERT_EQ(ids.size(), sent.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], sent[i]->event_id()) << i;
}

TEST_F(DurableTest, AStopDuringAnOutageSavesEventsToTheSpoolAndTheNextPublisherWritesThemFirst) {
  auto o = publisher_options();
  o.max_queue = 10;
  o.max_batch = 4;
  o.linger = std::chrono::milliseconds(200);
  o.spool_path = cluster_->dir() + "/publisher.spool";
  std::vector<EventPtr> sent;
  {
    DurablePublisher a(o);
    a.start();
    cluster_->stop_immediate();
    for (int i = 1; i <= 30; ++i) {
      sent.push_back(event(i));
      a.send(sent.back());
    }
    a.stop();
    auto s = a.stats();
    EXPECT_EQ(s["committed"], 0) << s.dump();
    EXPECT_EQ(s["spooled_at_stop"], 30) << s.dump();
    EXPECT_EQ(s["unwritten_at_stop"], 0) << s.dump();
  }
  cluster_->start();
  DurablePublisher b(o);
  b.start();
  for (int i = 31; i <= 35; ++i) {
    sent.push_back(event(i));
    b.send(sent.back());
  }
  ASSERT_TRUE(b.flush(60s)) << b.stats().dump();
  auto s = b.stats();
  EXPECT_EQ(s["committed"], 35) << s.dump();
  EXPECT_EQ(s["recovered_from_spool"], 30) << s.dump();
  b.stop();
  admin_ = durable::Connection::open(dsn());
  auto ids = column("SELECT event_id FROM herald.events ORDER BY event_offset");
  ASSERT_EQ(ids.size(), sent.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], sent[i]->event_id()) << i;
}

TEST(DurableErrors, AnUnreachableServerIsAConnectionErrorNamingTheRedactedDsn) {
  DurablePublisherOptions o;
  o.dsn = "host=/nonexistent-herald-socket-dir port=5432 user=app dbname=app password=hunter2";
  o.stream = "s";
  DurablePublisher p(o);
  try {
    p.start();
    FAIL();
  } catch (const DurableError& e) {
    EXPECT_EQ(e.kind(), DurableErrorKind::connection);
    const std::string m = e.what();
    EXPECT_NE(m.find("cannot connect to PostgreSQL"), std::string::npos) << m;
    EXPECT_NE(m.find("/nonexistent-herald-socket-dir"), std::string::npos) << m;
    EXPECT_EQ(m.find("hunter2"), std::string::npos) << m;
  }
  DurableConsumerOptions co;
  co.dsn = o.dsn;
  co.stream = "s";
  co.group = "g";
  DurableConsumer c(co, {.handle = [](const EventPtr&, const DurableRecord&) { return DurableResult::ok(); }});
  EXPECT_THROW(c.start(), DurableError);
}

TEST_F(DurableTest, WrongPasswordAndMissingSchemaAreTypedErrors) {
  auto co = consumer_options("g");
  co.dsn = cluster_->dsn("postgres", "wrong-password-1");
  {
    DurableConsumer c(co, Handled().handlers());
    try {
      c.start();
      FAIL();
    } catch (const DurableError& e) {
      EXPECT_EQ(e.kind(), DurableErrorKind::authentication) << e.what();
      EXPECT_EQ(std::string(e.what()).find("wrong-password-1"), std::string::npos);
    }
  }
  co = consumer_options("g");
  co.schema = "nowhere";
  {
    DurableConsumer c(co, Handled().handlers());
    try {
      c.start();
      FAIL();
    } catch (const DurableError& e) {
      EXPECT_EQ(e.kind(), DurableErrorKind::missing_schema) << e.what();
      EXPECT_NE(std::string(e.what()).find("'nowhere'"), std::string::npos) << e.what();
    }
  }
  auto po = publisher_options();
  po.schema = "nowhere";
  po.create_schema = false;
  DurablePublisher p(po);
  try {
    p.start();
    FAIL();
  } catch (const DurableError& e) {
    EXPECT_EQ(e.kind(), DurableErrorKind::missing_schema) << e.what();
  }
  EXPECT_EQ(scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'nowhere'"), "0");
}

TEST_F(DurableTest, HostileStreamGroupAndSchemaNamesAreRejectedBeforeAnySql) {
  auto co = consumer_options("billing\"; DROP TABLE herald.events; --");
  DurableConsumer c(co, Handled().handlers());
  try {
    c.start();
    FAIL();
  } catch (const DurableError& e) {
    EXPECT_EQ(e.kind(), DurableErrorKind::invalid_name);
    EXPECT_NE(std::string(e.what()).find("invalid group name"), std::string::npos) << e.what();
  }
  auto po = publisher_options("pay'ments");
  DurablePublisher p(po);
  EXPECT_THROW(p.start(), DurableError);
  auto ps = publisher_options();
  ps.schema = "herald\"; DROP SCHEMA herald CASCADE; --";
  DurablePublisher p2(ps);
  EXPECT_THROW(p2.start(), DurableError);
  // A stream chosen per event is checked at send().
  auto pe = publisher_options("");
  pe.stream_of = [](const DomainEvent&) { return std::string("x y"); };
  DurablePublisher p3(pe);
  p3.start();
  EXPECT_THROW(p3.send(event(1)), DurableError);
  p3.stop();
  EXPECT_THROW(durable::replay(admin_.get(), "s", "g'--", durable::StartPosition::beginning()), DurableError);
  EXPECT_EQ(scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'herald'"), "4");
}

TEST_F(DurableTest, PublisherAndConsumerRolesNeedOnlyTheirGrants) {
  column("CREATE ROLE herald_pub LOGIN PASSWORD 'pub-pw'");
  column("CREATE ROLE herald_con LOGIN PASSWORD 'con-pw'");
  durable::grant(admin_.get(), durable::DurableRole::publisher, "herald_pub");
  durable::grant(admin_.get(), durable::DurableRole::consumer, "herald_con");

  auto po = publisher_options();
  po.dsn = cluster_->dsn("herald_pub", "pub-pw");
  po.create_schema = false;
  DurablePublisher p(po);
  p.start();
  for (int i = 0; i < 10; ++i) p.send(event(i));
  ASSERT_TRUE(p.flush(10s));
  p.stop();
  EXPECT_EQ(p.committed(), 10u);

  Handled seen;
  auto co = consumer_options("g");
  co.dsn = cluster_->dsn("herald_con", "con-pw");
  co.max_attempts = 1;
  DurableHandlers h = seen.handlers();
  auto plain = h.handle;
  h.handle = [plain](const EventPtr& e, const DurableRecord& r) {
    if (r.offset == 10) return DurableResult::failure("to the dead letters");
    return plain(e, r);
  };
  DurableConsumer c(co, h);
  c.start();
  ASSERT_TRUE(wait_for([&] { return c.committed_offset() == 10; }, 30s)) << c.stats().dump();
  EXPECT_EQ(c.dead_lettered(), 1u);
  c.stop();

  // And nothing more: the consumer cannot write events, the publisher cannot move groups.
  auto con = durable::Connection::open(cluster_->dsn("herald_con", "con-pw"));
  PQclear(PQexec(con.get(), "BEGIN"));
  try {
    durable::write_outbox(con.get(), *event(1), "payments_domain_events");
    FAIL();
  } catch (const DurableError& e) {
    EXPECT_EQ(e.kind(), DurableErrorKind::permission) << e.what();
  }
  PQclear(PQexec(con.get(), "ROLLBACK"));
  auto pub = durable::Connection::open(cluster_->dsn("herald_pub", "pub-pw"));
  try {
    durable::replay(pub.get(), "payments_domain_events", "g", durable::StartPosition::beginning());
    FAIL();
  } catch (const DurableError& e) {
    EXPECT_EQ(e.kind(), DurableErrorKind::permission) << e.what();
  }
  auto stmts = durable::grant_statements(admin_.get(), durable::DurableRole::consumer, "herald_con");
  EXPECT_EQ(stmts.front(), "GRANT USAGE ON SCHEMA \"herald\" TO \"herald_con\"");
}

}  // namespace
}  // namespace herald::testing
