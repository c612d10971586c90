// Issue 6, scenario 4: ZeroMQ PUB -> SUB across processes, herald against two cppzmq baselines.
//
//   zmq_scenario4 run [--out FILE] [--herald PATH] [--reps N] [--transports ipc,tcp]
//                     [--payloads 64,1024,16384] [--scale X]
//   zmq_scenario4 send --mode M --endpoint EP [--bind 1] --payload BYTES --count N [--rate R]
//   zmq_scenario4 recv --mode M --endpoint EP --payload BYTES --count N [--latency 1]
//   zmq_scenario4 proxy --frontend EP --backend EP
//
// `run` is the driver: for every transport x payload x repetition it starts a receiving and a
// sending process (this binary, `recv` and `send`) per mode, plus a real `herald proxy`
// process between them for the proxy path, and writes one JSON document (stdout or --out).
//
// Modes (the same two-frame messages on the wire: event name, then the JSON envelope):
//   raw     bare cppzmq PUB/SUB sending the bytes herald sends for that event, encoded once
//           before timing (the receiver only counts them)
//   json    bare cppzmq PUB/SUB that builds the same envelope (same fields, a new UUID v7 and
//           fired_at per event, like herald) with nlohmann::json and dump()s it per event; the
//           receiver json::parse()s it and reads the name and payload per event
//   herald  herald::ZmqPublisher (DomainEvent::create + send per event) -> herald::ZmqSubscriber
//           (decode, validate, pattern match, dedup, gap tracking) with a callback
// The driver runs `herald` twice: direct (publisher binds) and through `herald proxy` (publisher
// connects to the proxy's frontend, subscriber to its backend); and `json` twice: direct, and
// through a bare libzmq proxy (`zmq_scenario4 proxy`: XSUB -> zmq::proxy -> XPUB, no checks, no
// counters), the baseline the herald proxy path is held against: on a two-core machine a third
// process forwarding every message costs every system the same CPU.
//
// Payload: {"data": "xxx...", "sent_ns": "<20 digits>"}, padded so that its compact JSON is
// exactly BYTES long. `sent_ns` is CLOCK_MONOTONIC in ns when the publisher starts building the
// event: processes on one machine share that clock, so receiver-side now - sent_ns is the
// one-way latency including encode, ZeroMQ, decode. Every mode stamps every event.
//
// Throughput: the publisher sends as fast as it can (high-water marks unlimited so nothing is
// dropped, a full herald send queue is waited out); the receiver reports (received - 1) /
// (time of last - time of first message). Latency: the publisher is paced at --rate (absolute
// clock_nanosleep schedule); the receiver discards the first 10% (warm-up) and reports
// p50/p90/p99/p99.9.
#include <herald/events/error.hpp>
#include <herald/events/ids.hpp>
#include <herald/events/wire.hpp>
#include <herald/zeromq/transport.hpp>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

extern char** environ;

namespace {

using nlohmann::json;

constexpr const char* kEventName = "payment.processed";
constexpr const char* kTopicPrefix = "payment.";
constexpr std::size_t kStampDigits = 20;

std::int64_t mono_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// CPU time of this process, all threads, user + system, in seconds.
double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// 20 zero-padded digits, so that every envelope of a run has the same size.
std::string stamp(std::int64_t ns) {
  char buf[kStampDigits + 1];
  std::snprintf(buf, sizeof buf, "%020lld", static_cast<long long>(ns));
  return std::string(buf, kStampDigits);
}

std::int64_t parse_stamp(std::string_view digits) {
  std::int64_t v = 0;
  std::from_chars(digits.data(), digits.data() + digits.size(), v);
  return v;
}

// ---------------------------------------------------------------- arguments
struct Args {
  std::map<std::string, std::string> kv;
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? def : it->second;
  }
  long long num(const std::string& k, long long def) const {
    auto it = kv.find(k);
    return it == kv.end() ? def : std::atoll(it->second.c_str());
  }
  double real(const std::string& k, double def) const {
    auto it = kv.find(k);
    return it == kv.end() ? def : std::atof(it->second.c_str());
  }
};

Args parse_args(int argc, char** argv, int from) {
  Args a;
  for (int i = from; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || i + 1 >= argc) throw std::runtime_error("bad argument: " + k);
    a.kv[k.substr(2)] = argv[++i];
  }
  return a;
}

