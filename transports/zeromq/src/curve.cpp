// CURVE keys, key files, socket options and the ZAP handler.
#include "zmq_detail.hpp"

#include <herald/zeromq/curve.hpp>
#include <herald/events/error.hpp>
#include <herald/events/log.hpp>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace herald {

namespace {

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

std::string read_key_file(const std::filesystem::path& file, const char* what) {
  std::ifstream in(file);
  if (!in) throw TransportError(std::string("cannot read CURVE ") + what + " file '" + file.string() + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string key = trim(ss.str());
  if (!is_valid_curve_key(key)) {
    throw TransportError(std::string("CURVE ") + what + " file '" + file.string() +
                         "' does not hold a 40-character Z85 key");
  }
  return key;
}

void require_curve() {
  if (!curve_available()) throw TransportError("CURVE is not available in this libzmq build");
}

std::string z85_of(const std::uint8_t* key32) {
  std::array<char, 41> text{};
  zmq_z85_encode(text.data(), key32, 32);
  return std::string(text.data(), 40);
}

}  // namespace

bool curve_available() noexcept { return zmq_has("curve") != 0; }

bool is_valid_curve_key(const std::string& key) noexcept {
  if (key.size() != 40) return false;
  std::array<std::uint8_t, 32> bytes{};
  return zmq_z85_decode(bytes.data(), key.c_str()) != nullptr;
}

CurveKeyPair generate_curve_keypair() {
  require_curve();
  std::array<char, 41> pub{}, sec{};
  if (zmq_curve_keypair(pub.data(), sec.data()) != 0) {
    throw TransportError(std::string("zmq_curve_keypair failed: ") + zmq_strerror(zmq_errno()));
  }
  return CurveKeyPair{std::string(pub.data(), 40), std::string(sec.data(), 40)};
}

std::string curve_public_key(const std::string& secret_key) {
  require_curve();
  if (!is_valid_curve_key(secret_key)) throw TransportError("malformed CURVE secret key");
  std::array<char, 41> pub{};
  if (zmq_curve_public(pub.data(), secret_key.c_str()) != 0) {
    throw TransportError(std::string("zmq_curve_public failed: ") + zmq_strerror(zmq_errno()));
  }
  return std::string(pub.data(), 40);
}

std::string read_curve_public_key(const std::filesystem::path& file) {
  return read_key_file(file, "public key");
}

std::string read_curve_secret_key(const std::filesystem::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    throw TransportError("cannot read CURVE secret key file '" + file.string() +
                         "': " + std::strerror(errno));
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw TransportError("CURVE secret key file '" + file.string() + "' is group- or world-accessible (mode " +
                         mode + "); run chmod 600 on it");
  }
  return read_key_file(file, "secret key");
}

void write_curve_keypair(const CurveKeyPair& keys, const std::string& prefix) {
  auto write = [](const std::string& path, const std::string& text, mode_t mode) {
    std::filesystem::remove(path);
    // Create with the final mode so the secret is never readable by others, even briefly.
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) throw TransportError("cannot write '" + path + "': " + std::strerror(errno));
    const std::string line = text + "\n";
    const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    ::fchmod(fd, mode);
    ::close(fd);
    if (!ok) throw TransportError("cannot write '" + path + "'");
  };
  write(prefix + ".key", keys.secret_key, 0600);
  write(prefix + ".pub", keys.public_key, 0644);
}

CurveOptions CurveOptions::make_server(std::string secret_key, std::vector<std::string> allowed) {
  CurveOptions o;
  o.server = true;
  o.secret_key = std::move(secret_key);
  o.allowed_clients = std::move(allowed);
  return o;
}

CurveOptions CurveOptions::make_client(std::string server_public_key, std::string secret_key) {
  CurveOptions o;
  o.server_public_key = std::move(server_public_key);
  o.secret_key = std::move(secret_key);
  return o;
}

// ---- ZAP handler ------------------------------------------------------------------------------

namespace {
std::mutex g_zap_mutex;
std::map<zmq::context_t*, std::weak_ptr<ZapHandler>> g_zap_handlers;  // under g_zap_mutex
}  // namespace

std::shared_ptr<ZapHandler> ZapHandler::for_context(const std::shared_ptr<zmq::context_t>& context) {
  std::lock_guard lock(g_zap_mutex);
  for (auto it = g_zap_handlers.begin(); it != g_zap_handlers.end();) {
    it = it->second.expired() ? g_zap_handlers.erase(it) : std::next(it);
  }
  auto& slot = g_zap_handlers[context.get()];
  if (auto existing = slot.lock()) return existing;
  std::shared_ptr<ZapHandler> handler(new ZapHandler(context));
  std::promise<void> ready;
  auto started = ready.get_future();
  handler->thread_ = std::thread([h = handler.get(), &ready] { h->run(&ready); });
  try {
    started.get();
  } catch (...) {
    handler->thread_.join();
    throw;
  }
  slot = handler;
  return handler;
}

ZapHandler::ZapHandler(std::shared_ptr<zmq::context_t> context) : context_(std::move(context)) {
  wake_fd_ = -1;
}

