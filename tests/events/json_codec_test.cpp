// herald's JSON reader and writer (events/src/json_codec.hpp) stand in for json's (nlohmann)
// parser and serializer on the wire and in parse_bounded: they must accept no more than json
// accepts, read the same values (same types: 1 is not 1.0), and write byte for byte what
// json::dump(-1, ' ', false, replace) writes.
#include "json_codec.hpp"

#include <herald/events/error.hpp>
#include <herald/events/json_fields.hpp>

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace codec = herald::detail::json_codec;
using codec::ReadStatus;
using nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

struct Read {
  ReadStatus status;
  json value;
};

Read read(std::string_view text) {
  json value;
  codec::DomBuilder builder(value);
  const auto status = codec::read_json(text, builder);
  return {status, value};
}

// json's verdict on the same text: the parsed value, or discarded when it refuses.
json reference(std::string_view text) { return json::parse(text, nullptr, /*allow_exceptions=*/false); }

// The reader agrees with json on `text`: both accept with the same value (types included), or
// both refuse; `unsupported` is allowed only where the reader says it hands over to json.
void expect_agrees(std::string_view text) {
  SCOPED_TRACE(testing::Message() << "input: " << json(std::string(text)).dump(-1, ' ', true, json::error_handler_t::replace));
  const Read mine = read(text);
  const json theirs = reference(text);
  switch (mine.status) {
    case ReadStatus::ok:
      ASSERT_FALSE(theirs.is_discarded()) << "accepted what json refuses";
      EXPECT_EQ(mine.value, theirs);
      EXPECT_EQ(dump(mine.value), dump(theirs));
      break;
    case ReadStatus::invalid:
      EXPECT_TRUE(theirs.is_discarded()) << "refused what json accepts: " << dump(theirs);
      break;
    case ReadStatus::unsupported:
      break;  // json decides (parse_bounded and the wire fall back to it)
    case ReadStatus::stopped:
      FAIL() << "the DOM builder without a depth bound never stops";
  }
}

TEST(JsonCodecRead, AgreesWithJsonOnEdgeCases) {
  const std::vector<std::string> cases = {
      // values and whitespace
      "{}", "[]", " \t\r\n{ } ", "null", "true", "false", "0", "-0", "1", "\"\"", "[[[]]]",
      R"({"a":1,"b":[true,false,null],"c":{"d":"e"}})", R"({"a" : 1 , "b" : [ 1 , 2 ] })",
      R"({"dup":1,"dup":2})", R"([1,{"x":[{}]},"s"])",
      // numbers
      "-1", "1.5", "-1.5e3", "1E2", "1e+2", "1e-2", "0.0", "1.0", "-0.0", "123456789012",
      "18446744073709551615", "18446744073709551616", "-9223372036854775808",
      "-9223372036854775809", "1e308", "2.2250738585072014e-308", "0.1", "3.141592653589793",
      "1e400", "-1e400", "1e-400", "01", "1.", ".5", "-", "+1", "1e", "1e+", "--1", "0x10",
      "1.5.2", "[1,]", "[,1]", "NaN", "Infinity",
      // literals and structure
      "tru", "truex", "nul", "[true1]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{1:2}",
      "{'a':1}", "[1 2]", "{\"a\":1 \"b\":2}", "[", "]", "{", "}", "", " ", "{}{}", "{} x",
      "[]]", "[1]]", "\"abc", "\"a\"\"b\"",
      // strings and escapes
      R"("\"\\\/\b\f\n\r\t")", R"("\u0041\u00e9\u20ac")", R"("\u0000")", R"("\uD83D\uDE00")",
      R"("\ud83d\ude00")", R"("\uD83D")", R"("\uDE00")", R"("\uD83D\u0041")", R"("\uD83Dx")",
      R"("\u12")", R"("\u12G4")", R"("\x41")", R"("\a")", "\"tab\there\"", "\"nl\nhere\"",
      std::string("\"nul\0here\"", 10), "\"\x7f\"",
      // UTF-8: valid of every length, then every kind of malformed sequence
      "\"\xc3\xa9\"", "\"\xe2\x82\xac\"", "\"\xf0\x9f\x98\x80\"", "\"\xef\xbf\xbf\"",
      "\"\xf4\x8f\xbf\xbf\"", "\"\xc0\xaf\"", "\"\xc1\xbf\"", "\"\xe0\x80\xaf\"",
      "\"\xe0\x9f\xbf\"", "\"\xed\xa0\x80\"", "\"\xed\xbf\xbf\"", "\"\xf0\x80\x80\xaf\"",
      "\"\xf0\x8f\xbf\xbf\"", "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xff\"",
      "\"\x80\"", "\"\xc3\"", "\"\xe2\x82\"", "\"\xf0\x9f\x98\"", "\"\xc3\x28\"",
      "\"\xe2\x28\xa1\"", "\"\xc3\xa9", "\xc3\xa9",
      // a byte order mark (json skips it; the reader hands over)
      "\xef\xbb\xbf{}", "\xef\xbb{}",
  };
  for (const auto& text : cases) expect_agrees(text);
}

