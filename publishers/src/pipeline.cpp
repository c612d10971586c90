#include <herald/publishers/pipeline.hpp>

#include <herald/events/detail/metadata_fields.hpp>
#include <herald/events/enums.hpp>
#include <herald/events/error.hpp>
#include <herald/events/json_fields.hpp>

#include <exception>
#include <utility>

namespace herald {

namespace jf = json_fields;
using nlohmann::json;

namespace {

constexpr std::array<std::pair<SkipReason, std::string_view>, kSkipReasonCount> kSkipReasons{{
    {SkipReason::condition, "condition"},
    {SkipReason::should_publish, "should_publish"},
    {SkipReason::before_publish, "before_publish"},
}};

std::size_t mode_index(DeliveryMode mode) { return static_cast<std::size_t>(mode); }
std::size_t reason_index(SkipReason reason) { return static_cast<std::size_t>(reason); }
std::size_t stage_index(PublishStage stage) { return static_cast<std::size_t>(stage); }

// {name: n} for the non-zero counts of an array indexed by an enum (every enum value in turn).
template <typename E, typename Counts>
json nonzero_counts(const Counts& counts, std::size_t n) {
  json j = json::object();
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t value = counts[i];
    if (value > 0) j[std::string(to_string(static_cast<E>(i)))] = value;
  }
  return j;
}

std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception (not derived from std::exception)";
  }
}

std::string suppressed_note(std::uint64_t suppressed) {
  return suppressed == 0 ? std::string()
                         : " (" + std::to_string(suppressed) + " similar messages suppressed)";
}

std::string road_error(const EventPtr& event, DeliveryMode mode, std::string_view what) {
  return "cannot route event '" + event->event_name() + "' (" + event->event_id() +
         ") with delivery mode " + std::string(to_string(mode)) + ": " + std::string(what);
}

// The typed field a base metadata key names, or null for an extra key.
std::string* base_field(EventMetadata& m, std::string_view key) {
  if (auto i = detail::metadata_field_index(key)) return &(m.*detail::kMetadataFields[*i].member);
  return nullptr;
}

// Lays `layer`'s keys over `m`: a base key must be a string (null clears it), anything else
// goes to `extra`. Errors name the key as "metadata.<key>".
void apply_metadata_layer(EventMetadata& m, const json& layer) {
  for (auto it = layer.begin(); it != layer.end(); ++it) {
    if (std::string* field = base_field(m, it.key())) {
      if (it->is_null()) {
        field->clear();
      } else if (it->is_string()) {
        *field = it->get<std::string>();
      } else {
        throw ValidationError(jf::join("metadata", it.key()),
                              "expected string, got " + std::string(jf::type_name(*it)));
      }
    } else {
      m.extra[it.key()] = *it;
    }
  }
}

// Base fields, then the step's metadata, then the publisher's additional metadata: later keys
// win. Applied straight onto the typed fields (no merged JSON object parsed back: this runs for
// every event).
EventMetadata build_metadata(const StepCompletion& c, const std::string& publisher,
                             const json& additional) {
  EventMetadata m;
  for (const auto& f : detail::kMetadataFields) {
    if (f.from_completion != nullptr) m.*f.member = c.*f.from_completion;
  }
  m.fired_by = publisher;
  if (!c.metadata.is_null()) {
    jf::require_object(c.metadata, "step metadata");
    apply_metadata_layer(m, c.metadata);
  }
  if (!additional.is_null()) apply_metadata_layer(m, additional);
  // Straight into the object's nodes (no temporary json per key); a layer's own "publisher" or
  // "event_version" is overwritten, as before.
  if (!m.extra.is_object()) m.extra = json::object();
  auto& extra = m.extra.get_ref<json::object_t&>();
  extra.insert_or_assign("publisher", publisher);
  extra.insert_or_assign("event_version", DomainEvent::kEventVersion);
  return m;
}

}  // namespace

