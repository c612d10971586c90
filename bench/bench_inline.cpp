// Scenario 1 (issue 6): inline publish of a prebuilt event to 1 matching subscriber while N other
// subscribers with non-matching glob patterns exist, against a direct std::function call and
// Boost.Signals2 with one slot. Every variant runs the same handler: one relaxed atomic increment.
#include <herald/events/domain_event.hpp>
#include <herald/events/event_bus.hpp>

#include <benchmark/benchmark.h>
#include <boost/signals2/signal.hpp>

#include <sys/single_threaded.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <functional>
#include <string>
#include <vector>

namespace {

std::atomic<std::uint64_t> g_count{0};

void handle(const herald::EventPtr& event) {
  benchmark::DoNotOptimize(event.get());
  g_count.fetch_add(1, std::memory_order_relaxed);
}

herald::EventPtr make_event() {
  herald::EventMetadata meta;
  meta.task_uuid = "0190a6c2-7d1e-7000-8000-000000000001";
  meta.step_name = "charge_card";
  return herald::DomainEvent::create("payment.processed", {{"amount", 125.5}, {"currency", "EUR"}},
                                     meta);
}

void BM_DirectFunction(benchmark::State& state) {
  const auto event = make_event();
  std::function<void(const herald::EventPtr&)> fn = handle;
  benchmark::DoNotOptimize(fn);
  for (auto _ : state) fn(event);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DirectFunction);

void BM_Signals2(benchmark::State& state) {
  const auto event = make_event();
  boost::signals2::signal<void(const herald::EventPtr&)> signal;
  for (std::int64_t i = 0; i < state.range(0); ++i) signal.connect(handle);
  for (auto _ : state) signal(event);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Signals2)->Arg(1);

// range(0): non-matching subscribers besides the one matching subscriber.
void BM_HeraldInline(benchmark::State& state) {
  const auto event = make_event();
  herald::EventBus bus(herald::BusOptions{.inline_dispatch = true});
  std::vector<herald::Subscription> subs;
  const auto others = state.range(0);
  subs.reserve(static_cast<std::size_t>(others) + 1);
  // Half one-token wildcards, half multi-token ones: all go to the RE2::Set, none matches.
  for (std::int64_t i = 0; i < others; ++i) {
    std::string pattern = (i % 2 == 0) ? "order" + std::to_string(i) + ".*"
                                       : "shipment.#.stage" + std::to_string(i);
    subs.push_back(bus.subscribe({pattern}, handle));
  }
  subs.push_back(bus.subscribe({"payment.*"}, handle));
  const auto first = bus.publish(event);  // warm the match cache
  if (first.matched != 1 || first.delivered != 1) {
    state.SkipWithError("expected exactly one matching subscriber");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(bus.publish(event));
  state.SetItemsProcessed(state.iterations());
  state.counters["non_matching"] = static_cast<double>(others);
}
BENCHMARK(BM_HeraldInline)->Arg(0)->Arg(10)->Arg(100)->Arg(1000);

// The rows above run in a process that has never started a thread, where glibc's mutexes,
// libstdc++'s shared_ptr and herald's inline publish all skip their atomic read-modify-writes
// (__libc_single_threaded). A real worker has threads: these rows run after one idle thread
// exists (registered last, so the rows above keep their single-threaded process).
void start_idle_thread() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::thread([] {
      for (;;) ::pause();  // parked for the life of the process (no object for exit to destroy)
    }).detach();
  });
}

void BM_Signals2_Threaded(benchmark::State& state) {
  start_idle_thread();
  if (__libc_single_threaded) state.SkipWithError("process still single-threaded");
  BM_Signals2(state);
}
BENCHMARK(BM_Signals2_Threaded)->Arg(1);

void BM_HeraldInline_Threaded(benchmark::State& state) {
  start_idle_thread();
  if (__libc_single_threaded) state.SkipWithError("process still single-threaded");
  BM_HeraldInline(state);
}
BENCHMARK(BM_HeraldInline_Threaded)->Arg(0);

}  // namespace

BENCHMARK_MAIN();
