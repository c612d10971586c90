// Durable road benchmarks (issue 14), against a throwaway PostgreSQL 15 cluster with fsync on
// (as shipped) or an existing server (--dsn). Prints one JSON object per scenario:
//   publish_copy / publish_insert   DurablePublisher, events/s from first send to last commit
//   baseline_multirow               plain libpq: one multi-row INSERT per batch of the same size
//   baseline_single                 plain libpq: one INSERT (one transaction) per event
//   consume_1_group / consume_4_groups   DurableConsumer, events/s per group
//   latency                         publish -> consumer handler with LISTEN/NOTIFY, p50/p99
// Usage: durable_bench [--events N] [--batch B] [--single-events N] [--latency-events N] [--dsn DSN]
#include "pg_cluster.hpp"

#include <herald/events/log.hpp>
#include <herald/postgres/postgres.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

herald::EventPtr make_event(int i) {
  herald::EventMetadata m;
  m.namespace_name = "bench";
  m.correlation_id = "c-" + std::to_string(i);
  return herald::DomainEvent::create(
      "payment.processed",
      {{"amount", 42.5 + i}, {"currency", "EUR"}, {"i", i}, {"sent_ns", Clock::now().time_since_epoch().count()}},
      m);
}

double publish_rate(const std::string& dsn, const std::string& stream, int n, std::size_t batch,
                    herald::DurableWriteMethod method) {
  herald::DurablePublisherOptions o;
  o.dsn = dsn;
  o.stream = stream;
  o.max_batch = batch;
  o.max_queue = static_cast<std::size_t>(n) + 1;
  o.write_method = method;
  herald::DurablePublisher p(o);
  p.start();
  std::vector<herald::EventPtr> events;
  events.reserve(n);
  for (int i = 0; i < n; ++i) events.push_back(make_event(i));
  for (const auto& e : events) e->json_text();  // encoding is the caller's cost in both cases
  const auto t0 = Clock::now();
  for (const auto& e : events) p.send(e);
  if (!p.flush(600s)) std::fprintf(stderr, "flush timed out\n");
  const double s = seconds_since(t0);
  p.stop();
  return n / s;
}

// The plain libpq program: the same rows, one multi-row INSERT per batch (one transaction each).
double baseline_multirow(const std::string& dsn, const std::string& stream, int n, std::size_t batch) {
  auto conn = herald::durable::Connection::open(dsn);
  std::vector<herald::EventPtr> events;
  for (int i = 0; i < n; ++i) events.push_back(make_event(i));
  for (const auto& e : events) e->json_text();
  const auto t0 = Clock::now();
  std::int64_t offset = 0;
  for (std::size_t from = 0; from < events.size(); from += batch) {
    const std::size_t to = std::min(events.size(), from + batch);
    std::string sql = "INSERT INTO herald.events (stream, event_offset, event_id, event_name, body) VALUES ";
    std::vector<std::string> params;
    for (std::size_t i = from; i < to; ++i) {
      const std::size_t b = (i - from) * 5;
      if (i != from) sql += ',';
      sql += "($" + std::to_string(b + 1) + ",$" + std::to_string(b + 2) + "::bigint,$" + std::to_string(b + 3) +
             ",$" + std::to_string(b + 4) + ",$" + std::to_string(b + 5) + ")";
      params.push_back(stream);
      params.push_back(std::to_string(++offset));
      params.push_back(events[i]->event_id());
      params.push_back(events[i]->event_name());
      params.push_back(events[i]->json_text());
    }
    std::vector<const char*> values;
    for (const auto& p : params) values.push_back(p.c_str());
    PGresult* r = PQexecParams(conn.get(), sql.c_str(), static_cast<int>(values.size()), nullptr,
                               values.data(), nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      std::fprintf(stderr, "baseline insert: %s\n", PQresultErrorMessage(r));
      std::exit(1);
    }
    PQclear(r);
  }
  return n / seconds_since(t0);
}

// One INSERT per event, each its own transaction (what a naive outbox does).
double baseline_single(const std::string& dsn, const std::string& stream, int n) {
  auto conn = herald::durable::Connection::open(dsn);
  std::vector<herald::EventPtr> events;
  for (int i = 0; i < n; ++i) events.push_back(make_event(i));
  for (const auto& e : events) e->json_text();
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    const std::string off = std::to_string(i + 1);
    const char* values[] = {stream.c_str(), off.c_str(), events[i]->event_id().c_str(),
                            events[i]->event_name().c_str(), events[i]->json_text().c_str()};
    PGresult* r = PQexecParams(conn.get(),
                               "INSERT INTO herald.events (stream, event_offset, event_id, event_name, body) "
                               "VALUES ($1, $2::bigint, $3, $4, $5)",
                               5, nullptr, values, nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      std::fprintf(stderr, "single insert: %s\n", PQresultErrorMessage(r));
      std::exit(1);
    }
    PQclear(r);
  }
  return n / seconds_since(t0);
}

