// The JSON envelope's fast path (one SAX pass of herald's reader, events/src/wire_fast.hpp) against the
// general path (herald's reader, a json tree, DomainEvent::from_json): for every envelope the fast
// path either gives up or returns exactly the message the general path returns (the same
// values, and the same JSON types: 1 stays number_unsigned, -1 number_integer, 1.0 a float).
// The cases are where two JSON readers could part ways (they were written for a simdjson fast
// path, measured and not kept: docs/architecture.md).
#include "wire_fast.hpp"

#include <herald/events/json_fields.hpp>
#include <herald/events/wire.hpp>

#include <gtest/gtest.h>
#include <json_identical.hpp>

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace {

using herald::WireEncoding;
using herald::WireMessage;
using herald::WireReject;
using nlohmann::json;

using herald::testing::identical;

void expect_same_message(const WireMessage& fast, const WireMessage& general, std::string_view body) {
  EXPECT_EQ(fast.header.publisher_id, general.header.publisher_id) << body;
  EXPECT_EQ(fast.header.seq, general.header.seq) << body;
  EXPECT_EQ(fast.header.name_seq, general.header.name_seq) << body;
  EXPECT_EQ(fast.encoding, general.encoding) << body;
  EXPECT_EQ(fast.wire_version, general.wire_version) << body;
  const auto& a = *fast.event;
  const auto& b = *general.event;
  EXPECT_EQ(a.event_id(), b.event_id()) << body;
  EXPECT_EQ(a.event_name(), b.event_name()) << body;
  EXPECT_TRUE(identical(a.payload(), b.payload())) << body << "\n" << a.payload() << " vs " << b.payload();
  EXPECT_EQ(a.metadata(), b.metadata()) << body;
  EXPECT_TRUE(identical(a.metadata().extra, b.metadata().extra)) << body;
  EXPECT_EQ(a.execution_result(), b.execution_result()) << body;
  EXPECT_EQ(a.json_text(), b.json_text()) << body;
}

// Both paths on one envelope.
struct Outcome {
  std::optional<WireMessage> fast;
  herald::WireResult general;

  bool general_accepts() const { return std::holds_alternative<WireMessage>(general); }
  WireReject general_reason() const { return std::get<herald::WireError>(general).reason; }
};

// Decodes `body` both ways and checks the contract: when the fast path answers, the general path
// accepts the envelope and returns the same message.
Outcome both(std::string_view topic, std::string_view body) {
  Outcome o{herald::detail::decode_json_envelope_fast(topic, body, herald::json_fields::kMaxDepth),
            herald::detail::decode_envelope_general(topic, body, WireEncoding::json)};
  if (o.fast) {
    EXPECT_TRUE(o.general_accepts()) << "the fast path accepted what the general path rejects: " << body;
    if (o.general_accepts()) expect_same_message(*o.fast, std::get<WireMessage>(o.general), body);
  }
  // decode_wire_message is the fast path, then the general path: the same answer.
  const std::array<std::string_view, 2> frames{topic, body};
  const auto whole = herald::decode_wire_message(frames, 0);
  EXPECT_EQ(std::holds_alternative<WireMessage>(whole), o.general_accepts()) << body;
  return o;
}

// An envelope whose `payload` (and, when given, `metadata` and `execution_result`) is the given
// JSON text, topic "order.created".
std::string envelope(std::string_view payload, std::string_view metadata = R"({"fired_by":"p","zone":"eu"})",
                     std::string_view execution = R"({"success":false,"retry_count":2,"error":{"message":"m","error_type":"E"}})") {
  std::string s = R"({"wire_version":1,"publisher_id":"pub","seq":7,"name_seq":3,"event_id":"e-1",)"
                  R"("event_name":"order.created","event_version":"1.0","payload":)";
  s += payload;
  s += R"(,"metadata":)";
  s += metadata;
  s += R"(,"execution_result":)";
  s += execution;
  s += "}";
  return s;
}

constexpr std::string_view kTopic = "order.created";

void expect_fast(std::string_view body, std::string_view topic = kTopic) {
  const auto o = both(topic, body);
  EXPECT_TRUE(o.fast.has_value()) << "expected the fast path to accept: " << body;
}

void expect_gives_up_general_accepts(std::string_view body, std::string_view topic = kTopic) {
  const auto o = both(topic, body);
  EXPECT_FALSE(o.fast.has_value()) << body;
  EXPECT_TRUE(o.general_accepts()) << body;
}

// Accepted by the general path; the fast path may read it too (then `both` checks that it reads
// the same message) or leave it to the general path.
void expect_general_accepts(std::string_view body, std::string_view topic = kTopic) {
  const auto o = both(topic, body);
  EXPECT_TRUE(o.general_accepts()) << body;
}

void expect_both_reject(std::string_view body, WireReject reason, std::string_view topic = kTopic) {
  const auto o = both(topic, body);
  EXPECT_FALSE(o.fast.has_value()) << body;
  ASSERT_FALSE(o.general_accepts()) << body;
  EXPECT_EQ(o.general_reason(), reason) << body;
}

std::string nested_arrays(std::size_t levels) {
  return std::string(levels, '[') + std::string(levels, ']');
}

TEST(WireFastPath, TakesAndMatchesTheGeneralPathForEncodedEvents) {
  herald::EventMetadata meta;
  meta.task_uuid = "t";
  meta.correlation_id = "c";
  meta.extra = {{"publisher", "p"}, {"nested", {{"a", {1, -2, 2.5, nullptr, true, "x"}}}}};
  herald::ExecutionResult result;
  result.success = false;
  result.retryable = true;
  result.retry_count = 3;
  result.max_retries = 5;
  result.error = herald::StepError{"card declined \"x\" \xC3\xA9 \n", "PaymentError"};
  const auto event = herald::DomainEvent::create(
      "payment.done", {{"amount", 42.5}, {"n", 18446744073709551615u}, {"i", -9223372036854775807LL - 1},
                       {"s", "\xF0\x9F\x98\x80 \x01"}, {"list", json::array()}, {"o", json::object()}},
      meta, result);
  const std::string body = herald::encode_envelope(*event, WireEncoding::json, herald::WireHeader{"pub", 9, 4});
  expect_fast(body, "payment.done");
}

TEST(WireFastPath, NullsWhereTheGeneralPathAllowsThemReadAsDefaults) {
  expect_fast(envelope("null"));
  expect_fast(envelope("{}", "null", "null"));
  expect_fast(envelope("{}", R"({"fired_by":null,"zone":null})",
                       R"({"success":null,"retryable":null,"retry_count":null,"max_retries":null,"error":null})"));
  expect_fast(envelope("{}", "{}", R"({"error":{"message":null,"error_type":null,"other":[1]}})"));
  const auto without_name_seq = std::string(R"({"wire_version":1,"publisher_id":"p","seq":1,"name_seq":null,)"
                                            R"("event_id":"e","event_name":"order.created"})");
  expect_fast(without_name_seq);
}

TEST(WireFastPath, EscapedKeysAndWhitespaceReadLikeTheGeneralPath) {
  expect_fast(R"({"wire\u005fversion":1,"publisher_id":"p","seq":1,"event_id":"e","event_name":"order.created",)"
              R"("payload":{"k\u00e9y":"v\u00e9\ud83d\ude00\u0000\n\/"}})");
  expect_fast("{\n\t\"wire_version\" : 1 ,\r\n \"publisher_id\":\"p\", \"seq\" :1,\"event_id\":\"e\","
              "\"event_name\":\"order.created\",\"payload\" : [ 1 , { } , [ ] ] } \n\t ");
}

TEST(WireFastPath, DuplicateEnvelopeKeysGiveUpAndTheGeneralPathKeepsTheLast) {
  const auto o = both(kTopic, R"({"wire_version":1,"publisher_id":"p","seq":1,"seq":2,"event_id":"e","event_name":"order.created"})");
  EXPECT_FALSE(o.fast.has_value());
  ASSERT_TRUE(o.general_accepts());
  EXPECT_EQ(std::get<WireMessage>(o.general).header.seq, 2u);
  expect_gives_up_general_accepts(envelope(R"({"a":1})").insert(1, R"("payload":[1],)"));
  expect_gives_up_general_accepts(envelope("{}", R"({"fired_by":"a","fired_by":"b"})"));
  expect_gives_up_general_accepts(envelope("{}", R"({"zone":"a","zone":"b"})"));
  expect_gives_up_general_accepts(envelope("{}", "{}", R"({"success":true,"success":false})"));
  expect_gives_up_general_accepts(envelope("{}", "{}", R"({"error":{"message":"a","message":"b"}})"));
  // Keys the general path ignores may repeat.
  expect_fast(envelope("{}", "{}", R"({"other":1,"other":2,"error":{"x":1,"x":[2]}})"));
}

TEST(WireFastPath, DuplicateKeysInsideValuesKeepTheLastValueLikeTheGeneralPath) {
  const auto o = both(kTopic, envelope(R"({"a":1,"a":{"b":2,"b":[3]},"c":[1],"c":"x","d":{"e":1},"d":null})",
                                       R"({"zone":{"k":1,"k":2}})"));
  ASSERT_TRUE(o.fast.has_value());
  EXPECT_EQ(o.fast->event->payload(), json::parse(R"({"a":{"b":[3]},"c":"x","d":null})"));
  EXPECT_EQ(o.fast->event->metadata().extra, json::parse(R"({"zone":{"k":2}})"));
}

TEST(WireFastPath, InvalidJsonInsideAnIgnoredKeyIsStillRejected) {
  for (const std::string_view bad : {"[1,tru]", "[1 2]", "{\"a\" 1}", "{\"a\":01}", "nul", "nulls",
                                     "\"\\x\"", "[1,]", "{\"a\":1,}", "[}", "{]", "-", "1.", ".5",
                                     "1e", "+1", "[\"\\u12G4\"]", "\"\\ud800\"", "[1}"}) {
    std::string body = envelope("{}");
    body.insert(1, "\"ignored\":" + std::string(bad) + ",");
    expect_both_reject(body, WireReject::invalid_encoding);
    // The same inside execution_result and error, which also have ignored keys.
    expect_both_reject(envelope("{}", "{}", "{\"other\":" + std::string(bad) + "}"), WireReject::invalid_encoding);
    expect_both_reject(envelope("{}", "{}", "{\"error\":{\"other\":" + std::string(bad) + "}}"),
                       WireReject::invalid_encoding);
    expect_both_reject(envelope("[" + std::string(bad) + "]"), WireReject::invalid_encoding);
  }
}

TEST(WireFastPath, BytesAfterTheEnvelopeAreRejected) {
  const std::string body = envelope("{}");
  for (const std::string_view tail : {" x", "}", "{}", ",", "]", " 1", "\"\"", " null"}) {
    expect_both_reject(body + std::string(tail), WireReject::invalid_encoding);
  }
  expect_fast(body + " \n\t\r");
  // Cut short: the envelope or a value in it never closes.
  expect_both_reject(body.substr(0, body.size() - 1), WireReject::invalid_encoding);
  expect_both_reject(R"({"wire_version":1,"publisher_id":"p","seq":1,"event_id":"e","event_name":"order.created","payload":{"a":1})",
                     WireReject::invalid_encoding);
  expect_both_reject(R"({"wire_version":1,"publisher_id":"p","seq":1,"event_id":"e","event_name":"order.created","payload":"a)",
                     WireReject::invalid_encoding);
}

