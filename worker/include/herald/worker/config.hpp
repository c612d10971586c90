// Worker configuration: the JSON file `herald run --config` reads, validated with errors that
// name the key path ("steps[0].publishes_events[1].condition: unknown publication condition
// 'sucess' (expected one of: ...)"). Unknown keys are errors, with a "did you mean" when close.
#pragma once

#include <herald/events/encoding.hpp>
#include <herald/events/event_bus.hpp>
#include <herald/postgres/publisher.hpp>
#include <herald/postgres/retention.hpp>
#include <herald/publishers/declaration.hpp>
#include <herald/subscribers/subscriber.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald {

/// ZeroMQ publishing for events with delivery mode zeromq/broadcast.
struct ZmqTransportConfig {
  std::vector<std::string> publish;  ///< endpoints
  bool bind = true;                  ///< bind (default) or connect (e.g. to a proxy)
  WireEncoding encoding = WireEncoding::json;
  int send_hwm = 100'000;
  std::chrono::milliseconds linger{1'000};
  std::optional<std::filesystem::path> curve_secret_key;  ///< server side (bind)
  std::optional<std::filesystem::path> curve_server_key;  ///< client side (connect)
  std::vector<std::filesystem::path> curve_allow;         ///< allowed client public keys
};

/// `http`: serve /metrics, /health and /status while the worker runs (Worker, README "HTTP").
struct HttpConfig {
  std::string listen;  ///< "HOST:PORT" ("[IPv6]:PORT"); port 0 picks a free port
  friend bool operator==(const HttpConfig&, const HttpConfig&) = default;
};

/// A listen address split into host and port.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
/// Splits "HOST:PORT" or "[IPv6]:PORT" (port 0-65535, host not empty). Throws
/// ValidationError(field, problem naming the address) when it is malformed.
HostPort parse_host_port(std::string_view address, std::string_view field);

/// The built-in subscribers a configuration file can declare (its `type`).
enum class SubscriberType {
  audit,    ///< AuditSubscriber: JSON Lines file
  metrics,  ///< MetricsSubscriber: counters, optionally written as Prometheus text
};
std::string_view to_string(SubscriberType type) noexcept;
/// "audit" or "metrics"; throws UnknownValueError:
/// "unknown subscriber type 'kafka' (expected one of: audit, metrics)".
SubscriberType parse_subscriber_type(std::string_view text);

/// A built-in subscriber declared in the file.
struct SubscriberConfig {
  SubscriberType type = SubscriberType::audit;
  std::string name;
  std::vector<std::string> subscribes_to;
  std::optional<std::filesystem::path> path;  ///< resolved against the file's folder
  bool fsync = false;                         ///< audit: fdatasync per event
  std::size_t capacity = 10'000;
  OverflowPolicy overflow = hosted_subscribe_options().overflow;  ///< isolation (subscriber.hpp)
  std::chrono::milliseconds block_timeout{5'000};
  std::chrono::milliseconds dispatch_timeout{0};  ///< slow-handler threshold (0: off)
  std::uint32_t breaker_failure_threshold = 0;    ///< circuit breaker (0: off)
  std::chrono::milliseconds breaker_cooldown{5'000};
  nlohmann::json to_json() const;
  friend bool operator==(const SubscriberConfig&, const SubscriberConfig&) = default;
};

struct WorkerConfig {
  std::string name = "herald-worker";
  std::size_t dispatcher_threads = 0;  ///< 0: one per core
  /// Which threads run the bus's handlers (herald::DispatchPolicy). In the file:
  /// `"dispatch": "dispatcher_pool" | "inline_on_publisher"`, or the older
  /// `"inline_dispatch": true` for inline_on_publisher.
  DispatchPolicy dispatch = DispatchPolicy::dispatcher_pool;
  std::chrono::milliseconds shutdown_drain_timeout{5'000};
  std::size_t intake_capacity = 10'000;
  OverflowPolicy intake_overflow = OverflowPolicy::block;
  std::chrono::milliseconds intake_block_timeout{5'000};
  std::optional<ZmqTransportConfig> zeromq;
  /// `transports.postgres`: the durable road (delivery modes durable and broadcast), read by
  /// herald::durable::publisher_options_from_json. A declaration with delivery_mode durable
  /// needs it (ConfigError naming the declaration's key path otherwise).
  std::optional<DurablePublisherOptions> postgres;
  /// `transports.postgres.retention`: {"max_age_s"?, "max_events"? (at least one),
  /// "interval_ms"? (default 60,000), "streams"? (default: every stream)}: the running worker
  /// prunes the log on that schedule (DurableRetention, its own thread and connection).
  std::optional<DurableRetentionOptions> retention;
  /// `http.listen`: the worker serves /metrics, /health and /status there (worker.hpp).
  std::optional<HttpConfig> http;
  /// step name -> the events it publishes (`publishes_events`)
  std::map<std::string, std::vector<EventDeclaration>> steps;
  std::vector<SubscriberConfig> subscribers;
  /// Where the file was read from (empty when built in code); relative paths resolve here.
  std::filesystem::path source;

  /// Validates; throws ConfigError naming the key path. `base_dir` resolves relative paths.
  static WorkerConfig from_json(const nlohmann::json& j, const std::filesystem::path& base_dir = {});
  /// Reads and validates a file; ConfigError names the file for unreadable or invalid JSON.
  static WorkerConfig load(const std::filesystem::path& file);
  /// Publisher names the step declarations refer to.
  std::vector<std::string> declared_publishers() const;
};

}  // namespace herald
