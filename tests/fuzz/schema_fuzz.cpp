// Fuzz target: the payload schema checker (herald/publishers/schema.hpp).
//
// Input: a schema and a payload separated by one NUL byte (which JSON text never contains):
// '{"type": "object", "required": ["amount"]}' NUL '{"amount": 42}'. Each part is JSON text, or
// MessagePack when it is not JSON (strings with invalid UTF-8, binary, NaN). Without a NUL the
// schema is also checked against itself.
// Checks:
//  - compile throws only ValidationError, whose field starts with the path given to compile;
//  - validate never throws; check throws PayloadSchemaError exactly when validate reports a
//    violation, and the same one; the violation's path is a JSON Pointer into the payload (for
//    a missing required property: to the object that lacks it, plus the property's name);
//  - a schema compiled again from source() judges the payload the same way.
#include "fuzz_support.hpp"

#include <herald/events/error.hpp>
#include <herald/publishers/schema.hpp>

#include <exception>
#include <optional>

namespace {

using herald::PayloadSchema;
using herald::SchemaViolation;
using herald_fuzz::fail;
using herald_fuzz::json;

constexpr std::string_view kPath = "steps[0].publishes_events[0].schema";

std::optional<PayloadSchema> compile_checked(const json& schema) {
  try {
    auto s = PayloadSchema::compile(schema, kPath);
    if (!herald_fuzz::same(s.source(), schema)) fail("source() differs from the schema compiled");
    return s;
  } catch (const herald::ValidationError& e) {
    if (e.field().rfind(kPath, 0) != 0) fail("compile error does not start with the path", e.what());
    return std::nullopt;
  } catch (const std::exception& e) {
    fail("PayloadSchema::compile threw an untyped exception", e.what());
  }
}

// The value `pointer` designates in `payload`, or null when it designates nothing.
const json* resolve(const json& payload, const std::string& pointer) {
  try {
    const json::json_pointer p(pointer);
    return payload.contains(p) ? &payload.at(p) : nullptr;
  } catch (const json::exception&) {
    return nullptr;
  }
}

void check_violation_path(const json& payload, const SchemaViolation& v) {
  if (!v.path.empty() && v.path.front() != '/') fail("violation path is not a JSON Pointer", v.path);
  if (v.message == "required property is missing") {
    const auto slash = v.path.rfind('/');
    if (slash == std::string::npos) fail("missing-property path has no property", v.path);
    const json* parent = resolve(payload, v.path.substr(0, slash));
    if (!parent || !parent->is_object()) fail("missing-property path has no object", v.path);
    if (resolve(payload, v.path) != nullptr) fail("a present property was reported missing", v.path);
    return;
  }
  if (resolve(payload, v.path) == nullptr) fail("violation path designates nothing", v.path);
}

void check_payload(const PayloadSchema& schema, const json& payload) {
  std::optional<SchemaViolation> v;
  try {
    v = schema.validate(payload);
  } catch (const std::exception& e) {
    fail("PayloadSchema::validate threw", e.what());
  }
  try {
    schema.check(payload);
    if (v) fail("check passed a payload that validate rejected", v->to_string());
  } catch (const herald::PayloadSchemaError& e) {
    if (!v) fail("check rejected a payload that validate passed", e.what());
    if (!(e.violation() == *v)) fail("check and validate report different violations", e.what());
    if (e.what() != v->to_string()) fail("PayloadSchemaError::what differs from to_string", e.what());
  } catch (const std::exception& e) {
    fail("PayloadSchema::check threw something other than PayloadSchemaError", e.what());
  }
  if (v) check_violation_path(payload, *v);

  // Compiled again from its source, the schema judges the same.
  const auto again = PayloadSchema::compile(schema.source());
  if (again.validate(payload) != v) fail("a recompiled schema judges differently");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  herald_fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto parts = herald_fuzz::split(input, std::string_view("\0", 1), 2);
  const auto schema_json = herald_fuzz::decode_any(parts[0]);
  if (!schema_json) return 0;
  const auto schema = compile_checked(*schema_json);
  if (!schema) return 0;
  if (parts.size() < 2) {
    check_payload(*schema, *schema_json);
    return 0;
  }
  if (const auto payload = herald_fuzz::decode_any(parts[1])) check_payload(*schema, *payload);
  return 0;
}
