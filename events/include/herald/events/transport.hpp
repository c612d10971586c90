// The Transport interface: a road out of the process (ZeroMQ today). The publishing pipeline
// routes events with delivery mode zeromq/broadcast to a Transport without knowing which.
#pragma once

#include <herald/events/domain_event.hpp>

#include <nlohmann/json.hpp>

#include <string>

namespace herald {

/// A road for events out of the process. Implementations document their own thread safety;
/// send() must be safe to call from any thread and must not block for long.
class Transport {
 public:
  virtual ~Transport() = default;
  /// Short name for logs and statistics ("zeromq").
  virtual std::string name() const = 0;
  /// Opens sockets/threads. Throws TransportError naming the endpoint on failure.
  virtual void start() = 0;
  /// Hands the event over for delivery. Throws TransportError when the transport cannot take it
  /// (not started, stopped, queue full); failures after hand-over are counted in stats().
  virtual void send(const EventPtr& event) = 0;
  /// Flushes what is queued (bounded by the transport's linger) and closes. Idempotent.
  virtual void stop() = 0;
  /// Counters as JSON (sent, errors, ...).
  virtual nlohmann::json stats() const = 0;
  /// False when the transport is known to be unable to deliver (e.g. stopped).
  virtual bool healthy() const { return true; }
};

}  // namespace herald