std::string_view to_string(SkipReason reason) noexcept { return detail::enum_name(reason, kSkipReasons); }

SkipReason parse_skip_reason(std::string_view text) {
  return detail::parse_enum("skip reason", text, kSkipReasons);
}

// ---- EventRouter -------------------------------------------------------------------------------

void EventRouter::to_bus(const EventPtr& event, DeliveryMode mode) const {
  if (!bus_) throw TransportError(road_error(event, mode, "no in-process event bus configured"));
  const PublishReport report = bus_->publish(event);
  if (report.rejected) throw TransportError(road_error(event, mode, "the event bus is stopped"));
}

void EventRouter::to_transport(Transport& transport, const EventPtr& event,
                               DeliveryMode mode) const {
  try {
    transport.send(event);
  } catch (const std::exception& e) {
    throw TransportError(road_error(event, mode, "transport '" + transport.name() + "': " + e.what()));
  }
}

void EventRouter::route(const EventPtr& event, DeliveryMode mode) const {
  if (!event) throw Error("cannot route a null event");
  switch (mode) {
    case DeliveryMode::in_process:
      to_bus(event, mode);
      return;
    case DeliveryMode::zeromq: {
      Transport* t = transport();
      if (!t) throw TransportError(road_error(event, mode, "no transport configured"));
      to_transport(*t, event, mode);
      return;
    }
    case DeliveryMode::durable: {
      Transport* d = durable();
      if (!d) throw TransportError(road_error(event, mode, "no durable road configured (transports.postgres)"));
      to_transport(*d, event, mode);
      return;
    }
    case DeliveryMode::broadcast: {
      // Check the roads first so that a missing one means nothing was delivered.
      Transport* t = transport();
      Transport* d = durable();
      if (!t && !d) {
        throw TransportError(road_error(event, mode, "no out-of-process road configured (zeromq or postgres)"));
      }
      if (!bus_) throw TransportError(road_error(event, mode, "no in-process event bus configured"));
      to_bus(event, mode);
      // Every road is tried; a failure on one does not keep the event from the others.
      std::string failures;
      for (Transport* road : {d, t}) {
        if (!road) continue;
        try {
          to_transport(*road, event, mode);
        } catch (const TransportError& e) {
          failures += (failures.empty() ? "" : "; ") + std::string(e.what());
        }
      }
      if (!failures.empty()) throw TransportError(failures + " (it was delivered in process and on the other roads)");
      return;
    }
  }
  throw Error("cannot route event '" + event->event_name() + "': invalid delivery mode " +
              std::to_string(static_cast<int>(mode)));
}

// ---- PublishResult -----------------------------------------------------------------------------

json PublishResult::to_json() const {
  json j = {{"published", json::array()}, {"skipped", json::array()}, {"failed", json::array()}};
  for (const auto& e : published) {
    j["published"].push_back({{"event_name", e->event_name()}, {"event_id", e->event_id()}});
  }
  for (const auto& s : skipped) j["skipped"].push_back({{"event_name", s.name}, {"reason", to_string(s.reason)}});
  for (const auto& f : failed) {
    j["failed"].push_back({{"stage", to_string(f.stage)},
                           {"event_name", f.event_name},
                           {"publisher", f.publisher},
                           {"message", f.message}});
  }
  return j;
}

// ---- PublishingPipeline ------------------------------------------------------------------------

PublishResult PublishingPipeline::publish(const StepCompletion& completion,
                                          const std::vector<EventDeclaration>& declarations) noexcept {
  PublishResult result;
  for (const auto& declaration : declarations) {
    try {
      publish_one(completion, declarations, declaration, result);
    } catch (...) {
      // publish_one contains every hook's exception; only the pipeline's own bookkeeping (an
      // allocation) can land here. Still never fail the step.
      try {
        StepEventContext ctx{completion, declaration};
        fail(ctx, *registry_.generic(), PublishStage::internal, "", std::current_exception(), result);
      } catch (...) {
      }
    }
  }
  return result;
}

