// RouteTable: the bus's subscriptions and the immutable routing snapshot publishers read
// without a lock, with its reclamation (a small read-copy-update).
//
// Owns: the list of live subscriptions (`mailboxes`), the current snapshot (`Routes`: those
// subscriptions at one moment and their compiled patterns with a per-name match cache), the
// snapshots retired but perhaps still read, and the `activity` word that counts publishes in
// progress (readers) and accepted publishes.
//
// Threads: any thread may publish (ReadSection, current()), subscribe (add) or unsubscribe
// (remove), including from inside a handler: writers never wait for readers.
//
// Locks: `mutex_` guards the subscription list, `owner_` and `next_id_`; `retired_mutex_`
// guards `retired_`. Publishers take neither on the hot path: they register in `activity_`
// *before* loading `current_`, so a snapshot replaced at time T can only be in use by a
// publisher that registered before T. A snapshot is retired with a sequence number and freed
// once the readers have been seen at zero after its retirement (every publisher that
// registered before has left). Freeing never happens under `mutex_`: it may destroy the last
// reference to a handler (and with it, say, a Python object).
#pragma once

#include "bus/common.hpp"

#include <herald/events/pattern.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace herald::detail {

using MailboxPtr = std::shared_ptr<Mailbox>;

// Immutable routing snapshot: the subscriptions at one moment and their compiled patterns.
struct Routes {
  std::vector<MailboxPtr> mailboxes;
  CachedPatternSet matcher;
  Routes(std::vector<MailboxPtr> m, PatternSet set, std::size_t cache_capacity)
      : mailboxes(std::move(m)), matcher(std::move(set), cache_capacity) {}
};

class RouteTable {
 public:
  // `activity` packs the readers (bits 0-23: publishes in progress, nested ones included) with
  // the count of accepted publishes (bits 24-63), so that leaving the read section and counting
  // the publish is one atomic add instead of two: perf showed the three lock-prefixed adds of
  // the old enter/count/leave as most of an inline publish's own time. Readers are checked
  // against kReaderLimit on entry (a publish beyond it is rejected, never wraps into the
  // count; 16 bits could be reached by 65,536 nested inline publishes on a big stack); the
  // published count wraps after 2^40 (a statistic only).
  static constexpr unsigned kReaderBits = 24;
  static constexpr std::uint64_t kReaderOne = 1;
  static constexpr std::uint64_t kPublishedOne = std::uint64_t{1} << kReaderBits;
  static constexpr std::uint64_t kReaderMask = kPublishedOne - 1;
  static constexpr std::uint64_t kReaderLimit = kReaderMask / 2;

  // `quiet` is told when the last reader leaves (drain() waits for publishes in progress).
  RouteTable(std::size_t cache_capacity, Quiescence& quiet) noexcept
      : cache_capacity_(cache_capacity), quiet_(quiet) {}
  RouteTable(const RouteTable&) = delete;
  RouteTable& operator=(const RouteTable&) = delete;

  // A publisher's registration as a reader of the snapshot (see above).
  class ReadSection {
   public:
    explicit ReadSection(RouteTable& table) noexcept
        : table_(table),
          overflow_((fetch_add_st(table_.activity_, kReaderOne) & kReaderMask) >= kReaderLimit) {}
    ~ReadSection() { table_.leave(accepted_); }
    ReadSection(const ReadSection&) = delete;
    ReadSection& operator=(const ReadSection&) = delete;
    /// Counts this publish as accepted when the section ends.
    void accept() noexcept { accepted_ = true; }
    /// Too many publishes in progress (kReaderLimit): this one must be rejected.
    bool overflow() const noexcept { return overflow_; }

   private:
    RouteTable& table_;
    bool overflow_;
    bool accepted_ = false;
  };

  // Called in a ReadSection. The current snapshot, built if there is none; valid until the
  // section ends.
  const Routes* current() {
    if (const Routes* r = current_.load()) return r;
    return build();
  }
  // The snapshot's match cache is full and names keep missing it (say, ids inside event names):
  // replace the snapshot so that a fresh cache learns the names in use now. `seen` stays valid
  // for the caller's ReadSection.
  void refresh_saturated(const Routes* seen);

  // Adds a subscription: gives it its id (and its default name "subscription-<id>" when
  // `name` is empty).
  void add(const MailboxPtr& mb, SubscribeOptions options);
  // Removes a subscription; false if it was not there (already removed).
  bool remove(const MailboxPtr& mb);
  // The subscriptions now (a copy).
  std::vector<MailboxPtr> all() const;
  // Cache misses of every snapshot so far, the current one included.
  std::uint64_t cache_misses() const;

  std::uint64_t readers() const noexcept { return activity_.load() & kReaderMask; }
  std::uint64_t published() const noexcept { return activity_.load() >> kReaderBits; }

 private:
  void leave(bool accepted) noexcept {
    // Load the retirement sequence *before* leaving: if we then see readers reach zero, every
    // snapshot retired up to `seq` was retired before that moment and nobody can hold it.
    const auto seq = retired_seq_.load();
    // One add: readers - 1, and published + 1 when accepted (unsigned wrap-around subtracts).
    const auto before = fetch_add_st(activity_, accepted ? kPublishedOne - kReaderOne : ~std::uint64_t{0});
    if ((before & kReaderMask) != 1) return;
    if (seq > reclaimed_upto_.load(std::memory_order_relaxed)) reclaim(seq);
    // drain() waits for the publishes in progress too (in pool mode, one may be about to
    // enqueue). seq_cst on both sides: either we see the waiter or it sees readers == 0.
    quiet_.notify_if_waited();
  }
  const Routes* build();
  void invalidate_locked();
  void reclaim_if_quiet() noexcept;
  void reclaim(std::uint64_t seq) noexcept;

  const std::size_t cache_capacity_;
  Quiescence& quiet_;

  mutable std::mutex mutex_;
  std::vector<MailboxPtr> mailboxes_;
  std::unique_ptr<const Routes> owner_;  // null: rebuild on next publish
  std::uint64_t next_id_ = 1;
  std::atomic<std::uint64_t> cache_misses_of_retired_{0};

  std::atomic<const Routes*> current_{nullptr};
  std::atomic<std::uint64_t> activity_{0};
  std::atomic<std::uint64_t> retired_seq_{0};     // written under mutex_
  std::atomic<std::uint64_t> reclaimed_upto_{0};  // written under retired_mutex_
  std::mutex retired_mutex_;
  std::vector<std::pair<std::uint64_t, std::unique_ptr<const Routes>>> retired_;
};

}  // namespace herald::detail