TEST(WireFastPath, NestingUpToTheDepthLimitIsReadAndBeyondItGivesUp) {
  constexpr std::size_t limit = herald::json_fields::kMaxDepth;
  // The envelope is level 1, so the payload and ignored keys may nest limit - 1 levels, metadata
  // extra values limit - 2.
  expect_fast(envelope(nested_arrays(limit - 1)));
  expect_both_reject(envelope(nested_arrays(limit)), WireReject::invalid_encoding);
  std::string ignored = envelope("{}");
  ignored.insert(1, "\"ignored\":" + nested_arrays(limit - 1) + ",");
  expect_fast(ignored);
  ignored = envelope("{}");
  ignored.insert(1, "\"ignored\":" + nested_arrays(limit) + ",");
  expect_both_reject(ignored, WireReject::invalid_encoding);
  expect_fast(envelope("{}", "{\"zone\":" + nested_arrays(limit - 2) + "}"));
  expect_both_reject(envelope("{}", "{\"zone\":" + nested_arrays(limit - 1) + "}"), WireReject::invalid_encoding);
  // The fast path counts the same way with any limit.
  const std::string shallow = envelope(R"({"a":[1]})");
  EXPECT_TRUE(herald::detail::decode_json_envelope_fast(kTopic, shallow, 4).has_value());
  EXPECT_FALSE(herald::detail::decode_json_envelope_fast(kTopic, shallow, 2).has_value());
  EXPECT_TRUE(herald::detail::decode_json_envelope_fast(kTopic, envelope("{}", "{}", "{}"), 2).has_value());
  EXPECT_FALSE(herald::detail::decode_json_envelope_fast(kTopic, envelope("{}"), 2).has_value());  // error: 3
}

