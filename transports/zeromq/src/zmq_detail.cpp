// Helpers shared by the ZeroMQ transports: the shared context, eventfd wake-ups, bind/connect.
#include "zmq_detail.hpp"

#include <herald/events/log.hpp>
#include <herald/zeromq/transport.hpp>

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <mutex>

namespace herald {

std::shared_ptr<zmq::context_t> shared_zmq_context() {
  static std::mutex mutex;
  static std::weak_ptr<zmq::context_t> current;
  std::lock_guard lock(mutex);
  if (auto ctx = current.lock()) return ctx;
  auto ctx = std::make_shared<zmq::context_t>(1);
  current = ctx;
  return ctx;
}

namespace detail {

Wakeup::Wakeup() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw TransportError(std::string("eventfd failed: ") + std::strerror(errno));
}

Wakeup::~Wakeup() {
  if (fd_ >= 0) ::close(fd_);
}

void Wakeup::signal() noexcept {
  const std::uint64_t one = 1;
  // A full counter (impossible in practice) or EAGAIN still leaves the fd readable.
  [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
}

void Wakeup::drain() noexcept {
  std::uint64_t value = 0;
  [[maybe_unused]] auto n = ::read(fd_, &value, sizeof value);
}

std::string ipc_path(const std::string& endpoint) {
  constexpr std::string_view scheme = "ipc://";
  if (endpoint.rfind(scheme, 0) != 0) return {};
  std::string path = endpoint.substr(scheme.size());
  if (path.empty() || path[0] == '@' || path == "*") return {};
  return path;
}

namespace {
// True when a process accepts connections on the unix socket at `path`. libzmq binds an ipc
// endpoint by unlinking whatever socket file is there, which would silently take the address
// from a live process; herald refuses instead, like a tcp port in use. A stale file (nobody
// listening) is left for libzmq to replace.
bool ipc_in_use(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) return false;  // libzmq reports it
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool listening = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return listening;
}
}  // namespace

std::string attach(zmq::socket_t& socket, const std::string& endpoint, bool bind,
                   const std::string& what) {
  if (bind) {
    if (auto path = ipc_path(endpoint); !path.empty() && ipc_in_use(path)) {
      throw TransportError(what + ": cannot bind '" + endpoint +
                           "': Address already in use (another process listens on that socket)");
    }
  }
  try {
    if (bind) {
      socket.bind(endpoint);
    } else {
      socket.connect(endpoint);
    }
  } catch (const zmq::error_t& e) {
    throw TransportError(what + ": cannot " + (bind ? "bind" : "connect") + " '" + endpoint +
                         "': " + e.what());
  }
  if (!bind) return endpoint;
  std::string resolved = socket.get(zmq::sockopt::last_endpoint);
  if (resolved.empty()) resolved = endpoint;
  if (auto path = ipc_path(resolved); !path.empty()) {
    if (::chmod(path.c_str(), S_IRUSR | S_IWUSR) != 0) {
      throw TransportError(what + ": cannot restrict permissions of '" + resolved +
                           "': " + std::strerror(errno));
    }
  }
  return resolved;
}

void SocketThread::start(std::string name, std::string role, Body body) {
  std::promise<void> started;
  auto ready = started.get_future();
  // `started` lives until ready.get() returns, and the thread touches it only before that.
  thread_ = std::thread([&started, name = std::move(name), role = std::move(role), body = std::move(body)] {
    bool announced = false;
    try {
      body([&] {
        announced = true;
        started.set_value();
      });
    } catch (const std::exception& e) {
      if (!announced) {
        started.set_exception(std::make_exception_ptr(
            TransportError(dynamic_cast<const Error*>(&e) ? e.what() : name + ": " + e.what())));
      } else {
        logger()->error("{}: {} failed: {}", name, role, e.what());
      }
    }
  });
  try {
    ready.get();
  } catch (...) {
    thread_.join();
    throw;
  }
}

}  // namespace detail
}  // namespace herald
