#include "publishers_test_support.hpp"

#include <gtest/gtest.h>

namespace herald {
namespace {

using nlohmann::json;

constexpr const char* kPath = "steps[0].publishes_events[1]";

// Runs `fn`, expects a ValidationError and returns it for further checks.
template <typename Fn>
ValidationError expect_validation_error(Fn fn) {
  try {
    fn();
  } catch (const ValidationError& e) {
    return e;
  }
  ADD_FAILURE() << "expected ValidationError";
  return ValidationError("", "");
}

TEST(EventDeclarationParsing, OnlyANameIsRequiredAndTheRestDefaults) {
  auto d = EventDeclaration::from_json(json{{"name", "payment.processed"}}, kPath);
  EXPECT_EQ(d.name, "payment.processed");
  EXPECT_EQ(d.condition, PublicationCondition::success);
  EXPECT_EQ(d.delivery_mode, DeliveryMode::in_process);
  EXPECT_FALSE(d.publisher);
  EXPECT_FALSE(d.schema);
}

TEST(EventDeclarationParsing, ReadsEveryField) {
  auto d = EventDeclaration::from_json(json{{"name", "payment.failed"},
                                            {"condition", "permanent_failure"},
                                            {"delivery_mode", "broadcast"},
                                            {"publisher", "payments"},
                                            {"schema", {{"type", "object"}}}},
                                       kPath);
  EXPECT_EQ(d.condition, PublicationCondition::permanent_failure);
  EXPECT_EQ(d.delivery_mode, DeliveryMode::broadcast);
  EXPECT_EQ(d.publisher, "payments");
  ASSERT_TRUE(d.schema);
  EXPECT_FALSE(d.schema->validate(json::array()) == std::nullopt);
}

TEST(EventDeclarationParsing, AcceptsFastAsInProcess) {
  auto d = EventDeclaration::from_json(json{{"name", "a.b"}, {"delivery_mode", "fast"}}, kPath);
  EXPECT_EQ(d.delivery_mode, DeliveryMode::in_process);
}

TEST(EventDeclarationParsing, UnknownKeyIsRejectedWithItsPathAndASuggestion) {
  auto e = expect_validation_error([] {
    EventDeclaration::from_json(json{{"name", "a.b"}, {"conditon", "always"}}, kPath);
  });
  EXPECT_EQ(e.field(), "steps[0].publishes_events[1].conditon");
  EXPECT_NE(std::string(e.what()).find("did you mean 'condition'"), std::string::npos) << e.what();
}

TEST(EventDeclarationParsing, BadConditionNamesTheFieldAndTheValue) {
  auto e = expect_validation_error([] {
    EventDeclaration::from_json(json{{"name", "a.b"}, {"condition", "sucess"}}, kPath);
  });
  EXPECT_EQ(e.field(), "steps[0].publishes_events[1].condition");
  EXPECT_NE(std::string(e.what()).find("'sucess'"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("did you mean 'success'"), std::string::npos) << e.what();
}

TEST(EventDeclarationParsing, BadDeliveryModeNamesTheField) {
  auto e = expect_validation_error([] {
    EventDeclaration::from_json(json{{"name", "a.b"}, {"delivery_mode", "zmq"}}, kPath);
  });
  EXPECT_EQ(e.field(), "steps[0].publishes_events[1].delivery_mode");
}

TEST(EventDeclarationParsing, BadEventNameIsRejectedNamingTheName) {
  auto e = expect_validation_error(
      [] { EventDeclaration::from_json(json{{"name", "payment..processed"}}, kPath); });
  EXPECT_EQ(e.field(), "steps[0].publishes_events[1].name");
  EXPECT_NE(std::string(e.what()).find("'payment..processed'"), std::string::npos) << e.what();
}

TEST(EventDeclarationParsing, MissingNameIsRejected) {
  auto e = expect_validation_error(
      [] { EventDeclaration::from_json(json{{"condition", "always"}}, kPath); });
  EXPECT_EQ(e.field(), "steps[0].publishes_events[1].name");
}

TEST(EventDeclarationParsing, WrongTypeOfConditionIsRejectedWithItsType) {
  auto e = expect_validation_error(
      [] { EventDeclaration::from_json(json{{"name", "a.b"}, {"condition", 3}}, kPath); });
  EXPECT_EQ(e.field(), "steps[0].publishes_events[1].condition");
  EXPECT_NE(std::string(e.what()).find("expected string, got number"), std::string::npos);
}

TEST(EventDeclarationParsing, SchemaErrorsCarryTheFullPath) {
  auto e = expect_validation_error([] {
    EventDeclaration::from_json(
        json{{"name", "a.b"}, {"schema", {{"properties", {{"amount", {{"minimun", 1}}}}}}}}, kPath);
  });
  EXPECT_EQ(e.field(), "steps[0].publishes_events[1].schema.properties.amount.minimun");
  EXPECT_NE(std::string(e.what()).find("did you mean 'minimum'"), std::string::npos) << e.what();
}

TEST(EventDeclarationParsing, ANonObjectIsRejected) {
  auto e = expect_validation_error([] { EventDeclaration::from_json(json("a.b"), kPath); });
  EXPECT_EQ(e.field(), kPath);
}

TEST(EventDeclarationParsing, RoundTripsThroughJsonByAdl) {
  json in = {{"name", "order.shipped"},
             {"condition", "always"},
             {"delivery_mode", "zeromq"},
             {"publisher", "orders"},
             {"schema", {{"type", "object"}, {"required", {"id"}}}}};
  auto d = in.get<EventDeclaration>();
  json out = d;
  EXPECT_EQ(out, in);
}

}  // namespace
}  // namespace herald

namespace herald {
namespace {

std::string unknown_value_message(const std::function<void()>& parse) {
  try {
    parse();
  } catch (const UnknownValueError& e) {
    return e.what();
  }
  return "no error";
}

TEST(PublishStageNames, EveryStageRoundTripsThroughItsName) {
  for (std::size_t i = 0; i < kPublishStageCount; ++i) {
    const auto stage = static_cast<PublishStage>(i);
    EXPECT_NE(to_string(stage), "unknown");
    EXPECT_EQ(parse_publish_stage(to_string(stage)), stage);
  }
  EXPECT_EQ(to_string(PublishStage::transform_payload), "transform_payload");
  EXPECT_EQ(unknown_value_message([] { (void)parse_publish_stage("transform"); }),
            "unknown publish stage 'transform' (expected one of: publisher, should_publish, "
            "transform_payload, additional_metadata, schema, build_event, before_publish, route, "
            "after_publish, internal, lookup)");
}

TEST(SkipReasonNames, EveryReasonRoundTripsThroughItsName) {
  for (std::size_t i = 0; i < kSkipReasonCount; ++i) {
    const auto reason = static_cast<SkipReason>(i);
    EXPECT_NE(to_string(reason), "unknown");
    EXPECT_EQ(parse_skip_reason(to_string(reason)), reason);
  }
  EXPECT_EQ(unknown_value_message([] { (void)parse_skip_reason("filtered"); }),
            "unknown skip reason 'filtered' (expected one of: condition, should_publish, before_publish)");
}

TEST(PublishResultJson, WritesStagesAndReasonsAsTheirNames) {
  PublishResult r;
  r.skipped.push_back(SkippedEvent{"a.b", SkipReason::should_publish});
  r.failed.push_back(PublishFailure{PublishStage::schema, "c.d", "bad", nullptr, "default"});
  const json j = r.to_json();
  EXPECT_EQ(j["skipped"][0]["reason"], "should_publish");
  EXPECT_EQ(j["failed"][0]["stage"], "schema");
}

}  // namespace
}  // namespace herald
