// AuditSubscriber: one JSON line per event, in order, valid after a kill -9, clear errors.
#include <herald/events/error.hpp>
#include <herald/subscribers/audit.hpp>
#include <herald/subscribers/registry.hpp>

#include <gtest/gtest.h>
#include <wait_for.hpp>

#include <filesystem>
#include <fstream>

#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

using herald::AuditOptions;
using herald::AuditSubscriber;
using herald::DomainEvent;
using herald::EventBus;
using herald::EventPtr;
using herald::SubscriberRegistry;
using herald::testing::wait_for;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {
class TempDir {
 public:
  TempDir() {
    auto base = fs::temp_directory_path() / "herald-audit-test-XXXXXX";
    std::string s = base.string();
    if (::mkdtemp(s.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = s;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::vector<nlohmann::json> read_lines(const fs::path& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));  // throws if torn
  return out;
}

EventPtr make(const std::string& name, int n) {
  herald::EventMetadata meta;
  meta.namespace_name = "payments";
  meta.correlation_id = "corr-" + std::to_string(n);
  return DomainEvent::create(name, {{"n", n}, {"text", "quote \" and newline \n"}}, meta);
}
}  // namespace

TEST(AuditSubscriber, TheFileHoldsExactlyThePublishedEventsInOrderOnePerLine) {
  TempDir dir;
  const auto path = dir.path() / "audit.jsonl";
  EventBus bus({.dispatcher_threads = 2});
  SubscriberRegistry registry(bus);
  auto audit = std::make_shared<AuditSubscriber>("audit", std::vector<std::string>{"payment.#"},
                                                 path);
  registry.register_subscriber(audit);
  ASSERT_EQ(registry.start_all(), 1u);
  std::vector<EventPtr> published;
  for (int i = 0; i < 500; ++i) {
    published.push_back(make(i % 2 ? "payment.processed" : "payment.refunded", i));
    bus.publish(published.back());
    bus.publish(make("order.created", i));  // not audited
  }
  ASSERT_TRUE(registry.stop_all(10s).success);
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), published.size());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i], published[i]->to_json()) << "line " << i + 1;
  }
  EXPECT_EQ(audit->lines_written(), 500u);
  EXPECT_EQ(audit->write_errors(), 0u);
  EXPECT_FALSE(audit->is_open());
}

TEST(AuditSubscriber, AppendsToAnExistingFile) {
  TempDir dir;
  const auto path = dir.path() / "audit.jsonl";
  {
    std::ofstream out(path);
    out << R"({"earlier":true})" << "\n";
  }
  AuditSubscriber audit("audit", {"#"}, path, AuditOptions{.fsync = true});
  audit.on_start();
  EXPECT_TRUE(audit.handle(make("payment.processed", 1)).success);
  audit.on_stop();
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["earlier"], true);
  EXPECT_EQ(lines[1]["payload"]["n"], 1);
}

TEST(AuditSubscriber, AnUnwritablePathFailsOnStartNamingThePathAndTheReason) {
  TempDir dir;
  const auto path = dir.path() / "missing-dir" / "audit.jsonl";
  AuditSubscriber audit("audit", {"#"}, path);
  try {
    audit.on_start();
    FAIL() << "expected herald::Error";
  } catch (const herald::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path.string()), std::string::npos) << what;
    EXPECT_NE(what.find("No such file or directory"), std::string::npos) << what;
  }
  EXPECT_FALSE(audit.health_check());

  EventBus bus({.dispatcher_threads = 1});
  SubscriberRegistry registry(bus);
  registry.register_subscriber(std::make_shared<AuditSubscriber>("audit", std::vector<std::string>{"#"}, path));
  EXPECT_EQ(registry.start_all(), 0u);
  EXPECT_EQ(registry.stats()["audit"]["state"], "failed");
}

TEST(AuditSubscriber, WriteErrorsAreCountedReportedAndMakeHealthCheckFalse) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  AuditSubscriber audit("audit", {"#"}, "/dev/full", AuditOptions{.recheck_after = 1h});
  audit.on_start();
  EXPECT_TRUE(audit.health_check());
  const auto result = audit.handle(make("payment.processed", 1));
  EXPECT_FALSE(result.success);
  EXPECT_NE(result.message.find("/dev/full"), std::string::npos) << result.message;
  EXPECT_NE(result.message.find("No space left on device"), std::string::npos) << result.message;
  EXPECT_EQ(audit.write_errors(), 1u);
  EXPECT_EQ(audit.lines_written(), 0u);
  EXPECT_FALSE(audit.health_check());
  audit.on_stop();
}

TEST(AuditSubscriber, AKillNineAtAnyPointLeavesOnlyCompleteLines) {
  TempDir dir;
  const auto path = dir.path() / "audit.jsonl";
  // Large lines make a torn write likelier if the implementation allowed one.
  const std::string big(64 * 1024, 'x');
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    AuditSubscriber audit("audit", {"#"}, path);
    audit.on_start();
    for (int i = 0;; ++i) {
      audit.handle(DomainEvent::create("payment.processed", {{"n", i}, {"big", big}}));
    }
  }
  const bool enough = wait_for([&] {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    return !ec && size > 200 * big.size();
  });
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(enough);
  std::vector<nlohmann::json> lines;
  ASSERT_NO_THROW(lines = read_lines(path));
  ASSERT_GE(lines.size(), 100u);
  for (std::size_t i = 0; i < lines.size(); ++i) ASSERT_EQ(lines[i]["payload"]["n"], i);
}

TEST(AuditSubscriber, HealthCheckPassesAgainAfterRecheckAfterSoThatABreakerMayRetry) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  AuditSubscriber audit("audit", {"#"}, "/dev/full", AuditOptions{.recheck_after = 0ms});
  audit.on_start();
  EXPECT_FALSE(audit.handle(make("payment.processed", 1)).success);
  EXPECT_TRUE(audit.health_check());
  audit.on_stop();
}