TEST(WireFastPath, IntegersKeepNlohmannsTypes) {
  // Read: the 64-bit edges, as number_unsigned / number_integer like the general path.
  expect_fast(envelope("[0,1,-1,9223372036854775807,9223372036854775808,18446744073709551615,"
                       "-9223372036854775808]"));
  // Beyond 64 bits (a double for nlohmann) and -0 (number_integer 0 for nlohmann): the same
  // types whichever path reads them.
  for (const std::string_view n : {"18446744073709551616", "-9223372036854775809",
                                   "123456789012345678901234567890", "-0"}) {
    expect_general_accepts(envelope("[" + std::string(n) + "]"));
  }
  // Where counts belong: -0 and integral floats are the general path's to decide.
  expect_general_accepts(envelope("{}", "{}", R"({"retry_count":-0})"));
  expect_gives_up_general_accepts(envelope("{}", "{}", R"({"retry_count":1.0})"));  // reads 1
  expect_both_reject(envelope("{}", "{}", R"({"retry_count":1.5})"), WireReject::invalid_field);
  expect_both_reject(envelope("{}", "{}", R"({"retry_count":-1})"), WireReject::invalid_field);
  expect_both_reject(envelope("{}", "{}", R"({"max_retries":2147483648})"), WireReject::invalid_field);
  expect_fast(envelope("{}", "{}", R"({"max_retries":2147483647})"));
}

