// The herald command's durable road (herald consume, herald durable ...) as a real process
// against a real PostgreSQL. Skips when the herald binary was not built.
#include "pg_fixture.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fstream>
#include <set>
#include <sstream>

extern char** environ;

namespace herald::testing {
namespace {

using namespace std::chrono_literals;

struct CliRun {
  int code = -1;
  std::vector<std::string> lines;  // stdout
  std::string err;
};

class DurableCli : public DurableTest {
 protected:
  void SetUp() override {
    bin_ = std::string(HERALD_BINARY_DIR) + "/herald";
    if (::access(bin_.c_str(), X_OK) != 0) GTEST_SKIP() << "herald not built at " << bin_;
    DurableTest::SetUp();
  }

  // Runs herald with HERALD_TEST_DSN set to the cluster's DSN.
  CliRun herald(std::vector<std::string> args) {
    args.insert(args.begin(), bin_);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env{"HERALD_TEST_DSN=" + dsn()};
    for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string out = cluster_->dir() + "/cli.out", err = cluster_->dir() + "/cli.err";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = 0;
    CliRun r;
    if (::posix_spawn(&pid, bin_.c_str(), &fa, nullptr, argv.data(), envp.data()) != 0) return r;
    posix_spawn_file_actions_destroy(&fa);
    int status = 0;
    ::waitpid(pid, &status, 0);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::ifstream o(out);
    for (std::string line; std::getline(o, line);) r.lines.push_back(line);
    std::stringstream e;
    e << std::ifstream(err).rdbuf();
    r.err = e.str();
    return r;
  }