// ---------------------------------------------------------------- the event's content
json payload_template(std::size_t bytes) {
  json p = {{"data", ""}, {"sent_ns", stamp(0)}};
  const std::size_t base = p.dump().size();
  if (bytes < base) throw std::runtime_error("payload smaller than " + std::to_string(base));
  p["data"] = std::string(bytes - base, 'x');
  return p;
}

herald::EventMetadata metadata_template() {
  herald::EventMetadata m;
  m.task_uuid = "0190a6c2-7d1e-7000-8000-000000000001";
  m.step_uuid = "0190a6c2-7d1e-7000-8000-000000000002";
  m.step_name = "charge_card";
  m.namespace_name = "billing";
  m.correlation_id = "corr-bench";
  m.fired_by = "bench";
  return m;
}

// ---------------------------------------------------------------- pacing
class Pacer {
 public:
  explicit Pacer(double rate) : interval_ns_(rate > 0 ? 1e9 / rate : 0) {
    if (rate > 0) ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  }
  void wait(std::size_t i) {
    if (interval_ns_ <= 0) return;
    if (i == 0) start_ = mono_ns();
    const std::int64_t due = start_ + static_cast<std::int64_t>(interval_ns_ * static_cast<double>(i));
    if (mono_ns() >= due) return;
    timespec ts{static_cast<time_t>(due / 1'000'000'000), static_cast<long>(due % 1'000'000'000)};
    while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
  }

 private:
  double interval_ns_;
  std::int64_t start_ = 0;
};

// ---------------------------------------------------------------- flow control
// Credit window over a side channel (PUSH from the receiver, PULL at the sender), the same for
// every mode: the sender keeps at most `window` events in flight and the receiver reports its
// count every `window / 4` events. Without it the sender of a saturating run races ahead and
// the run measures tens of MB of growing queues (page faults, allocator growth) instead of the
// steady state a bounded system reaches.
class Credit {
 public:
  Credit(zmq::context_t& ctx, const std::string& endpoint, std::size_t window)
      : socket_(ctx, zmq::socket_type::pull), window_(window) {
    socket_.set(zmq::sockopt::linger, 0);
    if (window_ > 0) socket_.bind(endpoint);
  }
  // Blocks until event `i` (0-based) may be sent.
  void wait(std::size_t i) {
    if (window_ == 0) return;
    while (i >= acked_ + window_) {
      zmq::message_t m;
      if (!socket_.recv(m)) continue;
      std::uint64_t n = 0;
      std::memcpy(&n, m.data(), std::min(m.size(), sizeof n));
      acked_ = std::max<std::size_t>(acked_, n);
      ++stalls_;
    }
  }
  std::uint64_t stalls() const { return stalls_; }

 private:
  zmq::socket_t socket_;
  std::size_t window_;
  std::size_t acked_ = 0;
  std::uint64_t stalls_ = 0;
};

class Acker {
 public:
  Acker(zmq::context_t& ctx, const std::string& endpoint, std::size_t every)
      : socket_(ctx, zmq::socket_type::push), every_(every) {
    socket_.set(zmq::sockopt::linger, 0);
    if (every_ > 0) socket_.connect(endpoint);
  }
  // Called with the running count; sends it every `every` events. One thread only.
  void update(std::uint64_t received) {
    if (every_ == 0 || received < last_ + every_) return;
    last_ = received;
    socket_.send(zmq::buffer(&received, sizeof received), zmq::send_flags::dontwait);
  }

 private:
  zmq::socket_t socket_;
  std::size_t every_;
  std::uint64_t last_ = 0;
};

