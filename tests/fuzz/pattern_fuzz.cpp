// Fuzz target: glob patterns and event names (herald/events/pattern.hpp), checked against a
// reference written from the documented grammar, not from herald's code:
//
//   name     := token ("." token)*      token := [A-Za-z0-9_-]+, at most 255 characters in all
//   pattern  := ptoken ("." ptoken)*    ptoken := token | "*" | "#" | "**", at most 1020 characters
//   "*" is exactly one token, "#" / "**" zero or more tokens anywhere, other tokens literally;
//   matching is of the whole name; the pattern "*" alone matches every name.
//
// Input: lines ('\n'). The lines before the first empty line are patterns (at most 8), the lines
// after it names (at most 16); without an empty line, the first line is the one pattern and the
// others are names. Each accepted pattern also contributes two names built from it (wildcards
// filled in), so matching names are common.
// Checks:
//  - Pattern::compile accepts exactly the patterns of the grammar; rejection is a PatternError
//    naming the pattern; validate_event_name / is_valid_event_name agree with the grammar;
//  - for every valid name: Pattern::matches equals the reference; literal_prefix is a prefix of
//    every matching name; is_literal / matches_everything agree with the tokens;
//  - PatternSet::match and CachedPatternSet::match (tiny cache, asked twice) return exactly the
//    owners whose patterns match, each once, ascending.
#include "fuzz_support.hpp"

#include <herald/events/error.hpp>
#include <herald/events/pattern.hpp>

#include <algorithm>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace {

using herald_fuzz::fail;

// ---- reference ---------------------------------------------------------------------------

bool ref_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

std::vector<std::string> ref_split(const std::string& text) {
  std::vector<std::string> tokens(1);
  for (char c : text) {
    if (c == '.') {
      tokens.emplace_back();
    } else {
      tokens.back() += c;
    }
  }
  return tokens;
}

bool ref_is_token(const std::string& t) {
  return !t.empty() && std::all_of(t.begin(), t.end(), ref_token_char);
}

bool ref_is_hash(const std::string& t) { return t == "#" || t == "**"; }

bool ref_valid_name(const std::string& name) {
  if (name.empty() || name.size() > 255) return false;
  for (const auto& t : ref_split(name)) {
    if (!ref_is_token(t)) return false;
  }
  return true;
}

bool ref_valid_pattern(const std::string& pattern) {
  if (pattern.empty() || pattern.size() > 4 * 255) return false;
  for (const auto& t : ref_split(pattern)) {
    if (!ref_is_token(t) && t != "*" && !ref_is_hash(t)) return false;
  }
  return true;
}

// Whole-name glob match, by dynamic programming over (pattern token, name token).
bool ref_matches(const std::string& pattern, const std::string& name) {
  if (pattern == "*") return true;
  const auto p = ref_split(pattern);
  const auto n = ref_split(name);
  // m[i][j]: tokens p[i..] match tokens n[j..].
  std::vector<std::vector<char>> m(p.size() + 1, std::vector<char>(n.size() + 1, 0));
  m[p.size()][n.size()] = 1;
  for (std::size_t i = p.size(); i-- > 0;) {
    for (std::size_t j = n.size() + 1; j-- > 0;) {
      bool ok;
      if (ref_is_hash(p[i])) {
        ok = m[i + 1][j] || (j < n.size() && m[i][j + 1]);
      } else if (p[i] == "*") {
        ok = j < n.size() && m[i + 1][j + 1];
      } else {
        ok = j < n.size() && p[i] == n[j] && m[i + 1][j + 1];
      }
      m[i][j] = ok;
    }
  }
  return m[0][0];
}

// A name the pattern should match: '*' -> `star`, '#' -> `hash` tokens (maybe none).
std::string fill_in(const std::string& pattern, const std::string& star,
                    const std::vector<std::string>& hash) {
  std::vector<std::string> out;
  for (const auto& t : ref_split(pattern)) {
    if (t == "*") {
      out.push_back(star);
    } else if (ref_is_hash(t)) {
      out.insert(out.end(), hash.begin(), hash.end());
    } else {
      out.push_back(t);
    }
  }
  std::string name;
  for (const auto& t : out) {
    if (!name.empty()) name += '.';
    name += t;
  }
  return name;
}

// ---- checks ------------------------------------------------------------------------------

std::string describe(const std::string& pattern, const std::string& name) {
  return "pattern '" + pattern + "' name '" + name + "'";
}

void check_name_validation(const std::string& name) {
  const bool valid = ref_valid_name(name);
  if (herald::is_valid_event_name(name) != valid) fail("is_valid_event_name disagrees", name);
  try {
    herald::validate_event_name(name);
    if (!valid) fail("validate_event_name accepted an invalid name", name);
  } catch (const herald::EventNameError& e) {
    if (valid) fail("validate_event_name rejected a valid name", e.what());
    if (e.name() != name) fail("EventNameError does not name the name", e.what());
  }
}

std::optional<herald::Pattern> compile_checked(const std::string& text) {
  const bool valid = ref_valid_pattern(text);
  try {
    auto p = herald::Pattern::compile(text);
    if (!valid) fail("an invalid pattern was accepted", text);
    if (p.text() != text) fail("Pattern::text differs", text);
    const auto tokens = ref_split(text);
    const bool literal = text != "*" && std::all_of(tokens.begin(), tokens.end(), ref_is_token);
    const bool everything = text == "*" || std::all_of(tokens.begin(), tokens.end(), ref_is_hash);
    if (p.is_literal() != literal) fail("is_literal is wrong", text);
    if (p.matches_everything() != everything) fail("matches_everything is wrong", text);
    return p;
  } catch (const herald::PatternError& e) {
    if (valid) fail("a valid pattern was rejected", e.what());
    if (e.pattern() != text) fail("PatternError does not name the pattern", e.what());
    return std::nullopt;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  herald_fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto lines = herald_fuzz::split(input, "\n", 32);
  std::vector<std::string> pattern_texts;
  std::vector<std::string> names;
  const auto blank = std::find(lines.begin(), lines.end(), std::string_view());
  const auto names_begin = blank == lines.end() ? lines.begin() + 1 : blank + 1;
  for (auto it = lines.begin(); it != lines.end() && it != names_begin; ++it) {
    if (it == blank) break;
    if (pattern_texts.size() < 8) pattern_texts.emplace_back(*it);
  }
  for (auto it = names_begin; it < lines.end(); ++it) {
    if (names.size() < 16) names.emplace_back(*it);
  }

  std::vector<std::pair<herald::Pattern, std::size_t>> entries;
  std::vector<std::string> compiled_texts;
  for (std::size_t i = 0; i < pattern_texts.size(); ++i) {
    const auto& text = pattern_texts[i];
    auto p = compile_checked(text);
    if (!p) continue;
    // Owners repeat (i % 3) so that PatternSet's "each owner once" is exercised.
    entries.emplace_back(*p, i % 3);
    compiled_texts.push_back(text);
    const std::string first = names.empty() ? "x" : names.front();
    names.push_back(fill_in(text, ref_is_token(first) ? first : "x", {}));
    names.push_back(fill_in(text, "star", {"h1", ref_is_token(first) ? first : "h2"}));
  }
  for (const auto& name : names) check_name_validation(name);

  // One PatternSet (compiling an RE2::Set is the expensive part), asked directly and through
  // the cache in front of it.
  const herald::CachedPatternSet cached(herald::PatternSet(entries), 2);
  const herald::PatternSet& set = cached.patterns();
  if (set.size() != entries.size()) fail("PatternSet::size differs");
  for (const auto& name : names) {
    const bool valid = ref_valid_name(name);
    std::vector<std::size_t> expected;
    for (std::size_t k = 0; k < entries.size(); ++k) {
      const auto& p = entries[k].first;
      const bool got = p.matches(name);  // defined for valid names; must not crash for others
      if (!valid) continue;
      const bool want = ref_matches(compiled_texts[k], name);
      if (got != want) fail(want ? "a matching name was not matched" : "a name was wrongly matched",
                            describe(compiled_texts[k], name));
      if (want) {
        expected.push_back(entries[k].second);
        if (name.rfind(p.literal_prefix(), 0) != 0) {
          fail("literal_prefix is not a prefix of a matching name", describe(compiled_texts[k], name));
        }
      }
    }
    const auto from_set = set.match(name);
    const auto from_cache = cached.match(name);
    std::vector<std::size_t> scratch;
    const auto span = cached.match(name, scratch);
    const std::vector<std::size_t> from_cache_again(span.begin(), span.end());
    if (!valid) continue;
    std::sort(expected.begin(), expected.end());
    expected.erase(std::unique(expected.begin(), expected.end()), expected.end());
    if (from_set != expected) fail("PatternSet::match differs from the patterns", name);
    if (from_cache != expected || from_cache_again != expected) {
      fail("CachedPatternSet::match differs from the patterns", name);
    }
  }
  return 0;
}
