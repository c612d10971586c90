// `zmq_scenario4 run`, the harness's driver: process spawning, the systems x transports x
// payloads x repetitions loop, timing of the child processes (CPU from /proc), and the one JSON
// document scripts/bench.sh and bench/report.py read. Also main(), which hands `send` and `recv`
// to the mode named by --mode (harness.hpp lists them) and `proxy` to bare_proxy.cpp.
//
// Single-threaded: the driver waits on one child at a time.
#include "harness.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

extern char** environ;

namespace herald::bench::s4 {
namespace {

struct Child {
  pid_t pid = -1;
  int out = -1;  // read end of the child's stdout (or stderr for the proxy)
  std::string buffer;

  // Next line within `timeout_ms`; nullopt on timeout or EOF.
  std::optional<std::string> line(int timeout_ms) {
    const std::int64_t deadline = mono_ns() + timeout_ms * 1'000'000LL;
    for (;;) {
      if (auto nl = buffer.find('\n'); nl != std::string::npos) {
        std::string l = buffer.substr(0, nl);
        buffer.erase(0, nl + 1);
        return l;
      }
      const std::int64_t left = (deadline - mono_ns()) / 1'000'000;
      if (left <= 0) return std::nullopt;
      pollfd p{out, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char buf[4096];
      const auto n = ::read(out, buf, sizeof buf);
      if (n <= 0) return std::nullopt;
      buffer.append(buf, static_cast<std::size_t>(n));
    }
  }

  // Waits for exit (killing it after `timeout_ms`); the exit status.
  int wait(int timeout_ms) {
    const std::int64_t deadline = mono_ns() + timeout_ms * 1'000'000LL;
    int status = 0;
    for (;;) {
      const pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) break;
      if (mono_ns() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    pid = -1;
    return status;
  }

  std::string rest() {
    char buf[4096];
    for (;;) {
      const auto n = ::read(out, buf, sizeof buf);
      if (n <= 0) break;
      buffer.append(buf, static_cast<std::size_t>(n));
    }
    return std::exchange(buffer, {});
  }

  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (out >= 0) ::close(out);
  }
};

// Starts `argv`; the child's fd `capture` (1 or 2) goes to a pipe the parent reads.
std::unique_ptr<Child> spawn(const std::vector<std::string>& argv, int capture) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], capture);
  std::vector<char*> args;
  for (const auto& s : argv) args.push_back(const_cast<char*>(s.c_str()));
  args.push_back(nullptr);
  auto c = std::make_unique<Child>();
  const int rc = ::posix_spawn(&c->pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  c->out = fds[0];
  if (rc != 0) {
    c->pid = -1;
    throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  }
  return c;
}

int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind failed");
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// CPU time (user + system) of a running child, from /proc/PID/stat; -1 when unreadable.
double child_cpu_seconds(pid_t pid) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return -1;
  char buf[2048];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');  // after the command name, which may hold spaces
  if (!p) return -1;
  unsigned long utime = 0, stime = 0;
  // Fields after ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
  // cmajflt utime(14) stime(15).
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return -1;
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::string loadavg() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return "?";
  char buf[128] = {};
  const char* ok = std::fgets(buf, sizeof buf, f);
  std::fclose(f);
  std::string s = ok ? buf : "?";
  // "0.52 0.58 0.59 1/123 4567": the three averages
  std::size_t spaces = 0, i = 0;
  for (; i < s.size(); ++i) {
    if (s[i] == ' ' && ++spaces == 3) break;
  }
  return s.substr(0, i);
}

std::string self_path() {
  char buf[4096];
  const auto n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot read /proc/self/exe");
  return std::string(buf, static_cast<std::size_t>(n));
}

struct Driver {
  std::string self;
  std::string herald_cli;
  int serial = 0;

