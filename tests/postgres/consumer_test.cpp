// DurableConsumer against a real PostgreSQL: order, groups, start positions, retries and dead
// letters, malformed rows, patterns, hooks, replay, prune, membership.
#include "pg_fixture.hpp"

#include <atomic>
#include <set>

namespace herald::testing {
namespace {

using namespace std::chrono_literals;

TEST_F(DurableTest, AConsumerReadsEveryEventInOrderAndCommits) {
  auto published = publish(500);
  Handled seen;
  auto o = consumer_options("billing");
  o.batch_size = 64;
  DurableConsumer c(o, seen.handlers());
  c.start();
  ASSERT_TRUE(wait_for([&] { return c.committed_offset() == 500; }, 30s)) << c.stats().dump();
  auto entries = seen.entries();
  ASSERT_EQ(entries.size(), 500u);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    ASSERT_EQ(entries[i].offset, static_cast<std::int64_t>(i + 1));
    ASSERT_EQ(entries[i].event_id, published[i]->event_id());
  }
  EXPECT_TRUE(c.active());
  c.stop();
  EXPECT_FALSE(c.active());
  EXPECT_EQ(scalar("SELECT committed_offset FROM herald.consumer_groups WHERE group_name = 'billing'"), "500");
  EXPECT_EQ(scalar("SELECT owner IS NULL FROM herald.consumer_groups WHERE group_name = 'billing'"), "t")
      << "a graceful stop releases the lease";
}

TEST_F(DurableTest, NotifyWakesAnIdleConsumerBeforeThePollInterval) {
  Handled seen;
  auto o = consumer_options("live");
  o.poll_interval = 30s;  // only NOTIFY can wake it in time
  o.lease = 60s;
  DurableConsumer c(o, seen.handlers());
  c.start();
  ASSERT_TRUE(wait_for([&] { return c.active(); }));
  const auto t0 = std::chrono::steady_clock::now();
  publish(3);
  ASSERT_TRUE(wait_for([&] { return seen.size() == 3; }, 60s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  c.stop();
}

TEST_F(DurableTest, TwoGroupsReadTheSameStreamIndependently) {
  publish(200);
  Handled a, b;
  auto oa = consumer_options("audit");
  auto ob = consumer_options("warehouse");
  ob.batch_size = 7;
  DurableConsumer ca(oa, a.handlers());
  DurableConsumer cb(ob, b.handlers());
  ca.start();
  cb.start();
  ASSERT_TRUE(wait_for([&] { return a.size() == 200 && b.size() == 200; }, 30s));
  EXPECT_EQ(a.offsets(), iota(1, 200));
  EXPECT_EQ(b.offsets(), iota(1, 200));
  ca.stop();
  publish(50, "payments_domain_events", 201);
  ASSERT_TRUE(wait_for([&] { return b.size() == 250; }, 30s));
  EXPECT_EQ(a.size(), 200u) << "a stopped group does not move";
  cb.stop();
  auto groups = durable::list_groups(admin_.get(), "payments_domain_events");
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].group, "audit");
  EXPECT_EQ(groups[0].lag, 50);
  EXPECT_EQ(groups[1].lag, 0);
}

TEST_F(DurableTest, NewGroupsStartAtTheEndAnOffsetOrATime) {
  publish(10);
  // All events of one batch share their transaction's stored_at, so a time position falls
  // between batches: take the server's clock after the first batch committed.
  const std::string mid = scalar("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
  ASSERT_TRUE(wait_for([&] { return scalar("SELECT now() > '" + mid + "'::timestamptz + interval '5 ms'") == "t"; }));
  publish(5, "payments_domain_events", 11);

  Handled at_end, at_offset, at_time;
  auto oe = consumer_options("tail");
  oe.start = durable::StartPosition::end();
  auto oo = consumer_options("from7");
  oo.start = durable::StartPosition::at_offset(7);
  auto ot = consumer_options("since");
  ot.start = durable::StartPosition::parse(mid);
  DurableConsumer ce(oe, at_end.handlers()), co(oo, at_offset.handlers()), ct(ot, at_time.handlers());
  ce.start();
  co.start();
  ct.start();
  ASSERT_TRUE(wait_for([&] { return at_offset.size() == 9 && at_time.size() == 5 && ce.active(); }, 30s))
      << at_offset.size() << " " << at_time.size();
  publish(1, "payments_domain_events", 16);
  ASSERT_TRUE(wait_for([&] { return at_end.size() == 1; }, 30s));
  EXPECT_EQ(at_end.offsets(), iota(16, 16));
  ASSERT_TRUE(wait_for([&] { return at_offset.size() == 10 && at_time.size() == 6; }, 30s));
  EXPECT_EQ(at_offset.offsets(), iota(7, 16));
  EXPECT_EQ(at_time.offsets(), iota(11, 16));
}

TEST_F(DurableTest, AFailingEventIsRetriedThenDeadLetteredAndTheGroupMovesOn) {
  publish(10);
  std::atomic<bool> heal{false};
  Handled seen;
  std::atomic<int> errors{0};
  DurableHandlers h;
  h.handle = [&](const EventPtr& e, const DurableRecord& r) {
    if (r.offset == 4 && !heal.load()) throw std::runtime_error("ledger unavailable");
    if (r.offset == 6 && !heal.load()) return DurableResult::failure("rejected by billing");
    seen.add(e, r);
    return DurableResult::ok();
  };
  h.on_handle_error = [&](const EventPtr&, const DurableRecord& r, const DurableHandleError& err) {
    if (r.offset == 4) {
      EXPECT_TRUE(err.exception);
      EXPECT_EQ(err.stage, DurableStage::handle);
      EXPECT_EQ(err.message, "ledger unavailable");
    }
    ++errors;
  };
  auto o = consumer_options("billing");
  o.max_attempts = 3;
  DurableConsumer c(o, h);
  c.start();
  ASSERT_TRUE(wait_for([&] { return c.committed_offset() == 10; }, 30s)) << c.stats().dump();
  EXPECT_EQ(seen.offsets(), (std::vector<std::int64_t>{1, 2, 3, 5, 7, 8, 9, 10}));
  EXPECT_EQ(c.dead_lettered(), 2u);
  EXPECT_EQ(errors.load(), 6);
  auto s = c.stats();
  EXPECT_EQ(s["retries"], 4);
  EXPECT_EQ(s["failed_attempts"], 6);

  auto dead = durable::list_dead_letters(admin_.get(), "payments_domain_events", "billing");
  ASSERT_EQ(dead.size(), 2u);
  EXPECT_EQ(dead[0].offset, 4);
  EXPECT_EQ(dead[0].attempts, 3);
  EXPECT_NE(dead[0].error.find("ledger unavailable"), std::string::npos) << dead[0].error;
  EXPECT_EQ(dead[1].error, "rejected by billing");
  EXPECT_EQ(dead[1].state, "dead");

  // Re-drive one: the group's consumer handles it again, and it is marked redriven.
  heal = true;
  EXPECT_EQ(durable::redrive_dead_letters(admin_.get(), "payments_domain_events", "billing", dead[0].id), 1);
  ASSERT_TRUE(wait_for([&] { return c.stats()["redriven"] == 1; }, 30s));
  EXPECT_EQ(seen.offsets().back(), 4);
  dead = durable::list_dead_letters(admin_.get(), "payments_domain_events", "billing");
  EXPECT_EQ(dead[0].state, "redriven");
  EXPECT_EQ(dead[1].state, "dead");
  c.stop();
}

TEST_F(DurableTest, MalformedRowsAreCountedSkippedAndTheGroupGoesOn) {
  publish(2);
  // Rows inserted by hand: bad JSON, a bad event name, a body that is not an event.
  column("UPDATE herald.streams SET last_offset = 5 WHERE stream = 'payments_domain_events'");
  column("INSERT INTO herald.events (stream, event_offset, event_id, event_name, body) VALUES "
         "('payments_domain_events', 3, 'x', 'x', '{not json'),"
         "('payments_domain_events', 4, 'y', 'bad name', '{\"event_id\":\"y\",\"event_name\":\"bad name!\",\"payload\":{}}'),"
         "('payments_domain_events', 5, 'z', 'z', '[1,2,3]')");
  publish(2, "payments_domain_events", 6);
  Handled seen;
  DurableConsumer c(consumer_options("g"), seen.handlers());
  c.start();
  ASSERT_TRUE(wait_for([&] { return c.committed_offset() == 7; }, 30s)) << c.stats().dump();
  EXPECT_EQ(seen.offsets(), (std::vector<std::int64_t>{1, 2, 6, 7}));
  EXPECT_EQ(c.malformed(), 3u);
  c.stop();
}

TEST_F(DurableTest, PatternsFilterAndHooksRunAroundHandle) {
  DurablePublisher p(publisher_options());
  p.start();
  p.send(event(1, "payment.processed"));
  p.send(event(2, "order.created"));
  p.send(event(3, "payment.card.declined"));
  p.send(event(4, "payment.skipme"));
  ASSERT_TRUE(p.flush(10s));
  std::vector<std::string> calls;
  std::mutex mu;
  DurableHandlers h;
  auto log = [&](std::string s) {
    std::lock_guard lock(mu);
    calls.push_back(std::move(s));
  };
  h.before_handle = [&](const EventPtr& e, const DurableRecord&) {
    log("before " + e->event_name());
    return e->event_name() != "payment.skipme";
  };
  h.handle = [&](const EventPtr& e, const DurableRecord&) {
    log("handle " + e->event_name());
    return DurableResult::ok();
  };
  h.after_handle = [&](const EventPtr& e, const DurableRecord&, const DurableResult& r) {
    log("after " + e->event_name() + (r.success ? " ok" : " failed"));
  };
  auto o = consumer_options("g");
  o.patterns = {"payment.#"};
  DurableConsumer c(o, h);
  c.start();
  ASSERT_TRUE(wait_for([&] { return c.committed_offset() == 4; }, 30s));
  c.stop();
  std::lock_guard lock(mu);
  EXPECT_EQ(calls, (std::vector<std::string>{"before payment.processed", "handle payment.processed",
                                             "after payment.processed ok", "before payment.card.declined",
                                             "handle payment.card.declined", "after payment.card.declined ok",
                                             "before payment.skipme"}));
  auto s = c.stats();
  EXPECT_EQ(s["filtered"], 1);
  EXPECT_EQ(s["skipped"], 1);
  EXPECT_EQ(s["handled"], 2);
}

TEST_F(DurableTest, ReplayMovesAnActiveGroupBack) {
  publish(20);
  Handled seen;
  DurableConsumer c(consumer_options("g"), seen.handlers());
  c.start();
  ASSERT_TRUE(wait_for([&] { return c.committed_offset() == 20; }, 30s));
  EXPECT_EQ(durable::replay(admin_.get(), "payments_domain_events", "g", durable::StartPosition::at_offset(15)), 14);
  // The member's lease was revoked; it re-acquires and reads 15..20 again.
  ASSERT_TRUE(wait_for([&] { return seen.size() == 26; }, 30s)) << c.stats().dump();
  auto offsets = seen.offsets();
  EXPECT_EQ(std::vector<std::int64_t>(offsets.begin() + 20, offsets.end()), iota(15, 20));
  EXPECT_GE(c.stats()["lease_lost"].get<int>(), 1);
  c.stop();
}

TEST_F(DurableTest, PruneDeletesByAgeAndSizeAndConsumersSkipTheGapCounted) {
  publish(100);
  EXPECT_EQ(durable::prune(admin_.get(), "payments_domain_events", {.max_events = 30}), 70);
  EXPECT_EQ(scalar("SELECT min(event_offset) FROM herald.events"), "71");
  EXPECT_EQ(durable::prune(admin_.get(), "payments_domain_events", {.max_age = std::chrono::seconds(3600)}), 0);
  column("UPDATE herald.events SET stored_at = now() - interval '2 hours' WHERE event_offset <= 80");
  EXPECT_EQ(durable::prune(admin_.get(), "payments_domain_events", {.max_age = std::chrono::seconds(3600)}), 10);
  EXPECT_THROW(durable::prune(admin_.get(), "payments_domain_events", {}), DurableError);
  Handled seen;
  DurableConsumer c(consumer_options("late"), seen.handlers());
  c.start();
  ASSERT_TRUE(wait_for([&] { return c.committed_offset() == 100; }, 30s));
  EXPECT_EQ(seen.offsets(), iota(81, 100));
  EXPECT_EQ(c.stats()["gaps"], 1);
  c.stop();
}

TEST_F(DurableTest, OneMemberOfAGroupIsActiveAndAStandbyTakesOverAfterAStop) {
  publish(50);
  Handled a, b;
  auto o = consumer_options("g");
  o.lease = 2s;  // renewed every poll_interval (200 ms) while idle
  DurableConsumer ca(o, a.handlers());
  ca.start();
  ASSERT_TRUE(wait_for([&] { return ca.committed_offset() == 50; }, 30s));
  DurableConsumer cb(o, b.handlers());
  cb.start();
  // Past a whole lease: the active member renews, the standby stays out.
  ASSERT_FALSE(wait_for([&] { return cb.active() || b.size() > 0; }, 3s));
  EXPECT_TRUE(ca.active());
  ca.stop();
  ASSERT_TRUE(wait_for([&] { return cb.active(); }, 60s));
  publish(5, "payments_domain_events", 51);
  ASSERT_TRUE(wait_for([&] { return b.size() == 5; }, 30s));
  EXPECT_EQ(b.offsets(), iota(51, 55));
  EXPECT_EQ(a.size(), 50u);
  cb.stop();
}

}  // namespace
}  // namespace herald::testing

