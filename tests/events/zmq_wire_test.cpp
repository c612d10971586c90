// Wire codec: round trips in both encodings and every reject reason.
#include <herald/events/error.hpp>
#include <herald/events/wire.hpp>

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

namespace {

using herald::WireEncoding;
using herald::WireReject;
using nlohmann::json;

herald::EventPtr sample_event() {
  herald::EventMetadata meta;
  meta.task_uuid = "task-1";
  meta.step_name = "charge";
  meta.correlation_id = "corr-9";
  meta.extra = {{"region", "eu"}};
  herald::ExecutionResult result;
  result.success = false;
  result.retryable = true;
  result.retry_count = 2;
  result.error = herald::StepError{"card declined", "PaymentError"};
  return herald::DomainEvent::create("payment.card.declined", {{"amount", 42.5}, {"currency", "EUR"}},
                                     meta, result);
}

herald::WireResult decode(const std::string& topic, const std::string& body,
                          std::size_t limit = herald::kDefaultMaxMessageSize) {
  std::array<std::string_view, 2> frames{topic, body};
  return herald::decode_wire_message(frames, limit);
}

WireReject reason_of(const herald::WireResult& r) {
  EXPECT_TRUE(std::holds_alternative<herald::WireError>(r));
  return std::get<herald::WireError>(r).reason;
}

// A hand-built JSON envelope, editable per test.
json valid_envelope() {
  return json{{"wire_version", 1},
              {"publisher_id", "pub-1"},
              {"seq", 7},
              {"event_id", "0190-abc"},
              {"event_name", "order.created"},
              {"payload", {{"id", 1}}},
              {"metadata", json::object()},
              {"execution_result", {{"success", true}}}};
}

void expect_same_event(const herald::DomainEvent& a, const herald::DomainEvent& b) {
  EXPECT_EQ(a.event_id(), b.event_id());
  EXPECT_EQ(a.event_name(), b.event_name());
  EXPECT_EQ(a.payload(), b.payload());
  EXPECT_EQ(a.metadata(), b.metadata());
  EXPECT_EQ(a.execution_result(), b.execution_result());
}

TEST(WireCodec, JsonEnvelopeStartsWithWireFieldsSplicedBeforeTheEventJson) {
  auto event = sample_event();
  const std::string text = herald::encode_envelope(*event, WireEncoding::json, {"pub-1", 3, 2});
  const std::string head = R"({"wire_version":1,"publisher_id":"pub-1","seq":3,"name_seq":2,)";
  ASSERT_EQ(text.substr(0, head.size()), head);
  EXPECT_EQ(text.substr(head.size()), event->json_text().substr(1));
  auto j = json::parse(text);
  EXPECT_EQ(j["event_id"], event->event_id());
  EXPECT_EQ(j["seq"], 3);
}

TEST(WireCodec, JsonRoundTripKeepsEventAndHeader) {
  auto event = sample_event();
  const std::string body = herald::encode_envelope(*event, WireEncoding::json, {"pub-\"x\"", 11, 4});
  auto result = decode(event->event_name(), body);
  ASSERT_TRUE(std::holds_alternative<herald::WireMessage>(result)) << std::get<herald::WireError>(result).detail;
  const auto& msg = std::get<herald::WireMessage>(result);
  expect_same_event(*msg.event, *event);
  EXPECT_EQ(msg.header.publisher_id, "pub-\"x\"");
  EXPECT_EQ(msg.header.seq, 11u);
  EXPECT_EQ(msg.header.name_seq, 4u);
  EXPECT_EQ(msg.encoding, WireEncoding::json);
}

TEST(WireCodec, MsgpackRoundTripKeepsEventAndHeader) {
  auto event = sample_event();
  const std::string body = herald::encode_envelope(*event, WireEncoding::msgpack, {"pub-2", 5, 1});
  ASSERT_EQ(herald::sniff_encoding(body), WireEncoding::msgpack);
  auto as_json = json::from_msgpack(body);
  EXPECT_EQ(as_json["wire_version"], 1);
  EXPECT_EQ(as_json["publisher_id"], "pub-2");
  EXPECT_EQ(as_json["event_name"], event->event_name());
  auto result = decode(event->event_name(), body);
  ASSERT_TRUE(std::holds_alternative<herald::WireMessage>(result)) << std::get<herald::WireError>(result).detail;
  const auto& msg = std::get<herald::WireMessage>(result);
  expect_same_event(*msg.event, *event);
  EXPECT_EQ(msg.header.seq, 5u);
  EXPECT_EQ(msg.encoding, WireEncoding::msgpack);
}

TEST(WireCodec, NameSeqZeroIsLeftOutAndAbsentNameSeqDecodesAsZero) {
  auto event = sample_event();
  const std::string body = herald::encode_envelope(*event, WireEncoding::json, {"p", 1, 0});
  EXPECT_FALSE(json::parse(body).contains("name_seq"));
  auto result = decode(event->event_name(), body);
  ASSERT_TRUE(std::holds_alternative<herald::WireMessage>(result));
  EXPECT_EQ(std::get<herald::WireMessage>(result).header.name_seq, 0u);
}

TEST(WireCodec, HandBuiltEnvelopeFromAnotherClientIsAccepted) {
  auto result = decode("order.created", valid_envelope().dump());
  ASSERT_TRUE(std::holds_alternative<herald::WireMessage>(result));
  const auto& msg = std::get<herald::WireMessage>(result);
  EXPECT_EQ(msg.event->event_id(), "0190-abc");
  EXPECT_EQ(msg.event->payload()["id"], 1);
}

TEST(WireCodec, EnvelopeJsonLineIsOneLineOfJson) {
  auto body = valid_envelope().dump(2);  // pretty printed by a foreign client
  auto result = decode("order.created", body);
  ASSERT_TRUE(std::holds_alternative<herald::WireMessage>(result));
  auto line = herald::envelope_json_line(std::get<herald::WireMessage>(result));
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(json::parse(line)["seq"], 7);
}

TEST(WireCodec, RejectsWrongFrameCount) {
  std::array<std::string_view, 1> one{"order.created"};
  EXPECT_EQ(reason_of(herald::decode_wire_message(one)), WireReject::frame_count);
  std::array<std::string_view, 3> three{"order.created", "{}", "x"};
  EXPECT_EQ(reason_of(herald::decode_wire_message(three)), WireReject::frame_count);
}

TEST(WireCodec, RejectsOversizedMessages) {
  auto body = valid_envelope().dump();
  EXPECT_EQ(reason_of(decode("order.created", body, 64)), WireReject::oversized);
  EXPECT_TRUE(std::holds_alternative<herald::WireMessage>(decode("order.created", body, 0)));
}

TEST(WireCodec, RejectsInvalidJsonAndMsgpack) {
  EXPECT_EQ(reason_of(decode("order.created", "{not json")), WireReject::invalid_encoding);
  EXPECT_EQ(reason_of(decode("order.created", "garbage")), WireReject::invalid_encoding);
  EXPECT_EQ(reason_of(decode("order.created", "")), WireReject::invalid_encoding);
  EXPECT_EQ(reason_of(decode("order.created", "[1,2]")), WireReject::invalid_encoding);
  EXPECT_EQ(reason_of(decode("order.created", std::string("\x82\xa1", 2))), WireReject::invalid_encoding);
}

TEST(WireCodec, RejectsMissingFields) {
  for (const char* key : {"wire_version", "publisher_id", "seq", "event_id", "event_name"}) {
    auto j = valid_envelope();
    j.erase(key);
    auto r = decode("order.created", j.dump());
    EXPECT_EQ(reason_of(r), WireReject::missing_field) << key;
    EXPECT_NE(std::get<herald::WireError>(r).detail.find(key), std::string::npos);
  }
}

TEST(WireCodec, RejectsInvalidFields) {
  auto j = valid_envelope();
  j["seq"] = 0;
  EXPECT_EQ(reason_of(decode("order.created", j.dump())), WireReject::invalid_field);
  j = valid_envelope();
  j["seq"] = "7";
  EXPECT_EQ(reason_of(decode("order.created", j.dump())), WireReject::invalid_field);
  j = valid_envelope();
  j["publisher_id"] = "";
  EXPECT_EQ(reason_of(decode("order.created", j.dump())), WireReject::invalid_field);
  j = valid_envelope();
  j["metadata"] = 5;
  EXPECT_EQ(reason_of(decode("order.created", j.dump())), WireReject::invalid_field);
  j = valid_envelope();
  j["name_seq"] = -1;
  EXPECT_EQ(reason_of(decode("order.created", j.dump())), WireReject::invalid_field);
}

TEST(WireCodec, RejectsUnsupportedVersion) {
  auto j = valid_envelope();
  j["wire_version"] = 2;
  EXPECT_EQ(reason_of(decode("order.created", j.dump())), WireReject::unsupported_version);
}

TEST(WireCodec, RejectsBadEventName) {
  auto j = valid_envelope();
  j["event_name"] = "order created!";
  EXPECT_EQ(reason_of(decode("order created!", j.dump())), WireReject::bad_event_name);
}

TEST(WireCodec, RejectsTopicThatDiffersFromEventName) {
  EXPECT_EQ(reason_of(decode("order.deleted", valid_envelope().dump())), WireReject::topic_mismatch);
}

TEST(WireCodec, EncodingNamesParseAndRejectUnknown) {
  EXPECT_EQ(herald::parse_wire_encoding("msgpack"), WireEncoding::msgpack);
  EXPECT_EQ(herald::to_string(WireEncoding::json), "json");
  EXPECT_THROW(herald::parse_wire_encoding("xml"), herald::UnknownValueError);
  EXPECT_EQ(herald::to_string(WireReject::topic_mismatch), "topic_mismatch");
}

}  // namespace

namespace {
TEST(WireCodec, UnknownEncodingErrorNamesTheValueAndTheEncodings) {
  try {
    (void)herald::parse_wire_encoding("xml");
    ADD_FAILURE() << "xml accepted";
  } catch (const herald::UnknownValueError& e) {
    EXPECT_STREQ(e.what(), "unknown wire encoding 'xml' (expected one of: json, msgpack)");
  }
}
}  // namespace
