#include <herald/events/error.hpp>
#include <herald/events/pattern.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using herald::Pattern;
using herald::PatternError;
using herald::PatternSet;

namespace {

struct Case {
  const char* pattern;
  const char* name;
  bool matches;
};

// DESIGN.md decision 3: AMQP topic semantics, whole names, token by token.
const std::vector<Case> kCases = {
    {"payment.processed", "payment.processed", true},
    {"payment.processed", "payment.processed.late", false},
    {"payment.processed", "payment", false},
    {"payment.processed", "payment.processe", false},
    {"payment.*", "payment.processed", true},
    {"payment.*", "payment", false},
    {"payment.*", "payment.card.declined", false},
    {"payment.*", "paymentx.processed", false},
    {"*.processed", "payment.processed", true},
    {"*.processed", "processed", false},
    {"*.processed", "a.b.processed", false},
    {"*.*", "a.b", true},
    {"*.*", "a", false},
    {"*.*", "a.b.c", false},
    {"payment.#", "payment", true},
    {"payment.#", "payment.processed", true},
    {"payment.#", "payment.card.declined", true},
    {"payment.#", "payments.processed", false},
    {"payment.**", "payment.card.declined", true},
    {"payment.**", "payment", true},
    {"#", "anything.at.all", true},
    {"#", "x", true},
    {"**", "x.y", true},
    {"*", "x", true},
    {"*", "x.y.z", true},  // "*" alone: every event (tasker-core compatibility)
    {"#.declined", "declined", true},
    {"#.declined", "payment.card.declined", true},
    {"#.declined", "payment.card.declinedx", false},
    {"a.#.b", "a.b", true},
    {"a.#.b", "a.x.b", true},
    {"a.#.b", "a.x.y.b", true},
    {"a.#.b", "a.xb", false},
    {"a.#.b", "ab", false},
    {"a.*.b", "a.b", false},
    {"a.*.b", "a.x.b", true},
    {"a.*.#", "a", false},
    {"a.*.#", "a.x", true},
    {"a.*.#", "a.x.y.z", true},
    {"order-v2.fulfilled_ok", "order-v2.fulfilled_ok", true},
    {"Order.Fulfilled", "order.fulfilled", false},  // case sensitive
    {"#.#", "a", true},
    {"*.#.*", "a", false},
    {"*.#.*", "a.b", true},
    {"*.#.*", "a.b.c.d", true},
};

}  // namespace

TEST(PatternTable, EveryNamePatternPairMatchesAsDesigned) {
  ASSERT_GE(kCases.size(), 30u);
  for (const auto& c : kCases) {
    const auto p = Pattern::compile(c.pattern);
    EXPECT_EQ(p.matches(c.name), c.matches) << "pattern '" << c.pattern << "' name '" << c.name << "'";
  }
}

TEST(PatternTable, PatternSetAgreesWithSinglePatternsForEveryCase) {
  std::vector<std::pair<Pattern, std::size_t>> entries;
  for (std::size_t i = 0; i < kCases.size(); ++i) {
    entries.emplace_back(Pattern::compile(kCases[i].pattern), i);
  }
  const PatternSet set(entries);
  for (std::size_t i = 0; i < kCases.size(); ++i) {
    const auto owners = set.match(kCases[i].name);
    const bool found = std::find(owners.begin(), owners.end(), i) != owners.end();
    EXPECT_EQ(found, kCases[i].matches) << kCases[i].pattern << " vs " << kCases[i].name;
  }
}

TEST(PatternErrors, InvalidPatternsAreRejectedWithThePatternNamed) {
  const std::vector<std::string> bad = {"",       "payment.",  ".payment", "a..b", "pay*",
                                        "pay#ment", "a.b c",   "a/b",      "*a",   "a.**b",
                                        "é.x"};
  for (const auto& text : bad) {
    try {
      Pattern::compile(text);
      ADD_FAILURE() << "pattern '" << text << "' was accepted";
    } catch (const PatternError& e) {
      EXPECT_EQ(e.pattern(), text);
      EXPECT_NE(std::string(e.what()).find("'" + text + "'"), std::string::npos) << e.what();
    }
  }
}

TEST(PatternErrors, WildcardInsideATokenSaysWildcardsMustBeWholeTokens) {
  try {
    Pattern::compile("payment.proc*");
    FAIL();
  } catch (const PatternError& e) {
    EXPECT_NE(std::string(e.what()).find("whole tokens"), std::string::npos) << e.what();
  }
}

TEST(PatternPrefix, LiteralPrefixIsWhatEveryMatchingNameStartsWith) {
  EXPECT_EQ(Pattern::compile("payment.*").literal_prefix(), "payment.");
  EXPECT_EQ(Pattern::compile("payment.#").literal_prefix(), "payment");
  EXPECT_EQ(Pattern::compile("payment.card.#.x").literal_prefix(), "payment.card.");
  EXPECT_EQ(Pattern::compile("#").literal_prefix(), "");
  EXPECT_EQ(Pattern::compile("*").literal_prefix(), "");
  EXPECT_EQ(Pattern::compile("*.processed").literal_prefix(), "");
  EXPECT_EQ(Pattern::compile("order.fulfilled").literal_prefix(), "order.fulfilled");
}