namespace herald::testing {
namespace {

// The statements of docs/durable.md "Plain SQL for every other language", verbatim.
TEST_F(DurableTest, ThePlainSqlConsumerOfTheDocsReadsAndCommits) {
  auto published = publish(5);
  EXPECT_EQ(column("INSERT INTO herald.consumer_groups (stream, group_name, committed_offset) "
                   "VALUES ('payments_domain_events', 'billing', 0) ON CONFLICT DO NOTHING").size(), 0u);
  const std::string acquire =
      "UPDATE herald.consumer_groups "
      "   SET owner = 'billing-worker-1', lease_until = now() + interval '30 seconds', updated_at = now() "
      " WHERE stream = 'payments_domain_events' AND group_name = 'billing' "
      "   AND (owner IS NULL OR owner = 'billing-worker-1' OR lease_until < now()) "
      "RETURNING committed_offset";
  ASSERT_EQ(column(acquire), std::vector<std::string>{"0"});
  auto rows = column("SELECT body::jsonb ->> 'event_id' FROM herald.events "
                     " WHERE stream = 'payments_domain_events' AND event_offset > 0 "
                     " ORDER BY event_offset LIMIT 100");
  ASSERT_EQ(rows.size(), 5u);
  for (std::size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i], published[i]->event_id());
  column("UPDATE herald.consumer_groups "
         "   SET committed_offset = 5, lease_until = now() + interval '30 seconds', updated_at = now() "
         " WHERE stream = 'payments_domain_events' AND group_name = 'billing' AND owner = 'billing-worker-1'");
  EXPECT_EQ(scalar("SELECT committed_offset FROM herald.consumer_groups WHERE group_name = 'billing'"), "5");
  // A herald member of the same group stands by while the SQL member holds the lease.
  Handled seen;
  auto o = consumer_options("billing");
  o.lease = 1s;
  DurableConsumer c(o, seen.handlers());
  c.start();
  publish(1, "payments_domain_events", 6);
  EXPECT_FALSE(wait_for([&] { return c.active(); }, 500ms));
  column("UPDATE herald.consumer_groups SET owner = NULL, lease_until = NULL "
         " WHERE stream = 'payments_domain_events' AND group_name = 'billing' AND owner = 'billing-worker-1'");
  ASSERT_TRUE(wait_for([&] { return seen.size() == 1; }, 60s));
  EXPECT_EQ(seen.offsets(), iota(6, 6));
  c.stop();
}

}  // namespace
}  // namespace herald::testing

