#include "publishers_test_support.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace herald {
namespace {

using nlohmann::json;
using test_support::Collector;
using test_support::RecordingTransport;
using test_support::ScriptedPublisher;
using test_support::completion;
using test_support::declare;

BusOptions inline_bus() {
  BusOptions options;
  options.inline_dispatch = true;  // handlers run inside publish(): no waiting in tests
  return options;
}

class PublishingPipelineTest : public ::testing::Test {
 protected:
  std::shared_ptr<ScriptedPublisher> add_publisher(std::string name,
                                                   std::vector<std::string> steps = {}) {
    auto p = std::make_shared<ScriptedPublisher>(std::move(name), std::move(steps));
    registry.register_publisher(p);
    return p;
  }

  EventBus bus{inline_bus()};
  Collector received;
  Subscription subscription =
      bus.subscribe({"#"}, [this](const EventPtr& event) { received.add(event); });
  RecordingTransport transport;
  PublisherRegistry registry;
  EventRouter router{&bus, &transport};
  PublishingPipeline pipeline{registry, router};
};

TEST_F(PublishingPipelineTest, PublishesTheStepResultAsTheEventPayloadOnTheBus) {
  auto result = pipeline.publish(completion(), {declare("payment.processed")});
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result.published.size(), 1u);
  const auto& event = result.published[0];
  EXPECT_EQ(event->event_name(), "payment.processed");
  EXPECT_EQ(event->payload(), (json{{"amount", 42}, {"currency", "EUR"}}));
  EXPECT_TRUE(event->execution_result().success);
  ASSERT_EQ(received.events().size(), 1u);
  EXPECT_EQ(received.events()[0], event);
  EXPECT_TRUE(transport.sent().empty());
}

TEST_F(PublishingPipelineTest, BaseMetadataComesFromTheStepAndNamesThePublisher) {
  auto result = pipeline.publish(completion(), {declare("payment.processed")});
  ASSERT_EQ(result.published.size(), 1u);
  const auto& m = result.published[0]->metadata();
  EXPECT_EQ(m.task_uuid, "task-1");
  EXPECT_EQ(m.step_uuid, "step-1");
  EXPECT_EQ(m.step_name, "charge_card");
  EXPECT_EQ(m.namespace_name, "payments");
  EXPECT_EQ(m.correlation_id, "corr-1");
  EXPECT_EQ(m.fired_by, "default");
  EXPECT_FALSE(m.fired_at.empty());
  EXPECT_EQ(m.extra.at("publisher"), "default");
  EXPECT_EQ(m.extra.at("event_version"), "1.0");
}

TEST_F(PublishingPipelineTest, MetadataMergesBaseThenStepThenAdditionalWithLaterKeysWinning) {
  auto p = add_publisher("payments");
  p->metadata = [](const StepEventContext&) {
    return json{{"region", "eu-west"}, {"source", "publisher"}, {"correlation_id", "from-publisher"}};
  };
  auto c = completion();
  c.metadata = {{"source", "step"}, {"tenant", "acme"}, {"step_name", "renamed_by_step"}};
  auto d = declare("payment.processed");
  d.publisher = "payments";
  auto result = pipeline.publish(c, {d});
  ASSERT_EQ(result.published.size(), 1u) << result.to_json().dump();
  const auto& m = result.published[0]->metadata();
  EXPECT_EQ(m.step_name, "renamed_by_step");        // step metadata over base
  EXPECT_EQ(m.correlation_id, "from-publisher");    // additional over base
  EXPECT_EQ(m.extra.at("source"), "publisher");     // additional over step
  EXPECT_EQ(m.extra.at("tenant"), "acme");          // step only
  EXPECT_EQ(m.extra.at("region"), "eu-west");       // additional only
  EXPECT_EQ(m.fired_by, "payments");
}

TEST_F(PublishingPipelineTest, PublisherAndEventVersionAreThePipelinesOwnAndAlwaysWin) {
  auto p = add_publisher("payments", {"charge_card"});
  p->metadata = [](const StepEventContext&) {
    return json{{"publisher", "spoofed"}, {"event_version", "9"}};
  };
  auto result = pipeline.publish(completion(), {declare("payment.processed")});
  ASSERT_EQ(result.published.size(), 1u);
  EXPECT_EQ(result.published[0]->metadata().extra.at("publisher"), "payments");
  EXPECT_EQ(result.published[0]->metadata().extra.at("event_version"), "1.0");
}

