// ZmqProxy: the many-to-many hub of DESIGN.md decision 8. Publishers connect to an XSUB
// frontend, subscribers to an XPUB backend; messages flow frontend -> backend, subscriptions
// backend -> frontend. Counts messages and bytes each way.
//
// Hostile input is bounded: frames from publishers larger than `max_frame_size` make libzmq drop
// that connection (the proxy never buffers a message larger than that), subscription messages
// larger than `max_subscription_size` drop the subscriber's connection, and at most
// `max_topics` distinct topics are forwarded to publishers: beyond that a new topic is refused
// (counted in `subscriptions_refused`, logged with a rate limit) so that a subscription flood
// cannot grow every publisher's memory. libzmq still keeps the flooding peer's subscriptions in
// the proxy's own XPUB socket (about 1 KB each) until it disconnects; CURVE with an allow-list is
// the defence against strangers.
#pragma once

#include <herald/zeromq/curve.hpp>
#include <herald/events/wire.hpp>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace herald {

struct ZmqProxyOptions {
  std::vector<std::string> frontend;  ///< XSUB, bound; publishers connect here
  std::vector<std::string> backend;   ///< XPUB, bound; subscribers connect here
  int hwm = 10'000;                   ///< send and receive high-water marks of both sockets
  std::chrono::milliseconds linger{0};
  /// ZMQ_MAXMSGSIZE of the frontend (per frame; 0: unlimited). The default matches what herald
  /// subscribers accept (twice max_message_size plus 64 KiB): larger frames could not be
  /// delivered anyway.
  std::int64_t max_frame_size = 2 * static_cast<std::int64_t>(kDefaultMaxMessageSize) + 64 * 1024;
  /// ZMQ_MAXMSGSIZE of the backend, whose peers only send subscriptions (an event name has at
  /// most 255 characters).
  std::int64_t max_subscription_size = 1024;
  /// Distinct topics forwarded to publishers at a time (0: unlimited); see the header comment.
  std::size_t max_topics = 10'000;
  CurveOptions curve;                 ///< server options for both sockets (or none)
  std::shared_ptr<zmq::context_t> context;  ///< default: shared_zmq_context()
  std::string name = "proxy";
};

/// Counters of a running proxy.
struct ProxyStats {
  std::uint64_t messages_in = 0;       ///< messages from publishers (frontend)
  std::uint64_t bytes_in = 0;
  std::uint64_t messages_out = 0;      ///< messages forwarded to subscribers (backend)
  std::uint64_t bytes_out = 0;
  std::uint64_t subscriptions = 0;     ///< subscription messages forwarded upstream
  std::uint64_t subscriptions_refused = 0;  ///< new topics not forwarded (max_topics reached)
  std::uint64_t topics = 0;            ///< distinct topics currently forwarded
  std::uint64_t forward_errors = 0;
  nlohmann::json to_json() const;
};

/// Runs the proxy on its own thread; both sockets belong to that thread, which is woken for
/// stop() through a control file descriptor. Thread safety: stats() and endpoints() from any
/// thread; start()/stop() from one controlling thread. Not copyable, not movable. The destructor
/// stops it.
class ZmqProxy {
 public:
  explicit ZmqProxy(ZmqProxyOptions options);
  ~ZmqProxy();
  ZmqProxy(const ZmqProxy&) = delete;
  ZmqProxy& operator=(const ZmqProxy&) = delete;

  /// Binds both sides; throws TransportError naming the endpoint.
  void start();
  /// Stops forwarding, closes both sockets, joins the thread. Idempotent.
  void stop();
  ProxyStats stats() const;
  /// Resolved endpoints (after start()).
  std::vector<std::string> frontend_endpoints() const;
  std::vector<std::string> backend_endpoints() const;

 private:
  struct Impl;
  ZmqProxyOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald
