#include <herald/publishers/publisher.hpp>

namespace herald {

using nlohmann::json;

bool Publisher::should_publish(const StepEventContext&, const EventDeclaration&) { return true; }

json Publisher::transform_payload(const StepEventContext& ctx, const EventDeclaration&) {
  return ctx.completion.result;
}

json Publisher::additional_metadata(const StepEventContext&, const EventDeclaration&) {
  return json::object();
}

bool Publisher::before_publish(const StepEventContext&, const EventPtr&) { return true; }

void Publisher::after_publish(const StepEventContext&, const EventPtr&) {}

void Publisher::on_publish_error(const StepEventContext&, const EventDeclaration&,
                                 const PublishFailure&) {}

}  // namespace herald
