// herald tail: prints matching events from ZeroMQ as JSON envelopes, one per line.
#include "commands.hpp"
#include "signals.hpp"
#include "zmq_flags.hpp"

#include <herald/events/error.hpp>
#include <herald/events/pattern.hpp>
#include <herald/zeromq/transport.hpp>

#include <CLI/CLI.hpp>

#include <atomic>
#include <cstdio>
#include <memory>

namespace herald::cli {

namespace {

struct TailArgs {
  EndpointFlags endpoints;
  CurveFlags curve;
  std::vector<std::string> patterns;
  std::uint64_t count = 0;
  int timeout_ms = 0;
  std::size_t max_message_size = kDefaultMaxMessageSize;
  std::size_t dedup_capacity = 10'000;
};

int run_tail(const TailArgs& a) {
  require_endpoints(a.endpoints);
  SignalWaiter signals{SIGINT, SIGTERM};  // before any thread starts
  ZmqSubscriberOptions options;
  options.endpoints = a.endpoints.endpoints();
  options.bind = a.endpoints.binding();
  options.patterns = a.patterns;
  options.max_message_size = a.max_message_size;
  options.dedup_capacity = a.dedup_capacity;
  options.curve = curve_options(a.curve, options.bind);
  options.name = "tail";

  std::atomic<std::uint64_t> printed{0};
  ZmqSubscriber subscriber(options, [&](const WireMessage& msg) {
    // Runs on the subscriber's I/O thread, the only writer of stdout.
    if (a.count != 0 && printed.load() >= a.count) return;
    const std::string line = envelope_json_line(msg) + "\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
    if (++printed == a.count) signals.wake();
  });
  subscriber.start();
  announce_endpoints("tail", options.bind ? "listening on" : "connecting to", subscriber.endpoints());

  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (a.timeout_ms > 0) deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(a.timeout_ms);
  bool timed_out = false;
  for (;;) {
    if (a.count != 0 && printed.load() >= a.count) break;
    const int sig = signals.wait(deadline);
    if (sig == 0) {
      timed_out = true;
      break;
    }
    if (sig == SIGINT || sig == SIGTERM) break;
  }
  subscriber.stop();
  auto stats = subscriber.stats();
  nlohmann::json summary{{"received", stats["received"]},     {"delivered", stats["delivered"]},
                         {"printed", printed.load()},         {"gaps", stats["gaps"]},
                         {"duplicates", stats["duplicates"]}, {"out_of_order", stats["out_of_order"]},
                         {"filtered", stats["filtered"]},     {"rejected", stats["rejected_total"]},
                         {"reconnects", stats["reconnects"]},
                         {"rejected_by_reason", stats["rejected"]},
                         {"publishers", stats["publishers"]}, {"timed_out", timed_out}};
  std::fprintf(stderr, "%s\n", summary.dump().c_str());
  return timed_out && a.count != 0 ? 1 : 0;
}

}  // namespace

void add_tail_command(CLI::App& app) {
  auto args = std::make_shared<TailArgs>();
  auto* cmd = app.add_subcommand(
      "tail",
      "Print events matching PATTERN(s) from ZeroMQ, one JSON envelope per line on stdout;\n"
      "a summary (received, gaps, duplicates, rejected) goes to stderr at exit.\n"
      "Exits after --count events (0), --timeout-ms (1 if --count was not reached), or SIGINT/SIGTERM (0).");
  add_endpoint_flags(*cmd, args->endpoints);
  cmd->add_option("PATTERN", args->patterns, "Glob pattern(s): '*' one token, '#' any tokens")
      ->required()
      ->check(CLI::Validator(
          [](std::string& v) {
            try {
              (void)Pattern::compile(v);
              return std::string();
            } catch (const PatternError& e) {
              return std::string(e.what());
            }
          },
          "PATTERN"));
  cmd->add_option("--count", args->count, "Exit after N events (0: no limit)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--timeout-ms", args->timeout_ms, "Exit after T milliseconds (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-message-size", args->max_message_size, "Largest accepted message in bytes")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--dedup-capacity", args->dedup_capacity, "Recent event ids kept for duplicate suppression")
      ->capture_default_str();
  add_curve_flags(*cmd, args->curve);
  cmd->callback([args] {
    if (int code = run_tail(*args); code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace herald::cli
