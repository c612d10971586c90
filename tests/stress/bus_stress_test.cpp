// Stress suite for the EventBus (issue 13): many publishing threads x inline and pool buses x
// subscribe / unsubscribe / pause churn x handlers that publish, block, throw or unsubscribe,
// with stop() racing the publishers in some rounds. After each round, for every subscription:
//   received == handled + failed + dropped (nothing in flight after stop),
//   every handler call is counted once, no event is delivered twice,
//   each publishing thread's events arrive in publish order.
// Seeded and repeatable: HERALD_STRESS_SEED picks the seed (printed), HERALD_STRESS_ROUNDS the
// number of rounds per mode (scripts/stress.sh runs a long variant). A hang is a failure: the
// watchdog aborts with a message.
#include <herald/events/error.hpp>
#include <herald/events/event_bus.hpp>

#include <gtest/gtest.h>
#include <wait_for.hpp>
#include <watchdog.hpp>

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

using herald::DomainEvent;
using herald::EventBus;
using herald::EventPtr;
using herald::OverflowPolicy;
using herald::testing::Watchdog;
using namespace std::chrono_literals;

namespace {

std::uint64_t env_or(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

enum class HandlerKind { plain, throws, publishes, blocks, unsubscribes_itself };

// What one subscription saw, checked after the round.
struct Record {
  std::mutex mutex;
  std::map<std::pair<int, int>, int> calls;   // (thread, seq) -> handler calls
  std::map<int, int> last_seq;                // thread -> last seq seen
  bool out_of_order = false;
  std::string first_disorder;
  std::atomic<std::uint64_t> calls_total{0}, throws_total{0};
};

struct Sub {
  int id = 0;  // follow-ups it publishes carry thread id 1000 * (id + 1) + original thread
  HandlerKind kind;
  std::unique_ptr<Record> record = std::make_unique<Record>();
  herald::Subscription handle;
};

struct Round {
  std::uint64_t seed;
  bool inline_mode;
  bool stop_races_publishers;
};

void run_round(const Round& round) {
  SCOPED_TRACE("seed " + std::to_string(round.seed) + (round.inline_mode ? " inline" : " pool") +
               (round.stop_races_publishers ? " stop-racing" : ""));
  std::mt19937_64 rng(round.seed);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };

  herald::BusOptions options;
  options.inline_dispatch = round.inline_mode;
  options.dispatcher_threads = static_cast<std::size_t>(pick(1, 4));
  options.batch_size = static_cast<std::size_t>(pick(1, 32));
  EventBus bus(options);

  constexpr int kPublishers = 4;
  const int per_thread = pick(300, 1500);
  const int sub_count = pick(3, 7);
  std::vector<std::unique_ptr<Sub>> subs;
  std::mutex subs_mutex;  // guards the handles (churn thread vs the final check)

  auto subscribe = [&](Sub& s, std::uint64_t sub_seed) {
    std::mt19937_64 local(sub_seed);
    herald::SubscribeOptions o;
    const int policy = std::uniform_int_distribution<int>(0, 2)(local);
    o.overflow = policy == 0 ? OverflowPolicy::block : policy == 1 ? OverflowPolicy::drop_newest
                                                                   : OverflowPolicy::drop_oldest;
    o.capacity = static_cast<std::size_t>(std::uniform_int_distribution<int>(1, 64)(local));
    o.block_timeout = 20ms;
    Record* rec = s.record.get();
    const HandlerKind kind = s.kind;
    const int follow_base = 1000 * (s.id + 1);
    herald::Subscription* self = &s.handle;
    s.handle = bus.subscribe({"s.#", "follow.*"}, [rec, kind, self, follow_base, &bus](const EventPtr& e) {
      const auto& p = e->payload();
      const int thread = p["t"], seq = p["s"];
      {
        std::lock_guard lock(rec->mutex);
        const int calls = ++rec->calls[{thread, seq}];
        (void)calls;
        auto [it, fresh] = rec->last_seq.try_emplace(thread, seq);
        if (!fresh) {
          if (seq <= it->second && !rec->out_of_order) {
            rec->out_of_order = true;
            rec->first_disorder = "thread " + std::to_string(thread) + ": " + std::to_string(seq) +
                                  " after " + std::to_string(it->second);
          }
          it->second = seq;
        }
      }
      ++rec->calls_total;
      switch (kind) {
        case HandlerKind::plain: break;
        case HandlerKind::throws:
          if (seq % 3 == 0) {
            ++rec->throws_total;
            throw std::runtime_error("stress: planned failure");
          }
          break;
        case HandlerKind::publishes:
          // One follow-up per original event, in this subscription's own order.
          if (thread < 1000) {
            bus.publish(DomainEvent::create("follow.x", {{"t", follow_base + thread}, {"s", seq}}));
          }
          break;
        case HandlerKind::blocks:
          if (seq % 50 == 0) std::this_thread::sleep_for(200us);  // a slow handler, not a wait
          break;
        case HandlerKind::unsubscribes_itself:
          if (thread < 1000 && seq == 200) self->unsubscribe();
          break;
      }
    }, o);
  };

  for (int i = 0; i < sub_count; ++i) {
    auto s = std::make_unique<Sub>();
    s->id = i;
    s->kind = static_cast<HandlerKind>(pick(0, 4));
    subscribe(*s, rng());
    subs.push_back(std::move(s));
  }

  std::atomic<bool> publishers_done{false};
  std::vector<std::thread> publishers;
  for (int t = 0; t < kPublishers; ++t) {
    publishers.emplace_back([&bus, t, per_thread] {
      for (int seq = 0; seq < per_thread; ++seq) {
        bus.publish(DomainEvent::create("s.e" + std::to_string(seq % 4), {{"t", t}, {"s", seq}}));
      }
    });
  }

  // Churn: pause/resume, unsubscribe a subscription, subscribe a fresh one, while events flow.
  std::thread churn([&, churn_seed = rng()] {
    std::mt19937_64 local(churn_seed);
    while (!publishers_done.load()) {
      std::lock_guard lock(subs_mutex);
      auto& s = *subs[std::uniform_int_distribution<std::size_t>(0, subs.size() - 1)(local)];
      switch (std::uniform_int_distribution<int>(0, 5)(local)) {
        case 0: s.handle.unsubscribe(); break;
        case 1: {
          if (bus.stopped() || subs.size() >= 24) break;  // churn, not unbounded growth
          auto fresh = std::make_unique<Sub>();
          fresh->id = static_cast<int>(subs.size());
          fresh->kind = HandlerKind::plain;
          try {
            subscribe(*fresh, local());
            subs.push_back(std::move(fresh));
          } catch (const herald::StateError&) {
            // stop() won the race: subscribing to a stopped bus is refused, as documented
          }
          break;
        }
        default:
          s.handle.pause();
          std::this_thread::yield();
          s.handle.resume();
      }
      std::this_thread::yield();
    }
  });

  herald::StopReport report;
  if (round.stop_races_publishers) {
    herald::testing::wait_for([&] { return bus.stats().published > static_cast<std::uint64_t>(per_thread); });
    report = bus.stop(5s);
  }
  for (auto& t : publishers) t.join();
  publishers_done = true;
  churn.join();
  if (!round.stop_races_publishers) report = bus.stop(30s);
  (void)report;

  std::lock_guard lock(subs_mutex);
  for (const auto& s : subs) {
    const auto st = s->handle.stats();
    const auto& rec = *s->record;
    EXPECT_EQ(st.in_flight, 0u) << st.to_json().dump();
    EXPECT_EQ(st.received, st.handled + st.failed + st.dropped) << st.to_json().dump();
    EXPECT_EQ(rec.calls_total.load(), st.handled + st.failed) << st.to_json().dump();
    EXPECT_EQ(rec.throws_total.load(), st.failed) << st.to_json().dump();
    EXPECT_FALSE(rec.out_of_order) << rec.first_disorder;
    for (const auto& [key, calls] : rec.calls) {
      ASSERT_EQ(calls, 1) << "event (" << key.first << ", " << key.second << ") delivered " << calls << " times";
    }
  }
}

std::uint64_t seed_base() {
  static const std::uint64_t seed = [] {
    const auto s = env_or("HERALD_STRESS_SEED", 20261203);
    std::printf("bus stress: HERALD_STRESS_SEED=%llu\n", static_cast<unsigned long long>(s));
    return s;
  }();
  return seed;
}

}  // namespace

TEST(BusStress, PoolBusesUnderChurnKeepTheDeliveryInvariant) {
  Watchdog watchdog("pool stress", 600s);
  const auto rounds = env_or("HERALD_STRESS_ROUNDS", 6);
  for (std::uint64_t r = 0; r < rounds; ++r) {
    run_round({seed_base() + r, false, r % 2 == 1});
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(BusStress, InlineBusesUnderChurnKeepTheDeliveryInvariant) {
  Watchdog watchdog("inline stress", 600s);
  const auto rounds = env_or("HERALD_STRESS_ROUNDS", 6);
  for (std::uint64_t r = 0; r < rounds; ++r) {
    run_round({seed_base() + 1000 + r, true, r % 2 == 1});
    if (::testing::Test::HasFatalFailure()) return;
  }
}
