// The durable road's commands (cli/durable_commands.cpp): herald consume, herald durable ...
#pragma once

namespace CLI {
class App;
}  // namespace CLI

namespace herald::cli {

void add_consume_command(CLI::App& app);  // herald consume
void add_durable_command(CLI::App& app);  // herald durable init|groups|replay|prune|dead-letters

}  // namespace herald::cli
