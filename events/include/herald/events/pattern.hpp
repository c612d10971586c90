// Event names and glob patterns (DESIGN.md decision 3: AMQP topic semantics).
//
//   name     := token ("." token)*          token := [A-Za-z0-9_-]+   (at most 255 characters)
//   pattern  := ptoken ("." ptoken)*        ptoken := token | "*" | "#" | "**"
//
// `*` matches exactly one token; `#` (also spelled `**`) matches zero or more tokens anywhere;
// other tokens match literally; matching is of the whole name. The pattern "*" alone means
// "every event" (tasker-core compatibility). Wildcards are whole tokens: "pay*" is an error.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace re2 {
class RE2;
}  // namespace re2

namespace herald {

namespace detail {
struct RegexSet;  // wraps RE2::Set (a nested class, which cannot be forward declared)
}  // namespace detail

inline constexpr std::size_t kMaxEventNameLength = 255;

/// Throws EventNameError naming the event and the offending character or token.
void validate_event_name(std::string_view name);
/// True when validate_event_name would not throw.
bool is_valid_event_name(std::string_view name) noexcept;

/// A compiled glob pattern. Immutable; copies share the compiled regex. Thread safe.
class Pattern {
 public:
  /// Throws PatternError naming the pattern and the reason.
  static Pattern compile(std::string_view text);

  const std::string& text() const noexcept { return text_; }
  /// True when `name` matches the whole pattern. `name` is expected to be a valid event name.
  bool matches(std::string_view name) const;
  /// No wildcard: matches exactly one name (its text).
  bool is_literal() const noexcept { return literal_; }
  /// "#", "**", "*" alone, or any pattern of only "#" tokens.
  bool matches_everything() const noexcept { return everything_; }
  /// The longest string every matching name starts with ("payment." for "payment.*",
  /// "payment" for "payment.#", "" for "#"): what a ZeroMQ SUB socket subscribes to.
  const std::string& literal_prefix() const noexcept { return prefix_; }
  /// The anchored RE2 regular expression the pattern compiles to.
  const std::string& regex() const noexcept { return regex_; }

 private:
  Pattern() = default;
  std::string text_;
  std::string regex_;
  std::string prefix_;
  bool literal_ = false;
  bool everything_ = false;
  std::shared_ptr<const re2::RE2> re_;
};

/// An immutable set of patterns, each tagged with an owner (e.g. a subscription index), that
/// answers "which owners want this name" in one pass: literal patterns in a hash map, match-all
/// patterns in a list, and all wildcard patterns in one RE2::Set (falling back to per-pattern
/// matching if the set's DFA runs out of memory). Thread safe for concurrent match().
/// Not copyable. Movable.
class PatternSet {
 public:
  PatternSet();
  explicit PatternSet(const std::vector<std::pair<Pattern, std::size_t>>& entries);
  ~PatternSet();
  PatternSet(PatternSet&&) noexcept;
  PatternSet& operator=(PatternSet&&) noexcept;
  PatternSet(const PatternSet&) = delete;
  PatternSet& operator=(const PatternSet&) = delete;

  /// The owners with at least one matching pattern, each once, ascending.
  std::vector<std::size_t> match(std::string_view name) const;
  std::size_t size() const noexcept { return size_; }

 private:
  std::size_t size_ = 0;
  std::unordered_map<std::string, std::vector<std::size_t>> literal_;
  std::vector<std::size_t> everything_;
  std::vector<Pattern> wildcard_;         // distinct patterns, by RE2::Set index
  std::vector<std::vector<std::size_t>> wildcard_owners_;  // owners of each
  std::unique_ptr<detail::RegexSet> set_;
};

/// A PatternSet plus a bounded per-name cache of its answers, so that the hit path costs one
/// hash and a few loads: no lock and no shared write. The cache is a fixed open-addressing table
/// of immutable entries that are published with a compare-and-swap and never changed or freed
/// before the object is destroyed; a looked-up answer therefore stays valid as long as the
/// CachedPatternSet does. When the table is full, new names are answered by the PatternSet
/// without being cached (memory stays bounded under a flood of distinct names) and counted in
/// uncached_lookups(): an owner that sees many of them can rebuild the set with an empty cache
/// (the EventBus does so when it rebuilds its routes).
/// Thread safe: match() may be called from any number of threads. Not copyable, not movable.
class CachedPatternSet {
 public:
  explicit CachedPatternSet(PatternSet set, std::size_t cache_capacity = 16384);
  ~CachedPatternSet();
  CachedPatternSet(const CachedPatternSet&) = delete;
  CachedPatternSet& operator=(const CachedPatternSet&) = delete;

  /// The owners whose patterns match `name`, ascending. The span points into the cache (valid
  /// for this object's lifetime) or, when the name could not be cached, into `scratch`.
  std::span<const std::size_t> match(std::string_view name,
                                     std::vector<std::size_t>& scratch) const;
  /// The same answer, copied.
  std::vector<std::size_t> match(std::string_view name) const;

  const PatternSet& patterns() const noexcept { return set_; }
  /// Names looked up without a cached answer (hits are not counted: the hit path stays free of
  /// shared writes).
  std::uint64_t cache_misses() const noexcept { return misses_.load(std::memory_order_relaxed); }
  /// Misses that could not be cached because the table was full.
  std::uint64_t uncached_lookups() const noexcept {
    return uncached_.load(std::memory_order_relaxed);
  }
  std::size_t cached_names() const noexcept { return size_.load(std::memory_order_relaxed); }

 private:
  struct Entry;
  const Entry* find(std::string_view name, std::size_t hash) const noexcept;

  PatternSet set_;
  std::size_t capacity_;
  std::size_t mask_;  // slot count - 1 (a power of two, at least twice the capacity)
  std::unique_ptr<std::atomic<const Entry*>[]> slots_;
  mutable std::atomic<std::size_t> size_{0};
  mutable std::atomic<std::uint64_t> misses_{0};
  mutable std::atomic<std::uint64_t> uncached_{0};
};

}  // namespace herald
