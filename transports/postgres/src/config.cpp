// transports.postgres -> DurablePublisherOptions (config.hpp).
#include <herald/events/json_fields.hpp>
#include <herald/postgres/config.hpp>

#include <cstdlib>

namespace herald::durable {

namespace jf = json_fields;

DurablePublisherOptions publisher_options_from_json(const nlohmann::json& j, std::string_view path) {
  const std::string p(path);
  try {
    jf::require_object(j, p);
    jf::reject_unknown_keys(j,
                            {"dsn", "dsn_env", "schema", "stream", "create_schema", "max_queue", "max_batch",
                             "overflow", "block_timeout_ms", "linger_ms", "reconnect_max_ms", "write_method",
                             "require_connection_at_start"},
                            p);
    DurablePublisherOptions o;
    auto dsn = jf::optional_string(j, "dsn", p);
    auto dsn_env = jf::optional_string(j, "dsn_env", p);
    if (dsn && dsn_env) throw ConfigError(jf::join(p, "dsn_env"), "give either dsn or dsn_env, not both");
    if (!dsn && !dsn_env) throw ConfigError(jf::join(p, "dsn"), "required (or dsn_env, the name of an environment variable)");
    if (dsn_env) {
      const char* v = std::getenv(dsn_env->c_str());
      if (v == nullptr || *v == '\0') {
        throw ConfigError(jf::join(p, "dsn_env"), "environment variable '" + *dsn_env + "' is not set or empty");
      }
      o.dsn = v;
    } else {
      o.dsn = *dsn;
    }
    if (auto s = jf::optional_string(j, "schema", p)) {
      try {
        validate_schema_name(*s);
      } catch (const DurableError& e) {
        throw ConfigError(jf::join(p, "schema"), e.what());
      }
      o.schema = *s;
    }
    if (auto s = jf::optional_string(j, "stream", p)) {
      try {
        validate_stream_name(*s);
      } catch (const DurableError& e) {
        throw ConfigError(jf::join(p, "stream"), e.what());
      }
      o.stream = *s;
    }
    if (auto b = jf::optional_bool(j, "create_schema", p)) o.create_schema = *b;
    if (auto b = jf::optional_bool(j, "require_connection_at_start", p)) o.require_connection_at_start = *b;
    if (auto n = jf::optional_int(j, "max_queue", p, 1)) o.max_queue = static_cast<std::size_t>(*n);
    if (auto n = jf::optional_int(j, "max_batch", p, 1, 100'000)) o.max_batch = static_cast<std::size_t>(*n);
    if (auto n = jf::optional_int(j, "block_timeout_ms", p, 0)) o.block_timeout = std::chrono::milliseconds(*n);
    if (auto n = jf::optional_int(j, "linger_ms", p, 0)) o.linger = std::chrono::milliseconds(*n);
    if (auto n = jf::optional_int(j, "reconnect_max_ms", p, 1)) o.reconnect_max = std::chrono::milliseconds(*n);
    if (auto s = jf::optional_string(j, "overflow", p)) {
      try {
        o.overflow = parse_durable_overflow(*s);
      } catch (const UnknownValueError& e) {
        throw ConfigError(jf::join(p, "overflow"), e.what());
      }
    }
    if (auto s = jf::optional_string(j, "write_method", p)) {
      if (*s == "copy") {
        o.write_method = DurableWriteMethod::copy;
      } else if (*s == "insert") {
        o.write_method = DurableWriteMethod::insert;
      } else {
        throw ConfigError(jf::join(p, "write_method"), "unknown write method '" + *s + "' (expected one of: copy, insert)");
      }
    }
    return o;
  } catch (const ValidationError& e) {
    throw ConfigError(e.field(), e.problem());
  }
}

}  // namespace herald::durable
