// Private helpers shared by herald's ZeroMQ transports, proxy and ZAP handler.
#pragma once

#include <herald/events/error.hpp>

#include <zmq.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace herald::detail {

/// ThreadSanitizer cannot see libzmq's (uninstrumented) synchronisation. A message body sent
/// zero-copy over inproc is the publisher's own buffer, read by the receiving thread: the
/// publisher releases it before sending and the receiver acquires it after receiving, so TSan
/// sees the happens-before that libzmq's queue provides. No-ops in other builds.
inline void tsan_release(const void* p) noexcept {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(const_cast<void*>(p));
#else
  (void)p;
#endif
}
inline void tsan_acquire(const void* p) noexcept {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(const_cast<void*>(p));
#else
  (void)p;
#endif
}

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

/// The I/O thread every ZeroMQ transport runs its sockets on (a socket belongs to one thread),
/// with the start handshake they share: start() runs `body` on a new thread and returns once
/// the body calls its `ready` argument (sockets made, options set, endpoints attached). An
/// exception before that is rethrown by start() after the thread is joined, as TransportError
/// (prefixed with `name`, unless it is a herald Error, which names its subject already); one
/// after it is logged ("<name>: <role> failed: ..."). The body cleans up its own state in
/// either case. Not thread safe: one controlling thread starts and joins it.
class SocketThread {
 public:
  using Body = std::function<void(const std::function<void()>& ready)>;
  SocketThread() = default;
  SocketThread(const SocketThread&) = delete;
  SocketThread& operator=(const SocketThread&) = delete;
  ~SocketThread() { join(); }
  void start(std::string name, std::string role, Body body);
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  bool joinable() const noexcept { return thread_.joinable(); }

 private:
  std::thread thread_;
};

/// The filesystem path of an ipc:// endpoint ("" for other transports and abstract sockets).
std::string ipc_path(const std::string& endpoint);

}  // namespace herald::detail
