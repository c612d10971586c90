// The per-event hook rules of subscriber.hpp, run through a SubscriberRegistry on a real bus.
#include "fn_subscriber.hpp"

#include <herald/events/error.hpp>
#include <herald/subscribers/registry.hpp>

#include <gtest/gtest.h>
#include <wait_for.hpp>

#include <latch>

using herald::DomainEvent;
using herald::EventBus;
using herald::EventPtr;
using herald::SubscriberRegistry;
using herald::SubscriberResult;
using herald::testing::FnSubscriber;
using herald::testing::fn;
using herald::testing::make;
using herald::testing::wait_for;
using namespace std::chrono_literals;

namespace {

using Calls = std::vector<std::string>;
}  // namespace

TEST(SubscriberHooks, RunInOrderBeforeHandleThenAfterHandle) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.one"));
  bus.publish(make("a.two"));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(s->log.calls(), (Calls{"before:a.one", "handle:a.one", "after:a.one:ok", "before:a.two",
                                   "handle:a.two", "after:a.two:ok"}));
  EXPECT_EQ(registry.stats("s")->handled, 2u);
}

TEST(SubscriberHooks, BeforeHandleReturningFalseSkipsHandleAndAfterHandle) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  s->on_before = [](const EventPtr& e) { return e->event_name() != "a.skip"; };
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.skip"));
  bus.publish(make("a.keep"));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(s->log.calls(),
            (Calls{"before:a.skip", "before:a.keep", "handle:a.keep", "after:a.keep:ok"}));
  const auto stats = registry.stats();
  EXPECT_EQ(stats["s"]["skipped"], 1);
  EXPECT_EQ(stats["s"]["handled"], 2);
  EXPECT_EQ(stats["s"]["failed"], 0);
}

TEST(SubscriberHooks, AThrowingHandleCallsOnHandleErrorAndNotAfterHandle) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  s->on_handle = [](const EventPtr&) -> SubscriberResult { throw std::runtime_error("boom"); };
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.one"));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(s->log.calls(), (Calls{"before:a.one", "handle:a.one", "error:a.one:handle:boom"}));
  const auto stats = registry.stats("s");
  EXPECT_EQ(stats->failed, 1u);
  EXPECT_EQ(stats->handled, 0u);
  EXPECT_NE(stats->last_error.find("boom"), std::string::npos) << stats->last_error;
}

TEST(SubscriberHooks, OnHandleErrorReceivesTheExceptionAndTheStageThatThrewIt) {
  EventBus bus({.dispatcher_threads = 1});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  s->on_before = [](const EventPtr& e) -> bool {
    if (e->event_name() == "a.before") throw herald::ValidationError("amount", "bad");
    return true;
  };
  s->on_after = [](const EventPtr& e, const SubscriberResult&) {
    if (e->event_name() == "a.after") throw 42;  // not a std::exception
  };
  bool saw_validation_error = false;
  s->on_error = [&](const EventPtr& e, const herald::HandleError& err) {
    if (e->event_name() != "a.before") return;
    try {
      std::rethrow_exception(err.exception);
    } catch (const herald::ValidationError& v) {
      saw_validation_error = v.field() == "amount";
    }
  };
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.before"));
  bus.publish(make("a.after"));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(s->log.calls(),
            (Calls{"before:a.before", "error:a.before:before_handle:amount: bad", "before:a.after",
                   "handle:a.after", "after:a.after:ok",
                   "error:a.after:after_handle:unknown exception"}));
  EXPECT_TRUE(saw_validation_error);
  EXPECT_EQ(registry.stats("s")->failed, 2u);
}

TEST(SubscriberHooks, AFailureResultIsCountedFailedAndAfterHandleStillRuns) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  s->on_handle = [](const EventPtr&) { return SubscriberResult::failure("downstream said no"); };
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.one"));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(s->log.calls(), (Calls{"before:a.one", "handle:a.one", "after:a.one:failed"}));
  const auto stats = registry.stats("s");
  EXPECT_EQ(stats->failed, 1u);
  EXPECT_EQ(stats->last_error, "downstream said no");
}

TEST(SubscriberHooks, AnExceptionFromOnHandleErrorIsContained) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  s->on_handle = [](const EventPtr& e) -> SubscriberResult {
    if (e->event_name() == "a.bad") throw std::runtime_error("boom");
    return {};
  };
  s->on_error = [](const EventPtr&, const herald::HandleError&) {
    throw std::runtime_error("error hook broke too");
  };
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.bad"));
  bus.publish(make("a.good"));
  ASSERT_TRUE(bus.drain(60s));
  const auto stats = registry.stats("s");
  EXPECT_EQ(stats->failed, 1u);
  EXPECT_EQ(stats->handled, 1u);
}

