#include <herald/worker/config.hpp>

#include <herald/events/enums.hpp>
#include <herald/events/error.hpp>
#include <herald/events/json_fields.hpp>
#include <herald/events/pattern.hpp>
#include <herald/postgres/config.hpp>

#include <array>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace herald {

namespace jf = json_fields;
using nlohmann::json;

namespace {

constexpr std::array<std::pair<SubscriberType, std::string_view>, 2> kSubscriberTypes{{
    {SubscriberType::audit, "audit"},
    {SubscriberType::metrics, "metrics"},
}};

// Reads an enum-valued string field with `parse`, naming the key path in the error.
template <typename Parse>
auto parse_enum_field(const std::string& text, const std::string& key_path, Parse parse) {
  try {
    return parse(text);
  } catch (const UnknownValueError& e) {
    throw ValidationError(key_path, e.what());
  }
}

std::string index_path(std::string_view parent, std::size_t i) {
  return std::string(parent) + "[" + std::to_string(i) + "]";
}

std::chrono::milliseconds optional_ms(const json& obj, std::string_view key, std::string_view path,
                                      std::chrono::milliseconds fallback) {
  const auto v = jf::optional_int(obj, key, path, 0, 86'400'000);
  return v ? std::chrono::milliseconds(*v) : fallback;
}

std::vector<std::string> string_list(const json& obj, std::string_view key, std::string_view path,
                                     bool required) {
  const auto key_path = jf::join(path, key);
  const json* v = jf::find(obj, key);
  if (!v) {
    if (required) throw ValidationError(key_path, "required field is missing");
    return {};
  }
  if (!v->is_array()) {
    throw ValidationError(key_path, "expected array of strings, got " + std::string(jf::type_name(*v)));
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < v->size(); ++i) {
    const auto& item = (*v)[i];
    if (!item.is_string()) {
      throw ValidationError(index_path(key_path, i),
                            "expected string, got " + std::string(jf::type_name(item)));
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

std::filesystem::path resolve(const std::filesystem::path& base, const std::string& p) {
  std::filesystem::path path(p);
  return path.is_absolute() || base.empty() ? path : base / path;
}

void parse_worker_section(const json& w, WorkerConfig& c) {
  const std::string path = "worker";
  jf::require_object(w, path);
  jf::reject_unknown_keys(w,
                          {"name", "dispatcher_threads", "dispatch", "inline_dispatch",
                           "shutdown_drain_timeout_ms", "intake_capacity", "intake_overflow",
                           "intake_block_timeout_ms"},
                          path);
  c.name = jf::optional_string(w, "name", path).value_or(c.name);
  if (c.name.empty()) throw ValidationError("worker.name", "must not be empty");
  c.dispatcher_threads =
      static_cast<std::size_t>(jf::optional_int(w, "dispatcher_threads", path, 0, 1024).value_or(0));
  // "dispatch" names the policy; "inline_dispatch" (a bool) is its older spelling, kept for
  // existing files. Both may be given if they agree.
  const auto inline_dispatch = jf::optional_bool(w, "inline_dispatch", path);
  if (auto d = jf::optional_string(w, "dispatch", path)) {
    try {
      c.dispatch = parse_dispatch_policy(*d);
    } catch (const UnknownValueError& e) {
      throw ValidationError("worker.dispatch", e.what());
    }
    if (inline_dispatch && *inline_dispatch != (c.dispatch == DispatchPolicy::inline_on_publisher)) {
      throw ValidationError("worker.inline_dispatch",
                            "contradicts worker.dispatch \"" + *d + "\" (give one of the two)");
    }
  } else if (inline_dispatch) {
    c.dispatch = *inline_dispatch ? DispatchPolicy::inline_on_publisher : DispatchPolicy::dispatcher_pool;
  }
  c.shutdown_drain_timeout = optional_ms(w, "shutdown_drain_timeout_ms", path, c.shutdown_drain_timeout);
  c.intake_capacity = static_cast<std::size_t>(
      jf::optional_int(w, "intake_capacity", path, 1, 100'000'000).value_or(10'000));
  if (auto o = jf::optional_string(w, "intake_overflow", path)) {
    try {
      c.intake_overflow = parse_overflow_policy(*o);
    } catch (const UnknownValueError& e) {
      throw ValidationError("worker.intake_overflow", e.what());
    }
  }
  c.intake_block_timeout = optional_ms(w, "intake_block_timeout_ms", path, c.intake_block_timeout);
}

ZmqTransportConfig parse_zeromq(const json& z, const std::filesystem::path& base) {
  const std::string path = "transports.zeromq";
  jf::require_object(z, path);
  jf::reject_unknown_keys(z,
                          {"publish", "bind", "encoding", "send_hwm", "linger_ms",
                           "curve_secret_key", "curve_server_key", "curve_allow"},
                          path);
  ZmqTransportConfig t;
  t.publish = string_list(z, "publish", path, true);
  if (t.publish.empty()) throw ValidationError(path + ".publish", "needs at least one endpoint");
  for (std::size_t i = 0; i < t.publish.size(); ++i) {
    const auto& ep = t.publish[i];
    if (ep.rfind("tcp://", 0) != 0 && ep.rfind("ipc://", 0) != 0 && ep.rfind("inproc://", 0) != 0) {
      throw ValidationError(index_path(path + ".publish", i),
                            "endpoint '" + ep + "' must start with tcp://, ipc:// or inproc://");
    }
  }
  t.bind = jf::optional_bool(z, "bind", path).value_or(true);
  if (auto e = jf::optional_string(z, "encoding", path)) {
    t.encoding = parse_enum_field(*e, path + ".encoding", parse_wire_encoding);
  }
  t.send_hwm = static_cast<int>(jf::optional_int(z, "send_hwm", path, 0, 100'000'000).value_or(t.send_hwm));
  t.linger = optional_ms(z, "linger_ms", path, t.linger);
  if (auto k = jf::optional_string(z, "curve_secret_key", path)) t.curve_secret_key = resolve(base, *k);
  if (auto k = jf::optional_string(z, "curve_server_key", path)) t.curve_server_key = resolve(base, *k);
  for (const auto& k : string_list(z, "curve_allow", path, false)) t.curve_allow.push_back(resolve(base, k));
  return t;
}

SubscriberConfig parse_subscriber(const json& s, const std::string& path,
                                  const std::filesystem::path& base) {
  jf::require_object(s, path);
  jf::reject_unknown_keys(s,
                          {"type", "name", "subscribes_to", "path", "fsync", "capacity", "overflow",
                           "block_timeout_ms", "dispatch_timeout_ms", "circuit_breaker"},
                          path);
  SubscriberConfig c;
  const std::string type = jf::required_string(s, "type", path);
  c.type = parse_enum_field(type, path + ".type", parse_subscriber_type);
  c.name = jf::optional_string(s, "name", path).value_or(type);
  if (c.name.empty()) throw ValidationError(path + ".name", "must not be empty");
  c.subscribes_to = string_list(s, "subscribes_to", path, true);
  if (c.subscribes_to.empty()) throw ValidationError(path + ".subscribes_to", "needs at least one pattern");
  for (std::size_t i = 0; i < c.subscribes_to.size(); ++i) {
    try {
      Pattern::compile(c.subscribes_to[i]);
    } catch (const PatternError& e) {
      throw ValidationError(index_path(path + ".subscribes_to", i), e.what());
    }
  }
  if (auto p = jf::optional_string(s, "path", path)) c.path = resolve(base, *p);
  if (c.type == SubscriberType::audit && !c.path) throw ValidationError(path + ".path", "required for an audit subscriber");
  c.fsync = jf::optional_bool(s, "fsync", path).value_or(false);
  c.capacity = static_cast<std::size_t>(jf::optional_int(s, "capacity", path, 1, 100'000'000).value_or(10'000));
  if (auto o = jf::optional_string(s, "overflow", path)) {
    try {
      c.overflow = parse_overflow_policy(*o);
    } catch (const UnknownValueError& e) {
      throw ValidationError(path + ".overflow", e.what());
    }
  }
  c.block_timeout = optional_ms(s, "block_timeout_ms", path, c.block_timeout);
  c.dispatch_timeout = optional_ms(s, "dispatch_timeout_ms", path, c.dispatch_timeout);
  if (const json* cb = jf::find(s, "circuit_breaker")) {
    const auto cb_path = path + ".circuit_breaker";
    jf::require_object(*cb, cb_path);
    jf::reject_unknown_keys(*cb, {"failure_threshold", "cooldown_ms"}, cb_path);
    c.breaker_failure_threshold = static_cast<std::uint32_t>(
        jf::optional_int(*cb, "failure_threshold", cb_path, 0, 1'000'000).value_or(5));
    c.breaker_cooldown = optional_ms(*cb, "cooldown_ms", cb_path, c.breaker_cooldown);
  }
  return c;
}

HttpConfig parse_http(const json& h) {
  const std::string path = "http";
  jf::require_object(h, path);
  jf::reject_unknown_keys(h, {"listen"}, path);
  HttpConfig c;
  c.listen = jf::required_string(h, "listen", path);
  (void)parse_host_port(c.listen, "http.listen");
  return c;
}

}  // namespace

HostPort parse_host_port(std::string_view address, std::string_view field) {
  const auto bad = [&](std::string_view why) {
    return ValidationError(std::string(field), "malformed listen address '" + std::string(address) + "': " +
                                                   std::string(why) + " (expected HOST:PORT, e.g. 127.0.0.1:9464)");
  };
  const auto colon = address.rfind(':');
  if (colon == std::string_view::npos) throw bad("no port");
  std::string_view host = address.substr(0, colon);
  const std::string_view port = address.substr(colon + 1);
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') throw bad("unbalanced brackets around the IPv6 host");
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    throw bad("an IPv6 host goes in brackets, as [::1]:9464");
  }
  if (host.empty()) throw bad("no host (0.0.0.0 listens on every interface)");
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) {
    throw bad("the port must be a number from 0 to 65535");
  }
  const unsigned long value = std::stoul(std::string(port));
  if (value > 65535) throw bad("the port must be a number from 0 to 65535");
  return HostPort{std::string(host), static_cast<std::uint16_t>(value)};
}

std::string_view to_string(SubscriberType type) noexcept { return detail::enum_name(type, kSubscriberTypes); }

SubscriberType parse_subscriber_type(std::string_view text) {
  return detail::parse_enum("subscriber type", text, kSubscriberTypes);
}

json SubscriberConfig::to_json() const {
  json j = {{"type", to_string(type)},
            {"name", name},
            {"subscribes_to", subscribes_to},
            {"fsync", fsync},
            {"capacity", capacity},
            {"overflow", std::string(herald::to_string(overflow))},
            {"block_timeout_ms", block_timeout.count()},
            {"dispatch_timeout_ms", dispatch_timeout.count()}};
  if (path) j["path"] = path->string();
  if (breaker_failure_threshold > 0) {
    j["circuit_breaker"] = {{"failure_threshold", breaker_failure_threshold},
                            {"cooldown_ms", breaker_cooldown.count()}};
  }
  return j;
}

namespace {

DurableRetentionOptions parse_retention(const json& r, const DurablePublisherOptions& publisher) {
  const std::string path = "transports.postgres.retention";
  jf::require_object(r, path);
  jf::reject_unknown_keys(r, {"max_age_s", "max_events", "interval_ms", "streams"}, path);
  DurableRetentionOptions o;
  o.dsn = publisher.dsn;
  o.schema = publisher.schema;
  if (auto age = jf::optional_int(r, "max_age_s", path, 1, 100LL * 365 * 86'400)) {
    o.prune.max_age = std::chrono::seconds(*age);
  }
  o.prune.max_events = jf::optional_int(r, "max_events", path, 0, std::numeric_limits<std::int64_t>::max());
  if (!o.prune.max_age && !o.prune.max_events) {
    throw ValidationError(path, "give max_age_s and/or max_events");
  }
  o.interval = optional_ms(r, "interval_ms", path, o.interval);
  if (o.interval.count() < 100) throw ValidationError(path + ".interval_ms", "expected at least 100");
  if (const json* s = jf::find(r, "streams")) {
    if (!s->is_array()) throw ValidationError(path + ".streams", "expected array, got " + std::string(jf::type_name(*s)));
    for (std::size_t i = 0; i < s->size(); ++i) {
      if (!(*s)[i].is_string()) throw ValidationError(index_path(path + ".streams", i), "expected string");
      o.streams.push_back((*s)[i].get<std::string>());
    }
  }
  return o;
}

}  // namespace

WorkerConfig WorkerConfig::from_json(const json& j, const std::filesystem::path& base_dir) {
  WorkerConfig c;
  try {
    jf::require_object(j, "configuration");
    jf::reject_unknown_keys(j, {"worker", "transports", "http", "steps", "subscribers"}, "");
    if (const json* w = jf::find(j, "worker")) parse_worker_section(*w, c);
    if (const json* h = jf::find(j, "http")) c.http = parse_http(*h);
    if (const json* t = jf::find(j, "transports")) {
      jf::require_object(*t, "transports");
      jf::reject_unknown_keys(*t, {"zeromq", "postgres"}, "transports");
      if (const json* z = jf::find(*t, "zeromq")) c.zeromq = parse_zeromq(*z, base_dir);
      if (const json* pg = jf::find(*t, "postgres")) {
        jf::require_object(*pg, "transports.postgres");
        json publisher = *pg;
        publisher.erase("retention");  // the worker's own key; the rest is the publisher's
        c.postgres = durable::publisher_options_from_json(publisher, "transports.postgres");
        if (const json* r = jf::find(*pg, "retention")) c.retention = parse_retention(*r, *c.postgres);
      }
    }
    if (const json* steps = jf::find(j, "steps")) {
      if (!steps->is_array()) {
        throw ValidationError("steps", "expected array, got " + std::string(jf::type_name(*steps)));
      }
      for (std::size_t i = 0; i < steps->size(); ++i) {
        const auto path = index_path("steps", i);
        const json& step = (*steps)[i];
        jf::require_object(step, path);
        jf::reject_unknown_keys(step, {"name", "publishes_events"}, path);
        const auto name = jf::required_string(step, "name", path);
        if (name.empty()) throw ValidationError(path + ".name", "must not be empty");
        if (c.steps.count(name)) {
          throw ValidationError(path + ".name", "step '" + name + "' is declared twice");
        }
        std::vector<EventDeclaration> declarations;
        const auto events_path = path + ".publishes_events";
        if (const json* events = jf::find(step, "publishes_events")) {
          if (!events->is_array()) {
            throw ValidationError(events_path, "expected array, got " + std::string(jf::type_name(*events)));
          }
          for (std::size_t k = 0; k < events->size(); ++k) {
            declarations.push_back(EventDeclaration::from_json((*events)[k], index_path(events_path, k)));
            if (declarations.back().delivery_mode == DeliveryMode::durable && !c.postgres) {
              throw ValidationError(index_path(events_path, k) + ".delivery_mode",
                                    "'durable' needs a durable road: configure transports.postgres");
            }
          }
        }
        c.steps.emplace(name, std::move(declarations));
      }
    }
    if (const json* subs = jf::find(j, "subscribers")) {
      if (!subs->is_array()) {
        throw ValidationError("subscribers", "expected array, got " + std::string(jf::type_name(*subs)));
      }
      std::set<std::string> names;
      for (std::size_t i = 0; i < subs->size(); ++i) {
        const auto path = index_path("subscribers", i);
        auto s = parse_subscriber((*subs)[i], path, base_dir);
        if (!names.insert(s.name).second) {
          throw ValidationError(path + ".name", "subscriber name '" + s.name + "' is used twice");
        }
        c.subscribers.push_back(std::move(s));
      }
    }
  } catch (const ValidationError& e) {
    throw ConfigError(e.field(), e.problem());
  } catch (const EventNameError& e) {
    throw ConfigError("", e.what());
  }
  return c;
}

WorkerConfig WorkerConfig::load(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw ConfigError("", "cannot read configuration file '" + file.string() + "'");
  std::stringstream buffer;
  buffer << in.rdbuf();
  json j;
  try {
    j = jf::parse_bounded(buffer.str());
  } catch (const ParseError& e) {
    throw ConfigError("", "configuration file '" + file.string() + "' is not valid JSON: " + e.what());
  }
  auto c = from_json(j, file.parent_path());
  c.source = file;
  return c;
}

std::vector<std::string> WorkerConfig::declared_publishers() const {
  std::set<std::string> names;
  for (const auto& [step, declarations] : steps) {
    for (const auto& d : declarations) {
      if (d.publisher && !d.publisher->empty()) names.insert(*d.publisher);
    }
  }
  return {names.begin(), names.end()};
}

}  // namespace herald
