// Mode `herald`: herald's own ZeroMQ transport end to end. The sender creates a DomainEvent and
// herald::ZmqPublisher::send()s it per event (waiting out a full send queue); the receiver is a
// herald::ZmqSubscriber (decode, validate, pattern match, dedup, gap tracking) with a callback.
// The driver runs it direct and through `herald proxy`; the mode itself does not know which.
#include "harness.hpp"

#include <herald/events/error.hpp>
#include <herald/zeromq/transport.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

namespace herald::bench::s4 {
namespace {

int send_herald(SendContext& c) {
  ZmqPublisherOptions po;
  po.endpoints = {c.endpoint};
  po.bind = c.bind;
  po.sndhwm = 0;
  po.linger = std::chrono::seconds(60);
  ZmqPublisher pub(po);
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
  for (std::size_t i = 0; i < c.count; ++i) {
    c.pacer.wait(i);
    c.credit.wait(i);
    json p = c.payload;
    p["sent_ns"] = stamp(mono_ns());
    EventMetadata m = c.metadata;
    auto event = DomainEvent::create(kEventName, std::move(p), std::move(m));
    for (;;) {
      try {
        pub.send(event);
        break;
      } catch (const TransportError&) {  // queue full: wait for the I/O thread
        ++full_waits;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
  }
  const std::int64_t t1 = mono_ns();
  pub.stop();
  const double cpu = cpu_seconds() - cpu0;
  const json stats = pub.stats();
  say(json{{"sent", c.count}, {"send_seconds", (t1 - t0) / 1e9}, {"queue_full_waits", full_waits},
           {"cpu_seconds", cpu},
           {"credit_stalls", c.credit.stalls()}, {"setup_seconds", (t0 - c.started_ns) / 1e9},
           {"publisher", {{"sent", stats.value("sent", 0)}, {"send_errors", stats.value("send_errors", 0)},
                          {"unrouted", stats.value("unrouted", 0)}}}}
          .dump());
  return 0;
}

int recv_herald(RecvContext& c) {
  Recorder& rec = c.recorder;
  ZmqSubscriberOptions so;
  so.endpoints = {c.endpoint};
  so.patterns = {"payment.*"};
  so.rcvhwm = 0;
  ZmqSubscriber sub(so, [&](const WireMessage& msg) {
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
    c.acker.update(rec.received.load(std::memory_order_relaxed));
  });
  sub.start();
  const double cpu0 = cpu_seconds();
  // This thread only watches the count (atomics) until done or idle.
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const auto n = rec.received.load(std::memory_order_acquire);
    if (n >= rec.count) break;
    const std::int64_t now = mono_ns();
    if (n == 0 && now - c.started_ns > 60'000'000'000LL) break;
    if (n > 0 && now - rec.last_ns.load() > c.idle_ms * 1'000'000LL) break;
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

}  // namespace

const Mode kHeraldMode{"herald", send_herald, recv_herald};

}  // namespace herald::bench::s4