TEST(PatternPrefix, EveryMatchingNameInTheTableStartsWithThePrefix) {
  for (const auto& c : kCases) {
    const auto p = Pattern::compile(c.pattern);
    if (c.matches) {
      EXPECT_EQ(std::string(c.name).rfind(p.literal_prefix(), 0), 0u) << c.pattern << " " << c.name;
    }
  }
}

TEST(PatternKinds, LiteralAndEverythingAreRecognised) {
  EXPECT_TRUE(Pattern::compile("a.b").is_literal());
  EXPECT_FALSE(Pattern::compile("a.*").is_literal());
  EXPECT_TRUE(Pattern::compile("#").matches_everything());
  EXPECT_TRUE(Pattern::compile("*").matches_everything());
  EXPECT_TRUE(Pattern::compile("**").matches_everything());
  EXPECT_FALSE(Pattern::compile("*.*").matches_everything());
}

TEST(PatternSetMatching, AnOwnerWithSeveralMatchingPatternsIsReportedOnce) {
  std::vector<std::pair<Pattern, std::size_t>> entries = {
      {Pattern::compile("payment.*"), 7},
      {Pattern::compile("payment.processed"), 7},
      {Pattern::compile("#"), 7},
      {Pattern::compile("order.*"), 3},
  };
  const PatternSet set(entries);
  EXPECT_EQ(set.match("payment.processed"), (std::vector<std::size_t>{7}));
  EXPECT_EQ(set.match("order.created"), (std::vector<std::size_t>{3, 7}));
}

TEST(PatternSetMatching, ManyWildcardPatternsMatchOnlyTheirOwners) {
  std::vector<std::pair<Pattern, std::size_t>> entries;
  for (std::size_t i = 0; i < 1000; ++i) {
    entries.emplace_back(Pattern::compile("svc" + std::to_string(i) + ".*.done"), i);
  }
  const PatternSet set(entries);
  EXPECT_EQ(set.match("svc417.job.done"), (std::vector<std::size_t>{417}));
  EXPECT_TRUE(set.match("svc417.done").empty());
}

TEST(CachedPatternSetMatching, RepeatedLookupsAreServedFromTheCache) {
  std::vector<std::pair<Pattern, std::size_t>> entries = {{Pattern::compile("a.*"), 0}};
  const herald::CachedPatternSet cached{PatternSet(entries), 4};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(cached.match("a.b"), (std::vector<std::size_t>{0}));
  EXPECT_EQ(cached.cache_misses(), 1u);
  EXPECT_EQ(cached.cached_names(), 1u);
}

TEST(CachedPatternSetMatching, AFullCacheStillAnswersCorrectlyAndStaysBounded) {
  std::vector<std::pair<Pattern, std::size_t>> entries = {{Pattern::compile("a.*"), 0},
                                                          {Pattern::compile("#.b"), 1}};
  const herald::CachedPatternSet cached{PatternSet(entries), 4};
  std::vector<std::size_t> scratch;
  for (int i = 0; i < 100; ++i) {
    const auto name = "n" + std::to_string(i) + ".b";
    const auto owners = cached.match(name, scratch);
    EXPECT_EQ(std::vector<std::size_t>(owners.begin(), owners.end()), (std::vector<std::size_t>{1}))
        << name;
  }
  EXPECT_EQ(cached.cached_names(), 4u);  // the bound holds: the rest were answered uncached
  EXPECT_EQ(cached.uncached_lookups(), 96u);
  EXPECT_EQ(cached.match("a.b"), (std::vector<std::size_t>{0, 1}));
  EXPECT_EQ(cached.match("n0.b"), (std::vector<std::size_t>{1}));  // cached answer still right
}

TEST(CachedPatternSetMatching, ConcurrentLookupsAgreeWithThePatternSet) {
  std::vector<std::pair<Pattern, std::size_t>> entries = {{Pattern::compile("a.*"), 0},
                                                          {Pattern::compile("#.z"), 1},
                                                          {Pattern::compile("a.b"), 2}};
  const herald::CachedPatternSet cached{PatternSet(entries), 64};
  const PatternSet reference(entries);
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::size_t> scratch;
      for (int i = 0; i < 2000; ++i) {
        const auto name = (i % 3 == 0 ? "a." : "x.") + std::to_string((i * 7 + t) % 97) +
                          (i % 2 ? ".z" : "");
        const auto owners = cached.match(name, scratch);
        if (std::vector<std::size_t>(owners.begin(), owners.end()) != reference.match(name)) {
          mismatches.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_LE(cached.cached_names(), 64u);
}

TEST(EventNames, ValidNamesPassAndInvalidOnesNameTheOffendingCharacter) {
  EXPECT_NO_THROW(herald::validate_event_name("payment.processed"));
  EXPECT_NO_THROW(herald::validate_event_name("a_b-c.D9"));
  try {
    herald::validate_event_name("payment processed");
    FAIL();
  } catch (const herald::EventNameError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'payment processed'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("' '"), std::string::npos) << msg;
  }
  EXPECT_THROW(herald::validate_event_name(""), herald::EventNameError);
  EXPECT_THROW(herald::validate_event_name("a..b"), herald::EventNameError);
  EXPECT_THROW(herald::validate_event_name("a.*"), herald::EventNameError);
  EXPECT_THROW(herald::validate_event_name(std::string(300, 'a')), herald::EventNameError);
  EXPECT_FALSE(herald::is_valid_event_name("a."));
  EXPECT_TRUE(herald::is_valid_event_name("a.b"));
}
