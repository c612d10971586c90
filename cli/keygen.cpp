// herald keygen: writes a CURVE key pair (PREFIX.key, mode 0600, and PREFIX.pub).
#include "commands.hpp"

#include <herald/zeromq/curve.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

namespace herald::cli {

void add_keygen_command(CLI::App& app) {
  auto prefix = std::make_shared<std::string>("herald");
  auto* cmd = app.add_subcommand(
      "keygen", "Write a CURVE key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub (public)");
  cmd->add_option("--out", *prefix, "Path prefix of the two files")->capture_default_str();
  cmd->callback([prefix] {
    auto keys = generate_curve_keypair();
    write_curve_keypair(keys, *prefix);
    std::printf("%s\n", keys.public_key.c_str());
    std::fprintf(stderr, "herald keygen: wrote %s.key and %s.pub\n", prefix->c_str(), prefix->c_str());
  });
}

}  // namespace herald::cli
