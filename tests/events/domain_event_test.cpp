#include <herald/events/domain_event.hpp>
#include <herald/events/error.hpp>
#include <herald/events/ids.hpp>
#include <herald/events/step_completion.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <mutex>
#include <regex>
#include <set>
#include <thread>
#include <vector>

using herald::DomainEvent;
using herald::StepCompletion;
using nlohmann::json;

TEST(EventIds, AreUuidVersion7Text) {
  const auto id = herald::new_uuid_v7();
  EXPECT_TRUE(std::regex_match(
      id, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << id;
}

TEST(EventIds, AreUniqueAndOrderedWithinEachThreadAcrossFourThreads) {
  constexpr int kPerThread = 20000;
  std::mutex mutex;
  std::set<std::string> all;
  bool ordered = true;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::vector<std::string> mine;
      mine.reserve(kPerThread);
      for (int i = 0; i < kPerThread; ++i) mine.push_back(herald::new_uuid_v7());
      std::lock_guard lock(mutex);
      for (std::size_t i = 1; i < mine.size(); ++i) ordered = ordered && mine[i - 1] < mine[i];
      all.insert(mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(ordered);
  EXPECT_EQ(all.size(), 4u * kPerThread);
}

TEST(Timestamps, AreRfc3339UtcWithMilliseconds) {
  const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(1700000000123));
  EXPECT_EQ(herald::format_rfc3339_ms(t), "2023-11-14T22:13:20.123Z");
}

TEST(DomainEvents, CreateAssignsIdAndFiredAtAndKeepsTheRest) {
  herald::EventMetadata md;
  md.correlation_id = "corr-1";
  md.extra = {{"region", "eu"}};
  const auto e = DomainEvent::create("payment.processed", {{"amount", 42}}, md);
  EXPECT_EQ(e->event_name(), "payment.processed");
  EXPECT_EQ(e->event_id().size(), 36u);
  EXPECT_EQ(e->payload()["amount"], 42);
  EXPECT_EQ(e->metadata().correlation_id, "corr-1");
  EXPECT_EQ(e->metadata().fired_at.size(), 24u);
  EXPECT_EQ(e->metadata().extra["region"], "eu");
}

TEST(DomainEvents, IdTimeAndFiredAtComeFromTheSameClockReading) {
  for (int i = 0; i < 200; ++i) {
    const auto e = DomainEvent::create("a.b");
    // UUID v7: the first 48 bits are the Unix time in milliseconds (later only when more than
    // 4096 ids were made in one millisecond, which 200 in a row cannot reach).
    const auto& id = e->event_id();
    const auto hex = id.substr(0, 8) + id.substr(9, 4);
    const auto id_ms = std::stoull(hex, nullptr, 16);
    const auto secs = static_cast<std::time_t>(id_ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char expected[64];
    std::snprintf(expected, sizeof expected, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(id_ms % 1000));
    EXPECT_EQ(e->metadata().fired_at, std::string(expected)) << id;
  }
}

TEST(DomainEvents, MetadataWithoutExtraFieldsEqualsOneWithAnEmptyExtraObject) {
  herald::EventMetadata a, b;
  b.extra = json::object();
  EXPECT_TRUE(a.extra.is_null());  // no allocation until a key is added
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.to_json(), b.to_json());
  b.extra["region"] = "eu";
  EXPECT_NE(a, b);
  a.extra["region"] = "eu";
  EXPECT_EQ(a, b);
  a.correlation_id = "x";
  EXPECT_NE(a, b);
  EXPECT_EQ(herald::EventMetadata::from_json(json::object()), herald::EventMetadata{});
}

TEST(DomainEvents, CreateRejectsAnInvalidName) {
  EXPECT_THROW(DomainEvent::create("bad name"), herald::EventNameError);
}

TEST(DomainEvents, JsonRoundTripPreservesEveryField) {
  herald::EventMetadata md;
  md.task_uuid = "t";
  md.step_uuid = "s";
  md.step_name = "process_payment";
  md.namespace_name = "payments";
  md.correlation_id = "c";
  md.fired_by = "payment_events";
  md.extra = {{"publisher", "payment_events"}, {"n", 3}};
  herald::ExecutionResult r{false, true, 2, 3, herald::StepError{"declined", "CardError"}};
  const auto e = DomainEvent::create("payment.failed", {{"x", {1, 2}}}, md, r);
  const auto back = DomainEvent::from_json(json::parse(e->json_text()));
  EXPECT_EQ(back->event_id(), e->event_id());
  EXPECT_EQ(back->event_name(), e->event_name());
  EXPECT_EQ(back->payload(), e->payload());
  EXPECT_EQ(back->metadata(), e->metadata());
  EXPECT_EQ(back->execution_result(), e->execution_result());
  EXPECT_EQ(json::from_msgpack(e->msgpack()), e->to_json());
}

TEST(DomainEvents, CachedJsonTextIsComputedOnceAndShared) {
  const auto e = DomainEvent::create("a.b", {{"k", "v"}});
  const std::string* first = &e->json_text();
  EXPECT_EQ(first, &e->json_text());
  EXPECT_EQ(json::parse(*first)["event_version"], "1.0");
}

TEST(DomainEvents, FromJsonNamesTheBadField) {
  try {
    DomainEvent::from_json({{"event_id", "x"}, {"event_name", 5}});
    FAIL();
  } catch (const herald::ValidationError& e) {
    EXPECT_STREQ(e.what(), "event_name: expected string, got number");
  }
  try {
    DomainEvent::from_json({{"event_id", "x"}, {"event_name", "a"}, {"metadata", {{"fired_at", 1}}}});
    FAIL();
  } catch (const herald::ValidationError& e) {
    EXPECT_EQ(e.field(), "metadata.fired_at");
  }
}

TEST(StepCompletions, JsonRoundTripPreservesEveryField) {
  StepCompletion c;
  c.task_uuid = "task";
  c.step_uuid = "step";
  c.step_name = "process_payment";
  c.namespace_name = "payments";
  c.correlation_id = "corr";
  c.success = false;
  c.retryable = true;
  c.retry_count = 1;
  c.max_retries = 3;
  c.result = {{"payment_id", "p1"}};
  c.metadata = {{"k", "v"}};
  c.error = herald::StepError{"timeout", "TimeoutError"};
  EXPECT_EQ(StepCompletion::from_json(c.to_json()), c);
  const json j = c;  // ADL to_json
  EXPECT_EQ(j.get<StepCompletion>(), c);
}

TEST(StepCompletions, ParseErrorsNameTheFieldAndWhatWasWrong) {
  auto message_of = [](const std::string& text) -> std::string {
    try {
      StepCompletion::parse(text);
    } catch (const herald::Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_EQ(message_of(R"({"step_name": 5, "success": true})"), "step_name: expected string, got number");
  EXPECT_EQ(message_of(R"({"success": true})"), "step_name: required field is missing");
  EXPECT_EQ(message_of(R"({"step_name": "s"})"), "success: required field is missing");
  EXPECT_EQ(message_of(R"({"step_name": "s", "success": "yes"})"), "success: expected boolean, got string");
  EXPECT_EQ(message_of(R"({"step_name": "s", "success": true, "retry_count": -1})"),
            "retry_count: expected integer >= 0, got -1");
  EXPECT_EQ(message_of(R"({"step_name": "s", "success": true, "metadata": []})"),
            "metadata: expected object, got array");
  EXPECT_EQ(message_of(R"({"step_name": "s", "success": false, "error": {"message": 3}})"),
            "error.message: expected string, got number");
  EXPECT_EQ(message_of(R"([1,2])"), "step completion: expected object, got array");
  EXPECT_NE(message_of(R"({"step_name": )").find("invalid JSON"), std::string::npos);
}

TEST(StepCompletions, WillRetryOnlyWhenFailedRetryableAndRetriesLeft) {
  StepCompletion c;
  c.step_name = "s";
  c.retryable = true;
  c.max_retries = 2;
  c.retry_count = 1;
  EXPECT_TRUE(c.will_retry());
  c.retry_count = 2;
  EXPECT_FALSE(c.will_retry());
  c.retry_count = 0;
  c.success = true;
  EXPECT_FALSE(c.will_retry());
}

// format_rfc3339_ms caches the date-and-time part per second: check it against a plain
// gmtime_r + strftime rendering across second, minute, day, month, year and leap-day edges.
TEST(Timestamps, FormattingAgreesWithGmtimeAcrossBoundariesAndRepeatedSeconds) {
  using namespace std::chrono;
  const std::vector<std::int64_t> base_ms = {
      0,                  // the epoch
      951'782'399'999,    // 2000-02-28T23:59:59.999 (leap year, next second is Feb 29)
      951'868'800'000,    // 2000-03-01T00:00:00.000
      1'704'067'199'999,  // 2023-12-31T23:59:59.999
      1'704'067'200'000,  // 2024-01-01T00:00:00.000
      4'102'444'799'000,  // 2099-12-31T23:59:59.000
  };
  for (const auto start : base_ms) {
    for (const std::int64_t offset : {0, 1, 999, 1000, 1001, 59'999, 60'000, 3'600'000}) {
      const auto ms = start + offset;
      const system_clock::time_point t{milliseconds(ms)};
      const std::time_t secs = static_cast<std::time_t>(ms / 1000);
      std::tm tm{};
      gmtime_r(&secs, &tm);
      char expected[64];
      const auto n = std::strftime(expected, sizeof expected, "%Y-%m-%dT%H:%M:%S", &tm);
      std::snprintf(expected + n, sizeof expected - n, ".%03dZ", static_cast<int>(ms % 1000));
      EXPECT_EQ(herald::format_rfc3339_ms(t), expected) << ms;
      EXPECT_EQ(herald::format_rfc3339_ms(t), expected) << ms << " (second call, cached second)";
    }
  }
}