TEST_F(PublishingPipelineTest, DeclarationsWhoseConditionDoesNotHoldAreSkippedAsCondition) {
  auto on_failure = declare("payment.failed");
  on_failure.condition = PublicationCondition::failure;
  auto result = pipeline.publish(completion(true), {on_failure, declare("payment.processed")});
  EXPECT_TRUE(result.ok());
  EXPECT_EQ(result.skipped, (std::vector<SkippedEvent>{{"payment.failed", herald::SkipReason::condition}}));
  EXPECT_EQ(received.names(), std::vector<std::string>{"payment.processed"});
}

TEST_F(PublishingPipelineTest, ShouldPublishFalseSkipsTheEvent) {
  auto p = add_publisher("picky", {"charge_card"});
  p->should = [](const StepEventContext& ctx) { return ctx.event_name() != "payment.noisy"; };
  auto result = pipeline.publish(completion(), {declare("payment.noisy"), declare("payment.ok")});
  EXPECT_TRUE(result.ok());
  EXPECT_EQ(result.skipped, (std::vector<SkippedEvent>{{"payment.noisy", herald::SkipReason::should_publish}}));
  EXPECT_EQ(received.names(), std::vector<std::string>{"payment.ok"});
}

TEST_F(PublishingPipelineTest, AThrowingTransformPayloadCallsOnPublishErrorAndOthersStillPublish) {
  auto p = add_publisher("payments", {"charge_card"});
  p->transform = [](const StepEventContext& ctx) -> json {
    if (ctx.event_name() == "payment.broken") throw std::runtime_error("cannot shape payload");
    return ctx.result();
  };
  auto result = pipeline.publish(
      completion(), {declare("payment.first"), declare("payment.broken"), declare("payment.last")});
  EXPECT_EQ(received.names(), (std::vector<std::string>{"payment.first", "payment.last"}));
  ASSERT_EQ(result.failed.size(), 1u);
  EXPECT_EQ(result.failed[0].stage, herald::PublishStage::transform_payload);
  EXPECT_EQ(result.failed[0].event_name, "payment.broken");
  EXPECT_EQ(result.failed[0].message, "cannot shape payload");
  EXPECT_EQ(result.failed[0].publisher, "payments");
  ASSERT_EQ(p->failures().size(), 1u);
  EXPECT_EQ(p->failures()[0].stage, herald::PublishStage::transform_payload);
  EXPECT_THROW(std::rethrow_exception(p->failures()[0].exception), std::runtime_error);
}

TEST_F(PublishingPipelineTest, BeforePublishFalseSkipsQuietly) {
  auto p = add_publisher("gate", {"charge_card"});
  p->before = [](const StepEventContext&, const EventPtr& event) {
    return event->event_name() != "payment.held";
  };
  auto result = pipeline.publish(completion(), {declare("payment.held")});
  EXPECT_TRUE(result.ok());
  EXPECT_TRUE(result.published.empty());
  EXPECT_EQ(result.skipped, (std::vector<SkippedEvent>{{"payment.held", herald::SkipReason::before_publish}}));
  EXPECT_TRUE(received.events().empty());
  EXPECT_TRUE(p->after_published().empty());
  EXPECT_TRUE(p->failures().empty());
}

TEST_F(PublishingPipelineTest, BeforePublishSeesTheEventThatIsThenRouted) {
  auto p = add_publisher("gate", {"charge_card"});
  EventPtr seen;
  p->before = [&seen](const StepEventContext&, const EventPtr& event) {
    seen = event;
    return true;
  };
  auto result = pipeline.publish(completion(), {declare("payment.processed")});
  ASSERT_EQ(result.published.size(), 1u);
  EXPECT_EQ(seen, result.published[0]);
}

