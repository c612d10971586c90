// DomainEvent::json_text() writes the envelope's JSON directly (without building to_json() first);
// it must stay byte for byte what to_json().dump() gives, which is what receivers and the audit
// trail have always seen.
#include <herald/events/domain_event.hpp>

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

using herald::DomainEvent;
using herald::EventMetadata;
using herald::EventPtr;
using herald::ExecutionResult;
using nlohmann::json;

namespace {

std::string reference(const DomainEvent& e) {
  return e.to_json().dump(-1, ' ', false, json::error_handler_t::replace);
}

EventMetadata metadata_with(std::string text) {
  EventMetadata m;
  m.task_uuid = "task-" + text;
  m.step_uuid = "step-uuid";
  m.step_name = text;
  m.namespace_name = "payments";
  m.correlation_id = "corr \"quoted\" \\ back";
  m.fired_by = "publisher";
  return m;
}

}  // namespace

TEST(EventJsonText, IsExactlyTheDumpOfToJsonForEveryKindOfField) {
  std::vector<EventPtr> events;
  events.push_back(DomainEvent::create("payment.processed", {{"amount", 42}}));
  events.push_back(DomainEvent::create("a.b", json::object(), metadata_with("plain")));
  events.push_back(DomainEvent::create("a.b", {{"s", "caf\xc3\xa9 \xe2\x82\xac"}}, metadata_with("caf\xc3\xa9")));
  events.push_back(DomainEvent::create("a.b", {{"ctl", std::string("nl\n tab\t nul\0x", 15)}},
                                       metadata_with("ctl\x01\x1f\x7f")));
  // Invalid UTF-8 is replaced, never thrown, in the payload and in metadata strings alike.
  events.push_back(DomainEvent::create("a.b", {{"bad", "\xff\xfe"}}, metadata_with("bad\xc3")));
  auto with_extra = metadata_with("extra");
  with_extra.extra = {{"zeta", 1}, {"alpha", {{"nested", true}}}, {"m_key", nullptr}};
  events.push_back(DomainEvent::create("a.b", {{"n", 1}}, with_extra));
  ExecutionResult failed;
  failed.success = false;
  failed.retryable = true;
  failed.retry_count = 2;
  failed.max_retries = 2147483647;
  failed.error = herald::StepError{"gateway said \"no\"\n", "Timeout\\Error"};
  events.push_back(DomainEvent::create("payment.failed", {{"list", {1, 2.5, "x", nullptr, false}}},
                                       metadata_with("failed"), failed));
  ExecutionResult negative;
  negative.retry_count = -3;  // not something a step sends, but encodable all the same
  events.push_back(DomainEvent::create("x.y", 7, EventMetadata{}, negative));
  events.push_back(DomainEvent::from_json(json::parse(
      R"({"event_id":"id-1","event_name":"from.wire","payload":[1,{"b":2,"a":1}],
          "metadata":{"fired_at":"","custom":"kept"},"execution_result":{"success":true}})")));
  for (const auto& e : events) EXPECT_EQ(e->json_text(), reference(*e)) << e->event_name();
  // The invalid bytes became U+FFFD in the text, which is valid JSON.
  EXPECT_NE(events[4]->json_text().find("\xef\xbf\xbd"), std::string::npos);
  json reparsed;
  EXPECT_NO_THROW(reparsed = json::parse(events[4]->json_text()));
  EXPECT_TRUE(reparsed.is_object());
}

TEST(EventJsonText, ManyThreadsAskingAtOnceGetOneEncoding) {
  const auto event = DomainEvent::create("a.b", {{"blob", std::string(10'000, 'x')}});
  std::vector<const std::string*> seen(8);
  std::vector<const std::vector<std::uint8_t>*> packed(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      seen[i] = &event->json_text();
      packed[i] = &event->msgpack();
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(seen[i], seen[0]);
    EXPECT_EQ(packed[i], packed[0]);
  }
  EXPECT_EQ(*seen[0], reference(*event));
  EXPECT_EQ(json::from_msgpack(*packed[0]), event->to_json());
}
