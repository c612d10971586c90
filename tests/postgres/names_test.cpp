// Name rules, DSN redaction and start positions: no server needed.
#include <herald/postgres/postgres.hpp>

#include <gtest/gtest.h>

namespace herald {
namespace {

DurableErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const DurableError& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no DurableError";
  return DurableErrorKind::query;
}

TEST(DurableNames, StreamAndGroupNamesFollowTheEventNameRules) {
  EXPECT_NO_THROW(durable::validate_stream_name("payments_domain_events"));
  EXPECT_NO_THROW(durable::validate_stream_name("billing.v2-eu", "group"));
  EXPECT_EQ(kind_of([] { durable::validate_stream_name(""); }), DurableErrorKind::invalid_name);
  EXPECT_EQ(kind_of([] { durable::validate_stream_name("a..b"); }), DurableErrorKind::invalid_name);
  EXPECT_EQ(kind_of([] { durable::validate_stream_name(std::string(201, 'a')); }),
            DurableErrorKind::invalid_name);
}

TEST(DurableNames, QuotesAndSqlInNamesAreRejectedNamingTheCharacter) {
  try {
    durable::validate_stream_name("x'; DROP TABLE herald.events; --", "group");
    FAIL() << "accepted";
  } catch (const DurableError& e) {
    EXPECT_EQ(e.kind(), DurableErrorKind::invalid_name);
    EXPECT_NE(std::string(e.what()).find("invalid group name"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("character ''' at position 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(durable::validate_stream_name("pay\"ments"), DurableError);
  EXPECT_THROW(durable::validate_stream_name("a b"), DurableError);
  EXPECT_THROW(durable::validate_schema_name("he\"rald"), DurableError);
  EXPECT_THROW(durable::validate_schema_name("1herald"), DurableError);
  EXPECT_THROW(durable::validate_schema_name("herald.events"), DurableError);
  EXPECT_NO_THROW(durable::validate_schema_name("herald_2"));
}

TEST(DurableNames, StreamForNamespaceIsTaskerCoresName) {
  EXPECT_EQ(durable::stream_for_namespace("payments"), "payments_domain_events");
  EXPECT_EQ(durable::stream_for_namespace(""), "default_domain_events");
  EXPECT_EQ(durable::stream_for_namespace("a b"), "a_b_domain_events");
}

TEST(DurableNames, RedactedDsnHidesThePasswordInBothForms) {
  const auto kv = durable::redact_dsn("host=/tmp/x user=app password=s3cr3t dbname=db");
  EXPECT_EQ(kv.find("s3cr3t"), std::string::npos) << kv;
  EXPECT_NE(kv.find("password=***"), std::string::npos) << kv;
  EXPECT_NE(kv.find("user=app"), std::string::npos) << kv;
  const auto uri = durable::redact_dsn("postgresql://app:s3cr3t@localhost:5433/db");
  EXPECT_EQ(uri.find("s3cr3t"), std::string::npos) << uri;
  EXPECT_NE(uri.find("port=5433"), std::string::npos) << uri;
  EXPECT_EQ(durable::redact_dsn("password='unterminated"), "<unparseable DSN>");
}

TEST(DurableNames, StartPositionsParseOrNameTheBadInput) {
  EXPECT_EQ(durable::StartPosition::parse("beginning").kind, durable::StartPosition::Kind::beginning);
  EXPECT_EQ(durable::StartPosition::parse("end").kind, durable::StartPosition::Kind::end);
  auto o = durable::StartPosition::parse("42");
  EXPECT_EQ(o.kind, durable::StartPosition::Kind::offset);
  EXPECT_EQ(o.offset, 42);
  auto t = durable::StartPosition::parse("2026-12-03T06:00:00.5+01:00");
  EXPECT_EQ(t.kind, durable::StartPosition::Kind::time);
  EXPECT_EQ(t.to_string(), "2026-12-03T05:00:00.500000Z");
  try {
    durable::StartPosition::parse("yesterday");
    FAIL();
  } catch (const DurableError& e) {
    EXPECT_EQ(e.kind(), DurableErrorKind::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("'yesterday'"), std::string::npos);
  }
  EXPECT_THROW(durable::StartPosition::parse("0"), DurableError);
}

TEST(DurableNames, OverflowPoliciesParseByName) {
  EXPECT_EQ(parse_durable_overflow("drop_oldest"), DurableOverflow::drop_oldest);
  EXPECT_EQ(to_string(DurableOverflow::block), "block");
  EXPECT_THROW(parse_durable_overflow("drop_newest"), UnknownValueError);
}

TEST(DurablePublisherOffline, AFullQueueRejectsOrDropsAndCountsEveryEvent) {
  for (auto policy : {DurableOverflow::reject, DurableOverflow::drop_oldest}) {
    DurablePublisherOptions o;
    o.dsn = "host=/nonexistent-herald-dir port=5432 user=postgres dbname=postgres password=pw";
    o.stream = "s";
    o.require_connection_at_start = false;
    o.max_queue = 5;
    o.overflow = policy;
    o.linger = std::chrono::milliseconds(50);
    DurablePublisher p(o);
    p.start();
    for (int i = 0; i < 5; ++i) p.send(DomainEvent::create("a.b"));
    if (policy == DurableOverflow::reject) {
      EXPECT_THROW(p.send(DomainEvent::create("a.b")), TransportError);
    } else {
      // The writer may hold some events in its batch; only queued ones can be dropped.
      try {
        p.send(DomainEvent::create("a.b"));
      } catch (const TransportError&) {
      }
    }
    auto s = p.stats();
    EXPECT_EQ(s["accepted"].get<int>() + s["rejected"].get<int>(), 6) << s.dump();
    EXPECT_EQ(s["rejected"].get<int>() + s["dropped"].get<int>(), 1) << s.dump();
    EXPECT_EQ(s["committed"], 0);
    EXPECT_EQ(s["dsn"].get<std::string>().find("pw "), std::string::npos);
    p.stop();
    s = p.stats();
    EXPECT_EQ(s["accepted"].get<int>(),
              s["committed"].get<int>() + s["dropped"].get<int>() + s["unwritten_at_stop"].get<int>())
        << s.dump();
  }
}

TEST(DurablePublisherOffline, TheBlockPolicyWaitsForRoomThenRejects) {
  DurablePublisherOptions o;
  o.dsn = "host=/nonexistent-herald-dir port=5432 user=postgres dbname=postgres";
  o.stream = "s";
  o.require_connection_at_start = false;
  o.max_queue = 2;
  o.overflow = DurableOverflow::block;
  o.block_timeout = std::chrono::milliseconds(100);
  o.linger = std::chrono::milliseconds(50);
  DurablePublisher p(o);
  p.start();
  p.send(DomainEvent::create("a.b"));
  p.send(DomainEvent::create("a.b"));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(p.send(DomainEvent::create("a.b")), TransportError);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100));
  EXPECT_EQ(p.stats()["rejected"], 1);
  p.stop();
  EXPECT_EQ(p.stats()["unwritten_at_stop"], 2);
}

}  // namespace
}  // namespace herald

