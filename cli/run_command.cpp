// `herald run`: a worker from a configuration file, fed step completions as JSON Lines (a file
// or stdin) and/or from a ZeroMQ PULL endpoint; graceful stop at end of input or on a signal.
#include "commands.hpp"
#include "line_reader.hpp"

#include <herald/events/error.hpp>
#include <herald/events/log.hpp>
#include <herald/zeromq/transport.hpp>
#include <herald/worker/worker.hpp>

#include <CLI/CLI.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>
#include <unistd.h>

namespace herald::cli {

namespace {

struct RunOptions {
  std::string config;
  std::string steps;
  std::string listen;
  std::string http;  // --http HOST:PORT (overrides the configuration's http.listen)
  bool strict = false;
  std::string status_json;
  bool quiet = false;
};

// Counts shared by the input threads and the progress/summary printer.
struct IntakeCounters {
  std::atomic<std::uint64_t> lines{0}, accepted{0}, bad{0}, refused{0};
};

// Back-pressure with hysteresis for input threads that outrun the worker. A `block` intake
// that is full makes complete_step() wait, and the intake thread then wakes the waiting input
// thread for every completion it takes: a context switch per completion on each side. Instead,
// the input threads keep at most `limit` completions submitted but not yet processed (so
// complete_step() finds room and never waits) and, at the limit, sleep until the worker has
// processed down to half of it: one wake-up per limit/2 completions. Processed completions are
// counted by the worker's on_success/on_error hooks (every completion the intake thread
// processes runs exactly one of them). A wait ends when the worker stops, and after 100 ms
// without a single completion processed, the input thread submits anyway and complete_step()'s
// own policy applies (block timeout, counted), so a completion that left without a hook can
// slow the reader, never stall it.
class IntakeWindow {
 public:
  explicit IntakeWindow(std::uint64_t limit) : limit_(limit), low_(limit / 2) {}

  /// Before submitting one completion: waits while `limit` are in flight.
  template <class Stopping>
  void acquire(const Stopping& stopping) {
    if (in_flight() < limit_) {
      submitted_.fetch_add(1);
      return;
    }
    {
      std::unique_lock lock(mutex_);
      waiting_.store(true);
      while (in_flight() > low_ && !stopping()) {
        const auto before = done_.load();
        if (cv_.wait_for(lock, std::chrono::milliseconds(100)) == std::cv_status::timeout &&
            done_.load() == before) {
          break;  // no progress for 100 ms: let complete_step()'s own policy decide
        }
      }
      waiting_.store(false);
    }
    submitted_.fetch_add(1);
  }
  /// True when acquire() would wait now.
  bool full() const { return in_flight() >= limit_; }
  /// A submission that was not accepted (refused, or it threw before reaching the worker).
  void cancel() { submitted_.fetch_sub(1); }
  /// The worker processed one completion (on its intake thread).
  void processed() {
    const auto done = done_.fetch_add(1) + 1;
    if (waiting_.load() && submitted_.load() - done <= low_) {
      std::lock_guard lock(mutex_);
      cv_.notify_all();
    }
  }
  /// Wakes waiters (the worker is stopping).
  void wake() {
    std::lock_guard lock(mutex_);
    cv_.notify_all();
  }

 private:
  // done_ first: it never passes submitted_ (accepted completions), so the difference cannot wrap.
  std::uint64_t in_flight() const {
    const auto done = done_.load();
    return submitted_.load() - done;
  }

