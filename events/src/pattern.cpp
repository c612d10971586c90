#include <herald/events/pattern.hpp>

#include <herald/events/error.hpp>
#include <herald/events/log.hpp>

#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace herald {

namespace detail {
struct RegexSet {
  explicit RegexSet(const RE2::Options& options) : set(options, RE2::ANCHOR_BOTH) {}
  RE2::Set set;
};
}  // namespace detail

namespace {

bool is_token_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

std::string describe_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  char buf[32];
  if (u >= 0x20 && u < 0x7F) {
    std::snprintf(buf, sizeof buf, "'%c'", c);
  } else {
    std::snprintf(buf, sizeof buf, "byte 0x%02X", u);
  }
  return buf;
}

std::vector<std::string_view> split_tokens(std::string_view text) {
  std::vector<std::string_view> tokens;
  std::size_t start = 0;
  while (true) {
    const auto dot = text.find('.', start);
    if (dot == std::string_view::npos) {
      tokens.push_back(text.substr(start));
      return tokens;
    }
    tokens.push_back(text.substr(start, dot - start));
    start = dot + 1;
  }
}

RE2::Options regex_options() {
  RE2::Options o;
  o.set_log_errors(false);
  o.set_case_sensitive(true);
  return o;
}

}  // namespace

void validate_event_name(std::string_view name) {
  if (is_valid_event_name(name)) return;  // every publish: no allocation on the good path
  const std::string owned(name);
  if (name.empty()) throw EventNameError(owned, "empty name");
  if (name.size() > kMaxEventNameLength) {
    throw EventNameError(owned, "longer than " + std::to_string(kMaxEventNameLength) +
                                    " characters");
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == '.') {
      if (i == 0 || i + 1 == name.size() || name[i + 1] == '.') {
        throw EventNameError(owned, "empty token at position " + std::to_string(i));
      }
    } else if (c == '*' || c == '#') {
      throw EventNameError(owned, "wildcard " + describe_char(c) + " at position " +
                                      std::to_string(i) + " (wildcards belong in patterns)");
    } else if (!is_token_char(c)) {
      throw EventNameError(owned, "invalid character " + describe_char(c) + " at position " +
                                      std::to_string(i) + " (allowed: A-Z a-z 0-9 _ - and '.')");
    }
  }
}

bool is_valid_event_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxEventNameLength) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == '.') {
      if (i == 0 || i + 1 == name.size() || name[i + 1] == '.') return false;
    } else if (!is_token_char(c)) {
      return false;
    }
  }
  return true;
}

Pattern Pattern::compile(std::string_view text) {
  const std::string owned(text);
  if (text.empty()) throw PatternError(owned, "empty pattern");
  if (text.size() > 4 * kMaxEventNameLength) throw PatternError(owned, "pattern too long");

  Pattern p;
  p.text_ = owned;
  if (text == "*") {  // tasker-core compatibility: "*" alone means every event
    p.everything_ = true;
    p.regex_ = ".*";
    p.re_ = std::make_shared<const RE2>(p.regex_, regex_options());
    return p;
  }

  const auto tokens = split_tokens(text);
  bool any_wildcard = false;
  bool all_hash = true;
  bool prefix_done = false;
  std::string prefix;
  bool need_trailing_dot = false;
  std::string regex;
  std::size_t position = 0;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const auto tok = tokens[i];
    if (tok.empty()) {
      throw PatternError(owned, "empty token at position " + std::to_string(position));
    }
    const bool is_star = tok == "*";
    const bool is_hash = tok == "#" || tok == "**";
    if (!is_star && !is_hash) {
      for (std::size_t k = 0; k < tok.size(); ++k) {
        const char c = tok[k];
        if (c == '*' || c == '#') {
          throw PatternError(owned, "wildcard " + describe_char(c) + " inside token '" +
                                        std::string(tok) + "' (wildcards must be whole tokens)");
        }
        if (!is_token_char(c)) {
          throw PatternError(owned, "invalid character " + describe_char(c) + " at position " +
                                        std::to_string(position + k));
        }
      }
    }
    // "(?:^|\.)" before each token: the dot separator, or the start of the name when every
    // earlier token was a '#' that matched nothing.
    if (is_star) {
      regex += R"((?:^|\.)[^.]+)";
    } else if (is_hash) {
      regex += R"((?:(?:^|\.)[^.]+)*)";
    } else {
      regex += R"((?:^|\.))";
      regex += std::string(tok);  // token characters need no escaping ('-' is literal outside [])
    }
    any_wildcard = any_wildcard || is_star || is_hash;
    all_hash = all_hash && is_hash;
    if (!prefix_done) {
      if (is_star || is_hash) {
        prefix_done = true;
      } else {
        if (!prefix.empty()) prefix += '.';
        prefix += tok;
      }
    } else if (!is_hash) {
      need_trailing_dot = true;  // a token after the first wildcard must follow a dot
    }
    if (prefix_done && is_star && !prefix.empty()) need_trailing_dot = true;
    position += tok.size() + 1;
  }
  p.literal_ = !any_wildcard;
  p.everything_ = all_hash;
  p.regex_ = std::move(regex);
  p.prefix_ = (need_trailing_dot && !prefix.empty()) ? prefix + "." : prefix;
  p.re_ = std::make_shared<const RE2>(p.regex_, regex_options());
  if (!p.re_->ok()) throw PatternError(owned, "cannot compile: " + p.re_->error());
  return p;
}

