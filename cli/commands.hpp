// The herald command's subcommands. Each command group lives in its own file and registers
// itself on the root CLI::App; main.cpp calls every add_*_command below.
//
// Conventions for commands:
//  - parse with CLI11 only; bad arguments exit 2 with CLI11's message naming the argument;
//  - a failure at run time throws herald::Error (main prints it and exits 1), or throws
//    CLI::RuntimeError(code) to exit with a specific code and no extra message;
//  - machine-readable output on stdout, diagnostics and summaries on stderr;
//  - signals: use cli/signals.hpp (SignalWaiter), never a plain signal handler that does work.
#pragma once

namespace CLI {
class App;
}  // namespace CLI

namespace herald::cli {

// ZeroMQ transport commands (cli/zmq_*.cpp).
void add_publish_command(CLI::App& app);  // herald publish
void add_tail_command(CLI::App& app);     // herald tail
void add_proxy_command(CLI::App& app);    // herald proxy
void add_keygen_command(CLI::App& app);   // herald keygen

// Worker commands (cli/run_command.cpp, cli/demo_command.cpp).
void add_run_command(CLI::App& app);   // herald run
void add_demo_command(CLI::App& app);  // herald demo

}  // namespace herald::cli
