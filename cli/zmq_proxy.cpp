// herald proxy: XSUB (publishers connect) to XPUB (subscribers connect), with counters.
#include "commands.hpp"
#include "signals.hpp"
#include "zmq_flags.hpp"

#include <herald/zeromq/proxy.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

namespace herald::cli {

namespace {

struct ProxyArgs {
  std::vector<std::string> frontend;
  std::vector<std::string> backend;
  CurveFlags curve;
  int hwm = 10'000;
  std::int64_t max_frame_size = ZmqProxyOptions{}.max_frame_size;
  std::size_t max_topics = ZmqProxyOptions{}.max_topics;
};

void print_counters(const ZmqProxy& proxy, const char* when) {
  auto j = proxy.stats().to_json();
  j["when"] = when;
  std::fprintf(stderr, "%s\n", j.dump().c_str());
  std::fflush(stderr);
}

int run_proxy(const ProxyArgs& a) {
  SignalWaiter signals{SIGINT, SIGTERM, SIGUSR1};  // before any thread starts
  ZmqProxyOptions options;
  options.frontend = a.frontend;
  options.backend = a.backend;
  options.hwm = a.hwm;
  options.max_frame_size = a.max_frame_size;
  options.max_topics = a.max_topics;
  options.curve = curve_options(a.curve, /*binding=*/true);
  ZmqProxy proxy(options);
  proxy.start();
  announce_endpoints("proxy", "frontend", proxy.frontend_endpoints());
  announce_endpoints("proxy", "backend", proxy.backend_endpoints());
  for (;;) {
    const int sig = signals.wait();
    if (sig == SIGUSR1) {
      print_counters(proxy, "sigusr1");
      continue;
    }
    if (sig == SIGINT || sig == SIGTERM) break;
  }
  proxy.stop();
  print_counters(proxy, "exit");
  return 0;
}

}  // namespace

void add_proxy_command(CLI::App& app) {
  auto args = std::make_shared<ProxyArgs>();
  auto* cmd = app.add_subcommand(
      "proxy",
      "Forward events from publishers (--frontend, XSUB) to subscribers (--backend, XPUB).\n"
      "Counters go to stderr on SIGUSR1 and at exit (SIGINT/SIGTERM).");
  cmd->add_option("--frontend", args->frontend, "Endpoint(s) publishers connect to (bound)")->required();
  cmd->add_option("--backend", args->backend, "Endpoint(s) subscribers connect to (bound)")->required();
  cmd->add_option("--hwm", args->hwm, "High-water mark of both sockets")->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-frame-size", args->max_frame_size,
                  "Largest frame accepted from a publisher, in bytes; a larger one closes that "
                  "publisher's connection (0: no limit)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-topics", args->max_topics,
                  "Distinct subscription topics forwarded to publishers at a time; new topics "
                  "beyond it are refused and counted (0: no limit)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  add_curve_flags(*cmd, args->curve, /*server_only=*/true);
  cmd->callback([args] {
    if (int code = run_proxy(*args); code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace herald::cli