  const std::uint64_t limit_, low_;
  std::atomic<std::uint64_t> submitted_{0}, done_{0};
  std::atomic<bool> waiting_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
};

void print_summary(const Worker& worker_const, const IntakeCounters& counts, const WorkerStopReport& report,
                   std::FILE* out) {
  auto& worker = const_cast<Worker&>(worker_const);
  const auto s = worker.status();
  std::fprintf(out, "herald run: %llu lines read, %llu completions accepted, %llu bad lines, %llu refused\n",
               static_cast<unsigned long long>(counts.lines.load()),
               static_cast<unsigned long long>(counts.accepted.load()),
               static_cast<unsigned long long>(counts.bad.load()),
               static_cast<unsigned long long>(counts.refused.load()));
  const auto& c = s["completions"];
  std::fprintf(out, "  completions: processed %s, succeeded %s, failed %s, unknown step %s\n",
               c["processed"].dump().c_str(), c["succeeded"].dump().c_str(), c["failed"].dump().c_str(),
               c["unknown_step"].dump().c_str());
  const auto& ev = s["events"];
  if (ev.contains("published_by_event")) {
    for (auto it = ev["published_by_event"].begin(); it != ev["published_by_event"].end(); ++it) {
      std::fprintf(out, "  event %-32s %s\n", it.key().c_str(), it.value().dump().c_str());
    }
  }
  if (ev.contains("failed")) {
    std::fprintf(out, "  publish errors: %s, skipped: %s\n", ev["failed"].dump().c_str(),
                 ev.value("skipped", nlohmann::json(0)).dump().c_str());
  }
  const auto& subs = s["subscribers"];
  const auto& list = subs.contains("subscribers") ? subs["subscribers"] : subs;
  for (auto it = list.begin(); it != list.end(); ++it) {
    const auto& v = it.value();
    if (!v.is_object() || !v.contains("received")) continue;
    const std::string name = v.contains("name") ? v["name"].get<std::string>() : it.key();
    if (v.value("state", "") == "failed") {
      std::fprintf(out, "  subscriber %-16s NOT STARTED: %s\n", name.c_str(),
                   v.value("last_error", "").c_str());
      continue;
    }
    std::fprintf(out, "  subscriber %-16s received %s handled %s failed %s dropped %s\n", name.c_str(),
                 v["received"].dump().c_str(), v["handled"].dump().c_str(), v["failed"].dump().c_str(),
                 v["dropped"].dump().c_str());
    const std::string last_error = v.value("last_error", "");
    if (v["failed"].is_number() && v["failed"].get<std::uint64_t>() > 0 && !last_error.empty()) {
      std::fprintf(out, "    last error: %s\n", last_error.c_str());
    }
  }
  if (s.contains("transports")) {
    for (auto it = s["transports"].begin(); it != s["transports"].end(); ++it) {
      const auto& t = it.value();
      if (!t.is_object() || !t.contains("sent")) continue;
      std::fprintf(out, "  transport %-17s sent %s, with no subscriber %s, send errors %s, queue full %s\n",
                   it.key().c_str(), t["sent"].dump().c_str(), t.value("unrouted", nlohmann::json(0)).dump().c_str(),
                   t.value("send_errors", nlohmann::json(0)).dump().c_str(),
                   t.value("queue_full", nlohmann::json(0)).dump().c_str());
    }
  }
  std::fprintf(out, "  stop: %s in %lld ms\n", report.graceful ? "graceful" : "NOT graceful",
               static_cast<long long>(report.duration.count()));
}

int run_worker(const RunOptions& options) {
  WorkerConfig config;
  try {
    config = WorkerConfig::load(options.config);
  } catch (const Error& e) {
    std::fprintf(stderr, "herald run: %s\n", e.what());
    return 2;
  }
  if (!options.http.empty()) {
    try {
      (void)parse_host_port(options.http, "--http");
    } catch (const ValidationError& e) {
      std::fprintf(stderr, "herald run: %s\n", e.what());
      return 2;
    }
    config.http = HttpConfig{options.http};
  }
  // The line reader alone (no --listen) runs the pipeline on its own thread
  // (Worker::process_steps): nothing to hand over, no intake to keep below capacity; it goes at
  // the pipeline's pace, which is what the `block` intake policy asks for. With --listen, the
  // inputs go through the intake, one ordered queue for both; with a drop policy too (a full
  // intake drops rather than hold the producer back, as configured).
  const bool reader_runs_pipeline =
      options.listen.empty() && config.intake_overflow == OverflowPolicy::block;
  // The window applies to a `block` intake only: with a drop policy, a full intake dropping
  // completions is what the configuration asks for.
  std::optional<IntakeWindow> window;
  if (!reader_runs_pipeline && config.intake_overflow == OverflowPolicy::block) {
    window.emplace(config.intake_capacity);
  }
  Worker worker(std::move(config));
  if (window) {
    worker.on_success([&window](const StepCompletion&) { window->processed(); });
    worker.on_error([&window](const StepCompletion&, const PublishFailure&) { window->processed(); });
  }
  IntakeCounters counts;
  std::atomic<bool> input_done{false}, strict_failed{false};
  // How both inputs submit: completions collect in `chunk` (each through the window) and go
  // to the worker together, one hand-over per chunk (Worker::complete_steps), or are processed
  // right here when the reader runs the pipeline. The chunk is submitted before the window
  // could wait, so the reader never waits for completions it has not handed over. Returns how
  // many of the chunk were accepted.
  auto submit_chunk = [&](std::vector<StepCompletion>& chunk) -> std::size_t {
    if (chunk.empty()) return 0;
    const std::size_t accepted = reader_runs_pipeline
                                     ? worker.process_steps(std::span<StepCompletion>(chunk))
                                     : worker.complete_steps(std::span<StepCompletion>(chunk));
    if (window) for (std::size_t i = accepted; i < chunk.size(); ++i) window->cancel();
    chunk.clear();
    return accepted;
  };

  std::mutex state_mutex;
  std::condition_variable state_cv;
  WorkerState observed = WorkerState::initializing;
  worker.on_state_change([&](WorkerState, WorkerState to) {
    {
      std::lock_guard lock(state_mutex);
      observed = to;
    }
    state_cv.notify_all();
    if (window && to != WorkerState::running) window->wake();
    if (to == WorkerState::running) {
      // Scripts and tests read the bound address (the port chosen for --http HOST:0) from here.
      if (const auto address = worker.http_address()) {
        std::fprintf(stderr, "herald run: serving /metrics, /health and /status on http://%s\n", address->c_str());
        std::fflush(stderr);
      }
    }
  });
  auto wait_running = [&] {
    std::unique_lock lock(state_mutex);
    state_cv.wait(lock, [&] { return observed != WorkerState::initializing && observed != WorkerState::starting; });
    return observed == WorkerState::running;
  };
  auto stopping = [&] { return worker.state() != WorkerState::running; };

  // Input threads: each feeds completions until its source ends or the worker stops.
  std::vector<std::thread> inputs;
  std::atomic<int> open_inputs{0};
  const bool read_lines = !options.steps.empty() || options.listen.empty();
  auto input_finished = [&] {
    if (open_inputs.fetch_sub(1) == 1) {
      input_done = true;
      worker.request_stop();
    }
  };
  if (read_lines) {
    ++open_inputs;
    inputs.emplace_back([&] {
      if (!wait_running()) return input_finished();
      int fd = 0;
      if (!options.steps.empty() && options.steps != "-") {
        fd = ::open(options.steps.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
          std::fprintf(stderr, "herald run: cannot open --steps file '%s'\n", options.steps.c_str());
          strict_failed = true;
          return input_finished();
        }
      }
      // One read hands over a batch of lines (views into the reader's buffer); the counters
      // are published once per batch rather than once per line.
      LineReader reader(fd);
      std::vector<std::string_view> batch;
      std::vector<StepCompletion> chunk;
      std::uint64_t number = 0;
      bool stop_reading = false;
      while (!stop_reading && !stopping() && reader.next_batch(batch, [&] { return stopping(); })) {
        std::uint64_t accepted = 0, refused = 0, bad = 0, seen = 0;
        const auto flush = [&] {
          const std::size_t n = chunk.size();
          const std::size_t ok = submit_chunk(chunk);
          accepted += ok;
          refused += n - ok;
        };
        for (const std::string_view line : batch) {
          if (stopping()) {
            stop_reading = true;
            break;
          }
          ++number;
          ++seen;
          if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
          try {
            StepCompletion completion = StepCompletion::parse(line);
            if (window) {
              if (window->full()) flush();
              window->acquire([&] { return worker.state() != WorkerState::running; });
            }
            chunk.push_back(std::move(completion));
          } catch (const Error& e) {
            ++bad;
            std::fprintf(stderr, "herald run: line %llu: %s\n", static_cast<unsigned long long>(number), e.what());
            if (options.strict) {
              strict_failed = true;
              stop_reading = true;
              break;
            }
          }
        }
        flush();  // the lines before a stop or a strict failure still go, in order
        counts.lines.fetch_add(seen);
        if (accepted) counts.accepted.fetch_add(accepted);
        if (refused) counts.refused.fetch_add(refused);
        if (bad) counts.bad.fetch_add(bad);
      }
      if (fd > 0) ::close(fd);
      input_finished();
    });
  }
  if (!options.listen.empty()) {
    ++open_inputs;
    inputs.emplace_back([&] {
      if (!wait_running()) return input_finished();
      try {
        auto context = shared_zmq_context();
        zmq::socket_t pull(*context, zmq::socket_type::pull);
        pull.set(zmq::sockopt::linger, 0);
        pull.set(zmq::sockopt::rcvtimeo, 100);
        pull.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(4 << 20));
        pull.bind(options.listen);
        std::uint64_t number = 0;
        // Each wake-up takes every message already waiting (up to kListenBatch) and hands the
        // completions over in one go, as the line reader does per read.
        constexpr std::size_t kListenBatch = 256;
        std::vector<StepCompletion> chunk;
        bool stop_listening = false;
        while (!stop_listening && !stopping()) {
          zmq::message_t msg;
          if (!pull.recv(msg)) continue;
          std::uint64_t taken = 0, accepted = 0, refused = 0, bad = 0;
          const auto flush = [&] {
            const std::size_t n = chunk.size();
            const std::size_t ok = submit_chunk(chunk);
            accepted += ok;
            refused += n - ok;
          };
          do {
            ++number;
            ++taken;
            try {
              StepCompletion completion = StepCompletion::parse(msg.to_string_view());
              if (window) {
                if (window->full()) flush();
                window->acquire([&] { return worker.state() != WorkerState::running; });
              }
              chunk.push_back(std::move(completion));
            } catch (const Error& e) {
              ++bad;
              std::fprintf(stderr, "herald run: message %llu from %s: %s\n",
                           static_cast<unsigned long long>(number), options.listen.c_str(), e.what());
              if (options.strict) {
                strict_failed = true;
                stop_listening = true;
                break;
              }
            }
          } while (taken < kListenBatch && !stopping() && pull.recv(msg, zmq::recv_flags::dontwait));
          flush();
          counts.lines.fetch_add(taken);
          if (accepted) counts.accepted.fetch_add(accepted);
          if (refused) counts.refused.fetch_add(refused);
          if (bad) counts.bad.fetch_add(bad);
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "herald run: --listen %s: %s\n", options.listen.c_str(), e.what());
        strict_failed = true;
      }
      input_finished();
    });
  }

