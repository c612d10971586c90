// BoundedQueue<T> (herald/events/detail/bounded_queue.hpp): the queue behind the bus's mailboxes
// and the worker's intake. Capacity, each overflow policy, close, batch take, and wake-ups that
// go only to a sleeper.
#include <herald/events/detail/bounded_queue.hpp>

#include <gtest/gtest.h>
#include <wait_for.hpp>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

using herald::OverflowPolicy;
using herald::PublishWait;
using herald::detail::admitted;
using herald::detail::Admission;
using herald::testing::wait_for;
using namespace std::chrono_literals;

namespace {
using Queue = herald::detail::BoundedQueue<int>;
using Lock = Queue::Lock;

constexpr auto kNoHook = [] {};

// Offers `value` the way the owners do: make_room, then push if admitted.
Admission offer(Queue& q, std::mutex& m, int value, PublishWait wait = PublishWait::allowed,
                int* displaced = nullptr) {
  Lock lock(m);
  const auto a = q.make_room(lock, wait, displaced, kNoHook);
  if (admitted(a)) q.push(lock, value);
  return a;
}

std::vector<int> take_all(Queue& q, std::mutex& m) {
  std::vector<int> out;
  Lock lock(m);
  q.take(lock, 1'000, out);
  return out;
}
}  // namespace

TEST(BoundedQueue, AdmitsUpToCapacityAndKeepsOrder) {
  std::mutex m;
  Queue q({.capacity = 3, .overflow = OverflowPolicy::drop_newest});
  for (int i = 0; i < 3; ++i) EXPECT_EQ(offer(q, m, i), Admission::room);
  Lock lock(m);
  EXPECT_EQ(q.size(lock), 3u);
  EXPECT_FALSE(q.has_room(lock));
  lock.unlock();
  EXPECT_EQ(take_all(q, m), (std::vector<int>{0, 1, 2}));
}

TEST(BoundedQueue, DropNewestRefusesTheNewItemWhenFull) {
  std::mutex m;
  Queue q({.capacity = 2, .overflow = OverflowPolicy::drop_newest});
  offer(q, m, 1);
  offer(q, m, 2);
  EXPECT_EQ(offer(q, m, 3), Admission::full);
  EXPECT_FALSE(admitted(Admission::full));
  EXPECT_EQ(take_all(q, m), (std::vector<int>{1, 2}));
}

TEST(BoundedQueue, DropOldestHandsTheDisplacedItemBack) {
  std::mutex m;
  Queue q({.capacity = 2, .overflow = OverflowPolicy::drop_oldest});
  offer(q, m, 1);
  offer(q, m, 2);
  int displaced = 0;
  EXPECT_EQ(offer(q, m, 3, PublishWait::allowed, &displaced), Admission::displaced);
  EXPECT_EQ(displaced, 1);
  EXPECT_EQ(take_all(q, m), (std::vector<int>{2, 3}));
}

TEST(BoundedQueue, BlockOvercommitsOrRefusesForCallersThatMayNotWait) {
  std::mutex m;
  Queue q({.capacity = 1, .overflow = OverflowPolicy::block, .block_timeout = 10s});
  offer(q, m, 1);
  EXPECT_EQ(offer(q, m, 2, PublishWait::drop), Admission::may_not_wait);
  EXPECT_EQ(offer(q, m, 3, PublishWait::overcommit), Admission::overcommitted);
  EXPECT_EQ(take_all(q, m), (std::vector<int>{1, 3}));
}

TEST(BoundedQueue, BlockTimesOutWhenNoRoomComes) {
  std::mutex m;
  Queue q({.capacity = 1, .overflow = OverflowPolicy::block, .block_timeout = 20ms});
  offer(q, m, 1);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(offer(q, m, 2), Admission::timed_out);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
  EXPECT_EQ(take_all(q, m), (std::vector<int>{1}));
}

// A full block-policy queue (capacity 1, holding 1) and a producer thread offering 2 to it; the
// producer is known to wait (lock released) once `waiting()` holds.
struct BlockedProducer {
  std::mutex m;
  Queue q{{.capacity = 1, .overflow = OverflowPolicy::block, .block_timeout = 30s}};
  std::atomic<bool> waited{false};
  Admission result{};
  std::thread producer;

