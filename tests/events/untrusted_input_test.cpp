// Regressions found by fuzzing (tests/fuzz/): input from outside the process (wire envelopes,
// step completion text) must fail with a typed error, never crash or throw json's exceptions.
#include <herald/events/error.hpp>
#include <herald/events/json_fields.hpp>
#include <herald/events/step_completion.hpp>
#include <herald/events/wire.hpp>

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <variant>

namespace {

using herald::WireReject;
using nlohmann::json;

// 200,000 nested arrays: enough to overflow the stack when json copies or compares them.
constexpr std::size_t kDeep = 200'000;

std::string nested_json_arrays(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::string msgpack_str(const std::string& s) { return std::string(1, static_cast<char>(0xa0 | s.size())) + s; }

herald::WireResult decode(const std::string& topic, const std::string& body) {
  const std::array<std::string_view, 2> frames{topic, body};
  return herald::decode_wire_message(frames);
}

herald::WireError error_of(const herald::WireResult& r) {
  EXPECT_TRUE(std::holds_alternative<herald::WireError>(r));
  if (const auto* e = std::get_if<herald::WireError>(&r)) return *e;
  return {WireReject::frame_count, "decoded"};
}

std::string message_of(std::string_view text) {
  try {
    herald::StepCompletion::parse(text);
  } catch (const herald::ParseError& e) {
    return e.what();
  }
  return "no ParseError";
}

}  // namespace

TEST(StepCompletionParsing, ANumberTooLargeForADoubleIsAParseError) {
  // json::parse throws out_of_range (not parse_error) for 1e999; it used to escape parse().
  const auto message = message_of(R"({"step_name": "s", "success": true, "result": [1e999]})");
  EXPECT_NE(message.find("invalid JSON"), std::string::npos) << message;
  EXPECT_NE(message.find("number overflow"), std::string::npos) << message;
}

TEST(StepCompletionParsing, NestingDeeperThanTheLimitIsAParseErrorNotAStackOverflow) {
  const auto message =
      message_of(R"({"step_name": "s", "success": true, "result": )" + nested_json_arrays(kDeep) + "}");
  EXPECT_NE(message.find("nested deeper than 128"), std::string::npos) << message;
}

TEST(StepCompletionParsing, NestingUpToTheLimitIsAccepted) {
  // The completion object is level 1, so its result may nest 127 more levels.
  const auto c = herald::StepCompletion::parse(R"({"step_name": "s", "success": true, "result": )" +
                                               nested_json_arrays(herald::json_fields::kMaxDepth - 1) + "}");
  EXPECT_TRUE(c.result.is_array());
  EXPECT_NE(message_of(R"({"step_name": "s", "success": true, "result": )" +
                       nested_json_arrays(herald::json_fields::kMaxDepth) + "}")
                .find("nested deeper"),
            std::string::npos);
}

TEST(WireDecoding, ADeeplyNestedJsonPayloadIsRejectedAsInvalidEncoding) {
  const auto body = R"({"wire_version":1,"publisher_id":"p","seq":1,"event_id":"e","event_name":"a","payload":)" +
                    nested_json_arrays(kDeep) + "}";
  const auto e = error_of(decode("a", body));
  EXPECT_EQ(e.reason, WireReject::invalid_encoding);
  EXPECT_NE(e.detail.find("nested deeper than 128"), std::string::npos) << e.detail;
}

TEST(WireDecoding, ADeeplyNestedMsgpackPayloadIsRejectedAsInvalidEncoding) {
  std::string body(1, static_cast<char>(0x86));  // map of 6
  body += msgpack_str("wire_version") + '\x01' + msgpack_str("publisher_id") + msgpack_str("p") +
          msgpack_str("seq") + '\x01' + msgpack_str("event_id") + msgpack_str("e") +
          msgpack_str("event_name") + msgpack_str("a") + msgpack_str("payload");
  body += std::string(kDeep, static_cast<char>(0x91));  // array of 1, nested
  body += static_cast<char>(0x90);                       // empty array
  const auto e = error_of(decode("a", body));
  EXPECT_EQ(e.reason, WireReject::invalid_encoding);
  EXPECT_NE(e.detail.find("nested deeper than 128"), std::string::npos) << e.detail;
}

TEST(WireDecoding, ANumberOverflowIsRejectedAsInvalidEncodingWithTheParserMessage) {
  const auto e = error_of(decode("a", R"({"wire_version":1,"publisher_id":"p","seq":1e999,"event_id":"e","event_name":"a"})"));
  EXPECT_EQ(e.reason, WireReject::invalid_encoding);
  EXPECT_NE(e.detail.find("number overflow"), std::string::npos) << e.detail;
}

TEST(ParseBounded, ReadsJsonAndMsgpackLikeJsonsOwnParsers) {
  const json j = {{"a", {1, 2.5, "x", nullptr, true}}, {"b", {{"c", json::object()}}}};
  EXPECT_EQ(herald::json_fields::parse_bounded(j.dump()), j);
  const auto mp = json::to_msgpack(j);
  EXPECT_EQ(herald::json_fields::parse_bounded(std::string(mp.begin(), mp.end()),
                                               herald::WireEncoding::msgpack),
            j);
  EXPECT_THROW(herald::json_fields::parse_bounded("{} x"), herald::ParseError);  // trailing bytes
  EXPECT_THROW(herald::json_fields::parse_bounded("[[1]]", herald::WireEncoding::json, 1),
               herald::ParseError);
}
