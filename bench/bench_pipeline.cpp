// Scenario 3 (issue 6): step completion to published event through PublishingPipeline on one
// thread: generic publisher, one declaration, an inline bus with one matching subscriber, payload
// schema check off and on. Target: >= 500k completions/s without schema.
#include <herald/events/event_bus.hpp>
#include <herald/publishers/declaration.hpp>
#include <herald/publishers/pipeline.hpp>
#include <herald/publishers/registry.hpp>
#include <herald/publishers/schema.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <vector>

namespace {

herald::StepCompletion make_completion() {
  herald::StepCompletion c;
  c.task_uuid = "0190a6c2-7d1e-7000-8000-000000000001";
  c.step_uuid = "0190a6c2-7d1e-7000-8000-000000000002";
  c.step_name = "charge_card";
  c.namespace_name = "payments";
  c.correlation_id = "corr-bench";
  c.success = true;
  c.result = {{"amount", 125.5}, {"currency", "EUR"}, {"order_id", "ord-1234"}};
  return c;
}

// range(0): 1 = check the payload against a schema, 0 = no schema.
void BM_PipelinePublish(benchmark::State& state) {
  const bool with_schema = state.range(0) != 0;
  herald::EventBus bus(herald::BusOptions{.inline_dispatch = true});
  std::atomic<std::uint64_t> handled{0};
  auto sub = bus.subscribe({"payment.*"}, [&handled](const herald::EventPtr& e) {
    benchmark::DoNotOptimize(e.get());
    handled.fetch_add(1, std::memory_order_relaxed);
  });
  herald::PublisherRegistry registry;
  herald::EventRouter router(&bus);
  herald::PublishingPipeline pipeline(registry, router);

  herald::EventDeclaration decl;
  decl.name = "payment.processed";
  if (with_schema) {
    decl.schema = herald::PayloadSchema::compile({
        {"type", "object"},
        {"required", {"amount", "currency", "order_id"}},
        {"properties",
         {{"amount", {{"type", "number"}, {"minimum", 0}}},
          {"currency", {{"type", "string"}, {"enum", {"EUR", "USD", "GBP"}}}},
          {"order_id", {{"type", "string"}, {"minLength", 1}}}}},
    });
  }
  const std::vector<herald::EventDeclaration> declarations{decl};
  const auto completion = make_completion();

  const auto probe = pipeline.publish(completion, declarations);
  if (probe.published.size() != 1 || !probe.ok()) {
    state.SkipWithError("pipeline did not publish exactly one event");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(pipeline.publish(completion, declarations));
  state.SetItemsProcessed(state.iterations());
  if (handled.load() != static_cast<std::uint64_t>(state.iterations()) + 1)
    state.SkipWithError("subscriber missed events");
}
BENCHMARK(BM_PipelinePublish)->ArgName("schema")->Arg(0)->Arg(1);

}  // namespace

BENCHMARK_MAIN();
