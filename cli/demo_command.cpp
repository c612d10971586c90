// `herald demo`: herald's main job on its embedded default. A payments-and-orders worker takes
// a few thousand generated step completions (successes, retryable and permanent failures),
// publishes their events in process (audit + metrics subscribers), over ipc to a second
// process (`herald tail`) and, when the PostgreSQL server binaries are installed, to the durable
// road (its own throwaway cluster in the demo folder, read back by a consumer group as an
// external consumer would), then checks that every road delivered exactly what it should.
#include "commands.hpp"

#include <herald/events/error.hpp>
#include <herald/events/log.hpp>
#include <herald/postgres/consumer.hpp>
#include <herald/postgres/local_cluster.hpp>
#include <herald/zeromq/transport.hpp>
#include <herald/worker/worker.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <random>
#include <spawn.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace herald::cli {

namespace {

struct DemoOptions {
  std::size_t completions = 3000;
  std::string dir;
  unsigned seed = 7;
  bool keep_quiet_logs = true;
  bool durable = true;  ///< the durable road when the PostgreSQL server is installed
};

// The bundled configuration. {DIR} is replaced by the demo's folder.
constexpr const char* kDemoConfig = R"({
  "worker": {"name": "demo-payments-worker", "dispatcher_threads": 2, "shutdown_drain_timeout_ms": 10000},
  "transports": {"zeromq": {"publish": ["ipc://{DIR}/events.ipc"], "encoding": "json"}},
  "steps": [
    {"name": "process_payment", "publishes_events": [
      {"name": "payment.processed", "condition": "success", "delivery_mode": "broadcast",
       "schema": {"type": "object", "required": ["payment_id", "amount"],
                  "properties": {"amount": {"type": "number", "minimum": 0}}}},
      {"name": "payment.retry_scheduled", "condition": "retryable_failure"},
      {"name": "payment.failed", "condition": "permanent_failure", "delivery_mode": "broadcast"}]},
    {"name": "fulfill_order", "publishes_events": [
      {"name": "order.fulfilled", "condition": "success", "delivery_mode": "broadcast"},
      {"name": "order.fulfillment_failed", "condition": "failure"}]},
    {"name": "send_receipt", "publishes_events": [
      {"name": "notification.receipt_sent", "condition": "success", "delivery_mode": "zeromq"}]}
  ],
  "subscribers": [
    {"type": "audit", "name": "audit", "subscribes_to": ["#"], "path": "audit.jsonl",
     "overflow": "block"},
    {"type": "metrics", "name": "metrics", "subscribes_to": ["payment.*", "order.*"], "path": "metrics.prom"}
  ]
})";

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (auto pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size())) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

// Deterministic completions: 70% succeed, 20% fail retryably (some with retries exhausted),
// 10% fail permanently, across three steps of one order workflow.
std::vector<StepCompletion> generate(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> percent(0, 99);
  std::uniform_real_distribution<double> amount(5.0, 500.0);
  const char* steps[] = {"process_payment", "fulfill_order", "send_receipt"};
  std::vector<StepCompletion> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    StepCompletion c;
    const auto order = i / 3;
    c.step_name = steps[i % 3];
    c.namespace_name = i % 3 == 0 ? "payments" : "orders";
    c.task_uuid = "task-" + std::to_string(order);
    c.step_uuid = "step-" + std::to_string(i);
    c.correlation_id = "order-" + std::to_string(order);
    const int roll = percent(rng);
    c.success = roll < 70;
    c.retryable = roll >= 70 && roll < 90;
    c.max_retries = 3;
    c.retry_count = c.retryable ? (roll % 5) : 0;  // 3 and 4 mean retries are exhausted
    if (c.success) {
      c.result = {{"payment_id", "pay-" + std::to_string(order)}, {"amount", std::round(amount(rng) * 100) / 100},
                  {"order_id", "order-" + std::to_string(order)}};
    } else {
      c.error = StepError{c.retryable ? "gateway timeout" : "card declined",
                          c.retryable ? "TimeoutError" : "CardDeclined"};
    }
    out.push_back(std::move(c));
  }
  return out;
}

// Which events the bundled configuration publishes for a completion, and which of them travel
// over ZeroMQ: what the demo expects to see at each end.
// Broadcast events also go to the durable road when there is one.
void expect_events(const StepCompletion& c, std::map<std::string, std::uint64_t>& all,
                   std::uint64_t& in_process, std::uint64_t& over_zeromq, std::uint64_t& durable) {
  const bool retry = !c.success && c.retryable && c.retry_count < c.max_retries;
  enum Road { local, remote, both };
  auto add = [&](const char* name, Road road) {
    ++all[name];
    if (road != remote) ++in_process;
    if (road != local) ++over_zeromq;
    if (road == both) ++durable;
  };
  if (c.step_name == "process_payment") {
    if (c.success) add("payment.processed", both);
    else if (retry) add("payment.retry_scheduled", local);
    else add("payment.failed", both);
  } else if (c.step_name == "fulfill_order") {
    if (c.success) add("order.fulfilled", both);
    else add("order.fulfillment_failed", local);
  } else if (c.success) {
    add("notification.receipt_sent", remote);
  }
}

