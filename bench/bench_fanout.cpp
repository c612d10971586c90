// Scenario 2 (issue 6): fan-out of one prebuilt event (the same shared_ptr) to 1, 4 and 16
// matching subscribers on herald's dispatcher pool, against a plain mutex + condition-variable
// bounded queue per subscriber with one consumer thread each, doing the same deliveries.
//
//  - BM_*Throughput: delivered events/s (items_per_second = events x subscribers).
//  - BM_HeraldSpin*: the same with BusOptions::idle_spin = 50 us (the low-latency wait strategy).
//  - BM_*Latency: publish-to-handler latency (steady_clock; the publish time sits in a side array
//    indexed by sequence, and per-subscriber order maps the k-th call to sequence k) at half the
//    saturating publish rate measured just before, in the same repetition. Counters p50_us,
//    p90_us, p99_us, p999_us.
#include <herald/events/domain_event.hpp>
#include <herald/events/event_bus.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kCapacity = 10'000;  // mailbox / queue bound, both sides
constexpr std::size_t kBatch = 20'000;     // events published per throughput iteration

herald::EventPtr make_event() {
  herald::EventMetadata meta;
  meta.task_uuid = "0190a6c2-7d1e-7000-8000-000000000001";
  meta.step_name = "charge_card";
  return herald::DomainEvent::create("payment.processed", {{"amount", 125.5}, {"currency", "EUR"}},
                                     meta);
}

// What every subscriber's handler does: count (per subscriber, no false sharing) and, when a
// latency run is on, record now - publish time of the k-th event.
struct alignas(64) Sink {
  std::atomic<std::uint64_t> count{0};
  std::vector<std::int64_t>* latency_ns = nullptr;  // sized by the latency run
  const std::vector<Clock::time_point>* published_at = nullptr;

  void operator()(const herald::EventPtr& event) {
    benchmark::DoNotOptimize(event.get());
    const auto k = count.load(std::memory_order_relaxed);
    if (latency_ns != nullptr && k < latency_ns->size())
      (*latency_ns)[k] = (Clock::now() - (*published_at)[k]).count();
    count.store(k + 1, std::memory_order_release);  // one writer per sink (serialized handler)
  }
};

// herald with the default wait strategy (an idle dispatcher blocks), or with
// BusOptions::idle_spin (the dispatcher that drained a mailbox watches it for kSpin first).
template <bool Spin>
class HeraldBusSystem {
 public:
  static constexpr std::chrono::microseconds kSpin{50};
  explicit HeraldBusSystem(std::size_t subscribers)
      : sinks_(subscribers), bus_(herald::BusOptions{.idle_spin = Spin ? kSpin : std::chrono::microseconds{0}}) {
    for (std::size_t i = 0; i < subscribers; ++i) {
      herald::SubscribeOptions so;
      so.capacity = kCapacity;
      Sink* sink = &sinks_[i];
      subs_.push_back(bus_.subscribe({"payment.*"}, [sink](const herald::EventPtr& e) { (*sink)(e); }, so));
    }
  }
  void publish(const herald::EventPtr& event) { bus_.publish(event); }
  std::vector<Sink>& sinks() { return sinks_; }

 private:
  std::vector<Sink> sinks_;
  herald::EventBus bus_;  // dispatcher_threads = hardware_concurrency
  std::vector<herald::Subscription> subs_;
};
using HeraldSystem = HeraldBusSystem<false>;
using HeraldSpinSystem = HeraldBusSystem<true>;

// The baseline: a bounded queue (mutex, two condition variables, std::deque) per subscriber.
class BoundedQueue {
 public:
  void push(herald::EventPtr event) {
    std::unique_lock lock(mutex_);
    not_full_.wait(lock, [&] { return items_.size() < kCapacity; });
    items_.push_back(std::move(event));
    lock.unlock();
    not_empty_.notify_one();
  }
  // False once closed and empty.
  bool pop(herald::EventPtr& out) {
    std::unique_lock lock(mutex_);
    not_empty_.wait(lock, [&] { return !items_.empty() || closed_; });
    if (items_.empty()) return false;
    out = std::move(items_.front());
    items_.pop_front();
    lock.unlock();
    not_full_.notify_one();
    return true;
  }
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    not_empty_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<herald::EventPtr> items_;
  bool closed_ = false;
};

class QueueSystem {
 public:
  explicit QueueSystem(std::size_t subscribers) : sinks_(subscribers), queues_(subscribers) {
    for (std::size_t i = 0; i < subscribers; ++i) {
      threads_.emplace_back([this, i] {
        herald::EventPtr event;
        while (queues_[i].pop(event)) {
          sinks_[i](event);
          event.reset();
        }
      });
    }
  }
  ~QueueSystem() {
    for (auto& q : queues_) q.close();
    for (auto& t : threads_) t.join();
  }
  QueueSystem(const QueueSystem&) = delete;
  QueueSystem& operator=(const QueueSystem&) = delete;
  void publish(const herald::EventPtr& event) {
    for (auto& q : queues_) q.push(event);
  }
  std::vector<Sink>& sinks() { return sinks_; }

