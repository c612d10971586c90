#include <herald/publishers/declaration.hpp>

#include <herald/events/enums.hpp>
#include <herald/events/error.hpp>
#include <herald/events/json_fields.hpp>
#include <herald/events/pattern.hpp>

#include <array>
#include <utility>

namespace herald {

namespace jf = json_fields;
using nlohmann::json;

namespace {

constexpr std::array<std::pair<PublicationCondition, std::string_view>, 5> kConditionNames{{
    {PublicationCondition::success, "success"},
    {PublicationCondition::failure, "failure"},
    {PublicationCondition::retryable_failure, "retryable_failure"},
    {PublicationCondition::permanent_failure, "permanent_failure"},
    {PublicationCondition::always, "always"},
}};

// "fast" follows "in_process" so that to_string finds the canonical name first.
constexpr std::array<std::pair<DeliveryMode, std::string_view>, 5> kDeliveryModeNames{{
    {DeliveryMode::in_process, "in_process"},
    {DeliveryMode::in_process, "fast"},
    {DeliveryMode::zeromq, "zeromq"},
    {DeliveryMode::broadcast, "broadcast"},
    {DeliveryMode::durable, "durable"},
}};

// Parses an enum-valued field, re-throwing as ValidationError so the error carries the field's
// full path, with a "did you mean" hint for a typo.
template <typename E, std::size_t N>
E parse_field(const json& obj, std::string_view key, std::string_view path, std::string_view what,
              const std::array<std::pair<E, std::string_view>, N>& table,
              std::initializer_list<std::string_view> names, E fallback) {
  auto text = jf::optional_string(obj, key, path);
  if (!text) return fallback;
  try {
    return detail::parse_enum(what, *text, table);
  } catch (const UnknownValueError& e) {
    std::string problem = e.what();
    if (auto hint = jf::did_you_mean(*text, names)) problem += " (did you mean '" + *hint + "'?)";
    throw ValidationError(jf::join(path, key), problem);
  }
}

}  // namespace

std::string_view to_string(PublicationCondition condition) noexcept {
  return detail::enum_name(condition, kConditionNames);
}

std::string_view to_string(DeliveryMode mode) noexcept {
  return detail::enum_name(mode, kDeliveryModeNames);
}

PublicationCondition parse_publication_condition(std::string_view text) {
  return detail::parse_enum("publication condition", text, kConditionNames);
}

DeliveryMode parse_delivery_mode(std::string_view text) {
  return detail::parse_enum("delivery mode", text, kDeliveryModeNames);
}

bool condition_holds(PublicationCondition condition, const StepCompletion& c) noexcept {
  switch (condition) {
    case PublicationCondition::success: return c.success;
    case PublicationCondition::failure: return !c.success;
    case PublicationCondition::retryable_failure: return c.will_retry();
    case PublicationCondition::permanent_failure: return !c.success && !c.will_retry();
    case PublicationCondition::always: return true;
  }
  return false;
}

EventDeclaration EventDeclaration::from_json(const json& j, std::string_view path) {
  if (!j.is_object()) {
    throw ValidationError(std::string(path.empty() ? "declaration" : path),
                          "expected object, got " + std::string(jf::type_name(j)));
  }
  jf::reject_unknown_keys(j, {"name", "condition", "delivery_mode", "publisher", "schema"}, path);

  EventDeclaration d;
  d.name = jf::required_string(j, "name", path);
  try {
    validate_event_name(d.name);
  } catch (const EventNameError& e) {
    throw ValidationError(jf::join(path, "name"), e.what());
  }
  d.condition = parse_field(j, "condition", path, "publication condition", kConditionNames,
                            {"success", "failure", "retryable_failure", "permanent_failure",
                             "always"},
                            PublicationCondition::success);
  d.delivery_mode = parse_field(j, "delivery_mode", path, "delivery mode", kDeliveryModeNames,
                                {"in_process", "fast", "zeromq", "broadcast"},
                                DeliveryMode::in_process);
  d.publisher = jf::optional_string(j, "publisher", path);
  if (d.publisher && d.publisher->empty()) {
    throw ValidationError(jf::join(path, "publisher"), "must not be empty (omit it instead)");
  }
  if (const json* s = jf::find(j, "schema")) {
    d.schema = PayloadSchema::compile(*s, jf::join(path, "schema"));
  }
  return d;
}

json EventDeclaration::to_json() const {
  json j = {{"name", name},
            {"condition", herald::to_string(condition)},
            {"delivery_mode", herald::to_string(delivery_mode)}};
  if (publisher) j["publisher"] = *publisher;
  if (schema) j["schema"] = schema->source();
  return j;
}

void to_json(json& j, const EventDeclaration& declaration) { j = declaration.to_json(); }
void from_json(const json& j, EventDeclaration& declaration) {
  declaration = EventDeclaration::from_json(j);
}

}  // namespace herald
