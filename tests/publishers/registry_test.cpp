#include "publishers_test_support.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace herald {
namespace {

using test_support::ScriptedPublisher;

std::string registry_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const RegistryError& e) {
    return e.what();
  }
  return "no error";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(PublisherRegistry, RegistersPublishersUnderTheirNames) {
  PublisherRegistry registry;
  auto p = std::make_shared<ScriptedPublisher>("payments");
  registry.register_publisher(p);
  EXPECT_EQ(registry.get("payments"), p);
  EXPECT_EQ(registry.names(), std::vector<std::string>{"payments"});
}

TEST(PublisherRegistry, RejectsADuplicateNameNamingIt) {
  PublisherRegistry registry;
  registry.register_publisher(std::make_shared<ScriptedPublisher>("payments"));
  const auto message = registry_error(
      [&] { registry.register_publisher(std::make_shared<ScriptedPublisher>("payments")); });
  EXPECT_TRUE(contains(message, "'payments' is already registered")) << message;
}

TEST(PublisherRegistry, RejectsNullEmptyAndReservedNames) {
  PublisherRegistry registry;
  EXPECT_THROW(registry.register_publisher(nullptr), RegistryError);
  EXPECT_THROW(registry.register_publisher(std::make_shared<ScriptedPublisher>("")), RegistryError);
  EXPECT_THROW(registry.register_publisher(std::make_shared<ScriptedPublisher>("default")),
               RegistryError);
}

TEST(PublisherRegistry, GetReturnsNullForAnUnknownName) {
  PublisherRegistry registry;
  EXPECT_EQ(registry.get("nobody"), nullptr);
}

TEST(PublisherRegistry, GetOfDefaultIsTheGenericPublisher) {
  PublisherRegistry registry;
  ASSERT_NE(registry.get("default"), nullptr);
  EXPECT_EQ(registry.get("default")->name(), "default");
  EXPECT_EQ(registry.get("default"), registry.generic());
}

TEST(PublisherRegistry, GetOrDefaultFallsBackToTheGenericForEmptyDefaultAndUnknown) {
  PublisherRegistry registry;
  auto p = std::make_shared<ScriptedPublisher>("payments");
  registry.register_publisher(p);
  EXPECT_EQ(registry.get_or_default("payments"), p);
  EXPECT_EQ(registry.get_or_default(""), registry.generic());
  EXPECT_EQ(registry.get_or_default("default"), registry.generic());
  EXPECT_EQ(registry.get_or_default("nobody"), registry.generic());
}

TEST(PublisherRegistry, GetStrictNamesTheUnknownAndListsTheRegistered) {
  PublisherRegistry registry;
  registry.register_publisher(std::make_shared<ScriptedPublisher>("orders"));
  registry.register_publisher(std::make_shared<ScriptedPublisher>("payments"));
  const auto message = registry_error([&] { registry.get_strict("shipping"); });
  EXPECT_EQ(message, "unknown publisher 'shipping' (registered: orders, payments)");
}

TEST(PublisherRegistry, GetStrictFindsRegisteredAndDefault) {
  PublisherRegistry registry;
  auto p = std::make_shared<ScriptedPublisher>("orders");
  registry.register_publisher(p);
  EXPECT_EQ(registry.get_strict("orders"), p);
  EXPECT_EQ(registry.get_strict("default"), registry.generic());
}

TEST(PublisherRegistry, GetForStepPrefersTheFirstDeclarationThatNamesAPublisher) {
  PublisherRegistry registry;
  auto declared = std::make_shared<ScriptedPublisher>("declared");
  auto second = std::make_shared<ScriptedPublisher>("second");
  auto by_step = std::make_shared<ScriptedPublisher>("by_step", std::vector<std::string>{"charge_card"});
  registry.register_publisher(declared);
  registry.register_publisher(second);
  registry.register_publisher(by_step);
  auto plain = test_support::declare("a.plain");
  auto first_named = test_support::declare("a.first");
  first_named.publisher = "declared";
  auto second_named = test_support::declare("a.second");
  second_named.publisher = "second";
  EXPECT_EQ(registry.get_for_step("charge_card", {plain, first_named, second_named}), declared);
}

TEST(PublisherRegistry, GetForStepThenPrefersAPublisherThatListsTheStep) {
  PublisherRegistry registry;
  auto by_step = std::make_shared<ScriptedPublisher>("by_step", std::vector<std::string>{"charge_card"});
  registry.register_publisher(std::make_shared<ScriptedPublisher>("other", std::vector<std::string>{"x"}));
  registry.register_publisher(by_step);
  EXPECT_EQ(registry.get_for_step("charge_card", {test_support::declare("a.b")}), by_step);
}