std::uint64_t count_lines(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::uint64_t n = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) ++n;
  }
  return n;
}

int run_demo(const DemoOptions& options) {
  namespace fs = std::filesystem;
  std::string dir = options.dir;
  if (dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "herald-demo-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      std::fprintf(stderr, "herald demo: cannot create a temporary folder\n");
      return 1;
    }
    dir = tmpl;
  }
  fs::create_directories(dir);
  if (options.keep_quiet_logs) logger()->set_level(spdlog::level::warn);
  std::printf("herald demo\n  folder: %s\n", dir.c_str());
  const auto started = std::chrono::steady_clock::now();

  // The durable road: a throwaway PostgreSQL cluster in the demo folder, when the server is
  // installed. (As root, the server runs as `postgres`, which must be able to enter the folder.)
  std::unique_ptr<durable::LocalCluster> cluster;
  std::string durable_note;
  if (!options.durable) {
    durable_note = "off (--no-durable)";
  } else if (!durable::LocalCluster::available()) {
    durable_note = "skipped: no PostgreSQL server in " + durable::LocalCluster::bin_dir() +
                   " (apt-get install postgresql; HERALD_PG_BIN names another folder)";
  } else {
    try {
      fs::permissions(dir, fs::perms::group_exec | fs::perms::others_exec, fs::perm_options::add);
      cluster = std::make_unique<durable::LocalCluster>("herald-demo", /*fsync=*/true, fs::path(dir));
    } catch (const std::exception& e) {
      durable_note = std::string("skipped: the demo's PostgreSQL cluster did not start: ") + e.what();
    }
  }
  std::string config_text = replace_all(kDemoConfig, "{DIR}", dir);
  if (cluster) {
    config_text = replace_all(config_text, R"("transports": {)",
                              R"("transports": {"postgres": {"dsn": ")" + cluster->dsn() + R"("}, )");
  }
  const auto config_path = fs::path(dir) / "herald.json";
  std::ofstream(config_path) << config_text;
  std::printf("  config: %s\n", config_path.c_str());

  const auto completions = generate(options.completions, options.seed);
  std::map<std::string, std::uint64_t> expected;
  std::uint64_t expected_local = 0, expected_zmq = 0, expected_durable = 0;
  for (const auto& c : completions) expect_events(c, expected, expected_local, expected_zmq, expected_durable);
  if (!cluster) expected_durable = 0;

  auto config = WorkerConfig::load(config_path);
  // The demo builds the ZeroMQ publisher itself so it can wait for the tail process to connect.
  ZmqPublisherOptions zopts;
  zopts.endpoints = config.zeromq->publish;
  zopts.bind = true;
  zopts.linger = std::chrono::seconds(10);  // a slow receiver still gets what was queued
  auto publisher = std::make_shared<ZmqPublisher>(zopts);
  Worker worker(config);
  worker.set_transport(publisher);
  worker.start();

  // The second process: `herald tail` on the same ipc endpoint, writing what it receives.
  const auto tail_out = fs::path(dir) / "tail.jsonl";
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const std::string count = std::to_string(expected_zmq);
  const std::string endpoint = config.zeromq->publish.front();
  std::vector<std::string> args = {self, "tail", "--connect", endpoint, "--count", count,
                                   "--timeout-ms", "30000", "#"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, tail_out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, (fs::path(dir) / "tail.log").c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t tail_pid = -1;
  const int spawn_error = ::posix_spawn(&tail_pid, self.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawn_error != 0) {
    std::fprintf(stderr, "herald demo: cannot start `herald tail`: %s\n", std::strerror(spawn_error));
    (void)worker.stop();
    return 1;
  }
  const bool tail_connected = publisher->wait_for_subscribers(1, std::chrono::seconds(10));
  std::printf("  second process: herald tail (pid %d) on %s: %s\n", static_cast<int>(tail_pid), endpoint.c_str(),
              tail_connected ? "connected" : "NOT connected");

  for (const auto& c : completions) worker.complete_step(c);
  // Let both roads finish before stopping: the worker's queues, then the second process.
  (void)worker.drain(std::chrono::seconds(20));
  const auto catch_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (count_lines(tail_out) < expected_zmq && std::chrono::steady_clock::now() < catch_up &&
         ::waitpid(tail_pid, nullptr, WNOHANG) == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto report = worker.stop(std::chrono::seconds(20));  // the durable road flushes here
  const auto status = worker.status();

  // The external-consumer check: a consumer group reads the durable log from the beginning,
  // as another service would, and every broadcast event must be there exactly once.
  std::uint64_t durable_read = 0, durable_duplicates = 0, durable_committed = 0;
  if (cluster) {
    durable_committed = status["transports"]["postgres"].value("committed", std::uint64_t{0});
    std::mutex seen_mutex;
    std::set<std::string> seen;
    DurableHandlers handlers;
    handlers.handle = [&](const EventPtr& e, const DurableRecord&) {
      std::lock_guard lock(seen_mutex);
      if (!seen.insert(e->event_id()).second) ++durable_duplicates;
      return DurableResult::ok();
    };
    // One consumer per stream (a stream per namespace, tasker-core's {namespace}_domain_events).
    std::vector<std::unique_ptr<DurableConsumer>> consumers;
    for (const char* stream : {"payments_domain_events", "orders_domain_events"}) {
      DurableConsumerOptions copts;
      copts.dsn = cluster->dsn();
      copts.stream = stream;
      copts.group = "demo-check";
      copts.start = durable::StartPosition::beginning();
      consumers.push_back(std::make_unique<DurableConsumer>(copts, handlers));
      consumers.back()->start();
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < until) {
      {
        std::lock_guard lock(seen_mutex);
        if (seen.size() + durable_duplicates >= expected_durable) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (auto& c : consumers) c->stop();
    durable_read = seen.size();
  }

  int tail_status = 0;
  const auto tail_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (::waitpid(tail_pid, &tail_status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > tail_deadline) {
      ::kill(tail_pid, SIGTERM);
      ::waitpid(tail_pid, &tail_status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  const auto audit_lines = count_lines(fs::path(dir) / "audit.jsonl");
  const auto tail_lines = count_lines(tail_out);
  std::printf("  completions: %zu (%s published cleanly, %s with publish errors)\n", completions.size(),
              status["completions"]["succeeded"].dump().c_str(), status["completions"]["failed"].dump().c_str());
  std::printf("  events published:\n");
  bool all_match = true;
  for (const auto& [name, n] : expected) {
    const auto got = status["events"]["published_by_event"].value(name, std::uint64_t{0});
    all_match = all_match && got == n;
    std::printf("    %-28s %6llu%s\n", name.c_str(), static_cast<unsigned long long>(got), got == n ? "" : "  (MISMATCH)");
  }
  const bool audit_ok = audit_lines == expected_local;
  const bool tail_ok = tail_lines == expected_zmq;
  std::printf("  in process: audit.jsonl holds %llu of %llu events%s\n", static_cast<unsigned long long>(audit_lines),
              static_cast<unsigned long long>(expected_local), audit_ok ? "" : "  (MISMATCH)");
  std::printf("  over ipc:   herald tail received %llu of %llu events%s\n", static_cast<unsigned long long>(tail_lines),
              static_cast<unsigned long long>(expected_zmq), tail_ok ? "" : "  (MISMATCH)");
  const bool durable_ok = !cluster || (durable_read == expected_durable && durable_duplicates == 0 &&
                                       durable_committed == expected_durable);
  if (cluster) {
    std::printf("  durable:    PostgreSQL (a throwaway cluster in %s, removed at exit): %llu of %llu broadcast events committed; "
                "consumer group 'demo-check' read back %llu, %llu twice%s\n",
                cluster->dir().c_str(), static_cast<unsigned long long>(durable_committed),
                static_cast<unsigned long long>(expected_durable), static_cast<unsigned long long>(durable_read),
                static_cast<unsigned long long>(durable_duplicates), durable_ok ? "" : "  (MISMATCH)");
  } else {
    std::printf("  durable:    %s\n", durable_note.c_str());
  }
  std::printf("  metrics:    %s\n", (fs::path(dir) / "metrics.prom").c_str());
  std::printf("  stop:       %s, %.2f s in all\n", report.graceful ? "graceful, nothing lost" : "NOT graceful", elapsed);
  const bool ok = all_match && audit_ok && tail_ok && durable_ok && report.graceful && tail_connected;
  std::printf("%s\n", ok ? "demo OK: every event reached every road it was declared for"
                         : "demo FAILED: see the mismatches above");
  return ok ? 0 : 1;
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto options = std::make_shared<DemoOptions>();
  auto* cmd = app.add_subcommand("demo", "Run the bundled payments-and-orders demo (no arguments needed)");
  cmd->add_option("--completions,-n", options->completions, "How many step completions to generate")
      ->check(CLI::Range(1, 10'000'000));
  cmd->add_option("--dir", options->dir, "Folder for the demo's files (default: a new temporary folder)");
  cmd->add_option("--seed", options->seed, "Seed of the generated workload");
  cmd->add_flag("!--no-durable", options->durable,
                "Leave out the durable road (by default it runs when the PostgreSQL server is installed)");
  cmd->callback([options] {
    int code = 1;
    try {
      code = run_demo(*options);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "herald demo: %s\n", e.what());
    }
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace herald::cli