TEST(SubscriberHooks, AThrowingSubscriberAffectsNeitherOthersNorItsOwnLaterEvents) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto bad = fn("bad");
  auto good = fn("good");
  std::atomic<int> bad_handled{0};
  bad->on_handle = [&](const EventPtr& e) -> SubscriberResult {
    if (e->payload()["n"].get<int>() % 2 == 0) throw std::runtime_error("even numbers hurt");
    ++bad_handled;
    return {};
  };
  registry.register_subscriber(bad);
  registry.register_subscriber(good);
  registry.start_all();
  for (int i = 0; i < 100; ++i) bus.publish(make("work.item", i));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(bad_handled.load(), 50);
  EXPECT_EQ(registry.stats("bad")->failed, 50u);
  EXPECT_EQ(registry.stats("bad")->handled, 50u);
  EXPECT_EQ(registry.stats("good")->handled, 100u);
  EXPECT_EQ(registry.stats("good")->failed, 0u);
}

TEST(SubscriberHooks, OverlappingPatternsDeliverAnEventOnce) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s", {"payment.*", "payment.processed", "payment.#", "#"});
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("payment.processed"));
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(s->log.calls(), (Calls{"before:payment.processed", "handle:payment.processed",
                                   "after:payment.processed:ok"}));
  EXPECT_EQ(registry.stats("s")->received, 1u);
}

TEST(SubscriberHooks, AHandlerSlowerThanItsThresholdIsCountedSlow) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = fn("s");
  s->options.slow_threshold = 5ms;
  s->on_handle = [](const EventPtr& e) {
    // A slow handler is the behaviour under test, not a wait for a condition.
    if (e->event_name() == "a.slow") std::this_thread::sleep_for(30ms);
    return SubscriberResult{};
  };
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.slow"));
  bus.publish(make("a.fast"));
  ASSERT_TRUE(bus.drain(60s));
  const auto stats = registry.stats("s");
  EXPECT_EQ(stats->slow, 1u);
  EXPECT_EQ(stats->handled, 2u);
}

namespace {

// A batch-capable subscriber (Subscriber::handles_batches): logs each handle_batch call and its
// size; an event named *.fail is marked failed, an event named *.throw makes the call throw.
// The first call waits for `release`, so the test can queue events behind it.
class BatchFn : public FnSubscriber {
 public:
  using FnSubscriber::FnSubscriber;
  std::latch release{1};
  std::atomic<bool> first_entered{false};
  bool handles_batches() const override { return true; }
  SubscriberResult handle_batch(std::span<const EventPtr> events,
                                std::span<herald::HandleOutcome> outcomes) override {
    log.add("batch:" + std::to_string(events.size()));
    if (!first_entered.exchange(true)) release.wait();
    SubscriberResult result;
    for (std::size_t i = 0; i < events.size(); ++i) {
      const auto& name = events[i]->event_name();
      if (name.ends_with(".throw")) throw std::runtime_error("batch boom");
      if (name.ends_with(".fail")) {
        outcomes[i] = herald::HandleOutcome::failed;
        result = SubscriberResult::failure("bad event " + name);
      }
    }
    return result;
  }
};

}  // namespace

TEST(SubscriberBatchHooks, BeforeHandlePerEventThenOneBatchCallThenAfterHandlePerEvent) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = std::make_shared<BatchFn>("s", std::vector<std::string>{"#"});
  s->on_before = [](const EventPtr& e) { return e->event_name() != "a.skip"; };
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.first"));
  ASSERT_TRUE(wait_for([&] { return s->first_entered.load(); }));
  for (const char* name : {"a.skip", "a.one", "a.fail", "a.two"}) bus.publish(make(name));
  s->release.count_down();  // the four queued behind the first call go in one batch
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(s->log.calls(),
            (Calls{"before:a.first", "batch:1", "after:a.first:ok", "before:a.skip", "before:a.one",
                   "before:a.fail", "before:a.two", "batch:3", "after:a.one:ok", "after:a.fail:failed",
                   "after:a.two:ok"}));
  const auto stats = registry.stats("s");
  EXPECT_EQ(stats->handled, 4u);  // a skipped event counts as handled (and as skipped)
  EXPECT_EQ(stats->failed, 1u);
  EXPECT_NE(stats->last_error.find("bad event a.fail"), std::string::npos) << stats->last_error;
  EXPECT_EQ(registry.stats()["s"]["skipped"], 1);
}

TEST(SubscriberBatchHooks, AThrowingBatchFailsEachOfItsEventsWithOnHandleError) {
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto s = std::make_shared<BatchFn>("s", std::vector<std::string>{"#"});
  registry.register_subscriber(s);
  registry.start_all();
  bus.publish(make("a.first"));
  ASSERT_TRUE(wait_for([&] { return s->first_entered.load(); }));
  for (const char* name : {"a.one", "a.throw"}) bus.publish(make(name));
  s->release.count_down();
  ASSERT_TRUE(bus.drain(60s));
  EXPECT_EQ(s->log.calls(),
            (Calls{"before:a.first", "batch:1", "after:a.first:ok", "before:a.one", "before:a.throw",
                   "batch:2", "error:a.one:handle:batch boom", "error:a.throw:handle:batch boom"}));
  const auto stats = registry.stats("s");
  EXPECT_EQ(stats->handled, 1u);
  EXPECT_EQ(stats->failed, 2u);
  EXPECT_NE(stats->last_error.find("batch boom"), std::string::npos) << stats->last_error;
}