TEST_F(PublishingPipelineTest, AfterPublishRunsWithThePublishedEvent) {
  auto p = add_publisher("payments", {"charge_card"});
  auto result = pipeline.publish(completion(), {declare("payment.processed")});
  ASSERT_EQ(p->after_published().size(), 1u);
  EXPECT_EQ(p->after_published()[0], result.published.at(0));
}

TEST_F(PublishingPipelineTest, AThrowingAfterPublishLeavesTheEventPublishedAndReportsIt) {
  auto p = add_publisher("payments", {"charge_card"});
  p->after = [](const EventPtr&) { throw std::runtime_error("audit down"); };
  auto result = pipeline.publish(completion(), {declare("payment.processed")});
  EXPECT_EQ(result.published.size(), 1u);
  ASSERT_EQ(result.failed.size(), 1u);
  EXPECT_EQ(result.failed[0].stage, herald::PublishStage::after_publish);
  EXPECT_EQ(received.events().size(), 1u);
}

TEST_F(PublishingPipelineTest, ASchemaFailureReachesOnPublishErrorWithThePath) {
  auto p = add_publisher("payments", {"charge_card"});
  p->transform = [](const StepEventContext&) { return json{{"amount", "42"}}; };
  auto d = declare("payment.processed");
  d.schema = PayloadSchema::compile({{"properties", {{"amount", {{"type", "number"}}}}}});
  auto result = pipeline.publish(completion(), {d});
  EXPECT_TRUE(result.published.empty());
  EXPECT_TRUE(received.events().empty());
  ASSERT_EQ(p->failures().size(), 1u);
  EXPECT_EQ(p->failures()[0].stage, herald::PublishStage::schema);
  EXPECT_EQ(p->failures()[0].message, "/amount: expected number, got string");
  EXPECT_THROW(std::rethrow_exception(p->failures()[0].exception), PayloadSchemaError);
}

TEST_F(PublishingPipelineTest, APayloadThatMatchesItsSchemaIsPublished) {
  auto d = declare("payment.processed");
  d.schema = PayloadSchema::compile({{"required", {"amount"}}});
  EXPECT_EQ(pipeline.publish(completion(), {d}).published.size(), 1u);
}

TEST_F(PublishingPipelineTest, AThrowingOnPublishErrorIsContained) {
  auto p = add_publisher("payments", {"charge_card"});
  p->transform = [](const StepEventContext&) -> json { throw std::runtime_error("first"); };
  p->on_error = [](const PublishFailure&) { throw std::runtime_error("the error hook fails too"); };
  PublishResult result;
  EXPECT_NO_THROW(result = pipeline.publish(completion(), {declare("a.one"), declare("a.two")}));
  EXPECT_EQ(result.failed.size(), 2u);
  EXPECT_EQ(p->failures().size(), 2u);
  EXPECT_EQ(pipeline.stats().at("hook_errors"), 2);
}

TEST_F(PublishingPipelineTest, ANonStandardExceptionIsReportedToo) {
  auto p = add_publisher("payments", {"charge_card"});
  p->should = [](const StepEventContext&) -> bool { throw 42; };
  auto result = pipeline.publish(completion(), {declare("a.b")});
  ASSERT_EQ(result.failed.size(), 1u);
  EXPECT_EQ(result.failed[0].stage, herald::PublishStage::should_publish);
  EXPECT_NE(result.failed[0].message.find("unknown exception"), std::string::npos);
}

TEST_F(PublishingPipelineTest, AdditionalMetadataThatIsNotAnObjectIsAFailure) {
  auto p = add_publisher("payments", {"charge_card"});
  p->metadata = [](const StepEventContext&) { return json::array({1, 2}); };
  auto result = pipeline.publish(completion(), {declare("a.b")});
  ASSERT_EQ(result.failed.size(), 1u);
  EXPECT_EQ(result.failed[0].stage, herald::PublishStage::additional_metadata);
  EXPECT_EQ(result.failed[0].message, "additional_metadata: expected object, got array");
}

TEST_F(PublishingPipelineTest, ANonStringBaseFieldInStepMetadataIsABuildFailureNamingIt) {
  auto c = completion();
  c.metadata = {{"step_name", 5}};
  auto result = pipeline.publish(c, {declare("a.b")});
  ASSERT_EQ(result.failed.size(), 1u);
  EXPECT_EQ(result.failed[0].stage, herald::PublishStage::build_event);
  EXPECT_EQ(result.failed[0].message, "metadata.step_name: expected string, got number");
}

