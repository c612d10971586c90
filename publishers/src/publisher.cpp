#include <herald/publishers/publisher.hpp>

#include <herald/events/enums.hpp>

#include <array>
#include <utility>

namespace herald {

using nlohmann::json;

namespace {
// In enum order, which is the order the parse error lists them in.
constexpr std::array<std::pair<PublishStage, std::string_view>, kPublishStageCount> kStageNames{{
    {PublishStage::publisher, "publisher"},
    {PublishStage::should_publish, "should_publish"},
    {PublishStage::transform_payload, "transform_payload"},
    {PublishStage::additional_metadata, "additional_metadata"},
    {PublishStage::schema, "schema"},
    {PublishStage::build_event, "build_event"},
    {PublishStage::before_publish, "before_publish"},
    {PublishStage::route, "route"},
    {PublishStage::after_publish, "after_publish"},
    {PublishStage::internal, "internal"},
    {PublishStage::lookup, "lookup"},
}};
}  // namespace

std::string_view to_string(PublishStage stage) noexcept { return detail::enum_name(stage, kStageNames); }

PublishStage parse_publish_stage(std::string_view text) {
  return detail::parse_enum("publish stage", text, kStageNames);
}

bool Publisher::should_publish(const StepEventContext&, const EventDeclaration&) { return true; }

json Publisher::transform_payload(const StepEventContext& ctx, const EventDeclaration&) {
  return ctx.completion.result;
}

json Publisher::additional_metadata(const StepEventContext&, const EventDeclaration&) {
  return nullptr;
}

bool Publisher::before_publish(const StepEventContext&, const EventPtr&) { return true; }

void Publisher::after_publish(const StepEventContext&, const EventPtr&) {}

void Publisher::on_publish_error(const StepEventContext&, const EventDeclaration&,
                                 const PublishFailure&) {}

}  // namespace herald