bool Pattern::matches(std::string_view name) const {
  if (everything_) return true;
  if (literal_) return name == text_;
  return RE2::FullMatch(re2::StringPiece(name.data(), name.size()), *re_);
}

PatternSet::PatternSet() = default;
PatternSet::~PatternSet() = default;
PatternSet::PatternSet(PatternSet&&) noexcept = default;
PatternSet& PatternSet::operator=(PatternSet&&) noexcept = default;

PatternSet::PatternSet(const std::vector<std::pair<Pattern, std::size_t>>& entries)
    : size_(entries.size()) {
  // One RE2::Set entry per distinct pattern text: many subscribers on the same pattern share it.
  // (Compiling a set of 1,000 copies of one pattern took minutes in the stress suite.)
  std::unordered_map<std::string, std::size_t> wildcard_index;
  for (const auto& [pattern, owner] : entries) {
    if (pattern.matches_everything()) {
      everything_.push_back(owner);
    } else if (pattern.is_literal()) {
      literal_[pattern.text()].push_back(owner);
    } else {
      auto [it, fresh] = wildcard_index.try_emplace(pattern.text(), wildcard_.size());
      if (fresh) {
        wildcard_.push_back(pattern);
        wildcard_owners_.emplace_back();
      }
      wildcard_owners_[it->second].push_back(owner);
    }
  }
  if (!wildcard_.empty()) {
    auto options = regex_options();
    options.set_max_mem(64 << 20);
    set_ = std::make_unique<detail::RegexSet>(options);
    for (const auto& p : wildcard_) {
      std::string error;
      if (set_->set.Add(p.regex(), &error) < 0) {
        throw PatternError(p.text(), "cannot add to pattern set: " + error);
      }
    }
    if (!set_->set.Compile()) {
      logger()->warn("pattern set of {} patterns did not compile; matching one by one",
                     wildcard_.size());
      set_.reset();
    }
  }
}

std::vector<std::size_t> PatternSet::match(std::string_view name) const {
  std::vector<std::size_t> owners = everything_;
  if (auto it = literal_.find(std::string(name)); it != literal_.end()) {
    owners.insert(owners.end(), it->second.begin(), it->second.end());
  }
  if (!wildcard_.empty()) {
    bool matched_by_set = false;
    if (set_) {
      std::vector<int> hits;
      RE2::Set::ErrorInfo info{};
      const re2::StringPiece text(name.data(), name.size());
      if (set_->set.Match(text, &hits, &info)) {
        for (int h : hits) {
          const auto& of = wildcard_owners_[static_cast<std::size_t>(h)];
          owners.insert(owners.end(), of.begin(), of.end());
        }
        matched_by_set = true;
      } else if (info.kind == RE2::Set::kNoError) {
        matched_by_set = true;  // no pattern matched
      } else {
        static RateLimiter limiter;
        if (limiter.allow()) {
          logger()->warn("pattern set DFA out of memory; matching '{}' one by one", name);
        }
      }
    }
    if (!matched_by_set) {
      for (std::size_t i = 0; i < wildcard_.size(); ++i) {
        if (wildcard_[i].matches(name)) {
          owners.insert(owners.end(), wildcard_owners_[i].begin(), wildcard_owners_[i].end());
        }
      }
    }
  }
  std::sort(owners.begin(), owners.end());
  owners.erase(std::unique(owners.begin(), owners.end()), owners.end());
  return owners;
}

struct CachedPatternSet::Entry {
  std::size_t hash;
  std::string name;
  std::vector<std::size_t> owners;
};

namespace {
// Linear probing inside a short window: a name that finds no free slot in it is not cached.
constexpr std::size_t kProbeWindow = 16;

// Event names are short (at most 255 characters, usually under 32): a multiply-mix over 8-byte
// words costs a fraction of std::hash's general-purpose byte loop on the publish hot path.
// Not meant to resist chosen collisions: a name that finds no slot is simply not cached.
std::uint64_t load_word(const char* p, std::size_t n) noexcept {
  std::uint64_t w = 0;
  std::memcpy(&w, p, n);
  return w;
}

std::size_t hash_name(std::string_view name) noexcept {
  constexpr std::uint64_t k = 0x9E3779B97F4A7C15ull;
  std::uint64_t h = name.size() * k;
  const char* p = name.data();
  std::size_t n = name.size();
  for (; n >= 8; p += 8, n -= 8) h = (h ^ load_word(p, 8)) * k;
  if (n > 0) h = (h ^ load_word(p, n)) * k;
  h ^= h >> 33;  // fold the high bits (where the multiplies put the entropy) into the low
  h *= 0xFF51AFD7ED558CCDull;  // bits the table indexes by
  return static_cast<std::size_t>(h ^ (h >> 33));
}

std::size_t slot_count_for(std::size_t capacity) {
  std::size_t n = 64;
  while (n < capacity * 2) n <<= 1;
  return n;
}
}  // namespace

CachedPatternSet::CachedPatternSet(PatternSet set, std::size_t cache_capacity)
    : set_(std::move(set)),
      capacity_(cache_capacity == 0 ? 1 : cache_capacity),
      mask_(slot_count_for(capacity_) - 1),
      slots_(new std::atomic<const Entry*>[mask_ + 1]) {
  for (std::size_t i = 0; i <= mask_; ++i) slots_[i].store(nullptr, std::memory_order_relaxed);
}

CachedPatternSet::~CachedPatternSet() {
  for (std::size_t i = 0; i <= mask_; ++i) delete slots_[i].load(std::memory_order_relaxed);
}

const CachedPatternSet::Entry* CachedPatternSet::find(std::string_view name,
                                                      std::size_t hash) const noexcept {
  for (std::size_t i = 0; i < kProbeWindow; ++i) {
    const Entry* e = slots_[(hash + i) & mask_].load(std::memory_order_acquire);
    if (e == nullptr) return nullptr;  // entries are never removed: the chain ends here
    if (e->hash == hash && e->name == name) return e;
  }
  return nullptr;
}

std::span<const std::size_t> CachedPatternSet::match(std::string_view name,
                                                     std::vector<std::size_t>& scratch) const {
  const std::size_t hash = hash_name(name);
  if (const Entry* hit = find(name, hash)) return hit->owners;
  misses_.fetch_add(1, std::memory_order_relaxed);
  // Reserve room first, so that racing inserts never exceed the capacity.
  if (size_.fetch_add(1, std::memory_order_relaxed) < capacity_) {
    auto entry = std::make_unique<Entry>(Entry{hash, std::string(name), set_.match(name)});
    for (std::size_t i = 0; i < kProbeWindow; ++i) {
      auto& slot = slots_[(hash + i) & mask_];
      const Entry* seen = nullptr;
      if (slot.compare_exchange_strong(seen, entry.get(), std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        return entry.release()->owners;
      }
      // Another thread filled this slot first: maybe with the same name.
      if (seen->hash == hash && seen->name == name) {
        size_.fetch_sub(1, std::memory_order_relaxed);
        return seen->owners;
      }
    }
    // No free slot in the window: answer without caching.
    size_.fetch_sub(1, std::memory_order_relaxed);
    scratch = std::move(entry->owners);
  } else {
    size_.fetch_sub(1, std::memory_order_relaxed);
    scratch = set_.match(name);
  }
  uncached_.fetch_add(1, std::memory_order_relaxed);
  return scratch;
}

std::vector<std::size_t> CachedPatternSet::match(std::string_view name) const {
  std::vector<std::size_t> scratch;
  const auto owners = match(name, scratch);
  return {owners.begin(), owners.end()};
}

}  // namespace herald
