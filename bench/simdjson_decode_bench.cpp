// Issue 17 section 5: the cost of decoding one received scenario-4 message (two frames in, a
// WireMessage with an EventPtr, payload and extra metadata as nlohmann::json, out), by
//  - decode_wire_message: its fast path, simdjson On-Demand (events/src/wire_fast.cpp), and
//  - the general path alone (detail::decode_envelope_general: herald's JSON reader builds a json
//    tree of the whole envelope, DomainEvent::from_json reads it), which decides every envelope
//    the fast path gives up on.
//
//   simdjson_decode_bench [--count N] [--reps R]
//
// Rows: the scenario-4 event (payload sizes 100 B, 1 KiB, 10 KiB, like zmq_scenario4). Both
// results are checked equal (same json_text and header) before timing. Prints ns per message,
// median of R repetitions. The figures before simdjson (herald's own one-pass SAX reader as the
// fast path) came from this file's previous version, which timed decode_wire_message the same
// way (git log -- bench/simdjson_decode_bench.cpp); docs/architecture.md records both.
#include "wire_fast.hpp"

#include <herald/events/domain_event.hpp>
#include <herald/events/json_fields.hpp>
#include <herald/events/wire.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace {

using nlohmann::json;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

const herald::WireMessage& accepted(const herald::WireResult& r, const char* who) {
  if (const auto* err = std::get_if<herald::WireError>(&r)) {
    throw std::runtime_error(std::string(who) + " rejected the row: " + err->detail);
  }
  return std::get<herald::WireMessage>(r);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t count = 200'000, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--count") == 0) count = std::strtoull(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::strtoull(argv[i + 1], nullptr, 10);
  }
  std::printf("| payload | decode_wire_message (simdjson) ns/msg | general path ns/msg | fast / general |\n");
  std::printf("|---|---|---|---|\n");
  for (const std::size_t payload_bytes : {std::size_t{100}, std::size_t{1024}, std::size_t{10240}}) {
    // The scenario-4 event: an order payload padded to size, the pipeline's metadata.
    json payload = {{"order_id", "ord_1234567890"}, {"amount", 1999.5}, {"currency", "EUR"},
                    {"items", json::array({{{"sku", "A-1"}, {"qty", 2}}, {{"sku", "B-22"}, {"qty", 1}}})},
                    {"pad", std::string(payload_bytes > 120 ? payload_bytes - 120 : 1, 'x')}};
    herald::EventMetadata meta;
    meta.task_uuid = "0190a8f0-0000-7000-8000-000000000001";
    meta.step_uuid = "0190a8f0-0000-7000-8000-000000000002";
    meta.step_name = "process_payment";
    meta.namespace_name = "payments";
    meta.correlation_id = "corr-42";
    meta.fired_by = "payment_events";
    meta.extra = {{"publisher", "payment_events"}, {"event_version", "1.0"}};
    auto event = herald::DomainEvent::create("payment.processed", payload, meta);
    const std::string topic = event->event_name();
    const std::string body = herald::encode_envelope(*event, herald::WireEncoding::json,
                                                     herald::WireHeader{"bench-publisher", 1, 1});
    const std::array<std::string_view, 2> frames{topic, body};

    // Same result from both before timing, and the fast path really taken.
    if (!herald::detail::decode_json_envelope_fast(topic, body, herald::json_fields::kMaxDepth)) {
      std::fprintf(stderr, "the fast path gave up on the row\n");
      return 1;
    }
    const auto fast_result = herald::decode_wire_message(frames);
    const auto general_result = herald::detail::decode_envelope_general(topic, body, herald::WireEncoding::json);
    const auto& fast = accepted(fast_result, "decode_wire_message");
    const auto& general = accepted(general_result, "the general path");
    if (fast.event->json_text() != general.event->json_text() ||
        fast.header.seq != general.header.seq || fast.header.name_seq != general.header.name_seq ||
        fast.header.publisher_id != general.header.publisher_id) {
      std::fprintf(stderr, "decoders disagree:\n%s\n%s\n", fast.event->json_text().c_str(),
                   general.event->json_text().c_str());
      return 1;
    }

    std::vector<double> fast_ns, general_ns;
    std::size_t sink = 0;
    for (std::size_t r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < count; ++i) {
        auto m = herald::decode_wire_message(frames);
        sink += std::get<herald::WireMessage>(m).event->payload().size();
      }
      auto t1 = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < count; ++i) {
        auto m = herald::detail::decode_envelope_general(topic, body, herald::WireEncoding::json);
        sink += std::get<herald::WireMessage>(m).event->payload().size();
      }
      auto t2 = std::chrono::steady_clock::now();
      fast_ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(count));
      general_ns.push_back(std::chrono::duration<double, std::nano>(t2 - t1).count() / static_cast<double>(count));
    }
    const double f = median(fast_ns), g = median(general_ns);
    std::printf("| %zu B (envelope %zu B) | %.0f | %.0f | %.2fx |\n", payload_bytes, body.size(), f, g, f / g);
    if (sink == 42) std::printf(" ");
  }
  return 0;
}