  // Progress on a terminal only: a single rewritten line.
  std::atomic<bool> progress_stop{false};
  std::thread progress;
  if (!options.quiet && ::isatty(STDERR_FILENO)) {
    progress = std::thread([&] {
      while (!progress_stop) {
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        const auto s = worker.status();
        std::fprintf(stderr, "\r%llu read, %s processed, %s events pending   ",
                     static_cast<unsigned long long>(counts.lines.load()),
                     s["completions"]["processed"].dump().c_str(),
                     s["queues"].value("subscriber_pending", nlohmann::json(0)).dump().c_str());
      }
      std::fprintf(stderr, "\n");
    });
  }

  const int run_code = worker.run(/*handle_signals=*/true);
  {
    std::lock_guard lock(state_mutex);
    if (observed == WorkerState::initializing) observed = WorkerState::stopped;  // start never ran
  }
  state_cv.notify_all();
  for (auto& t : inputs) t.join();
  progress_stop = true;
  if (progress.joinable()) progress.join();

  const auto report = worker.stop();  // already stopped: returns the report of that stop
  if (!options.quiet) print_summary(worker, counts, report, stderr);
  if (!options.status_json.empty()) {
    std::ofstream out(options.status_json);
    out << worker.status().dump(2) << "\n";
    if (!out) std::fprintf(stderr, "herald run: cannot write --status-json '%s'\n", options.status_json.c_str());
  }
  // A configured subscriber that never started (its file could not be opened, ...) leaves the run
  // incomplete: the worker ran on without it, and the exit status says so.
  std::string not_started;
  const auto final_status = worker.status();
  if (final_status.contains("subscribers") && final_status["subscribers"].is_object()) {
    for (auto it = final_status["subscribers"].begin(); it != final_status["subscribers"].end(); ++it) {
      if (it.value().is_object() && it.value().value("state", "") == "failed") {
        not_started += (not_started.empty() ? "'" : ", '") + it.key() + "'";
      }
    }
  }
  if (!not_started.empty()) {
    std::fprintf(stderr, "herald run: subscriber(s) %s did not start; exit status 1\n", not_started.c_str());
  }
  if (strict_failed || !not_started.empty()) return 1;
  return run_code;
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand(
      "run",
      "Run a worker: step completions in (JSON Lines), domain events out.\n"
      "Exit status: 0 after a graceful stop; 2 for bad arguments or configuration; 1 if the\n"
      "worker could not start (e.g. its publish endpoint or --http address is in use), --listen could not bind,\n"
      "--strict met a bad line, a shutdown hook failed, or a configured subscriber could not\n"
      "start (the worker runs on without it and names it).");
  cmd->add_option("--config,-c", options->config, "Worker configuration file (JSON)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--steps", options->steps, "Step completions as JSON Lines: a file, or - for stdin (default: stdin unless --listen)");
  cmd->add_option("--listen", options->listen, "Also take completions from a ZeroMQ PULL endpoint (one JSON object per message)");
  cmd->add_option("--http", options->http,
                  "Serve GET /metrics (Prometheus text), /health (200 or 503) and /status (JSON) on HOST:PORT\n"
                  "(port 0: a free port, printed on stderr); overrides the configuration's http.listen");
  cmd->add_flag("--strict", options->strict, "Exit 1 at the first bad input line instead of skipping it");
  cmd->add_option("--status-json", options->status_json, "Write the final status report to this file");
  cmd->add_flag("--quiet,-q", options->quiet, "No progress line and no summary");
  cmd->callback([options] {
    const int code = run_worker(*options);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace herald::cli
