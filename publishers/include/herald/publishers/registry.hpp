// PublisherRegistry: named publishers, and the choice of publisher for a step's events.
#pragma once

#include <herald/publishers/declaration.hpp>
#include <herald/publishers/publisher.hpp>

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace herald {

/// Publishers by unique name, plus the built-in GenericPublisher ("default"), which is always
/// available and never listed by names(). Thread safe: every method may be called from any
/// thread; lookups take a shared lock only. Not copyable, not movable.
class PublisherRegistry {
 public:
  PublisherRegistry();
  PublisherRegistry(const PublisherRegistry&) = delete;
  PublisherRegistry& operator=(const PublisherRegistry&) = delete;

  /// The process-wide registry (tests should use their own instance, or clear() it first).
  static PublisherRegistry& instance();

  /// Adds `publisher` under its name(). Throws RegistryError for a null publisher, an empty
  /// name, the reserved name "default", a name already registered, or a frozen registry.
  void register_publisher(std::shared_ptr<Publisher> publisher);

  /// The publisher named `name` ("default": the generic one), or nullptr.
  std::shared_ptr<Publisher> get(std::string_view name) const;
  /// The named publisher; the generic one for "", "default" or an unknown name (which is also
  /// logged as a warning, rate limited).
  std::shared_ptr<Publisher> get_or_default(std::string_view name) const;
  /// The named publisher ("default": the generic one). Throws RegistryError naming `name` and
  /// listing the registered names when it is unknown or empty.
  std::shared_ptr<Publisher> get_strict(std::string_view name) const;
  /// The publisher for a step's events, in order of preference: the publisher named by the first
  /// of `declarations` that names one (an unknown name there is logged and passed over), else
  /// the first registered publisher whose publishes_for() lists `step_name`, else the generic.
  std::shared_ptr<Publisher> get_for_step(std::string_view step_name,
                                          const std::vector<EventDeclaration>& declarations = {}) const;
  /// The built-in GenericPublisher.
  std::shared_ptr<Publisher> generic() const noexcept { return generic_; }

  /// Registered names, sorted (the generic publisher is not listed).
  std::vector<std::string> names() const;
  std::size_t size() const;
  bool contains(std::string_view name) const;

  /// While frozen, register_publisher() and clear() throw RegistryError ("... frozen ...").
  /// Lookups are unaffected. Workers freeze the registry once they start.
  void freeze() noexcept;
  void unfreeze() noexcept;
  bool frozen() const noexcept;

  /// Removes every registered publisher. Throws RegistryError when frozen.
  void clear();

  /// Throws one RegistryError listing every name of `names` that is not registered ("default"
  /// and empty names are skipped: they always resolve) and the registered names. For checking a
  /// configuration's declarations up front.
  void validate_required(const std::vector<std::string>& names) const;

 private:
  std::string registered_list_locked() const;

  mutable std::shared_mutex mutex_;
  std::map<std::string, std::shared_ptr<Publisher>, std::less<>> by_name_;
  // Step name -> first registered publisher listing it: get_for_step costs one lookup.
  std::map<std::string, std::shared_ptr<Publisher>, std::less<>> by_step_;
  std::shared_ptr<Publisher> generic_;
  std::atomic<bool> frozen_{false};
};

}  // namespace herald
