// Writes the generated seed inputs of the fuzz targets from real herald encodings:
//   corpus/wire/*            envelopes made by encode_envelope (JSON and MessagePack), framed as
//                            the wire target reads them (topic FF FE envelope), plus a few
//                            malformed messages (one frame, three frames, bad fields)
//   corpus/step_completion/* StepCompletion::to_json() of completions like the demo's, as JSON
//                            text and as MessagePack
// Usage: herald_fuzz_seedgen CORPUS_DIR   (tests/fuzz/corpus). Deterministic: ids and times are
// fixed so that regenerating does not churn the committed files.
#include <herald/events/domain_event.hpp>
#include <herald/events/step_completion.hpp>
#include <herald/events/wire.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using herald::DomainEvent;
using herald::StepCompletion;
using herald::WireEncoding;
using nlohmann::json;

namespace {

void write(const fs::path& file, const std::string& bytes) {
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary) << bytes;
}

std::string frames(const std::vector<std::string>& parts) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i) out += "\xff\xfe";
    out += parts[i];
  }
  return out;
}

// Events as DomainEvent::from_json builds them (fixed id and time, unlike create()).
herald::EventPtr event(const json& j) { return DomainEvent::from_json(j); }

std::vector<StepCompletion> completions() {
  std::vector<StepCompletion> out;
  StepCompletion ok;
  ok.step_name = "process_payment";
  ok.namespace_name = "payments";
  ok.task_uuid = "task-1";
  ok.step_uuid = "step-3";
  ok.correlation_id = "order-1";
  ok.success = true;
  ok.max_retries = 3;
  ok.result = {{"payment_id", "pay-1"}, {"amount", 42.5}, {"order_id", "order-1"}};
  out.push_back(ok);
  StepCompletion retry = ok;
  retry.success = false;
  retry.retryable = true;
  retry.retry_count = 1;
  retry.result = json::object();
  retry.error = herald::StepError{"gateway timeout", "TimeoutError"};
  out.push_back(retry);
  StepCompletion failed = retry;
  failed.step_name = "fulfill_order";
  failed.retryable = false;
  failed.retry_count = 0;
  failed.error = herald::StepError{"card declined", "CardDeclined"};
  failed.metadata = {{"region", "eu"}, {"attempt", 2}, {"tags", {"a", "b"}}};
  out.push_back(failed);
  StepCompletion minimal;
  minimal.step_name = "send_receipt";
  minimal.success = true;
  minimal.result = {1, 2.5, "three", nullptr, true, {{"nested", {{"deep", -7}}}}};
  out.push_back(minimal);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const fs::path root = argv[1];

  const std::vector<json> events = {
      {{"event_id", "01a207bc-3097-7000-b57c-6fda8bf2ca46"},
       {"event_name", "payment.card.declined"},
       {"payload", {{"amount", 42.5}, {"currency", "EUR"}}},
       {"metadata",
        {{"correlation_id", "corr-9"}, {"fired_at", "2026-11-23T09:28:23.447Z"},
         {"fired_by", "payments"}, {"namespace", "billing"}, {"region", "eu"},
         {"step_name", "charge"}, {"step_uuid", "s-1"}, {"task_uuid", "t-1"}}},
       {"execution_result",
        {{"success", false}, {"retryable", true}, {"retry_count", 2}, {"max_retries", 3},
         {"error", {{"message", "card declined"}, {"error_type", "PaymentError"}}}}}},
      {{"event_id", "5d1c"}, {"event_name", "order.created"}, {"payload", {{"id", 7}}}},
      {{"event_id", "01a207bc-3097-7000-b57c-000000000002"},
       {"event_name", "order.fulfilled"},
       {"payload", {{"items", {{{"sku", "A-1"}, {"qty", 2}}, {{"sku", "B_2"}, {"qty", 1}}}},
                    {"total", 1e3}, {"gift", false}, {"note", nullptr}, {"text", "caf\u00e9 \u2603"}}},
       {"metadata", {{"fired_at", "2026-11-23T09:28:23.447Z"}, {"fired_by", "orders"}}}},
      {{"event_id", "x"}, {"event_name", "a"}, {"payload", json::array({-1, 18446744073709551615ull, 0.1})}},
  };
  int n = 0;
  for (const auto& e : events) {
    const auto ev = event(e);
    for (auto enc : {WireEncoding::json, WireEncoding::msgpack}) {
      const herald::WireHeader header{"01a207bc-2ef3-7000-9a80-76958b350fc8", 17, 3};
      const herald::WireHeader no_name_seq{"my-service-1", 1, 0};
      const auto tag = std::string(herald::to_string(enc));
      write(root / "wire" / ("envelope-" + std::to_string(n) + "-" + tag),
            frames({ev->event_name(), herald::encode_envelope(*ev, enc, header)}));
      write(root / "wire" / ("envelope-" + std::to_string(n) + "-" + tag + "-no-name-seq"),
            frames({ev->event_name(), herald::encode_envelope(*ev, enc, no_name_seq)}));
    }
    ++n;
  }
  // Malformed messages: wrong frame counts, a wrong topic, bad field values.
  const auto first = event(events[1]);
  const auto env = herald::encode_envelope(*first, WireEncoding::json, {"p", 1, 1});
  write(root / "wire" / "bad-one-frame", env);
  write(root / "wire" / "bad-three-frames", frames({"order.created", env, "extra"}));
  write(root / "wire" / "bad-topic", frames({"order.deleted", env}));
  write(root / "wire" / "bad-version",
        frames({"order.created", R"({"wire_version":2,"publisher_id":"p","seq":1,"event_id":"e","event_name":"order.created"})"}));
  write(root / "wire" / "bad-seq",
        frames({"order.created", R"({"wire_version":1,"publisher_id":"p","seq":0,"event_id":"e","event_name":"order.created","execution_result":{"retry_count":1.5}})"}));
  write(root / "wire" / "bad-name",
        frames({"order..created", R"({"wire_version":1,"publisher_id":"p","seq":1,"event_id":"e","event_name":"order..created"})"}));

  int k = 0;
  for (const auto& c : completions()) {
    write(root / "step_completion" / ("completion-" + std::to_string(k) + ".json"), c.to_json().dump(2));
    const auto mp = json::to_msgpack(c.to_json());
    write(root / "step_completion" / ("completion-" + std::to_string(k) + ".msgpack"),
          std::string(mp.begin(), mp.end()));
    ++k;
  }
  std::printf("wrote seeds under %s\n", root.c_str());
  return 0;
}
