// Fuzz target: the step completion parser (herald/events/step_completion.hpp).
//
// Input: one step completion as JSON text ({"step_name": "charge", "success": true, ...}). When
// the input is not JSON but valid MessagePack, the decoded value also goes to from_json, which
// reaches strings with invalid UTF-8, binary values and NaN.
// Checks:
//  - parse throws only ParseError (bad JSON) or ValidationError (bad fields); from_json only
//    ValidationError; any other exception, or a crash, is a finding;
//  - an accepted completion is valid (non-empty step_name, retry counts >= 0) and round-trips:
//    from_json(c.to_json()) == c, and parse(c.to_json().dump()) == c when JSON text carries it.
#include "fuzz_support.hpp"

#include <herald/events/domain_event.hpp>
#include <herald/events/error.hpp>
#include <herald/events/step_completion.hpp>

#include <exception>

namespace {

using herald::StepCompletion;
using herald_fuzz::fail;
using herald_fuzz::json;

bool equal(const StepCompletion& a, const StepCompletion& b) {
  // operator== compares result/metadata with json's ==, where NaN != NaN; compare bytes instead.
  return herald_fuzz::same(a.to_json(), b.to_json());
}

void check_accepted(const StepCompletion& c) {
  if (c.step_name.empty()) fail("accepted an empty step_name");
  if (c.retry_count < 0 || c.max_retries < 0) fail("accepted a negative retry count");
  if (!c.metadata.is_object()) fail("metadata is not an object");
  (void)c.will_retry();

  const json j = c.to_json();
  StepCompletion again;
  try {
    again = StepCompletion::from_json(j);
    j.get_to(again);  // the ADL hook takes the same road
  } catch (const std::exception& e) {
    fail("to_json of an accepted completion was rejected", e.what());
  }
  if (!equal(c, again)) fail("from_json(to_json(c)) != c");
  if (herald_fuzz::json_text_exact(j)) {
    try {
      again = StepCompletion::parse(j.dump());
    } catch (const std::exception& e) {
      fail("the JSON text of an accepted completion was rejected", e.what());
    }
    if (!equal(c, again) || !(c == again)) fail("parse(to_json(c).dump()) != c");
  }
  // What the pipeline makes of it: the execution result of an event.
  const auto r = herald::ExecutionResult::of(c);
  if (r.success != c.success || r.error != c.error) fail("ExecutionResult::of lost a field");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  herald_fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  try {
    check_accepted(StepCompletion::parse(input));
  } catch (const herald::ParseError&) {
  } catch (const herald::ValidationError&) {
  } catch (const std::exception& e) {
    fail("StepCompletion::parse threw an untyped exception", e.what());
  }

  const json j = json::from_msgpack(input, /*strict=*/true, /*allow_exceptions=*/false);
  if (!j.is_discarded()) {
    try {
      check_accepted(StepCompletion::from_json(j));
    } catch (const herald::ValidationError&) {
    } catch (const std::exception& e) {
      fail("StepCompletion::from_json threw an untyped exception", e.what());
    }
  }
  return 0;
}
