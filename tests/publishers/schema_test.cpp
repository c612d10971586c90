#include "publishers_test_support.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace herald {
namespace {

using nlohmann::json;

// The violation's "path: message" text, or "ok".
std::string check(const json& schema, const json& payload) {
  auto v = PayloadSchema::compile(schema).validate(payload);
  return v ? v->to_string() : "ok";
}

std::string compile_error(const json& schema) {
  try {
    PayloadSchema::compile(schema);
  } catch (const ValidationError& e) {
    return e.what();
  }
  return "compiled";
}

TEST(PayloadSchemaType, AcceptsTheNamedType) {
  EXPECT_EQ(check({{"type", "string"}}, "x"), "ok");
  EXPECT_EQ(check({{"type", "object"}}, json::object()), "ok");
  EXPECT_EQ(check({{"type", "array"}}, json::array()), "ok");
  EXPECT_EQ(check({{"type", "boolean"}}, true), "ok");
  EXPECT_EQ(check({{"type", "null"}}, nullptr), "ok");
  EXPECT_EQ(check({{"type", "number"}}, 1.5), "ok");
}

TEST(PayloadSchemaType, RejectsAnotherTypeNamingBoth) {
  EXPECT_EQ(check({{"type", "object"}}, json::array()), "(root): expected object, got array");
}

TEST(PayloadSchemaType, IntegerAcceptsWholeNumbersOnly) {
  EXPECT_EQ(check({{"type", "integer"}}, 3), "ok");
  EXPECT_EQ(check({{"type", "integer"}}, 3.0), "ok");
  EXPECT_EQ(check({{"type", "integer"}}, 3.5), "(root): expected integer, got number");
}

TEST(PayloadSchemaType, NumberAcceptsIntegers) {
  EXPECT_EQ(check({{"type", "number"}}, 7), "ok");
}

TEST(PayloadSchemaType, AcceptsAnyOfAnArrayOfTypes) {
  json schema = {{"type", {"string", "null"}}};
  EXPECT_EQ(check(schema, nullptr), "ok");
  EXPECT_EQ(check(schema, "x"), "ok");
  EXPECT_EQ(check(schema, 1), "(root): expected null or string, got number");
}

TEST(PayloadSchemaRequired, PassesWhenPresentAndNamesTheMissingProperty) {
  json schema = {{"type", "object"}, {"required", {"amount", "currency"}}};
  EXPECT_EQ(check(schema, {{"amount", 1}, {"currency", "EUR"}}), "ok");
  EXPECT_EQ(check(schema, {{"amount", 1}}), "/currency: required property is missing");
}

TEST(PayloadSchemaProperties, ChecksEachListedPropertyAtItsPath) {
  json schema = {{"properties", {{"amount", {{"type", "number"}}}}}};
  EXPECT_EQ(check(schema, {{"amount", 10}}), "ok");
  EXPECT_EQ(check(schema, {{"amount", "10"}}), "/amount: expected number, got string");
}

TEST(PayloadSchemaProperties, NestedPathsUseJsonPointerEscaping) {
  json schema = {{"properties", {{"a/b", {{"properties", {{"c~d", {{"type", "string"}}}}}}}}}};
  EXPECT_EQ(check(schema, {{"a/b", {{"c~d", 1}}}}), "/a~1b/c~0d: expected string, got number");
}

TEST(PayloadSchemaAdditionalProperties, FalseRejectsUnlistedProperties) {
  json schema = {{"properties", {{"id", json::object()}}}, {"additionalProperties", false}};
  EXPECT_EQ(check(schema, {{"id", 1}}), "ok");
  EXPECT_EQ(check(schema, {{"id", 1}, {"extra", 2}}),
            "/extra: property is not allowed (additionalProperties is false)");
}

TEST(PayloadSchemaAdditionalProperties, ASchemaChecksUnlistedProperties) {
  json schema = {{"properties", {{"id", json::object()}}},
                 {"additionalProperties", {{"type", "string"}}}};
  EXPECT_EQ(check(schema, {{"id", 1}, {"note", "x"}}), "ok");
  EXPECT_EQ(check(schema, {{"id", 1}, {"note", 2}}), "/note: expected string, got number");
}

TEST(PayloadSchemaItems, ChecksEveryElementAtItsIndex) {
  json schema = {{"properties",
                  {{"items", {{"type", "array"}, {"items", {{"type", "integer"}}}}}}}};
  EXPECT_EQ(check(schema, {{"items", {1, 2, 3}}}), "ok");
  EXPECT_EQ(check(schema, {{"items", {1, 2, "three"}}}), "/items/2: expected integer, got string");
}

TEST(PayloadSchemaEnum, AcceptsAListedValueAndRejectsOthers) {
  json schema = {{"enum", {"EUR", "USD", 1}}};
  EXPECT_EQ(check(schema, "USD"), "ok");
  EXPECT_EQ(check(schema, 1.0), "ok");
  EXPECT_EQ(check(schema, "GBP"), "(root): \"GBP\" is not one of [\"EUR\",\"USD\",1]");
}

TEST(PayloadSchemaConst, AcceptsOnlyThatValue) {
  json schema = {{"properties", {{"version", {{"const", 2}}}}}};
  EXPECT_EQ(check(schema, {{"version", 2}}), "ok");
  EXPECT_EQ(check(schema, {{"version", 3}}), "/version: expected 2, got 3");
}

TEST(PayloadSchemaMinimum, IsInclusive) {
  json schema = {{"minimum", 1}};
  EXPECT_EQ(check(schema, 1), "ok");
  EXPECT_EQ(check(schema, 0.5), "(root): 0.5 is less than the minimum 1");
}

TEST(PayloadSchemaMaximum, IsInclusive) {
  json schema = {{"maximum", 10.5}};
  EXPECT_EQ(check(schema, 10.5), "ok");
  EXPECT_EQ(check(schema, 11), "(root): 11 is greater than the maximum 10.5");
}

TEST(PayloadSchemaMinLength, CountsCodePointsNotBytes) {
  json schema = {{"minLength", 3}};
  EXPECT_EQ(check(schema, "\xC3\xA9\xC3\xA9\xC3\xA9"), "ok");  // "ééé": 3 code points, 6 bytes
  EXPECT_EQ(check(schema, "ab"), "(root): length 2 is less than minLength 3");
}

TEST(PayloadSchemaMaxLength, RejectsLongerStrings) {
  json schema = {{"maxLength", 2}};
  EXPECT_EQ(check(schema, "ab"), "ok");
  EXPECT_EQ(check(schema, "abc"), "(root): length 3 is greater than maxLength 2");
}

TEST(PayloadSchemaPattern, IsAnUnanchoredSearch) {
  json schema = {{"pattern", "[0-9]+"}};
  EXPECT_EQ(check(schema, "order-123-x"), "ok");
  EXPECT_EQ(check(schema, "order"), "(root): \"order\" does not match pattern '[0-9]+'");
}

TEST(PayloadSchemaPattern, AnchorsMatchTheWholeString) {
  json schema = {{"pattern", "^[A-Z]{3}$"}};
  EXPECT_EQ(check(schema, "EUR"), "ok");
  EXPECT_NE(check(schema, "EURO"), "ok");
}

TEST(PayloadSchemaKeywords, ThatConcernAnotherTypeAreIgnored) {
  EXPECT_EQ(check({{"minimum", 5}}, "short"), "ok");
  EXPECT_EQ(check({{"minLength", 10}}, 3), "ok");
}

TEST(PayloadSchemaBooleans, TrueAcceptsEverythingAndFalseNothing) {
  EXPECT_EQ(check(true, {{"anything", 1}}), "ok");
  EXPECT_EQ(check({{"properties", {{"x", false}}}}, {{"x", 1}}),
            "/x: no value is allowed here (schema is false)");
}

TEST(PayloadSchemaCompile, RejectsAnUnknownKeywordWithASuggestion) {
  EXPECT_EQ(compile_error({{"frobnicate", "string"}}),
            "frobnicate: unknown or unsupported schema keyword");
  EXPECT_EQ(compile_error({{"maxLenght", 3}}),
            "maxLenght: unknown or unsupported schema keyword (did you mean 'maxLength'?)");
}

TEST(PayloadSchemaCompile, RejectsUnsupportedKeywordsRatherThanIgnoringThem) {
  EXPECT_EQ(compile_error({{"oneOf", json::array()}}),
            "oneOf: unknown or unsupported schema keyword");
}

TEST(PayloadSchemaCompile, RejectsAnUnknownTypeNamingIt) {
  EXPECT_EQ(compile_error({{"properties", {{"n", {{"type", "interger"}}}}}}),
            "properties.n.type: unknown type 'interger' (did you mean 'integer'?)");
}

TEST(PayloadSchemaCompile, RejectsABadRegularExpressionNamingIt) {
  const auto message = compile_error({{"pattern", "(unclosed"}});
  EXPECT_NE(message.find("pattern: invalid regular expression '(unclosed'"), std::string::npos)
      << message;
}

TEST(PayloadSchemaCompile, RejectsKeywordsOfTheWrongShape) {
  EXPECT_EQ(compile_error({{"minimum", "1"}}), "minimum: expected number, got string");
  EXPECT_EQ(compile_error({{"minLength", -1}}), "minLength: expected a non-negative integer, got -1");
  EXPECT_EQ(compile_error({{"required", {"a", 1}}}), "required[1]: expected string, got number");
  EXPECT_EQ(compile_error({{"enum", json::array()}}), "enum: expected a non-empty array, got []");
  EXPECT_EQ(compile_error({{"items", {json::object()}}}),
            "items: the tuple form (an array of schemas) is not supported");
  EXPECT_EQ(compile_error(json::array()), "expected a schema (object or boolean), got array");
}

TEST(PayloadSchemaCompile, AcceptsAnnotations) {
  EXPECT_EQ(compile_error({{"$schema", "https://json-schema.org/draft/2020-12/schema"},
                           {"title", "Payment"},
                           {"description", "d"}}),
            "compiled");
}

TEST(PayloadSchemaErrors, SurfaceAsPayloadSchemaErrorWithThePath) {
  auto schema = PayloadSchema::compile({{"properties", {{"amount", {{"type", "number"}}}}}});
  try {
    schema.check({{"amount", "ten"}});
    FAIL() << "expected PayloadSchemaError";
  } catch (const PayloadSchemaError& e) {
    EXPECT_EQ(e.field(), "/amount");
    EXPECT_EQ(e.violation().path, "/amount");
    EXPECT_STREQ(e.what(), "/amount: expected number, got string");
  }
}

TEST(PayloadSchemaValidate, NeverThrowsOnInvalidUtf8) {
  auto schema = PayloadSchema::compile({{"enum", {"a"}}});
  auto v = schema.validate(std::string("\xFF\xFE"));
  ASSERT_TRUE(v);
  EXPECT_NE(v->message.find("is not one of"), std::string::npos);
}

TEST(PayloadSchemaValidate, IsSafeFromManyThreadsAtOnce) {
  auto schema = PayloadSchema::compile(
      {{"type", "object"},
       {"required", {"code"}},
       {"properties", {{"code", {{"type", "string"}, {"pattern", "^[A-Z]+$"}}}}}});
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const bool good = (i + t) % 2 == 0;
        auto v = schema.validate({{"code", good ? "ABC" : "abc"}});
        if (v.has_value() == good) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(PayloadSchemaSource, IsKeptForSerialisation) {
  json source = {{"type", "object"}, {"required", {"id"}}};
  EXPECT_EQ(PayloadSchema::compile(source).to_json(), source);
}

}  // namespace
}  // namespace herald
