#include "prometheus_status.hpp"

#include <herald/subscribers/metrics.hpp>

#include <array>
#include <charconv>
#include <initializer_list>
#include <string_view>
#include <utility>

namespace herald::detail {

namespace {

using nlohmann::json;
using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

// Appends families and samples; a value that is not a number is skipped, never an error.
class Exposition {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  void sample(std::string_view name, Labels labels, const json* value) {
    if (value == nullptr || !value->is_number()) return;
    out_ += name;
    if (labels.size() > 0) {
      out_ += '{';
      bool first = true;
      for (const auto& [key, text] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += key;
        out_ += "=\"";
        out_ += escape_prometheus_label(text);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    if (value->is_number_unsigned()) {
      out_ += std::to_string(value->get<std::uint64_t>());
    } else if (value->is_number_integer()) {
      out_ += std::to_string(value->get<std::int64_t>());
    } else {
      // The shortest text that reads back as the same double (0.73, not 0.72999999999999998).
      char buffer[32];
      const auto end = std::to_chars(buffer, buffer + sizeof buffer, value->get<double>()).ptr;
      out_.append(buffer, end);
    }
    out_ += '\n';
  }
  void sample(std::string_view name, Labels labels, const json& value) { sample(name, labels, &value); }

  // One family with one sample read from `object[key]`.
  void single(std::string_view name, std::string_view type, std::string_view help, const json& object,
              std::string_view key) {
    family(name, type, help);
    sample(name, {}, field(object, key));
  }

  static const json* field(const json& object, std::string_view key) {
    if (!object.is_object()) return nullptr;
    const auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
  }
  static const json& object_at(const json& object, std::string_view key) {
    static const json empty = json::object();
    const json* v = field(object, key);
    return v != nullptr && v->is_object() ? *v : empty;
  }

  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

constexpr std::array<std::string_view, 6> kStates = {"INITIALIZING", "STARTING", "RUNNING",
                                                      "STOPPING",     "STOPPED",  "ERROR"};

void render_worker(Exposition& e, const json& s) {
  const json* state = Exposition::field(s, "state");
  e.family("herald_worker_state", "gauge", "1 for the worker's current lifecycle state, 0 for the others.");
  for (const auto name : kStates) {
    const bool current = state != nullptr && state->is_string() && state->get<std::string>() == name;
    e.sample("herald_worker_state", {{"state", name}}, json(current ? 1 : 0));
  }
  if (const json* uptime = Exposition::field(s, "uptime_ms"); uptime != nullptr && uptime->is_number()) {
    e.family("herald_worker_uptime_seconds", "gauge", "Seconds since the worker started.");
    e.sample("herald_worker_uptime_seconds", {}, json(uptime->get<double>() / 1000.0));
  }

  const json& c = Exposition::object_at(s, "completions");
  struct Counter {
    std::string_view metric, key, help;
  };
  static constexpr std::array<Counter, 8> kCompletions{{
      {"herald_completions_accepted_total", "received", "Step completions accepted into the intake."},
      {"herald_completions_rejected_total", "rejected",
       "Step completions refused (worker not running, or intake full past its overflow policy)."},
      {"herald_completions_dropped_total", "dropped",
       "Accepted step completions dropped (drop_oldest intake, or undelivered at stop)."},
      {"herald_completions_processed_total", "processed", "Step completions whose events were published."},
      {"herald_completions_succeeded_total", "succeeded", "Processed step completions with every event published."},
      {"herald_completions_failed_total", "failed", "Processed step completions with a publishing error."},
      {"herald_completions_unknown_step_total", "unknown_step",
       "Step completions naming a step the configuration does not declare."},
      {"herald_completions_overcommitted_total", "overcommitted",
       "Step completions taken beyond the intake's capacity (the caller could not wait)."},
  }};
  for (const auto& counter : kCompletions) e.single(counter.metric, "counter", counter.help, c, counter.key);
  e.single("herald_worker_hook_errors_total", "counter", "Worker hooks (on_success, on_error, ...) that threw.", s,
           "hook_errors");

  const json& q = Exposition::object_at(s, "queues");
  e.single("herald_intake_queue_depth", "gauge", "Step completions accepted and not yet processed.", q,
           "intake_depth");
  e.single("herald_intake_queue_capacity", "gauge", "Capacity of the step-completion intake.", q, "intake_capacity");
  e.single("herald_subscriber_queue_pending", "gauge", "Events queued for subscribers, all mailboxes together.", q,
           "subscriber_pending");

  const json& bus = Exposition::object_at(s, "bus");
  e.single("herald_bus_published_total", "counter", "Events handed to the in-process bus.", bus, "published");
  e.single("herald_bus_unmatched_total", "counter", "Bus events that matched no subscriber.", bus, "unmatched");
  e.single("herald_bus_rejected_total", "counter", "Bus events refused (bus closed).", bus, "rejected");
}

void render_events(Exposition& e, const json& s) {
  const json& ev = Exposition::object_at(s, "events");
  e.family("herald_events_published_total", "counter", "Domain events published, by event name.");
  for (const auto& [name, n] : Exposition::object_at(ev, "published_by_event").items()) {
    e.sample("herald_events_published_total", {{"event_name", name}}, n);
  }
  e.family("herald_events_skipped_total", "counter",
           "Declared events not published, by event name and reason (condition, should_publish, before_publish).");
  for (const auto& [name, reasons] : Exposition::object_at(ev, "skipped_by_event").items()) {
    if (!reasons.is_object()) continue;
    for (const auto& [reason, n] : reasons.items()) {
      e.sample("herald_events_skipped_total", {{"event_name", name}, {"reason", reason}}, n);
    }
  }
  e.family("herald_events_failed_total", "counter", "Domain events that failed to publish, by event name and stage.");
  for (const auto& [name, stages] : Exposition::object_at(ev, "failed_by_event").items()) {
    if (!stages.is_object()) continue;
    for (const auto& [stage, n] : stages.items()) {
      e.sample("herald_events_failed_total", {{"event_name", name}, {"stage", stage}}, n);
    }
  }
  e.family("herald_events_published_by_delivery_mode_total", "counter", "Domain events published, by delivery mode.");
  for (const auto& [mode, n] : Exposition::object_at(ev, "published_by_delivery_mode").items()) {
    e.sample("herald_events_published_by_delivery_mode_total", {{"delivery_mode", mode}}, n);
  }
  e.family("herald_events_published_by_publisher_total", "counter", "Domain events published, by publisher.");
  for (const auto& [publisher, n] : Exposition::object_at(ev, "published_by_publisher").items()) {
    e.sample("herald_events_published_by_publisher_total", {{"publisher", publisher}}, n);
  }
  e.single("herald_publish_hook_errors_total", "counter", "on_publish_error hooks that threw.", ev, "hook_errors");
}

void render_subscribers(Exposition& e, const json& s) {
  const json& subs = Exposition::object_at(s, "subscribers");
  struct Column {
    std::string_view metric, type, key, help;
  };
  static constexpr std::array<Column, 8> kColumns{{
      {"herald_subscriber_received_total", "counter", "received", "Events delivered to the subscriber's mailbox."},
      {"herald_subscriber_handled_total", "counter", "handled", "Events the subscriber handled successfully."},
      {"herald_subscriber_failed_total", "counter", "failed", "Events whose handler failed or threw."},
      {"herald_subscriber_dropped_total", "counter", "dropped",
       "Events dropped for the subscriber (full mailbox policy, open circuit breaker, stop)."},
      {"herald_subscriber_skipped_total", "counter", "skipped", "Events before_handle declined."},
      {"herald_subscriber_slow_total", "counter", "slow", "Handlers that ran past the slow-handler threshold."},
      {"herald_subscriber_queue_depth", "gauge", "queue_depth", "Events waiting in the subscriber's mailbox."},
      {"herald_subscriber_in_flight", "gauge", "in_flight", "Events the subscriber is handling now."},
  }};
  for (const auto& column : kColumns) {
    e.family(column.metric, column.type, column.help);
    for (const auto& [name, stats] : subs.items()) {
      e.sample(column.metric, {{"subscriber", name}}, Exposition::field(stats, column.key));
    }
  }
}

void render_transports(Exposition& e, const json& s) {
  const json& transports = Exposition::object_at(s, "transports");
  // The ZeroMQ publisher (any transport reporting these keys, labelled with its name).
  struct Column {
    std::string_view metric, type, key, help;
  };
  static constexpr std::array<Column, 4> kZmq{{
      {"herald_zeromq_sent_total", "counter", "sent", "Events sent on the ZeroMQ PUB socket."},
      {"herald_zeromq_send_errors_total", "counter", "send_errors", "ZeroMQ sends that failed."},
      {"herald_zeromq_queue_full_total", "counter", "queue_full",
       "Events refused because the ZeroMQ socket thread's queue was full."},
      {"herald_zeromq_queue_depth", "gauge", "queue_depth", "Events waiting for the ZeroMQ socket thread."},
  }};
  bool any_zmq = false;
  for (const auto& [name, stats] : transports.items()) any_zmq = any_zmq || Exposition::field(stats, "sent");
  if (any_zmq) {
    for (const auto& column : kZmq) {
      e.family(column.metric, column.type, column.help);
      for (const auto& [name, stats] : transports.items()) {
        if (Exposition::field(stats, "sent")) e.sample(column.metric, {{"transport", name}}, Exposition::field(stats, column.key));
      }
    }
  }
  // The durable road (transports.postgres): its stats carry "committed".
  static constexpr std::array<Column, 8> kDurable{{
      {"herald_durable_accepted_total", "counter", "accepted", "Events accepted by the durable writer."},
      {"herald_durable_committed_total", "counter", "committed", "Events committed to the PostgreSQL event log."},
      {"herald_durable_rejected_total", "counter", "rejected", "Events the durable writer refused (full queue)."},
      {"herald_durable_dropped_total", "counter", "dropped", "Events the durable writer dropped."},
      {"herald_durable_write_errors_total", "counter", "write_errors", "Failed writes to PostgreSQL."},
      {"herald_durable_spooled_total", "counter", "spooled", "Events written to the local spool while the database was away."},
      {"herald_durable_queue_depth", "gauge", "queue_depth", "Events waiting for the durable writer."},
      {"herald_durable_connected", "gauge", "connected", "1 while the durable writer is connected to PostgreSQL."},
  }};
  for (const auto& [name, stats] : transports.items()) {
    if (!Exposition::field(stats, "committed")) continue;
    for (const auto& column : kDurable) {
      e.family(column.metric, column.type, column.help);
      const json* v = Exposition::field(stats, column.key);
      if (v != nullptr && v->is_boolean()) {
        e.sample(column.metric, {}, json(v->get<bool>() ? 1 : 0));
      } else {
        e.sample(column.metric, {}, v);
      }
    }
    break;  // one durable road per worker
  }
}

}  // namespace

std::string render_prometheus(const json& status) {
  Exposition e;
  render_worker(e, status);
  render_events(e, status);
  render_subscribers(e, status);
  render_transports(e, status);
  return e.take();
}

}  // namespace herald::detail