 private:
  std::vector<Sink> sinks_;
  std::deque<BoundedQueue> queues_;
  std::vector<std::thread> threads_;
};

std::uint64_t total(std::vector<Sink>& sinks) {
  std::uint64_t n = 0;
  for (auto& s : sinks) n += s.count.load(std::memory_order_acquire);
  return n;
}

void wait_for(std::vector<Sink>& sinks, std::uint64_t target) {
  while (total(sinks) < target) std::this_thread::yield();
}

template <class System>
void throughput(benchmark::State& state) {
  const auto subscribers = static_cast<std::size_t>(state.range(0));
  const auto event = make_event();
  System system(subscribers);
  std::uint64_t expected = 0;
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBatch; ++i) system.publish(event);
    expected += kBatch * subscribers;
    wait_for(system.sinks(), expected);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(expected));
  state.counters["subscribers"] = static_cast<double>(subscribers);
}

double percentile_us(std::vector<std::int64_t>& v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) / 1000.0;
}

template <class System>
void latency(benchmark::State& state) {
  const auto subscribers = static_cast<std::size_t>(state.range(0));
  constexpr std::size_t kProbe = 200'000;  // >> capacity: the sustained rate, not a burst into mailboxes
  constexpr std::size_t kEvents = 50'000;
  const auto event = make_event();
  double rate = 0;
  std::vector<std::int64_t> all;
  for (auto _ : state) {
    // Saturating publish rate first (a fresh system, unpaced, far more events than the mailboxes
    // hold, wait for delivery).
    {
      System probe(subscribers);
      const auto t0 = Clock::now();
      for (std::size_t i = 0; i < kProbe; ++i) probe.publish(event);
      wait_for(probe.sinks(), kProbe * subscribers);
      rate = static_cast<double>(kProbe) / std::chrono::duration<double>(Clock::now() - t0).count();
    }
    System system(subscribers);
    std::vector<Clock::time_point> published_at(kEvents);
    std::vector<std::vector<std::int64_t>> lat(subscribers, std::vector<std::int64_t>(kEvents));
    for (std::size_t s = 0; s < subscribers; ++s) {
      system.sinks()[s].latency_ns = &lat[s];
      system.sinks()[s].published_at = &published_at;
    }
    const auto interval = std::chrono::duration<double>(2.0 / rate);  // half the saturating rate
    const auto start = Clock::now();
    for (std::size_t i = 0; i < kEvents; ++i) {
      const auto due = start + std::chrono::duration_cast<Clock::duration>(interval * static_cast<double>(i));
      while (Clock::now() < due) {
      }
      published_at[i] = Clock::now();
      system.publish(event);
    }
    wait_for(system.sinks(), kEvents * subscribers);
    all.clear();
    for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  }
  state.counters["saturating_events_per_s"] = rate;
  state.counters["paced_events_per_s"] = rate / 2;
  state.counters["p50_us"] = percentile_us(all, 0.50);
  state.counters["p90_us"] = percentile_us(all, 0.90);
  state.counters["p99_us"] = percentile_us(all, 0.99);
  state.counters["p999_us"] = percentile_us(all, 0.999);
  state.counters["subscribers"] = static_cast<double>(subscribers);
}

void BM_HeraldThroughput(benchmark::State& state) { throughput<HeraldSystem>(state); }
void BM_QueueThroughput(benchmark::State& state) { throughput<QueueSystem>(state); }
void BM_HeraldLatency(benchmark::State& state) { latency<HeraldSystem>(state); }
void BM_HeraldSpinThroughput(benchmark::State& state) { throughput<HeraldSpinSystem>(state); }
void BM_HeraldSpinLatency(benchmark::State& state) { latency<HeraldSpinSystem>(state); }
void BM_QueueLatency(benchmark::State& state) { latency<QueueSystem>(state); }

BENCHMARK(BM_HeraldThroughput)->Arg(1)->Arg(4)->Arg(16)->UseRealTime()->MinTime(0.3);
BENCHMARK(BM_QueueThroughput)->Arg(1)->Arg(4)->Arg(16)->UseRealTime()->MinTime(0.3);
BENCHMARK(BM_HeraldLatency)->Arg(1)->Arg(4)->Iterations(1)->UseRealTime();
BENCHMARK(BM_HeraldSpinThroughput)->Arg(1)->Arg(4)->Arg(16)->UseRealTime()->MinTime(0.3);
BENCHMARK(BM_HeraldSpinLatency)->Arg(1)->Arg(4)->Iterations(1)->UseRealTime();
BENCHMARK(BM_QueueLatency)->Arg(1)->Arg(4)->Iterations(1)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
