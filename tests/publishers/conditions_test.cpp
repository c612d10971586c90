#include "publishers_test_support.hpp"

#include <gtest/gtest.h>

#include <array>

namespace herald {
namespace {

struct Outcome {
  const char* label;
  bool success;
  bool retryable;
  int retry_count;
  int max_retries;
};

constexpr std::array<Outcome, 4> kOutcomes{{
    {"success", true, false, 0, 3},
    {"retryable with retries left", false, true, 1, 3},
    {"retryable with retries exhausted", false, true, 3, 3},
    {"not retryable", false, false, 0, 3},
}};

struct Row {
  PublicationCondition condition;
  std::array<bool, 4> fires;  // by kOutcomes
};

constexpr std::array<Row, 5> kTable{{
    {PublicationCondition::success, {true, false, false, false}},
    {PublicationCondition::failure, {false, true, true, true}},
    {PublicationCondition::retryable_failure, {false, true, false, false}},
    {PublicationCondition::permanent_failure, {false, false, true, true}},
    {PublicationCondition::always, {true, true, true, true}},
}};

TEST(PublicationConditions, HoldExactlyAsTheTableSays) {
  for (const auto& row : kTable) {
    for (std::size_t i = 0; i < kOutcomes.size(); ++i) {
      const auto& o = kOutcomes[i];
      StepCompletion c = test_support::completion(o.success);
      c.retryable = o.retryable;
      c.retry_count = o.retry_count;
      c.max_retries = o.max_retries;
      EXPECT_EQ(condition_holds(row.condition, c), row.fires[i])
          << to_string(row.condition) << " for a step that is " << o.label;
    }
  }
}

TEST(PublicationConditions, ASucceededStepIsNeverAFailureEvenWhenMarkedRetryable) {
  StepCompletion c = test_support::completion(true);
  c.retryable = true;
  c.max_retries = 5;
  EXPECT_FALSE(condition_holds(PublicationCondition::retryable_failure, c));
  EXPECT_FALSE(condition_holds(PublicationCondition::permanent_failure, c));
}

TEST(PublicationConditions, RoundTripThroughTheirNames) {
  for (const auto& row : kTable) {
    EXPECT_EQ(parse_publication_condition(to_string(row.condition)), row.condition);
  }
}

TEST(PublicationConditions, UnknownNameIsRejectedByName) {
  try {
    parse_publication_condition("sometimes");
    FAIL() << "expected UnknownValueError";
  } catch (const UnknownValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'sometimes'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("permanent_failure"), std::string::npos) << e.what();
  }
}

TEST(DeliveryModes, FastIsAnAliasOfInProcess) {
  EXPECT_EQ(parse_delivery_mode("fast"), DeliveryMode::in_process);
  EXPECT_EQ(to_string(DeliveryMode::in_process), "in_process");
}

TEST(DeliveryModes, RoundTripThroughTheirNames) {
  for (auto mode : {DeliveryMode::in_process, DeliveryMode::zeromq, DeliveryMode::broadcast}) {
    EXPECT_EQ(parse_delivery_mode(to_string(mode)), mode);
  }
}

TEST(DeliveryModes, UnknownNameIsRejectedByName) {
  EXPECT_THROW(parse_delivery_mode("carrier_pigeon"), UnknownValueError);
}

}  // namespace
}  // namespace herald