  BlockedProducer() {
    offer(q, m, 1);
    producer = std::thread([this] {
      Lock lock(m);
      result = q.make_room(lock, PublishWait::allowed, nullptr, [this] { waited = true; });
      if (admitted(result)) q.push(lock, 2);
    });
  }
  ~BlockedProducer() {
    if (producer.joinable()) producer.join();
  }
  bool waiting() const { return waited.load(); }
};

TEST(BoundedQueue, BlockWaitsForRoomThatATakeMakes) {
  BlockedProducer b;
  ASSERT_TRUE(wait_for([&] { return b.waiting(); }));
  {
    std::vector<int> out;
    Lock lock(b.m);
    EXPECT_EQ(b.q.take(lock, 1, out), 1u);
  }
  b.producer.join();
  EXPECT_EQ(b.result, Admission::room);
  EXPECT_EQ(take_all(b.q, b.m), (std::vector<int>{2}));
}

TEST(BoundedQueue, CloseRefusesNewItemsAndReleasesBlockedProducers) {
  BlockedProducer b;
  ASSERT_TRUE(wait_for([&] { return b.waiting(); }));
  {
    Lock lock(b.m);
    b.q.close(lock);
  }
  b.producer.join();
  EXPECT_EQ(b.result, Admission::closed);
  EXPECT_EQ(offer(b.q, b.m, 5), Admission::closed);
  EXPECT_TRUE(b.q.closed_relaxed());
  Lock lock(b.m);
  EXPECT_EQ(b.q.size(lock), 1u);  // what was queued stays until taken or cleared
  EXPECT_EQ(b.q.clear(lock), 1u);
  EXPECT_TRUE(b.q.empty(lock));
  b.q.reopen(lock);
  EXPECT_FALSE(b.q.closed(lock));
}

TEST(BoundedQueue, TakeMovesAtMostABatchOldestFirst) {
  std::mutex m;
  Queue q({.capacity = 100});
  for (int i = 0; i < 10; ++i) offer(q, m, i);
  std::vector<int> out;
  Lock lock(m);
  EXPECT_EQ(q.take(lock, 4, out), 4u);
  EXPECT_EQ(out, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(q.take(lock, 64, out), 6u);
  EXPECT_EQ(out.size(), 10u);
  EXPECT_EQ(out.back(), 9);
  EXPECT_EQ(q.take(lock, 64, out), 0u);
}

TEST(BoundedQueue, RequeueFrontPutsItemsBackInOrder) {
  std::mutex m;
  Queue q({.capacity = 100});
  for (int i = 0; i < 5; ++i) offer(q, m, i);
  std::vector<int> batch;
  Lock lock(m);
  q.take(lock, 3, batch);                                   // 0 1 2
  q.requeue_front(lock, batch.begin() + 1, batch.end());    // 1 2 back in front of 3 4
  lock.unlock();
  EXPECT_EQ(take_all(q, m), (std::vector<int>{1, 2, 3, 4}));
}

TEST(BoundedQueue, PushAsksForAWakeUpOnlyWhileTheConsumerSleeps) {
  std::mutex m;
  Queue q({.capacity = 100});
  {
    Lock lock(m);
    EXPECT_FALSE(q.push(lock, 1));  // nobody sleeps: no notify needed
    std::vector<int> out;
    q.take(lock, 10, out);
  }
  std::atomic<bool> got{false};
  std::thread consumer([&] {
    Lock lock(m);
    if (q.wait_for_items(lock)) got = true;
  });
  ASSERT_TRUE(wait_for([&] {
    Lock lock(m);
    return q.consumer_sleeping(lock);
  }));
  bool wake = false;
  {
    Lock lock(m);
    wake = q.push(lock, 2);
  }
  EXPECT_TRUE(wake);
  q.notify_consumer();
  consumer.join();
  EXPECT_TRUE(got.load());
  Lock lock(m);
  EXPECT_FALSE(q.consumer_sleeping(lock));
  EXPECT_FALSE(q.push(lock, 3));
}

TEST(BoundedQueue, TakeWakesOnlyProducersThatWait) {
  // A take with no blocked producer must not need one; with one, it releases it.
  std::mutex m;
  Queue q({.capacity = 1, .overflow = OverflowPolicy::block, .block_timeout = 30s});
  offer(q, m, 1);
  {
    std::vector<int> out;
    Lock lock(m);
    EXPECT_EQ(q.take(lock, 1, out), 1u);  // no waiter: nothing to wake, nothing breaks
  }
  offer(q, m, 2);
  std::atomic<bool> waiting{false};
  std::thread producer([&] {
    Lock lock(m);
    const auto a = q.make_room(lock, PublishWait::allowed, nullptr, [&] { waiting = true; });
    if (admitted(a)) q.push(lock, 3);
  });
  ASSERT_TRUE(wait_for([&] { return waiting.load(); }));
  {
    std::vector<int> out;
    Lock lock(m);
    q.take(lock, 1, out);
  }
  producer.join();  // woken by the take, long before its 30 s timeout
  EXPECT_EQ(take_all(q, m), (std::vector<int>{3}));
}

TEST(BoundedQueue, WaitForItemsReturnsFalseWhenClosedAndEmpty) {
  std::mutex m;
  Queue q({.capacity = 10});
  std::atomic<int> result{-1};
  std::thread consumer([&] {
    Lock lock(m);
    result = q.wait_for_items(lock) ? 1 : 0;
  });
  std::this_thread::sleep_for(10ms);
  {
    Lock lock(m);
    q.close(lock);
  }
  consumer.join();
  EXPECT_EQ(result.load(), 0);
}