TEST(JsonCodecRead, LongStringsCrossEveryEightByteBoundary) {
  // The eight-bytes-at-a-time scan must stop exactly at the first byte that needs attention,
  // wherever it sits in a word.
  for (const std::string special : {"\\\"", "\\n", "\xc3\xa9", "\xe2\x82\xac", "\x01", "\xff", "\""}) {
    for (std::size_t at = 0; at < 24; ++at) {
      std::string text = "\"" + std::string(at, 'a') + special + std::string(17, 'b') + "\"";
      expect_agrees(text);
      expect_agrees("[" + text + "," + text + "]");
    }
  }
}

TEST(JsonCodecRead, HandlerBoundsTheDepthWithoutRecursion) {
  json value;
  codec::DomBuilder bounded(value, 3);
  EXPECT_EQ(codec::read_json("[[[1]]]", bounded), ReadStatus::ok);
  EXPECT_EQ(value, json::parse("[[[1]]]"));
  json deeper;
  codec::DomBuilder refusing(deeper, 3);
  EXPECT_EQ(codec::read_json("[[[[1]]]]", refusing), ReadStatus::stopped);
  // A million opening brackets cost the reader no stack: it keeps them on the heap, and the
  // builder stops it at its bound.
  const std::string deep = std::string(1'000'000, '[') + "x";
  json sink;
  codec::DomBuilder unbounded(sink, 200);
  EXPECT_EQ(codec::read_json(deep, unbounded), ReadStatus::stopped);
}

TEST(JsonCodecRead, ParseBoundedStillWordsErrorsLikeJson) {
  try {
    herald::json_fields::parse_bounded("{\"a\": tru}");
    FAIL() << "accepted invalid JSON";
  } catch (const herald::ParseError& e) {
    EXPECT_NE(std::string(e.what()).find("syntax error"), std::string::npos) << e.what();
  }
  EXPECT_THROW(herald::json_fields::parse_bounded("[1e999]"), herald::ParseError);
  EXPECT_THROW(herald::json_fields::parse_bounded("[[[1]]]", herald::WireEncoding::json, 2),
               herald::ParseError);
  // What the reader hands over is still read, by json.
  EXPECT_EQ(herald::json_fields::parse_bounded("\xef\xbb\xbf{\"a\":1}"), json({{"a", 1}}));
  EXPECT_EQ(herald::json_fields::parse_bounded("[1e-400]"), json::parse("[1e-400]"));
}

// --- random differential runs (fixed seeds: a failure replays)