void PublishingPipeline::publish_one(const StepCompletion& completion,
                                     const std::vector<EventDeclaration>& declarations,
                                     const EventDeclaration& declaration, PublishResult& result) {
  if (!condition_holds(declaration.condition, completion)) {
    skip(declaration, SkipReason::condition, result);
    return;
  }
  const StepEventContext ctx{completion, declaration};
  std::shared_ptr<Publisher> publisher;
  std::string publisher_name;
  EventPtr event;
  PublishStage stage = PublishStage::publisher;
  try {
    // A declared publisher must exist: silently using another one would publish with the wrong
    // hooks. An unknown name is this declaration's failure, reported to the generic publisher.
    if (declaration.publisher && !declaration.publisher->empty()) {
      publisher = registry_.get_strict(*declaration.publisher);
    } else {
      publisher = registry_.get_for_step(completion.step_name, declarations);
    }
    if (!publisher) publisher = registry_.generic();
    publisher_name = publisher->name();

    stage = PublishStage::should_publish;
    if (!publisher->should_publish(ctx, declaration)) {
      skip(declaration, SkipReason::should_publish, result);
      return;
    }
    stage = PublishStage::transform_payload;
    json payload = publisher->transform_payload(ctx, declaration);

    stage = PublishStage::additional_metadata;
    json additional = publisher->additional_metadata(ctx, declaration);
    if (!additional.is_null() && !additional.is_object()) {
      throw ValidationError("additional_metadata",
                            "expected object, got " + std::string(jf::type_name(additional)));
    }

    stage = PublishStage::schema;
    if (declaration.schema) declaration.schema->check(payload);

    stage = PublishStage::build_event;
    event = DomainEvent::create(declaration.name, std::move(payload),
                                build_metadata(completion, publisher_name, additional),
                                ExecutionResult::of(completion));

    stage = PublishStage::before_publish;
    if (!publisher->before_publish(ctx, event)) {
      skip(declaration, SkipReason::before_publish, result);
      return;
    }

    stage = PublishStage::route;
    router_.route(event, declaration.delivery_mode);
    result.published.push_back(event);
    count_published(declaration, publisher_name);

    stage = PublishStage::after_publish;
    publisher->after_publish(ctx, event);
  } catch (...) {
    Publisher& target = publisher ? *publisher : *registry_.generic();
    fail(ctx, target, stage, event ? event->event_id() : std::string(),
         std::current_exception(), result);
  }
}

void PublishingPipeline::skip(const EventDeclaration& declaration, SkipReason reason,
                              PublishResult& result) {
  skipped_.fetch_add(1, std::memory_order_relaxed);
  const std::size_t reason_at = reason_index(reason);
  by_reason_[reason_at].fetch_add(1, std::memory_order_relaxed);
  {
    // Per event name for /metrics (herald_events_skipped_total): the same short lock and map
    // lookup a published event costs in count_published().
    std::lock_guard lock(counts_mutex_);
    auto it = skipped_by_event_.find(declaration.name);
    if (it == skipped_by_event_.end()) it = skipped_by_event_.emplace(declaration.name, std::array<std::uint64_t, kSkipReasonCount>{}).first;
    ++it->second[reason_at];
  }
  result.skipped.push_back(SkippedEvent{declaration.name, reason});
}

void PublishingPipeline::count_published(const EventDeclaration& declaration,
                                         const std::string& publisher) {
  published_.fetch_add(1, std::memory_order_relaxed);
  by_mode_[mode_index(declaration.delivery_mode)].fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(counts_mutex_);
  ++by_event_[declaration.name];
  ++by_publisher_[publisher];
}

