// Scenario 6 (issue 6): 1,000,000 events published at full speed to a stalled (paused)
// subscriber with drop_oldest and capacity 2,000 on the dispatcher pool. Goals: peak RSS
// (VmHWM) minus the idle RSS stays under 64 MB, and the drop count is exact (998,000).
//
//   bench/bench_memory [events=1000000] [capacity=2000]
//
// Prints one JSON object on stdout. Every event is a distinct DomainEvent (created in the loop),
// so events the mailbox drops must really be freed for the peak to stay low. One run per process
// (VmHWM never goes down): scripts/bench.sh runs it several times.
#include <herald/events/domain_event.hpp>
#include <herald/events/event_bus.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace {

// A /proc/self/status field in kB ("VmRSS", "VmHWM"), or -1.
long status_kb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::strtol(line.c_str() + field.size() + 1, nullptr, 10);
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t events = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  const std::size_t capacity = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 2'000;

  herald::EventBus bus(herald::BusOptions{.dispatcher_threads = 1});
  herald::SubscribeOptions so;
  so.name = "stalled";
  so.capacity = capacity;
  so.overflow = herald::OverflowPolicy::drop_oldest;
  std::atomic<std::uint64_t> handled{0};  // counted by the dispatcher after resume()
  auto sub = bus.subscribe({"payment.*"}, [&handled](const herald::EventPtr&) { handled.fetch_add(1); }, so);
  sub.pause();

  herald::EventMetadata meta;
  meta.task_uuid = "0190a6c2-7d1e-7000-8000-000000000001";
  meta.step_name = "charge_card";
  // Warm up allocator and the match cache with one event on an unrelated name.
  bus.publish(herald::DomainEvent::create("warmup.done", nlohmann::json::object(), meta));
  const long idle_rss = status_kb("VmRSS");
  const long idle_hwm = status_kb("VmHWM");

  const auto start = std::chrono::steady_clock::now();
  std::uint64_t report_dropped = 0;
  for (std::uint64_t i = 0; i < events; ++i) {
    auto event = herald::DomainEvent::create(
        "payment.processed", {{"amount", 125.5}, {"currency", "EUR"}, {"seq", i}}, meta);
    report_dropped += bus.publish(event).dropped;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const long peak = status_kb("VmHWM");
  const auto stalled = sub.stats();

  sub.resume();
  const bool drained = bus.drain(std::chrono::seconds(30));
  const auto final_stats = sub.stats();
  const std::uint64_t expected_drops = events > capacity ? events - capacity : 0;
  const double peak_minus_idle_mb = static_cast<double>(peak - idle_rss) / 1024.0;

  std::printf(
      "{\"events\": %llu, \"capacity\": %zu, \"seconds\": %.4f, \"events_per_s\": %.1f, "
      "\"idle_rss_kb\": %ld, \"idle_hwm_kb\": %ld, \"peak_hwm_kb\": %ld, "
      "\"peak_minus_idle_mb\": %.2f, \"dropped\": %llu, \"publish_report_dropped\": %llu, "
      "\"expected_dropped\": %llu, \"queue_depth_when_stalled\": %zu, \"handled_after_resume\": "
      "%llu, \"drained\": %s, \"received\": %llu}\n",
      static_cast<unsigned long long>(events), capacity, seconds,
      static_cast<double>(events) / seconds, idle_rss, idle_hwm, peak, peak_minus_idle_mb,
      static_cast<unsigned long long>(final_stats.dropped),
      static_cast<unsigned long long>(report_dropped),
      static_cast<unsigned long long>(expected_drops), stalled.queue_depth,
      static_cast<unsigned long long>(handled), drained ? "true" : "false",
      static_cast<unsigned long long>(final_stats.received));
  const bool ok = drained && final_stats.dropped == expected_drops && handled == events - expected_drops &&
                  peak_minus_idle_mb < 64.0;
  return ok ? 0 : 1;
}