  std::string bin_;
};

TEST_F(DurableCli, ConsumePrintsCountEventsInOrderAndTheNextRunContinues) {
  auto published = publish(5);
  auto first = herald({"consume", "--dsn-env", "HERALD_TEST_DSN", "--stream", "payments_domain_events",
                       "--group", "cli", "--from", "beginning", "--count", "3", "payment.*"});
  ASSERT_EQ(first.code, 0) << first.err;
  ASSERT_EQ(first.lines.size(), 3u) << first.err;
  for (int i = 0; i < 3; ++i) {
    auto j = nlohmann::json::parse(first.lines[i]);
    EXPECT_EQ(j["offset"], i + 1);
    EXPECT_EQ(j["stream"], "payments_domain_events");
    EXPECT_EQ(j["event_id"], published[i]->event_id());
    EXPECT_EQ(j["payload"]["i"], i + 1);
  }
  EXPECT_EQ(scalar("SELECT committed_offset FROM herald.consumer_groups WHERE group_name = 'cli'"), "3")
      << "exactly the printed events are committed";
  auto second = herald({"consume", "--dsn-env", "HERALD_TEST_DSN", "--stream", "payments_domain_events",
                        "--group", "cli", "--count", "5", "--timeout-ms", "1500", "#"});
  EXPECT_EQ(second.code, 1) << "timed out before --count";
  ASSERT_EQ(second.lines.size(), 2u) << second.err;
  EXPECT_EQ(nlohmann::json::parse(second.lines[0])["offset"], 4);
  EXPECT_NE(second.err.find("\"timed_out\":true"), std::string::npos) << second.err;
}

TEST_F(DurableCli, OperationsPrintJsonAndErrorsExitOneWithoutThePassword) {
  publish(10);
  auto replay = herald({"durable", "replay", "--dsn-env", "HERALD_TEST_DSN", "--stream", "payments_domain_events",
                        "--group", "ops", "--from", "4"});
  ASSERT_EQ(replay.code, 0) << replay.err;
  EXPECT_EQ(nlohmann::json::parse(replay.lines.at(0))["committed_offset"], 3);
  auto groups = herald({"durable", "groups", "--dsn-env", "HERALD_TEST_DSN"});
  ASSERT_EQ(groups.code, 0) << groups.err;
  EXPECT_EQ(nlohmann::json::parse(groups.lines.at(0))["lag"], 7);
  auto prune = herald({"durable", "prune", "--dsn-env", "HERALD_TEST_DSN", "--stream", "payments_domain_events",
                       "--max-events", "4"});
  ASSERT_EQ(prune.code, 0) << prune.err;
  EXPECT_EQ(nlohmann::json::parse(prune.lines.at(0))["deleted"], 6);
  auto dead = herald({"durable", "dead-letters", "--dsn-env", "HERALD_TEST_DSN", "--stream", "payments_domain_events"});
  EXPECT_EQ(dead.code, 0) << dead.err;
  EXPECT_TRUE(dead.lines.empty());

  auto wrong = herald({"consume", "--dsn", cluster_->dsn("postgres", "Wrong-Pass-77"), "--stream", "s", "--group",
                       "g", "#"});
  EXPECT_EQ(wrong.code, 1);
  EXPECT_NE(wrong.err.find("refused the credentials"), std::string::npos) << wrong.err;
  EXPECT_EQ(wrong.err.find("Wrong-Pass-77"), std::string::npos) << wrong.err;
  auto bad = herald({"consume", "--dsn-env", "HERALD_TEST_DSN", "--stream", "s;drop", "--group", "g", "#"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("invalid stream name 's;drop'"), std::string::npos) << bad.err;
  auto missing = herald({"durable", "groups", "--dsn-env", "HERALD_TEST_DSN", "--schema", "absent"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("schema 'absent' does not exist"), std::string::npos) << missing.err;
  auto unset = herald({"durable", "groups", "--dsn-env", "HERALD_NO_SUCH_VARIABLE"});
  EXPECT_EQ(unset.code, 1);
  EXPECT_NE(unset.err.find("HERALD_NO_SUCH_VARIABLE"), std::string::npos) << unset.err;
}

// herald run end to end with transports.postgres: a durable and a broadcast declaration, the
// durable road's DSN from the environment; herald consume then reads every stored event back
// once, and the broadcast events' ids are the ones the in-process audit subscriber wrote.
TEST_F(DurableCli, RunWithTransportsPostgresStoresDurableAndBroadcastEventsOnce) {
  const std::string dir = cluster_->dir();
  const std::string audit = dir + "/audit.jsonl", steps = dir + "/steps.jsonl", cfg = dir + "/herald.json";
  const nlohmann::json config = {
      {"worker", {{"name", "cli-durable"}}},
      {"transports", {{"postgres", {{"dsn_env", "HERALD_TEST_DSN"}}}}},
      {"subscribers", {{{"type", "audit"}, {"name", "audit"}, {"path", audit}, {"overflow", "block"},
                        {"subscribes_to", {"payment.#"}}}}},
      {"steps",
       {{{"name", "process_payment"},
         {"publishes_events",
          {{{"name", "payment.processed"}, {"condition", "success"}, {"delivery_mode", "durable"}},
           {{"name", "payment.audited"}, {"condition", "success"}, {"delivery_mode", "broadcast"}}}}}}}};
  std::ofstream(cfg) << config.dump(2);
  constexpr int kSteps = 40;
  {
    std::ofstream in(steps);
    for (int i = 0; i < kSteps; ++i) {
      in << nlohmann::json{{"step_name", "process_payment"}, {"success", true}, {"namespace", "payments"},
                           {"result", {{"i", i}}}}.dump()
         << "\n";
    }
  }
  auto run = herald({"run", "--config", cfg, "--steps", steps, "--quiet", "--status-json", dir + "/status.json"});
  ASSERT_EQ(run.code, 0) << run.err;
  nlohmann::json status;
  std::ifstream(dir + "/status.json") >> status;
  EXPECT_EQ(status["events"]["published_by_delivery_mode"]["durable"], kSteps) << status.dump();
  EXPECT_EQ(status["events"]["published_by_delivery_mode"]["broadcast"], kSteps) << status.dump();
  ASSERT_TRUE(status["transports"].contains("postgres")) << status["transports"].dump();

  // The in-process road saw the broadcast events only (durable ones go to the log alone).
  std::set<std::string> audited;
  {
    std::ifstream a(audit);
    for (std::string line; std::getline(a, line);) {
      const auto j = nlohmann::json::parse(line);
      const auto event = j.contains("event") ? j["event"] : j;
      ASSERT_EQ(event["event_name"], "payment.audited") << line;
      EXPECT_TRUE(audited.insert(event["event_id"].get<std::string>()).second) << line;
    }
  }
  EXPECT_EQ(audited.size(), static_cast<std::size_t>(kSteps));

  auto read = herald({"consume", "--dsn-env", "HERALD_TEST_DSN", "--stream", "payments_domain_events", "--group",
                      "warehouse", "--from", "beginning", "--count", std::to_string(2 * kSteps), "#"});
  ASSERT_EQ(read.code, 0) << read.err;
  ASSERT_EQ(read.lines.size(), 2u * kSteps) << read.err;
  std::set<std::string> ids, stored_audited;
  int processed = 0;
  for (const auto& line : read.lines) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(ids.insert(j["event_id"].get<std::string>()).second) << "read twice: " << line;
    if (j["event_name"] == "payment.audited") stored_audited.insert(j["event_id"].get<std::string>());
    if (j["event_name"] == "payment.processed") ++processed;
  }
  EXPECT_EQ(processed, kSteps);
  EXPECT_EQ(stored_audited, audited) << "a broadcast event is one event: the same event_id on both roads";
  auto more = herald({"consume", "--dsn-env", "HERALD_TEST_DSN", "--stream", "payments_domain_events", "--group",
                      "warehouse", "--count", "1", "--timeout-ms", "500", "#"});
  EXPECT_EQ(more.code, 1) << "nothing beyond the stored events";
  EXPECT_TRUE(more.lines.empty());
}

// A run whose database refuses it or cannot be reached stops with exit status 1 and an error
// naming the problem, never the password; a durable declaration without transports.postgres is
// a configuration error (exit status 2, as for every configuration error) naming its key path.
TEST_F(DurableCli, RunErrorsNameTheDatabaseProblemWithoutThePassword) {
  const std::string dir = cluster_->dir();
  const std::string steps = dir + "/steps.jsonl";
  std::ofstream(steps) << R"({"step_name": "charge", "success": true, "namespace": "payments"})" << "\n";
  auto config_with = [&](const nlohmann::json& transports, const std::string& name) {
    nlohmann::json c = {{"worker", {{"name", "cli-errors"}}},
                        {"steps",
                         {{{"name", "charge"},
                           {"publishes_events",
                            {{{"name", "payment.charged"}, {"condition", "success"}, {"delivery_mode", "durable"}}}}}}}};
    if (!transports.is_null()) c["transports"] = transports;
    const std::string path = dir + "/" + name + ".json";
    std::ofstream(path) << c.dump(2);
    return path;
  };

  auto wrong = herald({"run", "--quiet", "--steps", steps, "--config",
                       config_with({{"postgres", {{"dsn", cluster_->dsn("postgres", "Wrong-Pass-77")}}}}, "wrong")});
  EXPECT_EQ(wrong.code, 1) << wrong.err;
  EXPECT_NE(wrong.err.find("refused the credentials"), std::string::npos) << wrong.err;
  EXPECT_EQ(wrong.err.find("Wrong-Pass-77"), std::string::npos) << wrong.err;

  const std::string nowhere = "host=" + dir + "/no-such-socket-dir port=5999 user=postgres password=Hidden-Pw-3";
  auto unreachable = herald({"run", "--quiet", "--steps", steps, "--config",
                             config_with({{"postgres", {{"dsn", nowhere}}}}, "unreachable")});
  EXPECT_EQ(unreachable.code, 1) << unreachable.err;
  EXPECT_NE(unreachable.err.find("no-such-socket-dir"), std::string::npos) << "names the server: " << unreachable.err;
  EXPECT_EQ(unreachable.err.find("Hidden-Pw-3"), std::string::npos) << unreachable.err;

  auto bad = herald({"run", "--quiet", "--steps", steps, "--config",
                     config_with({{"postgres", {{"dsn", "host=/tmp password=Bad-Dsn-5 =oops"}}}}, "bad")});
  EXPECT_EQ(bad.code, 1) << bad.err;
  EXPECT_EQ(bad.err.find("Bad-Dsn-5"), std::string::npos) << bad.err;
  EXPECT_FALSE(bad.err.empty());

  auto missing = herald({"run", "--quiet", "--steps", steps, "--config", config_with(nullptr, "missing")});
  EXPECT_EQ(missing.code, 2) << missing.err;
  EXPECT_NE(missing.err.find("steps[0].publishes_events[0].delivery_mode"), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("transports.postgres"), std::string::npos) << missing.err;
  EXPECT_EQ(scalar("SELECT count(*) FROM herald.events"), "0");
}

}  // namespace
}  // namespace herald::testing