void PublishingPipeline::fail(const StepEventContext& ctx, Publisher& publisher, PublishStage stage,
                              const std::string& event_id, std::exception_ptr error,
                              PublishResult& result) noexcept {
  try {
    failed_.fetch_add(1, std::memory_order_relaxed);
    PublishFailure failure{stage, ctx.declaration.name, describe(error), error, {}};
    try {
      failure.publisher = publisher.name();
    } catch (...) {
      failure.publisher = "(name() threw)";
    }
    by_stage_[stage_index(stage)].fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lock(counts_mutex_);
      auto it = failed_by_event_.find(failure.event_name);
      if (it == failed_by_event_.end()) {
        it = failed_by_event_.emplace(failure.event_name, std::array<std::uint64_t, kPublishStageCount>{}).first;
      }
      ++it->second[stage_index(stage)];
    }

    std::uint64_t suppressed = 0;
    if (failure_log_limit_.allow(&suppressed)) {
      logger()->warn(
          "publish failed: event_name={} event_id={} correlation_id={} step_name={} publisher={} "
          "stage={}: {}{}",
          failure.event_name, event_id.empty() ? "-" : event_id, ctx.correlation_id(),
          ctx.step_name(), failure.publisher, to_string(failure.stage), failure.message,
          suppressed_note(suppressed));
    }

    try {
      publisher.on_publish_error(ctx, ctx.declaration, failure);
    } catch (...) {
      hook_errors_.fetch_add(1, std::memory_order_relaxed);
      if (failure_log_limit_.allow(&suppressed)) {
        logger()->error(
            "on_publish_error of publisher '{}' threw: event_name={} correlation_id={}: {}{}",
            failure.publisher, failure.event_name, ctx.correlation_id(),
            describe(std::current_exception()), suppressed_note(suppressed));
      }
    }
    result.failed.push_back(std::move(failure));
  } catch (...) {
    // Out of memory while reporting: the failure is counted; nothing more can be done safely.
  }
}

std::uint64_t PublishingPipeline::published_count() const noexcept {
  return published_.load(std::memory_order_relaxed);
}
std::uint64_t PublishingPipeline::skipped_count() const noexcept {
  return skipped_.load(std::memory_order_relaxed);
}
std::uint64_t PublishingPipeline::failed_count() const noexcept {
  return failed_.load(std::memory_order_relaxed);
}

json PublishingPipeline::stats() const {
  json j = {{"published", published_count()},
            {"skipped", skipped_count()},
            {"failed", failed_count()},
            {"hook_errors", hook_errors_.load(std::memory_order_relaxed)}};
  json modes = json::object();
  for (auto mode : {DeliveryMode::in_process, DeliveryMode::zeromq, DeliveryMode::broadcast,
                    DeliveryMode::durable}) {
    modes[std::string(to_string(mode))] = by_mode_[mode_index(mode)].load(std::memory_order_relaxed);
  }
  j["published_by_delivery_mode"] = std::move(modes);
  json reasons = json::object();  // every reason, zero or not
  for (const auto& [reason, name] : kSkipReasons) {
    reasons[std::string(name)] = by_reason_[reason_index(reason)].load(std::memory_order_relaxed);
  }
  j["skipped_by_reason"] = std::move(reasons);
  j["failed_by_stage"] = nonzero_counts<PublishStage>(by_stage_, kPublishStageCount);
  std::lock_guard lock(counts_mutex_);
  j["published_by_event"] = json(by_event_);
  j["published_by_publisher"] = json(by_publisher_);
  json skipped_by_event = json::object();
  for (const auto& [name, counts] : skipped_by_event_) {
    skipped_by_event[name] = nonzero_counts<SkipReason>(counts, kSkipReasonCount);
  }
  j["skipped_by_event"] = std::move(skipped_by_event);
  json failed_by_event = json::object();
  for (const auto& [name, stages] : failed_by_event_) {
    failed_by_event[name] = nonzero_counts<PublishStage>(stages, kPublishStageCount);
  }
  j["failed_by_event"] = std::move(failed_by_event);
  return j;
}

}  // namespace herald
