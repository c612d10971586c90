// The `transports.postgres` configuration object (issue 14) read into DurablePublisherOptions,
// for the worker's configuration file and the CLI. Errors name the key path.
#pragma once

#include <herald/postgres/publisher.hpp>

#include <nlohmann/json.hpp>

#include <string_view>

namespace herald::durable {

/// Reads {"dsn" | "dsn_env", "schema"?, "stream"?, "create_schema"?, "max_queue"?,
/// "max_batch"?, "overflow"? ("reject" | "drop_oldest" | "block"), "block_timeout_ms"?,
/// "linger_ms"?, "reconnect_max_ms"?, "write_method"? ("copy" | "insert"),
/// "require_connection_at_start"?}. `dsn_env` names an environment variable holding the DSN
/// (read now), so the password stays out of the file. Throws ConfigError naming the key path
/// ("transports.postgres.max_batch: expected integer >= 1, got 0"; unknown keys with a "did you
/// mean" hint; a schema or stream breaking the naming rules; dsn and dsn_env both or neither).
DurablePublisherOptions publisher_options_from_json(const nlohmann::json& j,
                                                    std::string_view path = "transports.postgres");

}  // namespace herald::durable
