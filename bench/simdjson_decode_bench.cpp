// Issue 17 section 5: herald's envelope decoder (decode_wire_message: the one-pass reader of
// wire_fast.cpp, falling back to the general path) against simdjson On-Demand (Debian
// libsimdjson-dev) doing the same job: the two frames of a scenario-4 message in, a WireMessage
// (an EventPtr with payload and extra metadata as nlohmann::json, and the wire header) out.
//
//   simdjson_decode_bench [--count N] [--reps R]
//
// Rows: the scenario-4 event (payload sizes 100 B, 1 KiB, 10 KiB, like zmq_scenario4). Every
// decoded event is checked against herald's (same json_text) before timing. Prints ns per
// message, median of R repetitions, for each decoder and payload size.
#include <herald/events/detail/metadata_fields.hpp>
#include <herald/events/domain_event.hpp>
#include <herald/events/wire.hpp>

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using nlohmann::json;

// simdjson value -> nlohmann::json (the payload and extra metadata must end up as nlohmann::json:
// that is what DomainEvent holds and what every consumer of an event reads).
json to_nlohmann(simdjson::ondemand::value value);

json object_to_nlohmann(simdjson::ondemand::object object) {
  json out = json::object();
  for (auto field : object) {
    std::string_view key = field.unescaped_key().value();
    out.emplace(std::string(key), to_nlohmann(field.value().value()));
  }
  return out;
}

json to_nlohmann(simdjson::ondemand::value value) {
  switch (value.type().value()) {
    case simdjson::ondemand::json_type::object:
      return object_to_nlohmann(value.get_object().value());
    case simdjson::ondemand::json_type::array: {
      json out = json::array();
      for (auto element : value.get_array().value()) out.push_back(to_nlohmann(element.value()));
      return out;
    }
    case simdjson::ondemand::json_type::string:
      return std::string(value.get_string().value());
    case simdjson::ondemand::json_type::boolean:
      return value.get_bool().value();
    case simdjson::ondemand::json_type::null:
      return nullptr;
    case simdjson::ondemand::json_type::number: {
      auto number = value.get_number().value();
      switch (number.get_number_type()) {
        case simdjson::ondemand::number_type::signed_integer: return number.get_int64();
        case simdjson::ondemand::number_type::unsigned_integer: return number.get_uint64();
        default: return number.get_double();
      }
    }
  }
  throw std::runtime_error("unknown JSON type");
}

std::string str(simdjson::ondemand::value value) { return std::string(value.get_string().value()); }

// The simdjson decoder: the same fields herald's fast path reads, same result type.
herald::WireMessage decode_simdjson(simdjson::ondemand::parser& parser, std::string_view topic,
                                    const simdjson::padded_string& body) {
  auto doc = parser.iterate(body);
  herald::WireMessage message;
  std::string event_id, event_name;
  json payload = json::object();
  herald::EventMetadata metadata;
  herald::ExecutionResult result;
  for (auto field : doc.get_object()) {
    const std::string_view key = field.unescaped_key().value();
    auto value = field.value().value();
    if (key == "wire_version") {
      message.wire_version = static_cast<int>(value.get_int64().value());
    } else if (key == "publisher_id") {
      message.header.publisher_id = str(value);
    } else if (key == "seq") {
      message.header.seq = value.get_uint64().value();
    } else if (key == "name_seq") {
      message.header.name_seq = value.get_uint64().value();
    } else if (key == "event_id") {
      event_id = str(value);
    } else if (key == "event_name") {
      event_name = str(value);
    } else if (key == "event_version") {
      (void)value.get_string().value();
    } else if (key == "payload") {
      payload = to_nlohmann(value);
    } else if (key == "metadata") {
      for (auto m : value.get_object()) {
        const std::string_view mk = m.unescaped_key().value();
        auto mv = m.value().value();
        if (auto i = herald::detail::metadata_field_index(mk)) {
          metadata.*herald::detail::kMetadataFields[*i].member = str(mv);
        } else {
          metadata.extra[std::string(mk)] = to_nlohmann(mv);
        }
      }
    } else if (key == "execution_result") {
      result = herald::ExecutionResult::from_json(to_nlohmann(value));
    }
  }
  if (event_name != topic) throw std::runtime_error("topic mismatch");
  message.event = herald::DomainEvent::from_fields(std::move(event_id), std::move(event_name),
                                                   std::move(payload), std::move(metadata),
                                                   std::move(result));
  return message;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t count = 200'000, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--count") == 0) count = std::strtoull(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::strtoull(argv[i + 1], nullptr, 10);
  }
  std::printf("| payload | herald decode_wire_message ns/msg | simdjson On-Demand ns/msg | simdjson / herald |\n");
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
    const simdjson::padded_string padded(body);
    simdjson::ondemand::parser parser;

    // Same result from both before timing.
    auto ours = herald::decode_wire_message(frames);
    if (!std::holds_alternative<herald::WireMessage>(ours)) throw std::runtime_error("herald rejected the row");
    auto theirs = decode_simdjson(parser, topic, padded);
    if (std::get<herald::WireMessage>(ours).event->json_text() != theirs.event->json_text() ||
        std::get<herald::WireMessage>(ours).header.seq != theirs.header.seq) {
      std::fprintf(stderr, "decoders disagree:\n%s\n%s\n",
                   std::get<herald::WireMessage>(ours).event->json_text().c_str(),
                   theirs.event->json_text().c_str());
      return 1;
    }

    std::vector<double> herald_ns, simd_ns;
    std::size_t sink = 0;
    for (std::size_t r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < count; ++i) {
        auto m = herald::decode_wire_message(frames);
        sink += std::get<herald::WireMessage>(m).event->payload().size();
      }
      auto t1 = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < count; ++i) {
        auto m = decode_simdjson(parser, topic, padded);
        sink += m.event->payload().size();
      }
      auto t2 = std::chrono::steady_clock::now();
      herald_ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(count));
      simd_ns.push_back(std::chrono::duration<double, std::nano>(t2 - t1).count() / static_cast<double>(count));
    }
    const double h = median(herald_ns), s = median(simd_ns);
    std::printf("| %zu B (envelope %zu B) | %.0f | %.0f | %.2fx |\n", payload_bytes, body.size(), h, s, s / h);
    if (sink == 42) std::printf(" ");
  }
  return 0;
}
