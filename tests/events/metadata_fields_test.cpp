// The metadata field table (herald/events/detail/metadata_fields.hpp) drives every conversion of
// EventMetadata's base fields: these tests iterate the table, so a new row is covered without a
// new test.
#include <herald/events/detail/metadata_fields.hpp>
#include <herald/events/domain_event.hpp>
#include <herald/events/error.hpp>
#include <herald/events/wire.hpp>

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <string_view>

namespace {

using herald::EventMetadata;
using herald::detail::kMetadataFields;
using nlohmann::json;

// A new EventMetadata member without a row in the table would go unnoticed by every loop; its
// size gives it away (every base field is a std::string, then `extra`).
static_assert(sizeof(EventMetadata) ==
                  herald::detail::kMetadataFieldCount * sizeof(std::string) + sizeof(json),
              "EventMetadata has a member that kMetadataFields does not list");

// Every base field set to a value naming it, plus one extra key.
EventMetadata every_field_set() {
  EventMetadata m;
  for (const auto& f : kMetadataFields) m.*f.member = "value of " + std::string(f.name);
  m.extra = {{"region", "eu"}};
  return m;
}

TEST(MetadataFields, ToJsonWritesEveryFieldUnderItsKey) {
  const json j = every_field_set().to_json();
  for (const auto& f : kMetadataFields) {
    ASSERT_TRUE(j.contains(f.name)) << f.name;
    EXPECT_EQ(j.at(std::string(f.name)), "value of " + std::string(f.name));
  }
  EXPECT_EQ(j.size(), kMetadataFields.size() + 1);  // the base fields and "region"
  EXPECT_EQ(j.at("region"), "eu");
}

TEST(MetadataFields, FromJsonRoundTripKeepsEveryFieldAndTheExtraKeys) {
  const EventMetadata m = every_field_set();
  const EventMetadata back = EventMetadata::from_json(m.to_json());
  EXPECT_EQ(back, m);
  for (const auto& f : kMetadataFields) EXPECT_EQ(back.*f.member, m.*f.member) << f.name;
  EXPECT_EQ(back.extra, json({{"region", "eu"}}));  // base keys are not copied into extra
}

TEST(MetadataFields, AdlConversionRoundTripsThroughJson) {
  const EventMetadata m = every_field_set();
  const json j = m;                           // to_json(json&, const EventMetadata&)
  EXPECT_EQ(j.get<EventMetadata>(), m);       // from_json(const json&, EventMetadata&)
}

TEST(MetadataFields, EqualityComparesEveryField) {
  const EventMetadata m = every_field_set();
  for (const auto& f : kMetadataFields) {
    EventMetadata other = m;
    other.*f.member += "!";
    EXPECT_FALSE(other == m) << f.name;
  }
}

TEST(MetadataFields, FromJsonNamesAFieldOfTheWrongType) {
  for (const auto& f : kMetadataFields) {
    json j = every_field_set().to_json();
    j[std::string(f.name)] = 7;
    try {
      (void)EventMetadata::from_json(j);
      ADD_FAILURE() << f.name << " accepted a number";
    } catch (const herald::ValidationError& e) {
      EXPECT_EQ(e.field(), "metadata." + std::string(f.name));
    }
  }
}

TEST(MetadataFields, JsonTextAndBothWireDecodersKeepEveryField) {
  auto m = every_field_set();
  // Extra keys that sort before, between and after the base keys, and one that shadows a base
  // key (the typed field wins).
  m.extra = {{"a", 1}, {"m", 2}, {"z", 3}, {std::string(kMetadataFields[0].name), "stale"}};
  const auto event = herald::DomainEvent::create("order.created", {{"id", 1}}, m);
  EXPECT_EQ(event->json_text(), event->to_json().dump());

  for (auto encoding : {herald::WireEncoding::json, herald::WireEncoding::msgpack}) {
    const std::string body = herald::encode_envelope(*event, encoding, herald::WireHeader{"p", 1, 1});
    const std::array<std::string_view, 2> frames{event->event_name(), body};
    const auto result = herald::decode_wire_message(frames);
    ASSERT_TRUE(std::holds_alternative<herald::WireMessage>(result)) << to_string(encoding);
    const auto& decoded = std::get<herald::WireMessage>(result).event->metadata();
    for (const auto& f : kMetadataFields) {
      EXPECT_EQ(decoded.*f.member, event->metadata().*f.member) << f.name << " " << to_string(encoding);
    }
    EXPECT_EQ(decoded.extra, json({{"a", 1}, {"m", 2}, {"z", 3}}));
  }
}

TEST(MetadataFields, KeyOrderTableIsSortedAndCoversEveryField) {
  const auto& order = herald::detail::kMetadataFieldsByKey;
  std::array<bool, herald::detail::kMetadataFieldCount> seen{};
  for (std::size_t i = 0; i < order.size(); ++i) {
    seen[order[i]] = true;
    if (i > 0) {
      EXPECT_LT(kMetadataFields[order[i - 1]].name, kMetadataFields[order[i]].name);
    }
  }
  for (bool s : seen) EXPECT_TRUE(s);
}

}  // namespace