TEST_F(PublishingPipelineTest, AnInvalidEventNameInACodeBuiltDeclarationIsABuildFailure) {
  auto result = pipeline.publish(completion(), {declare("bad name"), declare("good.name")});
  ASSERT_EQ(result.failed.size(), 1u);
  EXPECT_EQ(result.failed[0].stage, herald::PublishStage::build_event);
  EXPECT_NE(result.failed[0].message.find("'bad name'"), std::string::npos);
  EXPECT_EQ(received.names(), std::vector<std::string>{"good.name"});
}

TEST_F(PublishingPipelineTest, TheDeclaredPublisherIsUsed) {
  add_publisher("by_step", {"charge_card"});
  auto declared = add_publisher("declared");
  auto d = declare("a.b");
  d.publisher = "declared";
  auto result = pipeline.publish(completion(), {d});
  ASSERT_EQ(result.published.size(), 1u);
  EXPECT_EQ(result.published[0]->metadata().fired_by, "declared");
  EXPECT_EQ(declared->after_published().size(), 1u);
}

TEST_F(PublishingPipelineTest, WithoutADeclaredPublisherThePublisherForTheStepIsUsed) {
  auto by_step = add_publisher("by_step", {"charge_card"});
  auto result = pipeline.publish(completion(), {declare("a.b")});
  ASSERT_EQ(result.published.size(), 1u);
  EXPECT_EQ(result.published[0]->metadata().fired_by, "by_step");
}

TEST_F(PublishingPipelineTest, AnUnknownDeclaredPublisherIsAFailureReportedToTheGeneric) {
  auto d = declare("a.b");
  d.publisher = "ghost";
  auto result = pipeline.publish(completion(), {d, declare("a.c")});
  ASSERT_EQ(result.failed.size(), 1u);
  EXPECT_EQ(result.failed[0].stage, herald::PublishStage::publisher);
  EXPECT_EQ(result.failed[0].publisher, "default");
  EXPECT_NE(result.failed[0].message.find("unknown publisher 'ghost'"), std::string::npos);
  EXPECT_EQ(received.names(), std::vector<std::string>{"a.c"});
}

TEST_F(PublishingPipelineTest, BroadcastSendsOneEventWithOneIdToTheBusAndTheTransport) {
  auto result = pipeline.publish(completion(), {declare("a.b", DeliveryMode::broadcast)});
  ASSERT_EQ(result.published.size(), 1u);
  ASSERT_EQ(received.events().size(), 1u);
  ASSERT_EQ(transport.sent().size(), 1u);
  EXPECT_EQ(received.events()[0], transport.sent()[0]);  // the same object
  EXPECT_EQ(received.events()[0]->event_id(), transport.sent()[0]->event_id());
  EXPECT_EQ(result.published[0], transport.sent()[0]);
}

TEST_F(PublishingPipelineTest, ZeromqModeSendsToTheTransportOnly) {
  auto result = pipeline.publish(completion(), {declare("a.b", DeliveryMode::zeromq)});
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(transport.sent().size(), 1u);
  EXPECT_TRUE(received.events().empty());
}

TEST_F(PublishingPipelineTest, ZeromqModeWithoutATransportIsAReportedFailure) {
  router.set_transport(nullptr);
  auto p = add_publisher("payments", {"charge_card"});
  auto result = pipeline.publish(completion(), {declare("a.remote", DeliveryMode::zeromq),
                                                declare("a.local")});
  ASSERT_EQ(result.failed.size(), 1u);
  EXPECT_EQ(result.failed[0].stage, herald::PublishStage::route);
  EXPECT_NE(result.failed[0].message.find("'a.remote'"), std::string::npos) << result.failed[0].message;
  EXPECT_NE(result.failed[0].message.find("zeromq"), std::string::npos) << result.failed[0].message;
  EXPECT_THROW(std::rethrow_exception(result.failed[0].exception), TransportError);
  EXPECT_EQ(p->failures().size(), 1u);
  EXPECT_EQ(received.names(), std::vector<std::string>{"a.local"});
}

