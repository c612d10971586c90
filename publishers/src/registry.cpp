#include <herald/publishers/registry.hpp>

#include <herald/events/error.hpp>
#include <herald/events/log.hpp>

#include <algorithm>
#include <mutex>
#include <set>

namespace herald {

namespace {

RateLimiter& unknown_name_log_limit() {
  static RateLimiter limiter(10, std::chrono::seconds(1));
  return limiter;
}

void warn_unknown(std::string_view name, std::string_view context) {
  std::uint64_t suppressed = 0;
  if (!unknown_name_log_limit().allow(&suppressed)) return;
  logger()->warn("unknown publisher '{}' {}; using the next choice{}", name, context,
                 suppressed == 0 ? std::string()
                                 : " (" + std::to_string(suppressed) + " similar warnings suppressed)");
}

bool is_default_name(std::string_view name) { return name == GenericPublisher::kName; }

}  // namespace

PublisherRegistry::PublisherRegistry() : generic_(std::make_shared<GenericPublisher>()) {}

PublisherRegistry& PublisherRegistry::instance() {
  static PublisherRegistry registry;
  return registry;
}

void PublisherRegistry::register_publisher(std::shared_ptr<Publisher> publisher) {
  if (!publisher) throw RegistryError("cannot register a null publisher");
  // Read once, outside the lock: these are user code and may be slow or throw.
  std::string name = publisher->name();
  std::vector<std::string> steps = publisher->publishes_for();
  if (name.empty()) throw RegistryError("cannot register a publisher with an empty name");
  if (is_default_name(name)) {
    throw RegistryError("cannot register publisher 'default': the name is reserved for the "
                        "generic publisher");
  }
  std::unique_lock lock(mutex_);
  if (frozen_.load(std::memory_order_relaxed)) {
    throw RegistryError("cannot register publisher '" + name + "': the registry is frozen");
  }
  if (by_name_.contains(name)) {
    throw RegistryError("publisher '" + name + "' is already registered");
  }
  for (auto& step : steps) by_step_.try_emplace(std::move(step), publisher);  // first one wins
  by_name_.emplace(std::move(name), std::move(publisher));
}

std::shared_ptr<Publisher> PublisherRegistry::get(std::string_view name) const {
  if (is_default_name(name)) return generic_;
  std::shared_lock lock(mutex_);
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::shared_ptr<Publisher> PublisherRegistry::get_or_default(std::string_view name) const {
  if (name.empty() || is_default_name(name)) return generic_;
  if (auto p = get(name)) return p;
  warn_unknown(name, "requested");
  return generic_;
}

std::shared_ptr<Publisher> PublisherRegistry::get_strict(std::string_view name) const {
  if (is_default_name(name)) return generic_;
  std::shared_lock lock(mutex_);
  if (auto it = by_name_.find(name); it != by_name_.end()) return it->second;
  throw RegistryError((name.empty() ? std::string("empty publisher name")
                                    : "unknown publisher '" + std::string(name) + "'") +
                      " (registered: " + registered_list_locked() + ")");
}

std::shared_ptr<Publisher> PublisherRegistry::get_for_step(
    std::string_view step_name, const std::vector<EventDeclaration>& declarations) const {
  for (const auto& d : declarations) {
    if (!d.publisher || d.publisher->empty()) continue;
    if (auto p = get(*d.publisher)) return p;
    warn_unknown(*d.publisher, "declared for step '" + std::string(step_name) + "'");
    break;  // only the first declaration that names a publisher counts
  }
  std::shared_lock lock(mutex_);
  if (auto it = by_step_.find(step_name); it != by_step_.end()) return it->second;
  return generic_;
}

std::vector<std::string> PublisherRegistry::names() const {
  std::shared_lock lock(mutex_);
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& [name, p] : by_name_) out.push_back(name);  // std::map: already sorted
  return out;
}

std::size_t PublisherRegistry::size() const {
  std::shared_lock lock(mutex_);
  return by_name_.size();
}

bool PublisherRegistry::contains(std::string_view name) const {
  std::shared_lock lock(mutex_);
  return by_name_.contains(name);
}

void PublisherRegistry::freeze() noexcept { frozen_.store(true, std::memory_order_relaxed); }
void PublisherRegistry::unfreeze() noexcept { frozen_.store(false, std::memory_order_relaxed); }
bool PublisherRegistry::frozen() const noexcept { return frozen_.load(std::memory_order_relaxed); }

void PublisherRegistry::clear() {
  std::unique_lock lock(mutex_);
  if (frozen_.load(std::memory_order_relaxed)) {
    throw RegistryError("cannot clear the publisher registry: it is frozen");
  }
  by_name_.clear();
  by_step_.clear();
}

void PublisherRegistry::validate_required(const std::vector<std::string>& names) const {
  std::set<std::string, std::less<>> missing;  // sorted and deduplicated for a stable message
  std::shared_lock lock(mutex_);
  for (const auto& name : names) {
    if (name.empty() || is_default_name(name)) continue;
    if (!by_name_.contains(name)) missing.insert(name);
  }
  if (missing.empty()) return;
  std::string list;
  for (const auto& name : missing) {
    if (!list.empty()) list += ", ";
    list += "'" + name + "'";
  }
  throw RegistryError(std::string(missing.size() == 1 ? "missing publisher: " : "missing publishers: ") +
                      list + " (registered: " + registered_list_locked() + ")");
}

std::string PublisherRegistry::registered_list_locked() const {
  if (by_name_.empty()) return "none";
  std::string out;
  for (const auto& [name, p] : by_name_) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

}  // namespace herald
