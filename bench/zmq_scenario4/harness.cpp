// The measurement harness of the `send` and `recv` processes (see harness.hpp).
#include "harness.hpp"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace herald::bench::s4 {

std::int64_t mono_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

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

std::optional<std::string_view> find_stamp(std::string_view body) {
  static constexpr std::string_view marker = R"("sent_ns":")";
  const auto at = body.find(marker);
  if (at == std::string_view::npos || at + marker.size() + kStampDigits > body.size()) return std::nullopt;
  return body.substr(at + marker.size(), kStampDigits);
}

// ---------------------------------------------------------------- arguments
std::string Args::get(const std::string& k, const std::string& def) const {
  auto it = kv.find(k);
  return it == kv.end() ? def : it->second;
}

long long Args::num(const std::string& k, long long def) const {
  auto it = kv.find(k);
  return it == kv.end() ? def : std::atoll(it->second.c_str());
}

double Args::real(const std::string& k, double def) const {
  auto it = kv.find(k);
  return it == kv.end() ? def : std::atof(it->second.c_str());
}

Args parse_args(int argc, char** argv, int from) {
  Args a;
  for (int i = from; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || i + 1 >= argc) throw std::runtime_error("bad argument: " + k);
    a.kv[k.substr(2)] = argv[++i];
  }
  return a;
}

void say(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

// ---------------------------------------------------------------- the event's content
json payload_template(std::size_t bytes) {
  json p = {{"data", ""}, {"sent_ns", stamp(0)}};
  const std::size_t base = p.dump().size();
  if (bytes < base) throw std::runtime_error("payload smaller than " + std::to_string(base));
  p["data"] = std::string(bytes - base, 'x');
  return p;
}

EventMetadata metadata_template() {
  EventMetadata m;
  m.task_uuid = "0190a6c2-7d1e-7000-8000-000000000001";
  m.step_uuid = "0190a6c2-7d1e-7000-8000-000000000002";
  m.step_name = "charge_card";
  m.namespace_name = "billing";
  m.correlation_id = "corr-bench";
  m.fired_by = "bench";
  return m;
}

// ---------------------------------------------------------------- pacing and flow control
Pacer::Pacer(double rate) : interval_ns_(rate > 0 ? 1e9 / rate : 0) {
  if (rate > 0) ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
}

void Pacer::wait(std::size_t i) {
  if (interval_ns_ <= 0) return;
  if (i == 0) start_ = mono_ns();
  const std::int64_t due = start_ + static_cast<std::int64_t>(interval_ns_ * static_cast<double>(i));
  if (mono_ns() >= due) return;
  timespec ts{static_cast<time_t>(due / 1'000'000'000), static_cast<long>(due % 1'000'000'000)};
  while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

Credit::Credit(zmq::context_t& ctx, const std::string& endpoint, std::size_t window)
    : socket_(ctx, zmq::socket_type::pull), window_(window) {
  socket_.set(zmq::sockopt::linger, 0);
  if (window_ > 0) socket_.bind(endpoint);
}

void Credit::wait(std::size_t i) {
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

Acker::Acker(zmq::context_t& ctx, const std::string& endpoint, std::size_t every)
    : socket_(ctx, zmq::socket_type::push), every_(every) {
  socket_.set(zmq::sockopt::linger, 0);
  if (every_ > 0) socket_.connect(endpoint);
}

void Acker::update(std::uint64_t received) {
  if (every_ == 0 || received < last_ + every_) return;
  last_ = received;
  socket_.send(zmq::buffer(&received, sizeof received), zmq::send_flags::dontwait);
}

// ---------------------------------------------------------------- the receiver's record
void Recorder::on_message(std::int64_t now, std::optional<std::string_view> sent) {
  if (received.load(std::memory_order_relaxed) == 0) first_ns.store(now, std::memory_order_relaxed);
  last_ns.store(now, std::memory_order_relaxed);
  if (latency && sent) samples.push_back(now - parse_stamp(*sent));
  received.fetch_add(1, std::memory_order_release);
}

json Recorder::report() const {
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

void say_receiver_report(const RecvContext& c, double cpu0, json extra) {
  json r = c.recorder.report();
  r["cpu_seconds"] = cpu_seconds() - cpu0;
  for (auto& [key, value] : extra.items()) r[key] = std::move(value);
  say(r.dump());
}

// ---------------------------------------------------------------- the cppzmq baselines' sockets
bool open_baseline_publisher(zmq::socket_t& sock, const SendContext& c) {
  sock.set(zmq::sockopt::sndhwm, 0);
  sock.set(zmq::sockopt::linger, 60'000);
  if (c.bind) {
    sock.bind(c.endpoint);
  } else {
    sock.connect(c.endpoint);
  }
  say("ready");
  sock.set(zmq::sockopt::rcvtimeo, 30'000);
  zmq::message_t subscription;
  if (!sock.recv(subscription)) {
    std::fprintf(stderr, "send: no subscriber\n");
    return false;
  }
  return true;
}

void say_baseline_send_report(const SendContext& c, std::int64_t setup_done_ns, std::int64_t t0,
                              std::int64_t t1, double cpu0) {
  say(json{{"sent", c.count}, {"send_seconds", (t1 - t0) / 1e9}, {"credit_stalls", c.credit.stalls()},
           {"cpu_seconds", cpu_seconds() - cpu0}, {"setup_seconds", (setup_done_ns - c.started_ns) / 1e9}}
          .dump());
}

zmq::socket_t open_baseline_subscriber(zmq::context_t& ctx, const RecvContext& c) {
  zmq::socket_t sock(ctx, zmq::socket_type::sub);
  sock.set(zmq::sockopt::rcvhwm, 0);
  sock.set(zmq::sockopt::linger, 0);
  sock.set(zmq::sockopt::rcvtimeo, c.idle_ms);
  sock.set(zmq::sockopt::subscribe, kTopicPrefix);
  sock.connect(c.endpoint);
  return sock;
}

}  // namespace herald::bench::s4
