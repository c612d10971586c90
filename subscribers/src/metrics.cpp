#include <herald/subscribers/metrics.hpp>

#include <herald/events/error.hpp>

#include <atomic>
#include <cerrno>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

namespace herald {

std::string_view to_string(StepOutcome outcome) noexcept {
  switch (outcome) {
    case StepOutcome::success: return "success";
    case StepOutcome::retryable_failure: return "retryable_failure";
    case StepOutcome::permanent_failure: return "permanent_failure";
  }
  return "unknown";
}

StepOutcome step_outcome_of(const ExecutionResult& result) noexcept {
  if (result.success) return StepOutcome::success;
  return result.will_retry() ? StepOutcome::retryable_failure : StepOutcome::permanent_failure;
}

std::string escape_prometheus_label(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

MetricsSubscriber::MetricsSubscriber(std::string name, std::vector<std::string> patterns,
                                     std::optional<std::filesystem::path> path,
                                     SubscribeOptions options)
    : name_(std::move(name)),
      patterns_(std::move(patterns)),
      path_(std::move(path)),
      options_(std::move(options)) {}

SubscribeOptions MetricsSubscriber::subscribe_options() const {
  auto o = options_;
  o.name = name_;
  return o;
}

void MetricsSubscriber::count_locked(const DomainEvent& event) {
  ++total_;
  const auto& event_name = event.event_name();
  // Consecutive events mostly share their name and namespace: remember the last counters hit
  // (map nodes never move) and skip the lookups when the next event matches them.
  if (last_name_ != nullptr && last_name_->first == event_name) {
    ++last_name_->second;
  } else if (auto it = by_name_.find(event_name); it != by_name_.end()) {
    ++it->second;
    last_name_ = &*it;
  } else {
    last_name_ = &*by_name_.emplace(event_name, 1).first;
  }
  const auto& ns = event.metadata().namespace_name;
  if (last_namespace_ != nullptr && last_namespace_->first == ns) {
    ++last_namespace_->second;
  } else if (auto it = by_namespace_.find(ns); it != by_namespace_.end()) {
    ++it->second;
    last_namespace_ = &*it;
  } else {
    last_namespace_ = &*by_namespace_.emplace(ns, 1).first;
  }
  ++by_outcome_[static_cast<int>(step_outcome_of(event.execution_result()))];
}

SubscriberResult MetricsSubscriber::handle(const EventPtr& event) {
  std::lock_guard lock(mutex_);
  count_locked(*event);
  return {};
}

SubscriberResult MetricsSubscriber::handle_batch(std::span<const EventPtr> events,
                                                 std::span<HandleOutcome> /*outcomes*/) {
  std::lock_guard lock(mutex_);
  for (const auto& event : events) count_locked(*event);
  return {};
}

void MetricsSubscriber::on_stop() {
  if (path_) write_file(*path_);
}

std::uint64_t MetricsSubscriber::total() const {
  std::lock_guard lock(mutex_);
  return total_;
}

nlohmann::json MetricsSubscriber::snapshot() const {
  std::lock_guard lock(mutex_);
  nlohmann::json by_name = nlohmann::json::object(), by_ns = nlohmann::json::object();
  for (const auto& [k, v] : by_name_) by_name[k] = v;
  for (const auto& [k, v] : by_namespace_) by_ns[k] = v;
  nlohmann::json outcomes = nlohmann::json::object();
  for (int i = 0; i < 3; ++i) {
    outcomes[std::string(to_string(static_cast<StepOutcome>(i)))] = by_outcome_[i];
  }
  return {{"total", total_}, {"by_event_name", std::move(by_name)},
          {"by_namespace", std::move(by_ns)}, {"by_outcome", std::move(outcomes)}};
}

std::string MetricsSubscriber::prometheus_text() const {
  std::lock_guard lock(mutex_);
  std::string out;
  auto family = [&out](std::string_view metric, std::string_view help) {
    out += "# HELP ";
    out += metric;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += metric;
    out += " counter\n";
  };
  auto sample = [&out](std::string_view metric, std::string_view label, std::string_view value,
                       std::uint64_t count) {
    out += metric;
    out += '{';
    out += label;
    out += "=\"";
    out += escape_prometheus_label(value);
    out += "\"} ";
    out += std::to_string(count);
    out += '\n';
  };
  family("herald_events_total", "Domain events received, by event name.");
  for (const auto& [k, v] : by_name_) sample("herald_events_total", "event_name", k, v);
  family("herald_events_by_namespace_total", "Domain events received, by step namespace.");
  for (const auto& [k, v] : by_namespace_) {
    sample("herald_events_by_namespace_total", "namespace", k, v);
  }
  family("herald_step_outcomes_total",
         "Domain events received, by the outcome of the step that caused them.");
  for (int i = 0; i < 3; ++i) {
    sample("herald_step_outcomes_total", "outcome", to_string(static_cast<StepOutcome>(i)),
           by_outcome_[i]);
  }
  return out;
}

void MetricsSubscriber::write_file() const {
  if (!path_) {
    throw Error("metrics subscriber '" + name_ + "': write_file: no path was configured");
  }
  write_file(*path_);
}

void MetricsSubscriber::write_file(const std::filesystem::path& path) const {
  static std::atomic<std::uint64_t> counter{0};
  const std::string text = prometheus_text();
  auto tmp = path;
  tmp += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  auto fail = [&](std::string_view what, int err) {
    throw Error("metrics subscriber '" + name_ + "': cannot write '" + path.string() + "' (" +
                std::string(what) + "): " + std::system_category().message(err));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("create temporary file", errno);
  std::size_t written = 0;
  int err = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    written += static_cast<std::size_t>(n);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    fail("write and rename", err);
  }
}

}  // namespace herald
