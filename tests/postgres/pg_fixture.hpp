// Shared pieces of the PostgreSQL tests: a fixture that starts a throwaway cluster per test
// (each CTest test is its own process) and creates the schema, helpers to publish and to read
// the log back, and a thread-safe record of what a consumer handled.
#pragma once

#include "pg_cluster.hpp"
#include "wait_for.hpp"

#include <herald/postgres/postgres.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace herald::testing {

class DurableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PgCluster::available()) GTEST_SKIP() << "PostgreSQL server binaries not found in " << PgCluster::bin_dir();
    cluster_ = std::make_unique<PgCluster>();
    admin_ = durable::Connection::open(cluster_->dsn());
    durable::ensure_schema(admin_.get());
  }
  void TearDown() override {
    admin_.reset();
    cluster_.reset();
  }

  std::string dsn() const { return cluster_->dsn(); }

  DurablePublisherOptions publisher_options(const std::string& stream = "payments_domain_events") const {
    DurablePublisherOptions o;
    o.dsn = dsn();
    o.stream = stream;
    o.reconnect_initial = std::chrono::milliseconds(20);
    o.reconnect_max = std::chrono::milliseconds(300);
    return o;
  }

  DurableConsumerOptions consumer_options(const std::string& group,
                                          const std::string& stream = "payments_domain_events") const {
    DurableConsumerOptions o;
    o.dsn = dsn();
    o.stream = stream;
    o.group = group;
    o.start = durable::StartPosition::beginning();
    o.poll_interval = std::chrono::milliseconds(200);
    o.retry_initial = std::chrono::milliseconds(5);
    o.retry_max = std::chrono::milliseconds(20);
    o.reconnect_initial = std::chrono::milliseconds(20);
    o.reconnect_max = std::chrono::milliseconds(300);
    return o;
  }

  static EventPtr event(int i, const std::string& name = "payment.processed") {
    EventMetadata m;
    m.namespace_name = "payments";
    return DomainEvent::create(name, {{"i", i}}, m);
  }

  /// Publishes `n` events ("payment.processed", payload {"i": first..}) and waits for the commit.
  std::vector<EventPtr> publish(int n, const std::string& stream = "payments_domain_events", int first = 1) {
    DurablePublisher p(publisher_options(stream));
    p.start();
    std::vector<EventPtr> out;
    for (int i = 0; i < n; ++i) {
      out.push_back(event(first + i));
      p.send(out.back());
    }
    EXPECT_TRUE(p.flush(std::chrono::seconds(30)));
    p.stop();
    return out;
  }

  /// Runs SQL on the admin connection and returns the first column of every row.
  std::vector<std::string> column(const std::string& sql) {
    PGresult* r = PQexec(admin_.get(), sql.c_str());
    std::vector<std::string> out;
    const auto st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      ADD_FAILURE() << sql << ": " << PQresultErrorMessage(r);
    } else {
      for (int i = 0; i < PQntuples(r); ++i) out.emplace_back(PQgetvalue(r, i, 0));
    }
    PQclear(r);
    return out;
  }
  std::string scalar(const std::string& sql) {
    auto c = column(sql);
    return c.empty() ? std::string() : c.front();
  }

  std::unique_ptr<PgCluster> cluster_;
  durable::Connection admin_;
};

/// What a consumer's handler saw, safe to read from the test thread.
class Handled {
 public:
  struct Entry {
    std::int64_t offset;
    std::string event_id;
    std::string name;
    int attempt;
  };
  DurableHandlers handlers() {
    DurableHandlers h;
    h.handle = [this](const EventPtr& e, const DurableRecord& r) {
      std::lock_guard lock(mu_);
      entries_.push_back({r.offset, e->event_id(), e->event_name(), r.attempt});
      return DurableResult::ok();
    };
    return h;
  }
  void add(const EventPtr& e, const DurableRecord& r) {
    std::lock_guard lock(mu_);
    entries_.push_back({r.offset, e->event_id(), e->event_name(), r.attempt});
  }
  std::vector<Entry> entries() {
    std::lock_guard lock(mu_);
    return entries_;
  }
  std::size_t size() {
    std::lock_guard lock(mu_);
    return entries_.size();
  }
  std::vector<std::int64_t> offsets() {
    std::vector<std::int64_t> out;
    for (const auto& e : entries()) out.push_back(e.offset);
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<Entry> entries_;
};

inline std::vector<std::int64_t> iota(std::int64_t from, std::int64_t to) {
  std::vector<std::int64_t> v;
  for (auto i = from; i <= to; ++i) v.push_back(i);
  return v;
}

}  // namespace herald::testing