TEST(PublisherRegistry, GetForStepPassesOverAnUnknownDeclaredPublisher) {
  PublisherRegistry registry;
  auto by_step = std::make_shared<ScriptedPublisher>("by_step", std::vector<std::string>{"charge_card"});
  registry.register_publisher(by_step);
  auto d = test_support::declare("a.b");
  d.publisher = "ghost";
  EXPECT_EQ(registry.get_for_step("charge_card", {d}), by_step);
}

TEST(PublisherRegistry, GetForStepFallsBackToTheGeneric) {
  PublisherRegistry registry;
  registry.register_publisher(std::make_shared<ScriptedPublisher>("other", std::vector<std::string>{"x"}));
  EXPECT_EQ(registry.get_for_step("charge_card"), registry.generic());
}

TEST(PublisherRegistry, TheFirstRegisteredPublisherForAStepWins) {
  PublisherRegistry registry;
  auto first = std::make_shared<ScriptedPublisher>("zeta", std::vector<std::string>{"charge_card"});
  registry.register_publisher(first);
  registry.register_publisher(std::make_shared<ScriptedPublisher>("alpha", std::vector<std::string>{"charge_card"}));
  EXPECT_EQ(registry.get_for_step("charge_card"), first);
}

TEST(PublisherRegistry, NamesAreSortedAndLeaveOutTheGeneric) {
  PublisherRegistry registry;
  registry.register_publisher(std::make_shared<ScriptedPublisher>("b"));
  registry.register_publisher(std::make_shared<ScriptedPublisher>("a"));
  EXPECT_EQ(registry.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(registry.size(), 2u);
}

TEST(PublisherRegistry, RegisteringWhileFrozenFailsSayingFrozen) {
  PublisherRegistry registry;
  registry.freeze();
  EXPECT_TRUE(registry.frozen());
  const auto message =
      registry_error([&] { registry.register_publisher(std::make_shared<ScriptedPublisher>("late")); });
  EXPECT_TRUE(contains(message, "frozen")) << message;
  EXPECT_TRUE(contains(message, "'late'")) << message;
}

TEST(PublisherRegistry, ClearingWhileFrozenFailsSayingFrozen) {
  PublisherRegistry registry;
  registry.register_publisher(std::make_shared<ScriptedPublisher>("a"));
  registry.freeze();
  const auto message = registry_error([&] { registry.clear(); });
  EXPECT_TRUE(contains(message, "frozen")) << message;
  EXPECT_EQ(registry.size(), 1u);
}

TEST(PublisherRegistry, LookupsStillWorkWhileFrozen) {
  PublisherRegistry registry;
  auto p = std::make_shared<ScriptedPublisher>("a");
  registry.register_publisher(p);
  registry.freeze();
  EXPECT_EQ(registry.get_strict("a"), p);
}

TEST(PublisherRegistry, UnfreezeAllowsRegisteringAndClearingAgain) {
  PublisherRegistry registry;
  registry.freeze();
  registry.unfreeze();
  EXPECT_FALSE(registry.frozen());
  registry.register_publisher(std::make_shared<ScriptedPublisher>("a"));
  registry.clear();
  EXPECT_TRUE(registry.names().empty());
  EXPECT_EQ(registry.get("a"), nullptr);
}

TEST(PublisherRegistry, ClearAlsoForgetsStepAssignments) {
  PublisherRegistry registry;
  registry.register_publisher(std::make_shared<ScriptedPublisher>("a", std::vector<std::string>{"s"}));
  registry.clear();
  EXPECT_EQ(registry.get_for_step("s"), registry.generic());
}

TEST(PublisherRegistry, ValidateRequiredListsEveryMissingNameAndTheRegistered) {
  PublisherRegistry registry;
  registry.register_publisher(std::make_shared<ScriptedPublisher>("orders"));
  const auto message = registry_error(
      [&] { registry.validate_required({"orders", "shipping", "default", "billing", "shipping"}); });
  EXPECT_EQ(message, "missing publishers: 'billing', 'shipping' (registered: orders)");
}

TEST(PublisherRegistry, ValidateRequiredPassesWhenAllArePresentOrDefault) {
  PublisherRegistry registry;
  registry.register_publisher(std::make_shared<ScriptedPublisher>("orders"));
  EXPECT_NO_THROW(registry.validate_required({"orders", "default", ""}));
}

TEST(PublisherRegistry, TheProcessWideInstanceIsOneObject) {
  EXPECT_EQ(&PublisherRegistry::instance(), &PublisherRegistry::instance());
}

TEST(PublisherRegistry, ConcurrentRegistrationAndLookupIsSafe) {
  PublisherRegistry registry;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        const auto name = "p" + std::to_string(t) + "_" + std::to_string(i);
        registry.register_publisher(
            std::make_shared<ScriptedPublisher>(name, std::vector<std::string>{"step"}));
        EXPECT_NE(registry.get(name), nullptr);
        EXPECT_NE(registry.get_for_step("step"), nullptr);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(registry.size(), 400u);
}

}  // namespace
}  // namespace herald