namespace herald {
namespace {

std::string config_error(const nlohmann::json& j) {
  try {
    durable::publisher_options_from_json(j);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(DurableConfig, TransportsPostgresReadsEveryOption) {
  ::setenv("HERALD_TEST_PG_DSN", "host=/tmp user=app password=x", 1);
  auto o = durable::publisher_options_from_json(
      {{"dsn_env", "HERALD_TEST_PG_DSN"}, {"schema", "events_v2"}, {"stream", "payments_domain_events"},
       {"max_queue", 10}, {"max_batch", 5}, {"overflow", "drop_oldest"}, {"linger_ms", 250},
       {"write_method", "insert"}, {"create_schema", false}});
  EXPECT_EQ(o.dsn, "host=/tmp user=app password=x");
  EXPECT_EQ(o.schema, "events_v2");
  EXPECT_EQ(o.stream, "payments_domain_events");
  EXPECT_EQ(o.max_queue, 10u);
  EXPECT_EQ(o.max_batch, 5u);
  EXPECT_EQ(o.overflow, DurableOverflow::drop_oldest);
  EXPECT_EQ(o.linger, std::chrono::milliseconds(250));
  EXPECT_EQ(o.write_method, DurableWriteMethod::insert);
  EXPECT_FALSE(o.create_schema);
}

TEST(DurableConfig, ErrorsNameTheKeyPath) {
  EXPECT_EQ(config_error({{"schema", "x"}}), "transports.postgres.dsn: required (or dsn_env, the name of an environment variable)");
  EXPECT_NE(config_error({{"dsn", "a"}, {"max_bacth", 3}}).find("transports.postgres.max_bacth: unknown key (did you mean 'max_batch'?)"),
            std::string::npos);
  EXPECT_NE(config_error({{"dsn", "a"}, {"max_batch", 0}}).find("transports.postgres.max_batch"), std::string::npos);
  EXPECT_NE(config_error({{"dsn", "a"}, {"overflow", "drop_newest"}}).find("transports.postgres.overflow: unknown"),
            std::string::npos);
  EXPECT_NE(config_error({{"dsn", "a"}, {"stream", "a'b"}}).find("transports.postgres.stream: invalid stream name"),
            std::string::npos);
  EXPECT_NE(config_error({{"dsn_env", "HERALD_SURELY_UNSET_VARIABLE"}}).find("'HERALD_SURELY_UNSET_VARIABLE' is not set"),
            std::string::npos);
  EXPECT_NE(config_error({{"dsn", "a"}, {"dsn_env", "B"}}).find("either dsn or dsn_env"), std::string::npos);
}

}  // namespace
}  // namespace herald