namespace herald::testing {
namespace {

TEST_F(DurableTest, AConsumerStartsOnce) {
  Handled seen;
  DurableConsumer c(consumer_options("g"), seen.handlers());
  c.start();
  EXPECT_THROW(c.start(), StateError);
  c.stop();
  c.stop();  // idempotent
  EXPECT_THROW(c.start(), StateError);
}

}  // namespace
}  // namespace herald::testing

namespace herald::testing {
namespace {

TEST_F(DurableTest, RetentionPrunesEveryStreamOnASchedule) {
  publish(40, "a_stream");
  publish(25, "b_stream");
  EXPECT_THROW(DurableRetention({.dsn = dsn()}), DurableError) << "a retention without a limit";
  DurableRetention r({.dsn = dsn(), .prune = {.max_events = 10}, .interval = std::chrono::milliseconds(50)});
  r.start();
  ASSERT_TRUE(wait_for([&] { return r.stats()["deleted"] == 45; }, 30s)) << r.stats().dump();
  publish(5, "b_stream", 26);
  ASSERT_TRUE(wait_for([&] { return r.stats()["deleted"] == 50; }, 30s)) << r.stats().dump();
  r.stop();
  EXPECT_EQ(scalar("SELECT count(*) FROM herald.events WHERE stream = 'a_stream'"), "10");
  EXPECT_EQ(scalar("SELECT min(event_offset) FROM herald.events WHERE stream = 'b_stream'"), "21");
  EXPECT_EQ(r.stats()["errors"], 0);
}

}  // namespace
}  // namespace herald::testing

