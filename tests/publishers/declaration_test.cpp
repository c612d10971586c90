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
