// CURVE security for herald's ZeroMQ sockets (DESIGN.md decision 8): key pairs as Z85 text,
// key files, server/client socket options, and a ZAP handler with an allow-list of client keys.
//
// Key files hold one Z85 key (40 characters) and optional surrounding whitespace:
// PREFIX.key the secret key (must not be group- or world-accessible), PREFIX.pub the public key.
#pragma once

#include <zmq.hpp>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace herald {

/// True when this libzmq supports CURVE (zmq_has("curve")).
bool curve_available() noexcept;

/// A CURVE key pair as Z85 text (40 characters each).
struct CurveKeyPair {
  std::string public_key;
  std::string secret_key;
};

/// A fresh key pair. Throws TransportError when CURVE is unavailable.
CurveKeyPair generate_curve_keypair();
/// The public key of a Z85 secret key. Throws TransportError for a malformed key.
std::string curve_public_key(const std::string& secret_key);
/// True when `key` is 40 characters of Z85 that decode to 32 bytes.
bool is_valid_curve_key(const std::string& key) noexcept;

/// Reads a public key file. Throws TransportError naming the file (unreadable, malformed).
std::string read_curve_public_key(const std::filesystem::path& file);
/// Reads a secret key file; refuses (TransportError naming the file and its mode) a file that is
/// group- or world-accessible.
std::string read_curve_secret_key(const std::filesystem::path& file);
/// Writes PREFIX.key (mode 0600) and PREFIX.pub (0644). Throws TransportError naming the file.
void write_curve_keypair(const CurveKeyPair& keys, const std::string& prefix);

/// CURVE settings of one socket. Exactly one role, or none (plain text):
///  - server (the socket that binds, usually): `secret_key`, and `allowed_clients` (Z85 public
///    keys; empty allows any client that knows the server's public key);
///  - client (the socket that connects): `server_public_key`, and the client's own
///    `secret_key` (its public key is derived; an ephemeral pair is generated when empty).
struct CurveOptions {
  bool server = false;
  std::string secret_key;
  std::string server_public_key;
  std::vector<std::string> allowed_clients;

  bool enabled() const noexcept { return server || !server_public_key.empty(); }
  static CurveOptions make_server(std::string secret_key, std::vector<std::string> allowed = {});
  static CurveOptions make_client(std::string server_public_key, std::string secret_key = {});
};

/// A ZAP handler (RFC 27) for one ZeroMQ context: a thread owning a REP socket bound to
/// inproc://zeromq.zap.01 that answers CURVE handshakes. Each server socket gets its own ZAP
/// domain with its own allow-list; refusals are logged (rate limited) and counted.
/// Thread safe. Obtain with for_context(); it lives while anyone holds it.
class ZapHandler {
 public:
  /// The context's handler, started on first use. Throws TransportError if the ZAP endpoint is
  /// taken by someone else in that context.
  static std::shared_ptr<ZapHandler> for_context(const std::shared_ptr<zmq::context_t>& context);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  /// Registers an allow-list and returns the ZAP domain to set on the server socket.
  std::string add_domain(std::vector<std::string> allowed_clients, std::string label);
  void remove_domain(const std::string& domain);

  std::uint64_t allowed() const noexcept { return allowed_.load(); }
  std::uint64_t denied() const noexcept { return denied_.load(); }

 private:
  explicit ZapHandler(std::shared_ptr<zmq::context_t> context);
  void run(std::promise<void>* ready);

  struct Domain {
    std::set<std::string> allowed;
    std::string label;
  };
  std::shared_ptr<zmq::context_t> context_;
  std::mutex mutex_;
  std::map<std::string, Domain> domains_;
  std::uint64_t next_domain_ = 0;
  std::atomic<std::uint64_t> allowed_{0};
  std::atomic<std::uint64_t> denied_{0};
  std::atomic<bool> stop_{false};
  int wake_fd_ = -1;
  std::thread thread_;
};

namespace detail {
/// Applies `curve` to `socket` before bind/connect. For a server with an allow-list, returns the
/// ZAP handler (keep it alive as long as the socket) and registers a domain; `label` names the
/// socket in logs. Throws TransportError for a malformed key or missing CURVE support.
std::shared_ptr<ZapHandler> apply_curve(zmq::socket_t& socket, const CurveOptions& curve,
                                        const std::shared_ptr<zmq::context_t>& context,
                                        const std::string& label, std::string* domain_out);
}  // namespace detail

}  // namespace herald
