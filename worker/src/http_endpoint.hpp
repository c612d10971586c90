// The worker's HTTP endpoint: GET /metrics (Prometheus text, version 0.0.4), /health (200 when
// healthy, 503 otherwise, JSON body) and /status (JSON), served by cpp-httplib (Debian
// libcpp-httplib-dev) on threads of its own. Private to herald::worker; httplib.h stays out of
// the public headers (it pulls in OpenSSL's).
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>

namespace herald::detail {

/// What the routes answer with. Each is called on an HTTP thread, per request, and must be
/// safe to call from any thread (Worker::status(), health() and prometheus_text() are).
struct HttpRoutes {
  std::function<std::string()> metrics;
  std::function<nlohmann::json()> health;  ///< {"healthy": bool, ...}
  std::function<nlohmann::json()> status;
};

/// Binds at construction and serves until stop() or destruction.
///
/// Thread safety: construct, stop() and destroy from one controlling thread; address() from
/// any. Requests run on up to two pool threads. stop() closes the listening socket, lets the
/// requests in progress finish and waits for the threads: a connection that sends nothing (an
/// idle keep-alive) holds it at most the keep-alive timeout (1 s). Not copyable or movable.
class HttpEndpoint {
 public:
  /// Binds `listen` ("HOST:PORT", port 0 picks a free one) and starts serving. Throws
  /// HttpError naming the address when it is malformed or cannot be bound (in use, not local).
  HttpEndpoint(const std::string& listen, HttpRoutes routes);
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  /// The bound address, "HOST:PORT" with the port chosen when 0 was asked ("[::1]:PORT" for IPv6).
  const std::string& address() const noexcept { return address_; }
  /// Stops serving and joins the threads. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

}  // namespace herald::detail