std::string random_string(std::mt19937& rng) {
  std::uniform_int_distribution<int> len(0, 40), kind(0, 9), byte(0, 255), ascii(0x20, 0x7e);
  std::string s;
  const int n = len(rng);
  for (int i = 0; i < n; ++i) {
    switch (kind(rng)) {
      case 0: s.push_back(static_cast<char>(byte(rng))); break;  // anything, often invalid UTF-8
      case 1: s += "\xc3\xa9"; break;
      case 2: s += "\xf0\x9f\x98\x80"; break;
      case 3: s.push_back(static_cast<char>(byte(rng) & 0x1f)); break;  // control characters
      case 4: s.push_back("\"\\/"[byte(rng) % 3]); break;
      default: s.push_back(static_cast<char>(ascii(rng))); break;
    }
  }
  return s;
}

json random_value(std::mt19937& rng, int depth) {
  std::uniform_int_distribution<int> kind(0, depth > 3 ? 6 : 8), small(0, 5);
  switch (kind(rng)) {
    case 0: return nullptr;
    case 1: return static_cast<bool>(small(rng) & 1);
    case 2: return std::uniform_int_distribution<std::uint64_t>()(rng);
    case 3: return -static_cast<std::int64_t>(std::uniform_int_distribution<std::uint32_t>()(rng)) - 1;
    case 4: return std::uniform_real_distribution<double>(-1e6, 1e6)(rng);
    case 5:
    case 6: return random_string(rng);
    case 7: {
      json a = json::array();
      for (int i = small(rng); i > 0; --i) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      json o = json::object();
      for (int i = small(rng); i > 0; --i) o[random_string(rng)] = random_value(rng, depth + 1);
      return o;
    }
  }
}

TEST(JsonCodecWrite, IsExactlyJsonsDumpForRandomValues) {
  std::mt19937 rng(20261129);
  for (int i = 0; i < 3000; ++i) {
    const json value = random_value(rng, 0);
    std::string mine;
    codec::append_json(mine, value);
    ASSERT_EQ(mine, dump(value)) << "case " << i;
  }
  // Floats json writes its own way, the odd ones included.
  for (double d : {0.0, -0.0, 1.0, 1e21, 1e-7, 0.1, 123456789.125, 1e308, 5e-324,
                   std::numeric_limits<double>::infinity(), std::nan("")}) {
    std::string mine;
    codec::append_json(mine, json{{"x", d}});
    EXPECT_EQ(mine, dump(json{{"x", d}}));
  }
}

TEST(JsonCodecWrite, StringsOfEveryByteMatchJsonsReplacement) {
  std::string every;
  for (int b = 0; b < 256; ++b) every.push_back(static_cast<char>(b));
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string s = random_string(rng);
    std::string mine;
    codec::append_json_string(mine, s);
    ASSERT_EQ(mine, dump(json(s)));
  }
  std::string mine;
  codec::append_json_string(mine, every);
  EXPECT_EQ(mine, dump(json(every)));
}

TEST(JsonCodecRead, AgreesWithJsonOnRandomDocumentsAndTheirMutations) {
  std::mt19937 rng(1129);
  std::uniform_int_distribution<int> byte(0, 255), edits(1, 3), op(0, 2);
  for (int i = 0; i < 20000; ++i) {
    const std::string text = dump(random_value(rng, 0));
    expect_agrees(text);  // valid UTF-8 once json has replaced the bad bytes
    std::string mutated = text;
    for (int e = edits(rng); e > 0 && !mutated.empty(); --e) {
      const auto at = std::uniform_int_distribution<std::size_t>(0, mutated.size() - 1)(rng);
      switch (op(rng)) {
        case 0: mutated[at] = static_cast<char>(byte(rng)); break;
        case 1: mutated.insert(at, 1, "{}[]\",:\\0-e. u"[byte(rng) % 15]); break;
        default: mutated.erase(at, 1); break;
      }
    }
    expect_agrees(mutated);
    if (testing::Test::HasFailure()) FAIL() << "case " << i;
  }
}

}  // namespace
