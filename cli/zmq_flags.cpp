#include "zmq_flags.hpp"

#include <cstdio>

namespace herald::cli {

void add_endpoint_flags(CLI::App& cmd, EndpointFlags& flags) {
  auto* connect = cmd.add_option("--connect", flags.connect,
                                 "Connect to endpoint(s): tcp://host:port, ipc:///path, inproc://name");
  auto* bind = cmd.add_option("--bind", flags.bind,
                              "Bind endpoint(s); tcp://127.0.0.1:* picks a free port (printed on stderr)");
  connect->excludes(bind);
  bind->excludes(connect);
}

void require_endpoints(const EndpointFlags& flags) {
  if (flags.connect.empty() && flags.bind.empty()) {
    throw CLI::RequiredError("--connect or --bind");
  }
}

void add_curve_flags(CLI::App& cmd, CurveFlags& flags, bool server_only) {
  cmd.add_option("--curve-secret-key", flags.secret_key_file,
                 "CURVE secret key file (mode 0600): the server key when binding, this client's "
                 "key when connecting")
      ->check(CLI::ExistingFile);
  if (!server_only) {
    cmd.add_option("--curve-server-key", flags.server_key_file,
                   "CURVE public key file of the server to connect to (enables CURVE as a client)")
        ->check(CLI::ExistingFile);
  }
  cmd.add_option("--curve-allow", flags.allow_files,
                 "Public key file(s) of clients allowed to connect (server side; others are refused)")
      ->check(CLI::ExistingFile);
}

CurveOptions curve_options(const CurveFlags& flags, bool binding) {
  CurveOptions o;
  if (binding) {
    if (!flags.server_key_file.empty()) {
      throw CLI::ValidationError("--curve-server-key", "is for the connecting side; use --curve-secret-key when binding");
    }
    if (flags.secret_key_file.empty()) {
      if (!flags.allow_files.empty()) {
        throw CLI::ValidationError("--curve-allow", "needs --curve-secret-key (the server's key)");
      }
      return o;
    }
    std::vector<std::string> allowed;
    for (const auto& file : flags.allow_files) allowed.push_back(read_curve_public_key(file));
    return CurveOptions::make_server(read_curve_secret_key(flags.secret_key_file), std::move(allowed));
  }
  if (!flags.allow_files.empty()) {
    throw CLI::ValidationError("--curve-allow", "is for the binding (server) side");
  }
  if (flags.server_key_file.empty()) {
    if (!flags.secret_key_file.empty()) {
      throw CLI::ValidationError("--curve-secret-key", "needs --curve-server-key when connecting");
    }
    return o;
  }
  std::string secret;
  if (!flags.secret_key_file.empty()) secret = read_curve_secret_key(flags.secret_key_file);
  return CurveOptions::make_client(read_curve_public_key(flags.server_key_file), std::move(secret));
}

void announce_endpoints(const char* command, const char* verb, const std::vector<std::string>& eps) {
  for (const auto& ep : eps) std::fprintf(stderr, "herald %s: %s %s\n", command, verb, ep.c_str());
  std::fflush(stderr);
}

}  // namespace herald::cli