TEST_F(PublishingPipelineTest, BroadcastWithoutATransportDeliversNothing) {
  router.set_transport(nullptr);
  auto result = pipeline.publish(completion(), {declare("a.b", DeliveryMode::broadcast)});
  ASSERT_EQ(result.failed.size(), 1u);
  EXPECT_TRUE(received.events().empty());
}

TEST_F(PublishingPipelineTest, DurableModeSendsToTheDurableRoadOnly) {
  RecordingTransport durable;
  router.set_durable(&durable);
  auto result = pipeline.publish(completion(), {declare("a.kept", DeliveryMode::durable)});
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(durable.sent().size(), 1u);
  EXPECT_EQ(durable.sent()[0], result.published[0]);
  EXPECT_TRUE(transport.sent().empty());
  EXPECT_TRUE(received.events().empty());
  EXPECT_EQ(pipeline.stats()["published_by_delivery_mode"]["durable"], 1);
  router.set_durable(nullptr);
}

TEST_F(PublishingPipelineTest, DurableModeWithoutADurableRoadIsAReportedFailureNamingTheConfiguration) {
  auto result = pipeline.publish(completion(), {declare("a.kept", DeliveryMode::durable), declare("a.local")});
  ASSERT_EQ(result.failed.size(), 1u);
  EXPECT_EQ(result.failed[0].stage, herald::PublishStage::route);
  EXPECT_NE(result.failed[0].message.find("transports.postgres"), std::string::npos) << result.failed[0].message;
  EXPECT_TRUE(transport.sent().empty());
  EXPECT_EQ(received.names(), std::vector<std::string>{"a.local"});
}

TEST_F(PublishingPipelineTest, BroadcastSendsOneEventToTheBusAndEveryConfiguredRoad) {
  RecordingTransport durable;
  router.set_durable(&durable);
  auto result = pipeline.publish(completion(), {declare("a.b", DeliveryMode::broadcast)});
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(received.events().size(), 1u);
  ASSERT_EQ(transport.sent().size(), 1u);
  ASSERT_EQ(durable.sent().size(), 1u);
  EXPECT_EQ(received.events()[0], transport.sent()[0]);  // one object, one event_id, three roads
  EXPECT_EQ(received.events()[0], durable.sent()[0]);
  // With the ZeroMQ road gone, broadcast still reaches the bus and the durable road.
  router.set_transport(nullptr);
  ASSERT_TRUE(pipeline.publish(completion(), {declare("a.c", DeliveryMode::broadcast)}).ok());
  EXPECT_EQ(durable.sent().size(), 2u);
  EXPECT_EQ(received.events().size(), 2u);
  // A road that refuses does not keep the event from the others; the failure says so.
  router.set_transport(&transport);
  transport.refuse(true);
  auto refused = pipeline.publish(completion(), {declare("a.d", DeliveryMode::broadcast)});
  ASSERT_EQ(refused.failed.size(), 1u);
  EXPECT_NE(refused.failed[0].message.find("delivered in process and on the other roads"), std::string::npos)
      << refused.failed[0].message;
  EXPECT_EQ(durable.sent().size(), 3u);
  EXPECT_EQ(received.events().size(), 3u);
  router.set_durable(nullptr);
}

TEST_F(PublishingPipelineTest, ATransportThatRefusesTheEventIsAFailureAtRoute) {
  transport.refuse(true);
  auto result = pipeline.publish(completion(), {declare("a.b", DeliveryMode::zeromq)});
  ASSERT_EQ(result.failed.size(), 1u);
  EXPECT_EQ(result.failed[0].stage, herald::PublishStage::route);
  EXPECT_NE(result.failed[0].message.find("refuses"), std::string::npos);
}

TEST_F(PublishingPipelineTest, AStoppedBusIsAFailureAtRoute) {
  (void)bus.stop();
  auto result = pipeline.publish(completion(), {declare("a.b")});
  ASSERT_EQ(result.failed.size(), 1u);
  EXPECT_EQ(result.failed[0].stage, herald::PublishStage::route);
  EXPECT_NE(result.failed[0].message.find("stopped"), std::string::npos);
}

TEST_F(PublishingPipelineTest, CountsPublishedSkippedAndFailedByNameModeAndPublisher) {
  auto p = add_publisher("payments", {"charge_card"});
  p->should = [](const StepEventContext& ctx) { return ctx.event_name() != "a.skip"; };
  auto on_failure = declare("a.never");
  on_failure.condition = PublicationCondition::failure;
  auto ghost = declare("a.ghost");
  ghost.publisher = "ghost";
  const std::vector<EventDeclaration> declarations = {
      declare("a.local"), declare("a.both", DeliveryMode::broadcast),
      declare("a.remote", DeliveryMode::zeromq), declare("a.skip"), on_failure, ghost};
  pipeline.publish(completion(), declarations);
  pipeline.publish(completion(), declarations);

  EXPECT_EQ(pipeline.published_count(), 6u);
  EXPECT_EQ(pipeline.skipped_count(), 4u);
  EXPECT_EQ(pipeline.failed_count(), 2u);
  const json stats = pipeline.stats();
  EXPECT_EQ(stats.at("published_by_event"), (json{{"a.local", 2}, {"a.both", 2}, {"a.remote", 2}}));
  EXPECT_EQ(stats.at("published_by_delivery_mode"),
            (json{{"in_process", 2}, {"zeromq", 2}, {"broadcast", 2}, {"durable", 0}}));
  EXPECT_EQ(stats.at("published_by_publisher"), (json{{"payments", 6}}));
  EXPECT_EQ(stats.at("skipped_by_reason"),
            (json{{"condition", 2}, {"should_publish", 2}, {"before_publish", 0}}));
  EXPECT_EQ(stats.at("failed_by_stage"), (json{{"publisher", 2}}));
}

TEST_F(PublishingPipelineTest, TheResultRendersAsJson) {
  auto result = pipeline.publish(completion(), {declare("a.b")});
  const json j = result.to_json();
  EXPECT_EQ(j.at("published").at(0).at("event_name"), "a.b");
  EXPECT_EQ(j.at("published").at(0).at("event_id"), result.published[0]->event_id());
  EXPECT_TRUE(j.at("failed").empty());
}

TEST(PublishingPipelineThreads, ConcurrentPublishesAreAllDeliveredAndCounted) {
  BusOptions options;
  options.dispatcher_threads = 2;
  EventBus bus(options);
  std::atomic<int> delivered{0};
  auto sub = bus.subscribe({"order.#"}, [&](const EventPtr&) { delivered.fetch_add(1); });
  RecordingTransport transport;
  PublisherRegistry registry;
  auto p = std::make_shared<ScriptedPublisher>("orders", std::vector<std::string>{"charge_card"});
  registry.register_publisher(p);
  registry.freeze();
  EventRouter router(&bus, &transport);
  PublishingPipeline pipeline(registry, router);

  constexpr int kThreads = 4;
  constexpr int kPerThread = 250;
  const std::vector<EventDeclaration> declarations = {
      declare("order.placed"), declare("order.shipped", DeliveryMode::broadcast)};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) pipeline.publish(completion(), declarations);
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(bus.drain(std::chrono::seconds(30)));

  constexpr int kPublishes = kThreads * kPerThread;
  EXPECT_EQ(delivered.load(), 2 * kPublishes);
  EXPECT_EQ(transport.sent().size(), static_cast<std::size_t>(kPublishes));
  EXPECT_EQ(p->after_published().size(), static_cast<std::size_t>(2 * kPublishes));
  EXPECT_EQ(pipeline.published_count(), static_cast<std::uint64_t>(2 * kPublishes));
  EXPECT_EQ(pipeline.stats().at("published_by_event").at("order.placed"), kPublishes);
}

TEST(EventRouterAlone, WithoutABusInProcessDeliveryFailsNamingTheEvent) {
  EventRouter router(nullptr);
  auto event = DomainEvent::create("a.b");
  try {
    router.route(event, DeliveryMode::in_process);
    FAIL() << "expected TransportError";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("'a.b'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("in_process"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace herald
