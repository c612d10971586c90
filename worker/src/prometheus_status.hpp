// Renders a worker's status report (Worker::status()) in the Prometheus text exposition format,
// version 0.0.4: what GET /metrics answers. Computed per scrape from the counters the worker
// keeps anyway, so serving metrics adds no work per event.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace herald::detail {

/// Families (all prefixed herald_, counters suffixed _total), each with # HELP and # TYPE:
///   herald_worker_state{state} (1 for the current state, 0 for the others), herald_worker_uptime_seconds,
///   herald_completions_{accepted,rejected,dropped,processed,succeeded,failed,unknown_step,overcommitted}_total,
///   herald_worker_hook_errors_total, herald_intake_queue_depth, herald_intake_queue_capacity,
///   herald_subscriber_queue_pending, herald_bus_{published,unmatched,rejected}_total,
///   herald_events_{published,skipped,failed}_total, herald_events_published_by_delivery_mode_total,
///   herald_events_published_by_publisher_total, herald_publish_hook_errors_total,
///   herald_subscriber_{received,handled,failed,dropped,skipped,slow}_total{subscriber},
///   herald_subscriber_{queue_depth,in_flight}{subscriber}, herald_zeromq_* (with a ZeroMQ
///   transport), herald_durable_* (with transports.postgres).
/// Keys missing from `status` leave their families out (or without samples); it never throws
/// for a report of another shape.
std::string render_prometheus(const nlohmann::json& status);

}  // namespace herald::detail
