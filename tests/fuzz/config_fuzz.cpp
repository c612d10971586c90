// Fuzz target: the worker configuration loader (herald/worker/config.hpp).
//
// Input: the text of a configuration file ({"worker": ..., "transports": ..., "steps": [...],
// "subscribers": [...]}). It is written to a private folder under /tmp and read with
// WorkerConfig::load (the road `herald run --config` takes); if the input is MessagePack, its
// value also goes to WorkerConfig::from_json. Nothing is written outside that folder.
// Checks:
//  - load and from_json throw only ConfigError; any other exception, or a crash, is a finding;
//  - an accepted configuration round-trips: written back as JSON (every section, declarations
//    and schemas included) it parses again to the same configuration.
#include "fuzz_support.hpp"

#include <herald/events/error.hpp>
#include <herald/worker/config.hpp>

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>

namespace {

namespace fs = std::filesystem;
using herald::WorkerConfig;
using herald_fuzz::fail;
using herald_fuzz::json;

fs::path g_dir;
fs::path g_file;

void remove_dir() {
  std::error_code ec;
  fs::remove_all(g_dir, ec);
}

// The configuration as a file would spell it (relative paths are already resolved).
json to_file_json(const WorkerConfig& c) {
  json j = json::object();
  j["worker"] = {{"name", c.name},
                 {"dispatcher_threads", c.dispatcher_threads},
                 {"dispatch", std::string(herald::to_string(c.dispatch))},
                 {"shutdown_drain_timeout_ms", c.shutdown_drain_timeout.count()},
                 {"intake_capacity", c.intake_capacity},
                 {"intake_overflow", std::string(herald::to_string(c.intake_overflow))},
                 {"intake_block_timeout_ms", c.intake_block_timeout.count()}};
  if (c.zeromq) {
    const auto& z = *c.zeromq;
    json t = {{"publish", z.publish},           {"bind", z.bind},
              {"encoding", std::string(herald::to_string(z.encoding))},        {"send_hwm", z.send_hwm},
              {"linger_ms", z.linger.count()},  {"curve_allow", json::array()}};
    if (z.curve_secret_key) t["curve_secret_key"] = z.curve_secret_key->string();
    if (z.curve_server_key) t["curve_server_key"] = z.curve_server_key->string();
    for (const auto& k : z.curve_allow) t["curve_allow"].push_back(k.string());
    j["transports"] = {{"zeromq", t}};
  }
  j["steps"] = json::array();
  for (const auto& [name, declarations] : c.steps) {
    json events = json::array();
    for (const auto& d : declarations) events.push_back(d.to_json());
    j["steps"].push_back({{"name", name}, {"publishes_events", events}});
  }
  j["subscribers"] = json::array();
  for (const auto& s : c.subscribers) j["subscribers"].push_back(s.to_json());
  return j;
}

void check_accepted(const WorkerConfig& c) {
  if (c.name.empty()) fail("accepted an empty worker name");
  if (c.intake_capacity == 0) fail("accepted intake_capacity 0");
  if (c.zeromq && c.zeromq->publish.empty()) fail("accepted zeromq without endpoints");
  for (const auto& s : c.subscribers) {
    if (s.subscribes_to.empty()) fail("accepted a subscriber without patterns");
    if (s.type == herald::SubscriberType::audit && !s.path) fail("accepted an audit subscriber without a path");
  }
  (void)c.declared_publishers();

  const json written = to_file_json(c);
  WorkerConfig again;
  try {
    again = WorkerConfig::from_json(written, g_dir);
  } catch (const std::exception& e) {
    fail("a written-back configuration was rejected", e.what());
  }
  const json rewritten = to_file_json(again);
  if (!herald_fuzz::same(written, rewritten)) {
    fail("configuration changed in the round trip",
         written.dump(-1, ' ', false, json::error_handler_t::replace) + " != " +
             rewritten.dump(-1, ' ', false, json::error_handler_t::replace));
  }
}

// Folders left by runs that died on a finding (abort skips atexit): their process is gone.
void remove_stale_dirs(const fs::path& tmp, const std::string& prefix) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(tmp, ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      fs::remove_all(entry.path(), ec);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  herald_fuzz::quiet_logs();
  const std::string prefix = "herald-fuzz-config-";
  remove_stale_dirs(fs::temp_directory_path(), prefix);
  g_dir = fs::temp_directory_path() / (prefix + std::to_string(::getpid()));
  fs::create_directories(g_dir);
  g_file = g_dir / "herald.json";
  std::atexit(remove_dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  {
    // A new file each time: truncating an ext4 file forces a flush on close (auto_da_alloc),
    // which costs milliseconds per input.
    std::error_code ec;
    fs::remove(g_file, ec);
    std::ofstream out(g_file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) fail("cannot write the temporary configuration file");
  }
  try {
    const auto c = WorkerConfig::load(g_file);
    if (c.source != g_file) fail("source is not the file read");
    check_accepted(c);
  } catch (const herald::ConfigError&) {
  } catch (const std::exception& e) {
    fail("WorkerConfig::load threw something other than ConfigError", e.what());
  }

  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const json j = json::from_msgpack(input, /*strict=*/true, /*allow_exceptions=*/false);
  if (!j.is_discarded()) {
    try {
      check_accepted(WorkerConfig::from_json(j, g_dir));
    } catch (const herald::ConfigError&) {
    } catch (const std::exception& e) {
      fail("WorkerConfig::from_json threw something other than ConfigError", e.what());
    }
  }
  return 0;
}
