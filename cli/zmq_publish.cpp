// herald publish: sends one event (payload JSON) N times over ZeroMQ.
#include "commands.hpp"
#include "signals.hpp"
#include "zmq_flags.hpp"

#include <herald/events/pattern.hpp>
#include <herald/zeromq/transport.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

namespace herald::cli {

namespace {

struct PublishArgs {
  EndpointFlags endpoints;
  CurveFlags curve;
  std::string name_list;           // NAME as given
  std::vector<std::string> names;  // NAME split at commas
  std::string payload;
  std::uint64_t count = 1;
  std::size_t wait_subscribers = 0;
  std::size_t wait_subscriptions = 0;
  int wait_timeout_ms = 10'000;
  int interval_ms = 0;
  std::string encoding = "json";
  std::string publisher_id;
  int linger_ms = 2'000;
  int sndhwm = 10'000;
};

std::vector<std::string> split_names(const std::string& list) {
  std::vector<std::string> names;
  std::size_t start = 0;
  for (;;) {
    const auto comma = list.find(',', start);
    names.push_back(list.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return names;
    start = comma + 1;
  }
}

int run_publish(PublishArgs& a) {
  a.names = split_names(a.name_list);
  require_endpoints(a.endpoints);
  SignalWaiter signals{SIGINT, SIGTERM};  // before any thread starts
  ZmqPublisherOptions options;
  options.endpoints = a.endpoints.endpoints();
  options.bind = a.endpoints.binding();
  options.encoding = parse_wire_encoding(a.encoding);
  options.publisher_id = a.publisher_id;
  options.linger = std::chrono::milliseconds(a.linger_ms);
  options.sndhwm = a.sndhwm;
  options.curve = curve_options(a.curve, options.bind);
  const auto payload = nlohmann::json::parse(a.payload);

  ZmqPublisher publisher(options);
  publisher.start();
  announce_endpoints("publish", options.bind ? "listening on" : "connected to", publisher.endpoints());

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(a.wait_timeout_ms);
  if (a.wait_subscribers > 0 && !publisher.wait_for_subscribers(a.wait_subscribers, std::chrono::milliseconds(a.wait_timeout_ms))) {
    std::fprintf(stderr, "herald publish: timed out waiting for %zu subscriber(s) (%s)\n",
                 a.wait_subscribers, publisher.stats()["subscribers_seen"].dump().c_str());
    return 1;
  }
  if (a.wait_subscriptions > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (!publisher.wait_for_subscriptions(a.wait_subscriptions, std::max(left, std::chrono::milliseconds(0)))) {
      std::fprintf(stderr, "herald publish: timed out waiting for %zu subscription(s)\n", a.wait_subscriptions);
      return 1;
    }
  }

  std::uint64_t published = 0;
  bool interrupted = false;
  for (std::uint64_t i = 0; i < a.count; ++i) {
    for (const auto& name : a.names) {
      publisher.send(DomainEvent::create(name, payload));
      ++published;
    }
    if (a.interval_ms > 0 && i + 1 < a.count) {
      const int sig = signals.wait(std::chrono::steady_clock::now() + std::chrono::milliseconds(a.interval_ms));
      if (sig == SIGINT || sig == SIGTERM) {
        interrupted = true;
        break;
      }
    }
  }
  publisher.stop();
  auto stats = publisher.stats();
  nlohmann::json summary{{"published", published},
                         {"sent", stats["sent"]},
                         {"send_errors", stats["send_errors"]},
                         {"unrouted", stats["unrouted"]},
                         {"oversized", stats["oversized"]},
                         {"publisher_id", publisher.publisher_id()},
                         {"interrupted", interrupted}};
  std::fprintf(stderr, "%s\n", summary.dump().c_str());
  return 0;
}

}  // namespace

void add_publish_command(CLI::App& app) {
  auto args = std::make_shared<PublishArgs>();
  auto* cmd = app.add_subcommand("publish", "Publish an event (NAME, payload JSON) over ZeroMQ, --count times");
  add_endpoint_flags(*cmd, args->endpoints);
  cmd->add_option("NAME", args->name_list,
                  "Event name (dot-separated tokens); several separated by commas are published "
                  "round-robin, each --count times")
      ->required()
      ->check(CLI::Validator(
          [](std::string& v) {
            for (const auto& name : split_names(v)) {
              if (!is_valid_event_name(name)) return "invalid event name '" + name + "'";
            }
            return std::string();
          },
          "EVENT_NAME"));
  cmd->add_option("JSON", args->payload, "Payload as JSON text")
      ->required()
      ->check(CLI::Validator(
          [](std::string& v) {
            return nlohmann::json::accept(v) ? std::string() : "payload is not valid JSON";
          },
          "JSON"));
  cmd->add_option("--count", args->count, "How many times to publish the event")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--wait-subscribers", args->wait_subscribers,
                  "Wait until N herald subscribers (tail, ZmqSubscriber) have subscribed");
  cmd->add_option("--wait-subscriptions", args->wait_subscriptions,
                  "Wait until N subscription messages arrived (for non-herald subscribers)");
  cmd->add_option("--wait-timeout-ms", args->wait_timeout_ms, "Longest wait for subscribers; exit 1 after")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--interval-ms", args->interval_ms, "Pause between events")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--encoding", args->encoding, "Envelope encoding")
      ->capture_default_str()->check(CLI::IsMember({"json", "msgpack"}));
  cmd->add_option("--publisher-id", args->publisher_id, "Publisher id (default: a new UUID)");
  cmd->add_option("--linger-ms", args->linger_ms, "How long to flush queued events at exit")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--sndhwm", args->sndhwm, "ZeroMQ send high-water mark")
      ->capture_default_str()->check(CLI::PositiveNumber);
  add_curve_flags(*cmd, args->curve);
  cmd->callback([args] {
    if (int code = run_publish(*args); code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace herald::cli