// Consumers of `groups` groups read `n` events that are already in `stream`; events/s per group.
double consume_rate(const std::string& dsn, const std::string& stream, int n, int groups) {
  std::vector<std::unique_ptr<herald::DurableConsumer>> consumers;
  std::vector<std::unique_ptr<std::atomic<int>>> counts;
  for (int g = 0; g < groups; ++g) {
    counts.push_back(std::make_unique<std::atomic<int>>(0));
    herald::DurableConsumerOptions o;
    o.dsn = dsn;
    o.stream = stream;
    o.group = "bench" + std::to_string(groups) + "_" + std::to_string(g);
    o.start = herald::durable::StartPosition::beginning();
    o.batch_size = 1000;
    auto* count = counts.back().get();
    consumers.push_back(std::make_unique<herald::DurableConsumer>(
        o, herald::DurableHandlers{.handle = [count](const herald::EventPtr&, const herald::DurableRecord&) {
          count->fetch_add(1, std::memory_order_relaxed);
          return herald::DurableResult::ok();
        }}));
  }
  const auto t0 = Clock::now();
  for (auto& c : consumers) c->start();
  for (;;) {
    bool done = true;
    for (auto& c : consumers) done = done && c->committed_offset() >= n;
    if (done) break;
    std::this_thread::sleep_for(1ms);
  }
  const double s = seconds_since(t0);
  for (auto& c : consumers) c->stop();
  return n / s;
}

void latency(const std::string& dsn, const std::string& stream, int n) {
  std::mutex mu;
  std::vector<double> micros;
  micros.reserve(n);
  herald::DurableConsumerOptions co;
  co.dsn = dsn;
  co.stream = stream;
  co.group = "latency";
  co.start = herald::durable::StartPosition::end();
  herald::DurableConsumer c(co, {.handle = [&](const herald::EventPtr& e, const herald::DurableRecord&) {
                              const auto sent = e->payload()["sent_ns"].get<std::int64_t>();
                              const double us = (Clock::now().time_since_epoch().count() - sent) / 1000.0;
                              std::lock_guard lock(mu);
                              micros.push_back(us);
                              return herald::DurableResult::ok();
                            }});
  c.start();
  while (!c.active()) std::this_thread::sleep_for(1ms);
  herald::DurablePublisherOptions po;
  po.dsn = dsn;
  po.stream = stream;
  herald::DurablePublisher p(po);
  p.start();
  for (int i = 0; i < n; ++i) {
    p.send(make_event(i));
    std::this_thread::sleep_for(2ms);  // a steady stream, one event at a time
  }
  p.flush(60s);
  while (c.committed_offset() < static_cast<std::int64_t>(p.committed())) std::this_thread::sleep_for(1ms);
  c.stop();
  p.stop();
  std::sort(micros.begin(), micros.end());
  auto pct = [&](double q) { return micros[static_cast<std::size_t>(q * (micros.size() - 1))]; };
  std::printf("{\"scenario\": \"latency\", \"events\": %zu, \"p50_us\": %.0f, \"p99_us\": %.0f, \"max_us\": %.0f}\n",
              micros.size(), pct(0.5), pct(0.99), micros.back());
}

}  // namespace

int main(int argc, char** argv) {
  int events = 100'000, single_events = 5'000, latency_events = 2'000;
  std::size_t batch = 1'000;
  std::string dsn;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--events") events = std::atoi(argv[i + 1]);
    else if (a == "--batch") batch = static_cast<std::size_t>(std::atoi(argv[i + 1]));
    else if (a == "--single-events") single_events = std::atoi(argv[i + 1]);
    else if (a == "--latency-events") latency_events = std::atoi(argv[i + 1]);
    else if (a == "--dsn") dsn = argv[i + 1];
  }
  herald::logger()->set_level(spdlog::level::warn);
  std::unique_ptr<herald::testing::PgCluster> cluster;
  if (dsn.empty()) {
    cluster = std::make_unique<herald::testing::PgCluster>("bench-secret", /*fsync=*/true);
    dsn = cluster->dsn();
  }
  auto admin = herald::durable::Connection::open(dsn);
  herald::durable::ensure_schema(admin.get());
  auto run_id = std::to_string(std::chrono::system_clock::now().time_since_epoch().count());

  const double copy = publish_rate(dsn, "copy_" + run_id, events, batch, herald::DurableWriteMethod::copy);
  const double insert = publish_rate(dsn, "insert_" + run_id, events, batch, herald::DurableWriteMethod::insert);
  const double multirow = baseline_multirow(dsn, "multirow_" + run_id, events, batch);
  const double single = baseline_single(dsn, "single_" + run_id, single_events);
  std::printf("{\"scenario\": \"publish_copy\", \"events\": %d, \"batch\": %zu, \"events_per_s\": %.0f}\n", events, batch, copy);
  std::printf("{\"scenario\": \"publish_insert\", \"events\": %d, \"batch\": %zu, \"events_per_s\": %.0f}\n", events, batch, insert);
  std::printf("{\"scenario\": \"baseline_multirow\", \"events\": %d, \"batch\": %zu, \"events_per_s\": %.0f}\n", events, batch, multirow);
  std::printf("{\"scenario\": \"baseline_single\", \"events\": %d, \"events_per_s\": %.0f}\n", single_events, single);
  std::printf("{\"scenario\": \"ratios\", \"copy_vs_multirow\": %.2f, \"copy_vs_single\": %.1f}\n", copy / multirow,
              copy / single);
  std::fflush(stdout);
  const double c1 = consume_rate(dsn, "copy_" + run_id, events, 1);
  std::printf("{\"scenario\": \"consume_1_group\", \"events\": %d, \"events_per_s_per_group\": %.0f}\n", events, c1);
  const double c4 = consume_rate(dsn, "copy_" + run_id, events, 4);
  std::printf("{\"scenario\": \"consume_4_groups\", \"events\": %d, \"events_per_s_per_group\": %.0f}\n", events, c4);
  std::fflush(stdout);
  latency(dsn, "latency_" + run_id, latency_events);
  return 0;
}
