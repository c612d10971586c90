// AuditSubscriber: one JSON line per event, in order, valid after a kill -9, clear errors.
#include <herald/events/error.hpp>
#include <herald/subscribers/audit.hpp>
#include <herald/subscribers/registry.hpp>

#include <gtest/gtest.h>
#include <temp_dir.hpp>
#include <wait_for.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>

#include <csignal>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

using herald::AuditOptions;
using herald::AuditSubscriber;
using herald::DomainEvent;
using herald::EventBus;
using herald::EventPtr;
using herald::SubscriberRegistry;
using herald::testing::TempDir;
using herald::testing::wait_for;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {
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
  const auto path = dir.path / "audit.jsonl";
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
  ASSERT_TRUE(registry.stop_all(60s).success);
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
  const auto path = dir.path / "audit.jsonl";
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
  const auto path = dir.path / "missing-dir" / "audit.jsonl";
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

/// Splits a file into its newline-terminated lines and the fragment after the last newline.
struct FileLines {
  std::vector<std::string> complete;
  std::string fragment;
};
FileLines split_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  FileLines out;
  std::size_t begin = 0;
  for (std::size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', begin)) {
    out.complete.push_back(text.substr(begin, nl - begin));
    begin = nl + 1;
  }
  out.fragment = text.substr(begin);
  return out;
}

TEST(AuditSubscriber, HandleBatchWritesEveryEventOfABatchAsOneWholeLineInOrder) {
  TempDir dir;
  const auto path = dir.path / "audit.jsonl";
  AuditSubscriber audit("audit", {"#"}, path);
  audit.on_start();
  // More events than one writev(2) takes (IOV_MAX vectors, two per line): the batch continues
  // in a second call, in order, nothing lost or doubled.
  std::vector<EventPtr> batch;
  for (int i = 0; i < 1500; ++i) batch.push_back(make("payment.processed", i));
  std::vector<herald::HandleOutcome> outcomes(batch.size(), herald::HandleOutcome::handled);
  const auto result = audit.handle_batch(batch, outcomes);
  ASSERT_TRUE(result.success) << result.message;
  ASSERT_TRUE(audit.handle(make("payment.refunded", 1500)).success);
  audit.on_stop();

  const FileLines file = split_file(path);
  EXPECT_TRUE(file.fragment.empty());
  ASSERT_EQ(file.complete.size(), 1501u);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    ASSERT_EQ(file.complete[i], batch[i]->json_text()) << "line " << i;
    ASSERT_EQ(outcomes[i], herald::HandleOutcome::handled);
  }
  EXPECT_EQ(nlohmann::json::parse(file.complete.back())["payload"]["n"], 1500);
  EXPECT_EQ(audit.lines_written(), 1501u);
  std::uint64_t bytes = 0;
  for (const auto& line : file.complete) bytes += line.size() + 1;
  EXPECT_EQ(fs::file_size(path), bytes);
  EXPECT_EQ(audit.write_errors(), 0u);
}

TEST(AuditSubscriber, HandleBatchOnAFullDiskFailsEveryEventItCouldNotWrite) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  AuditSubscriber audit("audit", {"#"}, "/dev/full", AuditOptions{.recheck_after = 1h});
  audit.on_start();
  std::vector<EventPtr> batch;
  for (int i = 0; i < 5; ++i) batch.push_back(make("payment.processed", i));
  std::vector<herald::HandleOutcome> outcomes(batch.size(), herald::HandleOutcome::handled);
  const auto result = audit.handle_batch(batch, outcomes);
  EXPECT_FALSE(result.success);
  EXPECT_NE(result.message.find("No space left on device"), std::string::npos) << result.message;
  for (const auto o : outcomes) EXPECT_EQ(o, herald::HandleOutcome::failed);
  EXPECT_EQ(audit.write_errors(), 5u);
  EXPECT_EQ(audit.lines_written(), 0u);
  EXPECT_FALSE(audit.health_check());
  audit.on_stop();
}

TEST(AuditSubscriber, AKillNineLeavesCompleteLinesAndOnStartRemovesACutOffLastLine) {
  TempDir dir;
  const auto path = dir.path / "audit.jsonl";
  // Lines of many pages: Linux may stop such a write at a page boundary when SIGKILL arrives,
  // which is the one way a kill -9 can leave part of a line (see audit.hpp).
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
  const bool enough = wait_for(
      [&] {
        std::error_code ec;
        const auto size = fs::file_size(path, ec);
        return !ec && size > 50 * big.size();
      },
      30s);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(enough);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the writer died on its own";

  // Every newline-terminated line is a whole event, in order from 0.
  const FileLines before = split_file(path);
  ASSERT_GE(before.complete.size(), 40u);
  for (std::size_t i = 0; i < before.complete.size(); ++i) {
    nlohmann::json line;
    ASSERT_NO_THROW(line = nlohmann::json::parse(before.complete[i])) << "line " << i;
    ASSERT_EQ(line["payload"]["n"], i);
  }

  // The next writer removes a cut-off fragment, if the kill left one, and appends after it.
  AuditSubscriber audit("audit", {"#"}, path);
  audit.on_start();
  EXPECT_EQ(audit.torn_bytes_repaired(), before.fragment.size());
  ASSERT_TRUE(audit.handle(make("payment.processed", -1)).success);
  audit.on_stop();
  const auto after = read_lines(path);
  ASSERT_EQ(after.size(), before.complete.size() + 1);
  EXPECT_EQ(after.back()["payload"]["n"], -1);
}

