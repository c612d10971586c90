// RouteTable (contract in bus/routes.hpp).
#include "bus/routes.hpp"

#include "bus/mailbox.hpp"

#include <algorithm>

namespace herald::detail {

const Routes* RouteTable::build() {
  std::lock_guard lock(mutex_);
  if (const Routes* r = current_.load()) return r;
  std::vector<std::pair<Pattern, std::size_t>> entries;
  for (std::size_t i = 0; i < mailboxes_.size(); ++i) {
    for (const auto& p : mailboxes_[i]->patterns) entries.emplace_back(Pattern::compile(p), i);
  }
  owner_ = std::make_unique<const Routes>(mailboxes_, PatternSet(entries), cache_capacity_);
  current_.store(owner_.get());
  return owner_.get();
}

// Takes the current snapshot out of service (the next publish builds a new one). Called with
// mutex_ held; the caller calls reclaim_if_quiet() after releasing it.
void RouteTable::invalidate_locked() {
  if (!owner_) return;
  cache_misses_of_retired_.fetch_add(owner_->matcher.cache_misses(), std::memory_order_relaxed);
  current_.store(nullptr);
  const auto seq = retired_seq_.load(std::memory_order_relaxed) + 1;
  {
    std::lock_guard lock(retired_mutex_);
    retired_.emplace_back(seq, std::move(owner_));
  }
  retired_seq_.store(seq);
}

void RouteTable::reclaim_if_quiet() noexcept {
  const auto seq = retired_seq_.load();
  if (readers() == 0 && seq > reclaimed_upto_.load(std::memory_order_relaxed)) reclaim(seq);
}

// Frees the snapshots retired up to `seq`. Never called with mutex_ held.
void RouteTable::reclaim(std::uint64_t seq) noexcept {
  std::vector<std::unique_ptr<const Routes>> doomed;
  {
    std::lock_guard lock(retired_mutex_);
    auto keep = std::stable_partition(retired_.begin(), retired_.end(),
                                      [&](const auto& r) { return r.first > seq; });
    for (auto it = keep; it != retired_.end(); ++it) doomed.push_back(std::move(it->second));
    retired_.erase(keep, retired_.end());
    if (seq > reclaimed_upto_.load(std::memory_order_relaxed)) reclaimed_upto_.store(seq);
  }
}

void RouteTable::refresh_saturated(const Routes* seen) {
  std::lock_guard lock(mutex_);
  if (current_.load() != seen) return;  // someone else already did
  invalidate_locked();
}

void RouteTable::add(const MailboxPtr& mb, SubscribeOptions options) {
  {
    std::lock_guard lock(mutex_);
    mb->id = next_id_++;
    mb->name = options.name.empty() ? "subscription-" + std::to_string(mb->id) : options.name;
    mb->options = std::move(options);
    mailboxes_.push_back(mb);
    invalidate_locked();
  }
  reclaim_if_quiet();
}

bool RouteTable::remove(const MailboxPtr& mb) {
  bool found = false;
  {
    std::lock_guard lock(mutex_);
    auto it = std::find(mailboxes_.begin(), mailboxes_.end(), mb);
    if (it != mailboxes_.end()) {
      mailboxes_.erase(it);
      invalidate_locked();
      found = true;
    }
  }
  reclaim_if_quiet();
  return found;
}

std::vector<MailboxPtr> RouteTable::all() const {
  std::lock_guard lock(mutex_);
  return mailboxes_;
}

std::uint64_t RouteTable::cache_misses() const {
  std::lock_guard lock(mutex_);
  return cache_misses_of_retired_.load() + (owner_ ? owner_->matcher.cache_misses() : 0);
}

}  // namespace herald::detail
