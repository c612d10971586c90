// ZeroMQ transports (DESIGN.md decision 7): ZmqPublisher, a Transport that sends events to other
// processes, and ZmqSubscriber, which receives them into a local EventBus (or a callback).
// The wire format is in wire.hpp and docs/wire-format.md.
//
// Threading: every ZeroMQ socket belongs to one I/O thread owned by its transport. Publishing
// threads hand events over through a bounded queue and never touch a socket.
//
// Contexts: inproc:// endpoints only connect sockets of the same zmq::context_t. By default all
// transports share shared_zmq_context(), which lives while any transport uses it.
#pragma once

#include <herald/zeromq/curve.hpp>
#include <herald/events/event_bus.hpp>
#include <herald/events/transport.hpp>
#include <herald/events/wire.hpp>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace herald {

/// The process's shared ZeroMQ context: created on first use, terminated when the last holder
/// releases it (which waits for the linger of sockets closed with pending messages). Thread safe.
std::shared_ptr<zmq::context_t> shared_zmq_context();

/// The topic a herald subscriber subscribes to last, after its real subscriptions, so that a
/// publisher can count distinct subscribers: "\xffherald-subscriber:" followed by a unique id.
/// Event names are ASCII, so it never matches an event. The first byte is 0xFF, not NUL (wire
/// version 1 before 2026-11): a proxy replays its subscriptions to a publisher that connects
/// later in byte order, and the marker must come after the real topics there too, or the
/// publisher counts the subscriber before its topics are in place and what it sends is lost.
inline constexpr std::string_view kSubscriberMarkerPrefix{"\xffherald-subscriber:", 19};

struct ZmqPublisherOptions {
  std::vector<std::string> endpoints;  ///< tcp://, ipc://, inproc://; at least one
  bool bind = true;                    ///< bind (usual) or connect (e.g. to a proxy's frontend)
  int sndhwm = 10'000;                 ///< ZMQ_SNDHWM: messages queued per subscriber before drops
  std::chrono::milliseconds linger{1'000};  ///< how long stop() may spend flushing
  WireEncoding encoding = WireEncoding::json;
  std::string publisher_id;           ///< default: a new UUID per publisher
  std::size_t max_queue = 100'000;    ///< events waiting for the I/O thread; send() throws beyond
  /// Events whose two frames together exceed this are not sent but counted (`oversized`) and
  /// logged: receivers reject them anyway, and a frame above a receiver's ZMQ_MAXMSGSIZE closes
  /// its connection. 0: no limit.
  std::size_t max_message_size = kDefaultMaxMessageSize;
  CurveOptions curve;                 ///< server when binding, client when connecting
  std::shared_ptr<zmq::context_t> context;  ///< default: shared_zmq_context()
  std::string name = "zeromq";        ///< for logs and stats
};

/// Publishes events over an XPUB socket (a PUB that sees subscriptions).
/// Thread safety: send(), stats(), wait_for_subscribers() and endpoints() may be called from any
/// thread; start() and stop() from one controlling thread. Not copyable, not movable.
/// The destructor calls stop().
class ZmqPublisher : public Transport {
 public:
  explicit ZmqPublisher(ZmqPublisherOptions options);
  ~ZmqPublisher() override;
  ZmqPublisher(const ZmqPublisher&) = delete;
  ZmqPublisher& operator=(const ZmqPublisher&) = delete;

  std::string name() const override { return options_.name; }
  /// Starts the I/O thread, binds or connects every endpoint; throws TransportError naming the
  /// endpoint (bad address, address in use, bad CURVE key). Calling it twice throws StateError.
  void start() override;
  /// Encodes the event's envelope on the calling thread (the event's own encoding is cached on
  /// it) and queues the message for the I/O thread, which never holds the event. Throws
  /// TransportError when not running or the queue is full (counted as `queue_full`); an event
  /// over max_message_size is counted (`oversized`), logged and not sent. Never blocks on the
  /// network.
  void send(const EventPtr& event) override;
  /// Sends what is queued, closes the socket with linger, joins the thread. Idempotent.
  void stop() override;
  /// {"sent", "bytes", "send_errors", "oversized", "queue_full", "queue_depth", "unrouted", "topics",
  ///  "topics_tracked", "subscribers_seen", "subscriptions_seen", ...}. `sent` counts events
  /// handed to ZeroMQ; `unrouted` those of them no subscription matched when they were sent
  /// (no peer connected, a peer unreachable, or nobody subscribed to that name), which ZeroMQ
  /// drops. `topics` is the number of subscribed topics; tracking stops (`topics_tracked`
  /// false, `unrouted` no longer counted) beyond 65,536 distinct topics.
  nlohmann::json stats() const override;
  bool healthy() const override;