// ---------------------------------------------------------------- send
void say(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

int run_send(const Args& a) {
  const std::string mode = a.get("mode");
  const std::string endpoint = a.get("endpoint");
  const bool bind = a.num("bind", 1) != 0;
  const std::size_t count = static_cast<std::size_t>(a.num("count", 10000));
  const json payload = payload_template(static_cast<std::size_t>(a.num("payload", 64)));
  const herald::EventMetadata meta = metadata_template();
  Pacer pacer(a.real("rate", 0));
  const std::int64_t started = mono_ns();
  zmq::context_t side_ctx(1);
  Credit credit(side_ctx, a.get("ack-endpoint"), static_cast<std::size_t>(a.num("window", 0)));

  if (mode == "herald") {
    herald::ZmqPublisherOptions po;
    po.endpoints = {endpoint};
    po.bind = bind;
    po.sndhwm = 0;
    po.linger = std::chrono::seconds(60);
    herald::ZmqPublisher pub(po);
    pub.start();
    say("ready");
    // Both: through a proxy that the publisher connects to after the subscriber subscribed, the
    // proxy's XSUB replays its subscriptions in sorted order, so the marker ("\0herald-...")
    // can arrive before "payment." and wait_for_subscribers alone returns too early (events
    // sent in between are unrouted and lost).
    if (!pub.wait_for_subscribers(1, std::chrono::seconds(30)) ||
        !pub.wait_for_subscriptions(1, std::chrono::seconds(30))) {
      std::fprintf(stderr, "send: no subscriber\n");
      return 2;
    }
    std::uint64_t full_waits = 0;
    const double cpu0 = cpu_seconds();
    const std::int64_t t0 = mono_ns();
    for (std::size_t i = 0; i < count; ++i) {
      pacer.wait(i);
      credit.wait(i);
      json p = payload;
      p["sent_ns"] = stamp(mono_ns());
      herald::EventMetadata m = meta;
      auto event = herald::DomainEvent::create(kEventName, std::move(p), std::move(m));
      for (;;) {
        try {
          pub.send(event);
          break;
        } catch (const herald::TransportError&) {  // queue full: wait for the I/O thread
          ++full_waits;
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
      }
    }
    const std::int64_t t1 = mono_ns();
    pub.stop();
    const double cpu = cpu_seconds() - cpu0;
    const json stats = pub.stats();
    say(json{{"sent", count}, {"send_seconds", (t1 - t0) / 1e9}, {"queue_full_waits", full_waits},
             {"cpu_seconds", cpu},
             {"credit_stalls", credit.stalls()}, {"setup_seconds", (t0 - started) / 1e9},
             {"publisher", {{"sent", stats.value("sent", 0)}, {"send_errors", stats.value("send_errors", 0)},
                            {"unrouted", stats.value("unrouted", 0)}}}}
            .dump());
    return 0;
  }

  zmq::context_t ctx(1);
  zmq::socket_t sock(ctx, zmq::socket_type::xpub);  // XPUB only to see the subscription arrive
  sock.set(zmq::sockopt::sndhwm, 0);
  sock.set(zmq::sockopt::linger, 60'000);
  if (bind) {
    sock.bind(endpoint);
  } else {
    sock.connect(endpoint);
  }
  say("ready");
  sock.set(zmq::sockopt::rcvtimeo, 30'000);
  zmq::message_t subscription;
  if (!sock.recv(subscription)) {
    std::fprintf(stderr, "send: no subscriber\n");
    return 2;
  }
  const std::string name = kEventName;
  const std::int64_t t0_setup = mono_ns();
  const double cpu0 = cpu_seconds();
  std::int64_t t0 = 0, t1 = 0;
  if (mode == "raw") {
    // The bytes herald would send for this event, encoded once.
    auto event = herald::DomainEvent::create(kEventName, payload, meta);
    const std::string body = herald::encode_envelope(*event, herald::WireEncoding::json,
                                                     {"raw-baseline", 1, 1});
    const std::string marker = R"("sent_ns":")";
    const auto at = body.find(marker);
    if (at == std::string::npos) throw std::runtime_error("no sent_ns in the envelope");
    const std::size_t offset = at + marker.size();
    t0 = mono_ns();
    for (std::size_t i = 0; i < count; ++i) {
      pacer.wait(i);
      credit.wait(i);
      const std::string s = stamp(mono_ns());
      zmq::message_t msg(body.data(), body.size());
      std::memcpy(static_cast<char*>(msg.data()) + offset, s.data(), kStampDigits);
      sock.send(zmq::buffer(name), zmq::send_flags::sndmore);
      sock.send(msg, zmq::send_flags::none);
    }
    t1 = mono_ns();
  } else if (mode == "json") {
    const json metadata = meta.to_json();  // fired_at set per event below
    const json execution = herald::ExecutionResult{}.to_json();
    const std::string publisher_id = herald::new_uuid_v7();
    t0 = mono_ns();
    for (std::size_t i = 0; i < count; ++i) {
      pacer.wait(i);
      credit.wait(i);
      json p = payload;
      p["sent_ns"] = stamp(mono_ns());
      json env = json::object();
      env["wire_version"] = 1;
      env["publisher_id"] = publisher_id;
      env["seq"] = i + 1;
      env["name_seq"] = i + 1;
      env["event_id"] = herald::new_uuid_v7();
      env["event_name"] = name;
      env["event_version"] = "1.0";
      env["payload"] = std::move(p);
      json m = metadata;
      m["fired_at"] = herald::now_rfc3339_ms();
      env["metadata"] = std::move(m);
      env["execution_result"] = execution;
      const std::string body = env.dump();
      sock.send(zmq::buffer(name), zmq::send_flags::sndmore);
      sock.send(zmq::buffer(body), zmq::send_flags::none);
    }
    t1 = mono_ns();
  } else {
    throw std::runtime_error("unknown mode " + mode);
  }
  sock.close();  // linger: flushes what is queued
  say(json{{"sent", count}, {"send_seconds", (t1 - t0) / 1e9}, {"credit_stalls", credit.stalls()},
           {"cpu_seconds", cpu_seconds() - cpu0}, {"setup_seconds", (t0_setup - started) / 1e9}}
          .dump());
  return 0;
}

// ---------------------------------------------------------------- recv
struct Recorder {
  bool latency = false;
  std::size_t count = 0;
  std::atomic<std::size_t> received{0};
  std::atomic<std::int64_t> first_ns{0}, last_ns{0};
  std::vector<std::int64_t> samples;  // receiving thread only
  std::uint64_t sink = 0;

  void on_message(std::int64_t now, std::optional<std::string_view> sent) {
    if (received.load(std::memory_order_relaxed) == 0) first_ns.store(now, std::memory_order_relaxed);
    last_ns.store(now, std::memory_order_relaxed);
    if (latency && sent) samples.push_back(now - parse_stamp(*sent));
    received.fetch_add(1, std::memory_order_release);
  }

  json report() const {
    const std::size_t n = received.load();
    const double seconds = (last_ns.load() - first_ns.load()) / 1e9;
    json r{{"received", n}, {"expected", count}, {"seconds", seconds},
           {"events_per_s", n > 1 && seconds > 0 ? (n - 1) / seconds : 0.0}};
    if (latency) {
      std::vector<std::int64_t> s(samples.begin() + static_cast<std::ptrdiff_t>(samples.size() / 10),
                                  samples.end());
      std::sort(s.begin(), s.end());
      auto pct = [&](double q) -> double {
        if (s.empty()) return 0.0;
        const auto idx = static_cast<std::size_t>(std::ceil(q * static_cast<double>(s.size()))) - 1;
        return s[std::min(idx, s.size() - 1)] / 1e3;
      };
      r["samples"] = s.size();
      r["p50_us"] = pct(0.50);
      r["p90_us"] = pct(0.90);
      r["p99_us"] = pct(0.99);
      r["p999_us"] = pct(0.999);
      r["max_us"] = s.empty() ? 0.0 : s.back() / 1e3;
    }
    return r;
  }
};

std::optional<std::string_view> find_stamp(std::string_view body) {
  static constexpr std::string_view marker = R"("sent_ns":")";
  const auto at = body.find(marker);
  if (at == std::string_view::npos || at + marker.size() + kStampDigits > body.size()) return std::nullopt;
  return body.substr(at + marker.size(), kStampDigits);
}

int run_recv(const Args& a) {
  const std::string mode = a.get("mode");
  const std::string endpoint = a.get("endpoint");
  Recorder rec;
  rec.count = static_cast<std::size_t>(a.num("count", 10000));
  rec.latency = a.num("latency", 0) != 0;
  if (rec.latency) rec.samples.reserve(rec.count);
  const int idle_ms = static_cast<int>(a.num("idle-ms", 3000));
  const std::int64_t started = mono_ns();
  zmq::context_t side_ctx(1);
  const auto window = static_cast<std::size_t>(a.num("window", 0));
  Acker acker(side_ctx, a.get("ack-endpoint"), window / 4);

  if (mode == "herald") {
    herald::ZmqSubscriberOptions so;
    so.endpoints = {endpoint};
    so.patterns = {"payment.*"};
    so.rcvhwm = 0;
    herald::ZmqSubscriber sub(so, [&](const herald::WireMessage& msg) {
      const std::int64_t now = mono_ns();
      std::optional<std::string_view> sent;
      if (rec.latency) {
        const auto& p = msg.event->payload();
        if (auto it = p.find("sent_ns"); it != p.end() && it->is_string()) {
          sent = std::string_view(it->get_ref<const std::string&>());
        }
      }
      rec.sink += msg.event->payload().size();
      rec.on_message(now, sent);
      // The callback runs on herald's I/O thread, the only thread that uses `acker` once
      // started (the socket is handed over by the thread start).
      acker.update(rec.received.load(std::memory_order_relaxed));
    });
    sub.start();
    const double cpu0 = cpu_seconds();
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      const auto n = rec.received.load(std::memory_order_acquire);
      if (n >= rec.count) break;
      const std::int64_t now = mono_ns();
      if (n == 0 && now - started > 60'000'000'000LL) break;
      if (n > 0 && now - rec.last_ns.load() > idle_ms * 1'000'000LL) break;
    }
    const double cpu = cpu_seconds() - cpu0;
    sub.stop();
    json r = rec.report();
    r["cpu_seconds"] = cpu;
    r["gaps"] = sub.gaps();
    r["duplicates"] = sub.duplicates();
    r["rejected"] = sub.rejected_total();
    say(r.dump());
    return 0;
  }

  zmq::context_t ctx(1);
  zmq::socket_t sock(ctx, zmq::socket_type::sub);
  sock.set(zmq::sockopt::rcvhwm, 0);
  sock.set(zmq::sockopt::linger, 0);
  sock.set(zmq::sockopt::rcvtimeo, idle_ms);
  sock.set(zmq::sockopt::subscribe, kTopicPrefix);
  sock.connect(endpoint);
  const double cpu0 = cpu_seconds();
  const bool parse = mode == "json";
  if (!parse && mode != "raw") throw std::runtime_error("unknown mode " + mode);
  zmq::message_t topic, body;
  while (rec.received.load(std::memory_order_relaxed) < rec.count) {
    if (!sock.recv(topic)) {
      if (rec.received.load() == 0 && mono_ns() - started < 60'000'000'000LL) continue;
      break;  // idle: the rest was lost
    }
    if (!topic.more() || !sock.recv(body)) continue;
    const std::string_view b = body.to_string_view();
    if (parse) {
      // What a user writes by hand: parse the envelope, take the name and the payload.
      const json j = json::parse(b);
      const auto& name = j.at("event_name").get_ref<const std::string&>();
      const json& payload = j.at("payload");
      std::optional<std::string_view> sent;
      if (rec.latency) sent = std::string_view(payload.at("sent_ns").get_ref<const std::string&>());
      rec.sink += name.size() + payload.size();
      rec.on_message(mono_ns(), sent);
    } else {
      rec.on_message(mono_ns(), rec.latency ? find_stamp(b) : std::nullopt);
    }
    acker.update(rec.received.load(std::memory_order_relaxed));
  }
  json r = rec.report();
  r["cpu_seconds"] = cpu_seconds() - cpu0;
  say(r.dump());
  return 0;
}

// ---------------------------------------------------------------- bare proxy
// The baseline proxy: libzmq's own forwarder between an XSUB frontend and an XPUB backend, with
// the same unlimited high-water marks the driver gives `herald proxy`. Runs until killed.
int run_proxy(const Args& a) {
  zmq::context_t context(1);
  zmq::socket_t front(context, zmq::socket_type::xsub), back(context, zmq::socket_type::xpub);
  for (auto* s : {&front, &back}) {
    s->set(zmq::sockopt::sndhwm, 1'000'000'000);
    s->set(zmq::sockopt::rcvhwm, 1'000'000'000);
  }
  front.bind(a.get("frontend"));
  back.bind(a.get("backend"));
  std::fprintf(stderr, "bare proxy: ready\n");
  std::fflush(stderr);
  zmq::proxy(front, back);
  return 0;
}

// ---------------------------------------------------------------- driver
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

}  // namespace

int main(int argc, char** argv) {
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
    if (cmd == "proxy") return run_proxy(a);
    std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zmq_scenario4 %s: %s\n", argv[1], e.what());
    return 1;
  }
}
