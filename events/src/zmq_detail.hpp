// Private helpers shared by herald's ZeroMQ transports, proxy and ZAP handler.
#pragma once

#include <herald/events/error.hpp>

#include <zmq.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace herald::detail {

/// An eventfd that wakes a zmq_poll loop (ZeroMQ polls raw file descriptors too).
/// signal() is thread safe and async-signal-safe; drain() belongs to the polling thread.
class Wakeup {
 public:
  Wakeup();
  ~Wakeup();
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;
  int fd() const noexcept { return fd_; }
  void signal() noexcept;
  void drain() noexcept;

 private:
  int fd_ = -1;
};

/// Binds or connects `socket` to `endpoint`; returns the resolved endpoint (ZMQ_LAST_ENDPOINT
/// for binds, so tcp://127.0.0.1:* reports its port). ipc:// paths bound here are made
/// owner-only (0600). Throws TransportError naming the endpoint.
std::string attach(zmq::socket_t& socket, const std::string& endpoint, bool bind,
                   const std::string& what);

/// The filesystem path of an ipc:// endpoint ("" for other transports and abstract sockets).
std::string ipc_path(const std::string& endpoint);

}  // namespace herald::detail