  /// Waits until `n` distinct herald subscribers have subscribed (see kSubscriberMarkerPrefix);
  /// false on timeout.
  bool wait_for_subscribers(std::size_t n, std::chrono::milliseconds timeout) const;
  /// Waits until `n` subscription messages (any topic but the marker; duplicates included) have
  /// arrived: for non-herald subscribers. False on timeout.
  bool wait_for_subscriptions(std::size_t n, std::chrono::milliseconds timeout) const;
  /// Events queued but not yet sent.
  std::size_t queue_depth() const;
  /// Resolved endpoints (after start(): tcp://127.0.0.1:* shows its port).
  std::vector<std::string> endpoints() const;
  const std::string& publisher_id() const noexcept { return options_.publisher_id; }

 private:
  struct Impl;
  ZmqPublisherOptions options_;
  std::unique_ptr<Impl> impl_;
};

/// One decoded event as the subscriber saw it (for callbacks).
using ReceiveCallback = std::function<void(const WireMessage&)>;

struct ZmqSubscriberOptions {
  std::vector<std::string> endpoints;   ///< at least one
  bool bind = false;                    ///< connect (usual) or bind
  std::vector<std::string> patterns{"#"};  ///< globs; ZeroMQ subscribes to their literal prefixes
  std::size_t max_message_size = kDefaultMaxMessageSize;  ///< larger messages: rejected, oversized
  /// ZMQ_MAXMSGSIZE (per frame; libzmq drops the connection beyond it). Default 0 means
  /// 2 * max_message_size + 64 KiB, so that messages just over the limit are still counted.
  std::int64_t socket_max_message_size = 0;
  std::size_t dedup_capacity = 10'000;  ///< LRU of recent event ids (0: no duplicate suppression)
  std::size_t max_tracked_streams = 65'536;  ///< bound on (publisher, name) sequence trackers
  int rcvhwm = 10'000;
  std::chrono::milliseconds linger{0};
  CurveOptions curve;                   ///< client when connecting, server when binding
  std::shared_ptr<zmq::context_t> context;  ///< default: shared_zmq_context()
  std::string name = "zmq-subscriber";
};

/// Receives events on a SUB socket owned by its own I/O thread, matches them exactly against
/// the patterns, suppresses duplicates, detects gaps and hands each event to an EventBus (or a
/// callback, called on the I/O thread). Bad input is dropped, counted by reason and logged with
/// a rate limit; nothing from the network can make it throw.
/// Thread safety: stats() from any thread; start()/stop() from one controlling thread.
/// Not copyable, not movable. The destructor calls stop(). The bus must outlive the subscriber.
class ZmqSubscriber {
 public:
  ZmqSubscriber(ZmqSubscriberOptions options, EventBus& bus);
  ZmqSubscriber(ZmqSubscriberOptions options, ReceiveCallback callback);
  ~ZmqSubscriber();
  ZmqSubscriber(const ZmqSubscriber&) = delete;
  ZmqSubscriber& operator=(const ZmqSubscriber&) = delete;

  /// Compiles the patterns (PatternError), starts the I/O thread, connects or binds (TransportError
  /// naming the endpoint). Connecting to an absent publisher is fine: ZeroMQ reconnects.
  void start();
  /// Closes the socket and joins the thread. Idempotent.
  void stop();
  /// {"received", "delivered", "filtered", "duplicates", "gaps", "out_of_order", "rejected":
  ///  {reason: n}, "rejected_total", "publishers": {id: {"received", "last_seq", "gaps"}},
  ///  "reconnects"}. `reconnects` counts connections herald re-established after libzmq closed
  ///  them for a protocol error (a frame above ZMQ_MAXMSGSIZE) and would not retry them.
  nlohmann::json stats() const;
  std::uint64_t received() const noexcept;   ///< messages read from the socket
  std::uint64_t delivered() const noexcept;  ///< events handed to the bus or callback
  std::uint64_t gaps() const noexcept;
  std::uint64_t duplicates() const noexcept;
  std::uint64_t rejected_total() const noexcept;
  std::uint64_t rejected(WireReject reason) const noexcept;
  /// Resolved endpoints (after start()).
  std::vector<std::string> endpoints() const;
  /// The unique id in this subscriber's marker subscription.
  const std::string& subscriber_id() const noexcept { return subscriber_id_; }

 private:
  struct Impl;
  ZmqSubscriberOptions options_;
  std::string subscriber_id_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald
