// quickstart: a step completion becomes domain events delivered to subscribers, in one process.
//
//   build/examples/quickstart
//
// A publisher shapes the payload of "payment.processed"; two subscribers receive it, one by an
// exact name, one by a glob; a failed step fires "payment.failed" instead.
#include <herald/publishers.hpp>
#include <herald/subscribers/subscribers.hpp>

#include <cstdio>

namespace {

class PaymentEventPublisher : public herald::Publisher {
 public:
  std::string name() const override { return "payment_events"; }
  std::vector<std::string> publishes_for() const override { return {"process_payment"}; }
  nlohmann::json transform_payload(const herald::StepEventContext& ctx,
                                   const herald::EventDeclaration&) override {
    if (!ctx.success()) {
      const auto& error = ctx.completion.error;
      return {{"reason", error ? error->message : "unknown"}};
    }
    return {{"payment_id", ctx.result().value("payment_id", "")},
            {"amount", ctx.result().value("amount", 0.0)}};
  }
  nlohmann::json additional_metadata(const herald::StepEventContext&,
                                     const herald::EventDeclaration&) override {
    return {{"payment_processor", "stripe"}};
  }
};

class PrintingSubscriber : public herald::Subscriber {
 public:
  PrintingSubscriber(std::string name, std::vector<std::string> patterns)
      : name_(std::move(name)), patterns_(std::move(patterns)) {}
  std::string name() const override { return name_; }
  std::vector<std::string> subscribes_to() const override { return patterns_; }
  herald::SubscriberResult handle(const herald::EventPtr& event) override {
    std::printf("[%s] %s %s\n", name_.c_str(), event->event_name().c_str(), event->payload().dump().c_str());
    return {};
  }

 private:
  std::string name_;
  std::vector<std::string> patterns_;
};

}  // namespace

int main() {
  herald::EventBus bus({.dispatcher_threads = 2});
  herald::SubscriberRegistry subscribers(bus);
  subscribers.register_subscriber(std::make_shared<PrintingSubscriber>("audit", std::vector<std::string>{"#"}));
  subscribers.register_subscriber(
      std::make_shared<PrintingSubscriber>("billing", std::vector<std::string>{"payment.processed"}));
  subscribers.start_all();

  herald::PublisherRegistry publishers;
  publishers.register_publisher(std::make_shared<PaymentEventPublisher>());
  herald::EventRouter router(&bus);
  herald::PublishingPipeline pipeline(publishers, router);

  const std::vector<herald::EventDeclaration> declarations = {
      herald::EventDeclaration::from_json({{"name", "payment.processed"}, {"condition", "success"}}),
      herald::EventDeclaration::from_json({{"name", "payment.failed"}, {"condition", "permanent_failure"}}),
  };

  herald::StepCompletion ok = herald::StepCompletion::parse(
      R"({"step_name": "process_payment", "success": true, "correlation_id": "order-1",
          "result": {"payment_id": "pay_1", "amount": 42.5}})");
  herald::StepCompletion failed = herald::StepCompletion::parse(
      R"({"step_name": "process_payment", "success": false, "retryable": false,
          "error": {"message": "card declined", "error_type": "CardError"}})");

  const auto r1 = pipeline.publish(ok, declarations);
  const auto r2 = pipeline.publish(failed, declarations);
  const auto stopped = subscribers.stop_all();  // drains every queue first

  std::printf("published %zu + %zu events, skipped %zu + %zu, drained %llu at stop\n", r1.published.size(),
              r2.published.size(), r1.skipped.size(), r2.skipped.size(),
              static_cast<unsigned long long>(stopped.events_drained));
  std::printf("metadata of the first event: %s\n", r1.published.at(0)->metadata().to_json().dump().c_str());
  return r1.ok() && r2.ok() && r1.published.size() == 1 && r2.published.size() == 1 ? 0 : 1;
}