  std::string endpoint(const std::string& transport) {
    if (transport == "ipc") {
      return "ipc:///tmp/herald-s4-" + std::to_string(::getpid()) + "-" + std::to_string(serial++) + ".ipc";
    }
    return "tcp://127.0.0.1:" + std::to_string(free_tcp_port());
  }

  static void cleanup(const std::string& ep) {
    if (ep.rfind("ipc://", 0) == 0) ::unlink(ep.substr(6).c_str());
  }

  // One measurement: returns the receiver's report plus the sender's (and proxy's) under keys.
  json measure(const std::string& transport, const std::string& path, const std::string& mode,
               std::size_t payload, std::size_t count, double rate, std::size_t window) {
    const bool herald_proxy = path == "proxy", bare_proxy = path == "bare_proxy";
    const bool via_proxy = herald_proxy || bare_proxy;
    const std::string ack_ep = endpoint("ipc");
    std::string pub_ep = endpoint(transport), sub_ep = pub_ep, back_ep;
    std::unique_ptr<Child> proxy;
    if (via_proxy) {
      back_ep = endpoint(transport);
      sub_ep = back_ep;
      if (herald_proxy) {
        proxy = spawn({herald_cli, "proxy", "--frontend", pub_ep, "--backend", back_ep, "--hwm",
                       "1000000000"},
                      2);
      } else {
        proxy = spawn({self, "proxy", "--frontend", pub_ep, "--backend", back_ep}, 2);
      }
      // herald proxy announces each of its two endpoints; the bare proxy says "ready" once.
      const std::string marker = herald_proxy ? "herald proxy:" : "bare proxy: ready";
      int announced = 0;
      while (announced < (herald_proxy ? 2 : 1)) {
        auto l = proxy->line(10'000);
        if (!l) throw std::runtime_error(path + " did not start");
        if (l->find(marker) != std::string::npos) ++announced;
      }
    }
    const std::string n = std::to_string(count), p = std::to_string(payload);
    std::vector<std::string> send_argv{self, "send", "--mode", mode, "--endpoint", pub_ep,
                                       "--bind", via_proxy ? "0" : "1", "--payload", p, "--count", n,
                                       "--ack-endpoint", ack_ep, "--window", std::to_string(window)};
    if (rate > 0) {
      send_argv.push_back("--rate");
      send_argv.push_back(std::to_string(rate));
    }
    auto sender = spawn(send_argv, 1);
    auto ready = sender->line(20'000);
    if (!ready || *ready != "ready") throw std::runtime_error("sender did not start");
    auto receiver = spawn({self, "recv", "--mode", mode, "--endpoint", sub_ep, "--payload", p,
                           "--count", n, "--latency", rate > 0 ? "1" : "0", "--ack-endpoint",
                           ack_ep, "--window", std::to_string(window)},
                          1);
    auto rline = receiver->line(180'000);
    auto sline = sender->line(60'000);
    receiver->wait(10'000);
    sender->wait(70'000);
    json r = rline ? json::parse(*rline, nullptr, false) : json();
    if (!r.is_object()) r = json{{"error", "receiver gave no result"}, {"received", 0}, {"events_per_s", 0.0}};
    if (sline) {
      json s = json::parse(*sline, nullptr, false);
      if (s.is_object()) r["sender"] = s;
    }
    if (proxy) {
      r["proxy_cpu_seconds"] = child_cpu_seconds(proxy->pid);
      ::kill(proxy->pid, SIGTERM);
      proxy->wait(10'000);
      const std::string rest = proxy->rest();
      for (std::size_t at = 0; at < rest.size();) {
        auto nl = rest.find('\n', at);
        if (nl == std::string::npos) nl = rest.size();
        json j = json::parse(rest.substr(at, nl - at), nullptr, false);
        if (j.is_object() && j.value("when", "") == "exit") r["proxy"] = j;
        at = nl + 1;
      }
    }
    cleanup(pub_ep);
    cleanup(ack_ep);
    if (!back_ep.empty()) cleanup(back_ep);
    return r;
  }
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= s.size()) {
    auto c = s.find(',', at);
    if (c == std::string::npos) c = s.size();
    if (c > at) out.push_back(s.substr(at, c - at));
    at = c + 1;
  }
  return out;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

int run_driver(const Args& a) {
  Driver d;
  d.self = self_path();
  d.herald_cli = a.get("herald", d.self.substr(0, d.self.rfind('/')) + "/../herald");
  if (::access(d.herald_cli.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "run: herald CLI not found at %s (--herald PATH)\n", d.herald_cli.c_str());
    return 2;
  }
  const int reps = static_cast<int>(a.num("reps", 5));
  const double scale = a.real("scale", 1.0);
  const auto transports = split(a.get("transports", "ipc,tcp"));
  std::vector<std::size_t> payloads;
  for (const auto& p : split(a.get("payloads", "64,1024,16384"))) payloads.push_back(std::stoul(p));
  const double max_rate = a.real("latency-rate", 5000);
  // (label, wire mode, path)
  const std::vector<std::tuple<std::string, std::string, std::string>> systems = {
      {"raw", "raw", "direct"},
      {"json", "json", "direct"},
      {"herald", "herald", "direct"},
      {"json_proxy", "json", "bare_proxy"},
      {"herald_proxy", "herald", "proxy"}};
  auto events_for = [&](std::size_t payload) {
    // About half a second of the slowest system per run on the reference machine (2 shared cores).
    const double base = payload <= 64 ? 24000 : payload <= 1024 ? 16000 : 3000;
    return static_cast<std::size_t>(std::max(1000.0, base * scale));
  };

  // In-flight bound of the credit window: 4000 events or about 4 MB, whichever is smaller.
  const double window_mb = a.real("window-mb", 4);
  auto window_for = [&](std::size_t payload) -> std::size_t {
    if (window_mb <= 0) return 0;
    return std::clamp<std::size_t>(static_cast<std::size_t>(window_mb * 1e6 / (payload + 600)), 64, 4000);
  };
  const std::int64_t t_start = mono_ns();
  json doc;
  doc["scenario"] = "4_zmq";
  doc["repetitions"] = reps;
  doc["event_name"] = kEventName;
  doc["window_mb"] = window_mb;
  doc["loadavg_start"] = loadavg();
  doc["systems"] = json::array();
  for (const auto& [label, mode, path] : systems) doc["systems"].push_back(label);
  doc["throughput"] = json::array();
  doc["latency"] = json::array();
  for (const auto& transport : transports) {
    for (const auto payload : payloads) {
      const auto count = events_for(payload);
      std::map<std::string, std::vector<double>> rates;
      for (int rep = 0; rep < reps; ++rep) {
        for (const auto& [label, mode, path] : systems) {
          json r = d.measure(transport, path, mode, payload, count, 0, window_for(payload));
          r["transport"] = transport;
          r["payload_bytes"] = payload;
          r["system"] = label;
          r["rep"] = rep;
          rates[label].push_back(r.value("events_per_s", 0.0));
          std::fprintf(stderr, "s4 throughput %s %5zu B %-12s rep %d: %9.0f events/s (%zu/%zu)\n",
                       transport.c_str(), payload, label.c_str(), rep, r.value("events_per_s", 0.0),
                       r.value("received", std::size_t{0}), count);
          doc["throughput"].push_back(std::move(r));
        }
      }
      // Latency: every system at the same modest rate (--latency-rate, 5k/s), lowered to half
      // of the slowest one's saturating rate, so that no system is measured saturated.
      double slowest = max_rate * 2;
      for (const auto& [label, v] : rates) slowest = std::min(slowest, median(v));
      const double rate = std::max(500.0, std::floor(std::min(max_rate, slowest / 2) / 500) * 500);
      // About half a second per run (at least 1500 events, so p99.9 is not the maximum).
      const auto lat_count =
          static_cast<std::size_t>(std::clamp(rate * 0.5 * scale, 1500.0, 8000.0));
      for (int rep = 0; rep < reps; ++rep) {
        for (const auto& [label, mode, path] : systems) {
          json r = d.measure(transport, path, mode, payload, lat_count, rate, window_for(payload));
          r["transport"] = transport;
          r["payload_bytes"] = payload;
          r["system"] = label;
          r["rep"] = rep;
          r["rate"] = rate;
          std::fprintf(stderr, "s4 latency    %s %5zu B %-12s rep %d @ %.0f/s: p50 %.1f p99 %.1f p99.9 %.1f us\n",
                       transport.c_str(), payload, label.c_str(), rep, rate, r.value("p50_us", 0.0),
                       r.value("p99_us", 0.0), r.value("p999_us", 0.0));
          doc["latency"].push_back(std::move(r));
        }
      }
    }
  }
  doc["wall_seconds"] = (mono_ns() - t_start) / 1e9;
  doc["loadavg_end"] = loadavg();
  const std::string text = doc.dump(1) + "\n";
  const std::string out = a.get("out");
  if (out.empty()) {
    std::fputs(text.c_str(), stdout);
  } else {
    FILE* f = std::fopen(out.c_str(), "w");
    if (!f) throw std::runtime_error("cannot write " + out);
    std::fputs(text.c_str(), f);
    std::fclose(f);
  }
  std::fprintf(stderr, "s4: done in %.0f s\n", (mono_ns() - t_start) / 1e9);
  return 0;
}

constexpr std::array<const Mode*, 3> kModes = {&kRawBytesMode, &kHandRolledJsonMode, &kHeraldMode};

const Mode& mode_named(const std::string& name) {
  for (const Mode* m : kModes) {
    if (name == m->name) return *m;
  }
  throw std::runtime_error("unknown mode " + name);
}

int run_send(const Args& a) {
  const Mode& mode = mode_named(a.get("mode"));
  const std::int64_t started = mono_ns();
  Pacer pacer(a.real("rate", 0));
  zmq::context_t side_ctx(1);
  Credit credit(side_ctx, a.get("ack-endpoint"), static_cast<std::size_t>(a.num("window", 0)));
  SendContext c{.endpoint = a.get("endpoint"),
                .bind = a.num("bind", 1) != 0,
                .count = static_cast<std::size_t>(a.num("count", 10000)),
                .payload = payload_template(static_cast<std::size_t>(a.num("payload", 64))),
                .metadata = metadata_template(),
                .pacer = pacer,
                .credit = credit,
                .started_ns = started};
  return mode.send(c);
}

int run_recv(const Args& a) {
  const Mode& mode = mode_named(a.get("mode"));
  Recorder rec;
  rec.count = static_cast<std::size_t>(a.num("count", 10000));
  rec.latency = a.num("latency", 0) != 0;
  if (rec.latency) rec.samples.reserve(rec.count);
  const std::int64_t started = mono_ns();
  zmq::context_t side_ctx(1);
  const auto window = static_cast<std::size_t>(a.num("window", 0));
  Acker acker(side_ctx, a.get("ack-endpoint"), window / 4);
  RecvContext c{.endpoint = a.get("endpoint"),
                .idle_ms = static_cast<int>(a.num("idle-ms", 3000)),
                .recorder = rec,
                .acker = acker,
                .started_ns = started};
  return mode.recv(c);
}

}  // namespace
}  // namespace herald::bench::s4

int main(int argc, char** argv) {
  using namespace herald::bench::s4;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s run|send|recv|proxy [--key value]...\n", argv[0]);
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  try {
    const std::string cmd = argv[1];
    const Args a = parse_args(argc, argv, 2);
    if (cmd == "send") return run_send(a);
    if (cmd == "recv") return run_recv(a);
    if (cmd == "run") return run_driver(a);
    if (cmd == "proxy") return run_bare_proxy(a);
    std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zmq_scenario4 %s: %s\n", argv[1], e.what());
    return 1;
  }
}
