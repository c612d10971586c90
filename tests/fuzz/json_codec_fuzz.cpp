// Fuzz target: herald's own JSON reader and writer (events/src/json_codec.hpp), differentially
// against json's (nlohmann) parser and serializer, which they stand in for on the wire and in
// parse_bounded.
//
// Input: any bytes, read as JSON text. Checks:
//  - read_json never crashes and never accepts what json::parse refuses; what it accepts has
//    the same value, types included (1 is not 1.0);
//  - it refuses (invalid) only what json refuses too; `unsupported` hands over to json;
//  - append_json writes exactly json::dump(-1, ' ', false, replace) of the value read, and
//    append_json_string of the raw input bytes exactly what json writes for them as a string
//    (invalid UTF-8 included, which json replaces its own way).
#include "fuzz_support.hpp"

#include "json_codec.hpp"

namespace {

namespace codec = herald::detail::json_codec;
using herald_fuzz::fail;
using herald_fuzz::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  json mine;
  codec::DomBuilder builder(mine, 512);
  const auto status = codec::read_json(text, builder);
  const json theirs = json::parse(text, nullptr, /*allow_exceptions=*/false);
  switch (status) {
    case codec::ReadStatus::ok:
      if (theirs.is_discarded()) fail("read_json accepted what json refuses");
      if (!herald_fuzz::same(mine, theirs) || dump(mine) != dump(theirs)) {
        fail("read_json read another value than json", dump(mine) + " != " + dump(theirs));
      }
      break;
    case codec::ReadStatus::invalid:
      if (!theirs.is_discarded()) fail("read_json refused what json accepts", dump(theirs));
      break;
    case codec::ReadStatus::unsupported:
    case codec::ReadStatus::stopped:  // deeper than 512 levels
      break;
  }

  if (status == codec::ReadStatus::ok) {
    std::string written;
    codec::append_json(written, mine);
    if (written != dump(mine)) fail("append_json differs from json::dump", written);
  }
  std::string as_string;
  codec::append_json_string(as_string, text);
  if (as_string != dump(json(std::string(text)))) {
    fail("append_json_string differs from json::dump", as_string);
  }
  return 0;
}