TEST(WireFastPath, FloatsReadLikeTheGeneralPathAndOverflowIsRejected) {
  expect_fast(envelope("[1.5,-2.5e-3,1e300,2.2250738585072014e-308,1E+2,0.1,3.141592653589793238462643383279]"));
  // Underflow, subnormals and zeros: where strtod and from_chars could round apart.
  for (const std::string_view f : {"1e-400", "4.9e-324", "2e-310", "0.0", "-0.0", "0e5", "1e-999999"}) {
    expect_general_accepts(envelope("[" + std::string(f) + "]"));
  }
  expect_both_reject(envelope("[1e999]"), WireReject::invalid_encoding);
  expect_both_reject(envelope("[-1e309]"), WireReject::invalid_encoding);
}

TEST(WireFastPath, LoneSurrogatesAndInvalidUtf8AreRejected) {
  for (const std::string_view s : {"\\ud800", "\\udc00", "\\uDBFF\\uDBFF", "\\ud800\\u0041", "\\ud800x",
                                   "\\uDFFF\\uD800", "\xED\xA0\x80", "\xC0\xAF", "\xFF", "\xE2\x82"}) {
    expect_both_reject(envelope("[\"" + std::string(s) + "\"]"), WireReject::invalid_encoding);
    expect_both_reject(envelope("{\"" + std::string(s) + "\":1}"), WireReject::invalid_encoding);
  }
  expect_fast(envelope(R"(["\ud83d\ude00","\uD83D\uDE00","\u00e9"])"));
}