TEST(AuditSubscriber, AWriteCutShortMidBatchKeepsTheWholeLinesBeforeItAndFailsTheRest) {
  TempDir dir;
  const auto path = dir.path / "audit.jsonl";
  std::vector<EventPtr> batch;
  for (int i = 0; i < 20; ++i) batch.push_back(make("payment.processed", 100 + i));
  std::size_t limit = 0;  // the file may grow to ten lines and half of the eleventh
  for (int i = 0; i < 10; ++i) limit += batch[i]->json_text().size() + 1;
  limit += batch[10]->json_text().size() / 2;
  // In a child: the file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes the kernel stop the
  // writev in the middle of line 11 and fail the next call with EFBIG.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit lim{static_cast<rlim_t>(limit), static_cast<rlim_t>(limit)};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(10);
    AuditSubscriber audit("audit", {"#"}, path);
    audit.on_start();
    std::vector<herald::HandleOutcome> outcomes(batch.size(), herald::HandleOutcome::handled);
    const auto result = audit.handle_batch(batch, outcomes);
    if (result.success) ::_exit(11);
    for (int i = 0; i < 20; ++i) {
      const auto expected = i < 10 ? herald::HandleOutcome::handled : herald::HandleOutcome::failed;
      if (outcomes[i] != expected) ::_exit(20 + i);
    }
    if (audit.lines_written() != 10 || audit.write_errors() != 10) ::_exit(12);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died";
  ASSERT_EQ(WEXITSTATUS(status), 0) << "see the exit codes in the child";
  // The cut line was truncated away: exactly the ten whole lines, nothing after them.
  const FileLines file = split_file(path);
  EXPECT_TRUE(file.fragment.empty()) << file.fragment.size() << " bytes after the last newline";
  ASSERT_EQ(file.complete.size(), 10u);
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(file.complete[i], batch[i]->json_text());
}

TEST(AuditSubscriber, OnStartTruncatesAFragmentAfterTheLastNewlineAndKeepsCompleteLines) {
  TempDir dir;
  const auto path = dir.path / "audit.jsonl";
  const std::string fragment = R"({"event_id":"cut-off-by-a-ki)";
  {
    std::ofstream out(path, std::ios::binary);
    out << R"({"n":1})" << "\n" << R"({"n":2})" << "\n" << fragment;
  }
  AuditSubscriber audit("audit", {"#"}, path);
  audit.on_start();
  EXPECT_EQ(audit.torn_bytes_repaired(), fragment.size());
  ASSERT_TRUE(audit.handle(make("payment.processed", 3)).success);
  audit.on_stop();
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["n"], 1);
  EXPECT_EQ(lines[1]["n"], 2);
  EXPECT_EQ(lines[2]["payload"]["n"], 3);

  // A file that is nothing but a fragment becomes empty; a clean file is left alone.
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << fragment;
  }
  AuditSubscriber second("audit", {"#"}, path);
  second.on_start();
  second.on_stop();
  EXPECT_EQ(second.torn_bytes_repaired(), fragment.size());
  EXPECT_EQ(fs::file_size(path), 0u);
  AuditSubscriber third("audit", {"#"}, path);
  third.on_start();
  EXPECT_TRUE(third.handle(make("payment.processed", 4)).success);
  third.on_stop();
  AuditSubscriber fourth("audit", {"#"}, path);
  fourth.on_start();
  fourth.on_stop();
  EXPECT_EQ(fourth.torn_bytes_repaired(), 0u);
  EXPECT_EQ(read_lines(path).size(), 1u);
}

TEST(AuditSubscriber, OnStartLeavesTheTailAloneWhileAnotherWriterHasTheFileOpen) {
  TempDir dir;
  const auto path = dir.path / "audit.jsonl";
  AuditSubscriber writing("old", {"#"}, path);
  writing.on_start();
  ASSERT_TRUE(writing.handle(make("payment.processed", 1)).success);
  // What a reader sees while `writing` is in the middle of a line (a write in progress).
  const std::string in_progress = R"({"event_id":"being-writ)";
  {
    std::ofstream out(path, std::ios::binary | std::ios::app);
    out << in_progress;
  }
  AuditSubscriber second("new", {"#"}, path);  // e.g. the reloaded instance of the same file
  second.on_start();
  EXPECT_EQ(second.torn_bytes_repaired(), 0u);
  const auto size = fs::file_size(path);
  second.on_stop();
  writing.on_stop();
  EXPECT_EQ(split_file(path).fragment, in_progress) << "the other writer's line was cut";
  EXPECT_GT(size, in_progress.size());

  // Once nobody has it open, the next start repairs it.
  AuditSubscriber later("later", {"#"}, path);
  later.on_start();
  EXPECT_EQ(later.torn_bytes_repaired(), in_progress.size());
  later.on_stop();
  EXPECT_EQ(read_lines(path).size(), 1u);
}

TEST(AuditSubscriber, HealthCheckPassesAgainAfterRecheckAfterSoThatABreakerMayRetry) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  AuditSubscriber audit("audit", {"#"}, "/dev/full", AuditOptions{.recheck_after = 0ms});
  audit.on_start();
  EXPECT_FALSE(audit.handle(make("payment.processed", 1)).success);
  EXPECT_TRUE(audit.health_check());
  audit.on_stop();
}