ZapHandler::~ZapHandler() {
  stop_ = true;
  if (wake_fd_ >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

std::string ZapHandler::add_domain(std::vector<std::string> allowed_clients, std::string label) {
  std::lock_guard lock(mutex_);
  std::string domain = "herald-" + std::to_string(++next_domain_);
  domains_[domain] = Domain{std::set<std::string>(allowed_clients.begin(), allowed_clients.end()),
                            std::move(label)};
  return domain;
}

void ZapHandler::remove_domain(const std::string& domain) {
  std::lock_guard lock(mutex_);
  domains_.erase(domain);
}

void ZapHandler::run(std::promise<void>* ready) {
  zmq::socket_t socket;
  try {
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) throw TransportError(std::string("eventfd failed: ") + std::strerror(errno));
    socket = zmq::socket_t(*context_, zmq::socket_type::rep);
    socket.set(zmq::sockopt::linger, 0);
    socket.bind("inproc://zeromq.zap.01");
    ready->set_value();
  } catch (const zmq::error_t& e) {
    ready->set_exception(std::make_exception_ptr(
        TransportError(std::string("cannot bind ZAP handler 'inproc://zeromq.zap.01': ") + e.what())));
    return;
  } catch (const std::exception& e) {
    ready->set_exception(std::make_exception_ptr(TransportError(e.what())));
    return;
  }
  RateLimiter refusals(10, std::chrono::seconds(1));
  while (!stop_.load()) {
    zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, wake_fd_, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, std::chrono::milliseconds(-1));
      if (!(items[0].revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> request;
      for (;;) {
        zmq::message_t part;
        if (!socket.recv(part, zmq::recv_flags::none)) break;
        const bool more = part.more();
        request.push_back(std::move(part));
        if (!more) break;
      }
      // version, request_id, domain, address, identity, mechanism, credentials...
      std::string status = "400", text = "malformed request", user;
      std::string request_id = request.size() > 1 ? request[1].to_string() : std::string();
      if (request.size() >= 6 && request[0].to_string_view() == "1.0") {
        const std::string domain = request[2].to_string();
        const std::string address = request[3].to_string();
        const std::string mechanism = request[5].to_string();
        std::string client_key;
        if (mechanism == "CURVE" && request.size() >= 7 && request[6].size() == 32) {
          client_key = z85_of(static_cast<const std::uint8_t*>(request[6].data()));
        }
        bool ok = false;
        std::string label = domain;
        {
          std::lock_guard lock(mutex_);
          auto it = domains_.find(domain);
          if (it != domains_.end()) {
            label = it->second.label;
            ok = !client_key.empty() && (it->second.allowed.empty() || it->second.allowed.count(client_key));
          }
        }
        if (ok) {
          status = "200";
          text = "OK";
          user = client_key;
          allowed_.fetch_add(1);
        } else {
          text = "client key not allowed";
          denied_.fetch_add(1);
          std::uint64_t suppressed = 0;
          if (refusals.allow(&suppressed)) {
            logger()->warn("{}: refused {} client {} with key {} ({} similar suppressed)", label,
                           mechanism, address, client_key.empty() ? "(none)" : client_key,
                           suppressed);
          }
        }
      }
      socket.send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
      socket.send(zmq::buffer(request_id), zmq::send_flags::sndmore);
      socket.send(zmq::buffer(status), zmq::send_flags::sndmore);
      socket.send(zmq::buffer(text), zmq::send_flags::sndmore);
      socket.send(zmq::buffer(user), zmq::send_flags::sndmore);
      socket.send(zmq::str_buffer(""), zmq::send_flags::none);
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) break;
      logger()->error("ZAP handler: {}", e.what());
    }
  }
}

namespace detail {

std::shared_ptr<ZapHandler> apply_curve(zmq::socket_t& socket, const CurveOptions& curve,
                                        const std::shared_ptr<zmq::context_t>& context,
                                        const std::string& label, std::string* domain_out) {
  require_curve();
  if (curve.server) {
    if (!is_valid_curve_key(curve.secret_key)) {
      throw TransportError(label + ": malformed CURVE server secret key");
    }
    for (const auto& key : curve.allowed_clients) {
      if (!is_valid_curve_key(key)) throw TransportError(label + ": malformed allowed client key '" + key + "'");
    }
    socket.set(zmq::sockopt::curve_server, 1);
    socket.set(zmq::sockopt::curve_secretkey, curve.secret_key);
    // Every CURVE server goes through the ZAP handler, so refusals are logged and counted.
    auto zap = ZapHandler::for_context(context);
    std::string domain = zap->add_domain(curve.allowed_clients, label);
    socket.set(zmq::sockopt::zap_domain, domain);
    if (domain_out) *domain_out = domain;
    return zap;
  }
  if (!is_valid_curve_key(curve.server_public_key)) {
    throw TransportError(label + ": malformed CURVE server public key");
  }
  CurveKeyPair own;
  if (curve.secret_key.empty()) {
    own = generate_curve_keypair();
  } else {
    if (!is_valid_curve_key(curve.secret_key)) throw TransportError(label + ": malformed CURVE secret key");
    own = CurveKeyPair{curve_public_key(curve.secret_key), curve.secret_key};
  }
  socket.set(zmq::sockopt::curve_serverkey, curve.server_public_key);
  socket.set(zmq::sockopt::curve_publickey, own.public_key);
  socket.set(zmq::sockopt::curve_secretkey, own.secret_key);
  return nullptr;
}

}  // namespace detail
}  // namespace herald