namespace herald::testing {
namespace {

TEST_F(DurableTest, AStalledMemberLosesItsLeaseAndItsCommitIsFencedOff) {
  publish(10);
  std::atomic<bool> release{false};
  std::atomic<bool> stalled{false};
  Handled a, b;
  DurableHandlers ha;
  ha.handle = [&](const EventPtr& e, const DurableRecord& r) {
    if (r.offset == 3) {
      stalled = true;
      // Longer than the lease: the member cannot renew while its handler runs.
      wait_for([&] { return release.load(); }, 20s);
    }
    a.add(e, r);
    return DurableResult::ok();
  };
  auto o = consumer_options("g");
  o.lease = 1s;
  o.batch_size = 100;
  DurableConsumer ca(o, ha);
  ca.start();
  ASSERT_TRUE(wait_for([&] { return stalled.load(); }, 60s));
  DurableConsumer cb(o, b.handlers());
  cb.start();
  // The standby takes over once the stalled member's lease ran out, and reads from the last
  // commit (the stalled member had committed nothing of this batch, or up to a renewal).
  ASSERT_TRUE(wait_for([&] { return cb.committed_offset() == 10; }, 30s)) << cb.stats().dump();
  release = true;
  ASSERT_TRUE(wait_for([&] { return ca.stats()["lease_lost"].get<int>() >= 1; }, 60s)) << ca.stats().dump();
  EXPECT_FALSE(ca.active());
  EXPECT_TRUE(cb.active());
  EXPECT_EQ(scalar("SELECT committed_offset FROM herald.consumer_groups WHERE group_name = 'g'"), "10")
      << "the fenced member did not move the group back";
  EXPECT_EQ(b.offsets().back(), 10);
  EXPECT_LE(b.offsets().front(), 3) << "the stalled event is handled again by the new owner";
  cb.stop();
  ca.stop();
}

}  // namespace
}  // namespace herald::testing