TEST(WireFastPath, ControlCharactersMustBeEscapedInStrings) {
  for (const char c : {'\x01', '\n', '\t', '\x1f', '\0'}) {
    std::string body = envelope("[\"a" + std::string(1, c) + "b\"]");
    expect_both_reject(body, WireReject::invalid_encoding);
    body = envelope("{\"a" + std::string(1, c) + "b\":1}");
    expect_both_reject(body, WireReject::invalid_encoding);
  }
  expect_fast(envelope(R"(["\u0000\u0001\u001f\t\n"])"));
  // A NUL byte outside strings: never accepted by the fast path.
  const auto o = both(kTopic, envelope("{}") + std::string(1, '\0'));
  EXPECT_FALSE(o.fast.has_value());
}

TEST(WireFastPath, WrongFieldsGiveUpAndTheGeneralPathExplains) {
  expect_both_reject(envelope("{}"), WireReject::topic_mismatch, "order.other");
  const std::string base = R"({"wire_version":1,"publisher_id":"p","seq":1,"event_id":"e","event_name":"order.created"})";
  auto with = [&](std::string_view key, std::string_view value) {
    std::string s = base;
    const auto at = s.find("\"" + std::string(key) + "\":");
    if (at == std::string::npos) {
      s.insert(1, "\"" + std::string(key) + "\":" + std::string(value) + ",");
    } else {
      const auto start = at + key.size() + 3;
      const auto end = s.find_first_of(",}", start);
      s.replace(start, end - start, value);
    }
    return s;
  };
  expect_both_reject(with("wire_version", "2"), WireReject::unsupported_version);
  expect_both_reject(with("wire_version", "-1"), WireReject::unsupported_version);
  expect_both_reject(with("wire_version", "1.0"), WireReject::invalid_field);
  expect_both_reject(with("wire_version", "null"), WireReject::missing_field);
  expect_both_reject(with("publisher_id", "\"\""), WireReject::invalid_field);
  expect_both_reject(with("publisher_id", "5"), WireReject::invalid_field);
  expect_both_reject(with("seq", "0"), WireReject::invalid_field);
  expect_both_reject(with("seq", "-3"), WireReject::invalid_field);
  expect_both_reject(with("seq", "\"1\""), WireReject::invalid_field);
  expect_both_reject(with("name_seq", "0"), WireReject::invalid_field);
  expect_both_reject(with("event_id", "\"\""), WireReject::invalid_field);
  expect_both_reject(with("event_id", "null"), WireReject::missing_field);
  expect_both_reject(with("event_name", "\"order..created\""), WireReject::bad_event_name, "order..created");
  expect_both_reject(with("event_name", "1"), WireReject::invalid_field);
  expect_both_reject(with("metadata", "[]"), WireReject::invalid_field);
  expect_both_reject(with("metadata", R"({"fired_by":1})"), WireReject::invalid_field);
  expect_both_reject(with("execution_result", R"({"success":"yes"})"), WireReject::invalid_field);
  expect_both_reject(with("execution_result", R"({"error":"boom"})"), WireReject::invalid_field);
  expect_both_reject(with("execution_result", R"({"error":{"message":1}})"), WireReject::invalid_field);
  expect_both_reject(R"({"wire_version":1,"publisher_id":"p","seq":1,"event_name":"order.created"})",
                     WireReject::missing_field);
  expect_both_reject("[1]", WireReject::invalid_encoding);
  expect_fast(with("seq", "18446744073709551615"));
  expect_fast(with("payload", "\"just a string\""));
  expect_fast(with("payload", "-12"));
}

TEST(WireFastPath, EverySingleByteMutationOfAnEnvelopeDecodesLikeTheGeneralPath) {
  // Each byte of a compact envelope deleted, or replaced by one of a few bytes that matter to
  // JSON: wherever the fast path answers, it must answer like the general path (checked in both()).
  const std::string body = envelope(R"({"a":[1,-2,3.5,"x\u0041",true,null],"b":{"c":false}})");
  std::size_t fast_answers = 0;
  for (std::size_t i = 0; i < body.size(); ++i) {
    std::string cut = body;
    cut.erase(i, 1);
    fast_answers += both(kTopic, cut).fast.has_value();
    for (const char c : std::string_view("\"\\{}[]:,0-.e tnu\x01\x80")) {
      std::string replaced = body;
      replaced[i] = c;
      fast_answers += both(kTopic, replaced).fast.has_value();
    }
  }
  EXPECT_GT(fast_answers, 0u);
}

}  // namespace
