// herald: the command-line entry point. Each subcommand registers itself (commands.hpp).
#include "commands.hpp"
#include "durable_commands.hpp"

#include <herald/events/error.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
  CLI::App app{"herald: domain-event publish/subscribe engine", "herald"};
  app.require_subcommand(1);

  herald::cli::add_publish_command(app);
  herald::cli::add_tail_command(app);
  herald::cli::add_proxy_command(app);
  herald::cli::add_keygen_command(app);
  herald::cli::add_run_command(app);
  herald::cli::add_demo_command(app);
  herald::cli::add_consume_command(app);
  herald::cli::add_durable_command(app);

  try {
    app.parse(argc, argv);  // runs the chosen subcommand's callback
  } catch (const CLI::ParseError& e) {
    // --help and friends exit 0; CLI::RuntimeError carries a command's own exit code; every
    // argument error exits 2 (CLI11 has already printed a message naming the argument).
    const int code = app.exit(e);
    if (code == 0 || e.get_name() == "RuntimeError") return code;
    return 2;
  } catch (const herald::Error& e) {
    std::fprintf(stderr, "herald: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "herald: unexpected error: %s\n", e.what());
    return 1;
  }
  return 0;
}
