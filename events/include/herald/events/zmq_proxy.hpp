// ZmqProxy: the many-to-many hub of DESIGN.md decision 8. Publishers connect to an XSUB
// frontend, subscribers to an XPUB backend; messages flow frontend -> backend, subscriptions
// backend -> frontend. Counts messages and bytes each way.
#pragma once

#include <herald/events/curve.hpp>

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
