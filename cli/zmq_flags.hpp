// Flags shared by the ZeroMQ commands (publish, tail, proxy): endpoints and CURVE keys.
#pragma once

#include <herald/zeromq/curve.hpp>

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace herald::cli {

/// --connect EP... | --bind EP... (exactly one of the two, each repeatable).
struct EndpointFlags {
  std::vector<std::string> connect;
  std::vector<std::string> bind;
  bool binding() const { return !bind.empty(); }
  const std::vector<std::string>& endpoints() const { return binding() ? bind : connect; }
};
void add_endpoint_flags(CLI::App& cmd, EndpointFlags& flags);
/// Throws CLI::RequiredError when neither --connect nor --bind was given.
void require_endpoints(const EndpointFlags& flags);

/// --curve-secret-key FILE, --curve-server-key FILE, --curve-allow FILE...
struct CurveFlags {
  std::string secret_key_file;
  std::string server_key_file;
  std::vector<std::string> allow_files;
};
/// `server_only` (proxy) leaves out --curve-server-key.
void add_curve_flags(CLI::App& cmd, CurveFlags& flags, bool server_only = false);

/// Turns the flags into socket options: a server when binding (secret key, allow-list), a client
/// when connecting (server public key, own secret key or an ephemeral pair). Throws
/// CLI::ValidationError naming the flag for inconsistent combinations, TransportError for bad
/// key files.
CurveOptions curve_options(const CurveFlags& flags, bool binding);

/// Prints "herald <command>: <verb> <endpoint>" lines on stderr (tests read bound ports here).
void announce_endpoints(const char* command, const char* verb, const std::vector<std::string>& eps);

}  // namespace herald::cli
