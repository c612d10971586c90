// Issue 6, scenario 4: ZeroMQ PUB -> SUB across processes, herald against two cppzmq baselines.
//
//   zmq_scenario4 run [--out FILE] [--herald PATH] [--reps N] [--transports ipc,tcp]
//                     [--payloads 64,1024,16384] [--scale X] [--latency-rate R] [--window-mb M]
//   zmq_scenario4 send --mode M --endpoint EP [--bind 1] --payload BYTES --count N [--rate R]
//   zmq_scenario4 recv --mode M --endpoint EP --payload BYTES --count N [--latency 1]
//   zmq_scenario4 proxy --frontend EP --backend EP
//
// `run` is the driver (driver.cpp): for every transport x payload x repetition it starts a
// receiving and a sending process (this binary, `recv` and `send`) per system, plus a proxy
// process between them for the proxy paths, and writes one JSON document (stdout or --out).
//
// This header is the harness the `send` and `recv` processes share: the clock, the payload
// with its latency stamp, pacing, the credit window and the receiver's recorder. Each mode is
// one file, named by what it measures, and fills in a `Mode` (the same two-frame messages on the
// wire: event name, then the JSON envelope):
//   mode_raw_bytes.cpp        `raw`: bare cppzmq PUB/SUB sending the bytes herald sends for that
//                             event, encoded once before timing (the receiver only counts them)
//   mode_handrolled_json.cpp  `json`: bare cppzmq PUB/SUB that builds the same envelope (same
//                             fields, a new UUID v7 and fired_at per event, like herald) with
//                             nlohmann::json and dump()s it per event; the receiver
//                             json::parse()s it and reads the name and payload per event
//   mode_herald.cpp           `herald`: herald::ZmqPublisher (DomainEvent::create + send per
//                             event) -> herald::ZmqSubscriber (decode, validate, pattern match,
//                             dedup, gap tracking) with a callback
// The driver runs `herald` twice: direct (publisher binds) and through `herald proxy` (publisher
// connects to the proxy's frontend, subscriber to its backend); and `json` twice: direct, and
// through a bare libzmq proxy (bare_proxy.cpp, `zmq_scenario4 proxy`: XSUB -> zmq::proxy -> XPUB,
// no checks, no counters), the baseline the herald proxy path is held against: on a two-core
// machine a third process forwarding every message costs every system the same CPU.
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
//
// Every process is single-threaded except where herald's own I/O thread runs (mode_herald.cpp
// says which thread touches what); nothing here is shared across threads unless noted.
#pragma once

#include <herald/events/domain_event.hpp>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::bench::s4 {

using nlohmann::json;

inline constexpr const char* kEventName = "payment.processed";
inline constexpr const char* kTopicPrefix = "payment.";
inline constexpr std::size_t kStampDigits = 20;

// CLOCK_MONOTONIC in ns: shared by every process on the machine.
std::int64_t mono_ns();
// CPU time of this process, all threads, user + system, in seconds.
double cpu_seconds();
// 20 zero-padded digits, so that every envelope of a run has the same size.
std::string stamp(std::int64_t ns);
std::int64_t parse_stamp(std::string_view digits);
// The stamp inside an encoded envelope, found by its key (no parse); nullopt if absent.
std::optional<std::string_view> find_stamp(std::string_view body);

// `--key value` pairs after the command. Throws std::runtime_error on a malformed list.
struct Args {
  std::map<std::string, std::string> kv;
  std::string get(const std::string& k, const std::string& def = "") const;
  long long num(const std::string& k, long long def) const;
  double real(const std::string& k, double def) const;
};
Args parse_args(int argc, char** argv, int from);

// One line on stdout, flushed: how `send` and `recv` talk to the driver.
void say(const std::string& line);

// The payload of `bytes` compact JSON bytes (see the top of this file); throws if too small.
json payload_template(std::size_t bytes);
// The metadata every mode sends (task and step ids, names, correlation id).
EventMetadata metadata_template();

// Paces event i to start at i / rate seconds after event 0 (no pacing for rate <= 0).
class Pacer {
 public:
  explicit Pacer(double rate);
  void wait(std::size_t i);

 private:
  double interval_ns_;
  std::int64_t start_ = 0;
};

// Credit window over a side channel (PUSH from the receiver, PULL at the sender), the same for
// every mode: the sender keeps at most `window` events in flight and the receiver reports its
// count every `window / 4` events. Without it the sender of a saturating run races ahead and
// the run measures tens of MB of growing queues (page faults, allocator growth) instead of the
// steady state a bounded system reaches. A window of 0 turns it off.
class Credit {
 public:
  Credit(zmq::context_t& ctx, const std::string& endpoint, std::size_t window);
  // Blocks until event `i` (0-based) may be sent.
  void wait(std::size_t i);
  std::uint64_t stalls() const { return stalls_; }

 private:
  zmq::socket_t socket_;
  std::size_t window_;
  std::size_t acked_ = 0;
  std::uint64_t stalls_ = 0;
};

// The receiver's side of Credit. One thread only (its socket belongs to whoever calls update).
class Acker {
 public:
  Acker(zmq::context_t& ctx, const std::string& endpoint, std::size_t every);
  // Called with the running count; sends it every `every` events.
  void update(std::uint64_t received);

 private:
  zmq::socket_t socket_;
  std::size_t every_;
  std::uint64_t last_ = 0;
};

// What the receiver counts. on_message and `samples` belong to the receiving thread; the
// counters are atomics so that another thread may watch progress.
struct Recorder {
  bool latency = false;
  std::size_t count = 0;
  std::atomic<std::size_t> received{0};
  std::atomic<std::int64_t> first_ns{0}, last_ns{0};
  std::vector<std::int64_t> samples;  // receiving thread only
  std::uint64_t sink = 0;             // keeps the receivers' reads from being optimised away

  void on_message(std::int64_t now, std::optional<std::string_view> sent);
  // received, expected, seconds, events_per_s; with latency also samples and p50..max in us.
  json report() const;
};

// What `send` hands a mode: the parsed options, the pacing and the credit window. The mode
// prints "ready" once its socket is up, waits for the subscriber, sends `count` events and
// prints its one-line JSON report (sent, send_seconds, credit_stalls, cpu_seconds,
// setup_seconds, plus what the mode adds).
struct SendContext {
  std::string endpoint;
  bool bind = true;
  std::size_t count = 0;
  json payload;
  EventMetadata metadata;
  Pacer& pacer;
  Credit& credit;
  std::int64_t started_ns = 0;  // when the process started: setup_seconds counts from here
};

// What `recv` hands a mode: the receiver prints one JSON line, the recorder's report plus
// cpu_seconds (and what the mode adds), once `count` events arrived or `idle_ms` passed
// without one (60 s before the first).
struct RecvContext {
  std::string endpoint;
  int idle_ms = 3000;
  Recorder& recorder;
  Acker& acker;
  std::int64_t started_ns = 0;
};

struct Mode {
  const char* name;  // the --mode value
  int (*send)(SendContext&);
  int (*recv)(RecvContext&);
};

extern const Mode kRawBytesMode;        // mode_raw_bytes.cpp
extern const Mode kHandRolledJsonMode;  // mode_handrolled_json.cpp
extern const Mode kHeraldMode;          // mode_herald.cpp

// The cppzmq baselines' sockets (raw and json share them).
// A PUB (an XPUB, only to see the subscription arrive) with unlimited high-water mark, bound or
// connected; says "ready", then waits up to 30 s for the subscription. False if none came.
bool open_baseline_publisher(zmq::socket_t& sock, const SendContext& c);
// The baseline sender's report line.
void say_baseline_send_report(const SendContext& c, std::int64_t setup_done_ns, std::int64_t t0,
                              std::int64_t t1, double cpu0);
// A SUB on kTopicPrefix with unlimited high-water mark and `idle_ms` receive timeout, connected.
zmq::socket_t open_baseline_subscriber(zmq::context_t& ctx, const RecvContext& c);
// The receiver's report line: the recorder's report, cpu_seconds since cpu0, and `extra`.
void say_receiver_report(const RecvContext& c, double cpu0, json extra = json::object());

// The baseline receiver's loop: calls on_body(body) for every two-frame message (the mode
// records it) until `count` arrived or the socket went idle, then says the report.
template <typename OnBody>
int run_baseline_receiver(RecvContext& c, OnBody&& on_body) {
  zmq::context_t ctx(1);
  zmq::socket_t sock = open_baseline_subscriber(ctx, c);
  Recorder& rec = c.recorder;
  const double cpu0 = cpu_seconds();
  zmq::message_t topic, body;
  while (rec.received.load(std::memory_order_relaxed) < rec.count) {
    if (!sock.recv(topic)) {
      if (rec.received.load() == 0 && mono_ns() - c.started_ns < 60'000'000'000LL) continue;
      break;  // idle: the rest was lost
    }
    if (!topic.more() || !sock.recv(body)) continue;
    on_body(body.to_string_view());
    c.acker.update(rec.received.load(std::memory_order_relaxed));
  }
  say_receiver_report(c, cpu0);
  return 0;
}

// `zmq_scenario4 proxy` (bare_proxy.cpp): libzmq's forwarder, XSUB frontend -> XPUB backend.
int run_bare_proxy(const Args& a);

}  // namespace herald::bench::s4
