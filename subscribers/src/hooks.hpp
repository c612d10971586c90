// Private: runs one event through a Subscriber's hooks (the rules in subscriber.hpp).
#pragma once

#include <herald/events/log.hpp>
#include <herald/subscribers/subscriber.hpp>

#include <span>
#include <string>

namespace herald::detail {

struct HookOutcome {
  enum class Kind { handled, skipped, failed } kind = Kind::handled;
  std::string error;  ///< failed: what goes to the bus as last_error
};

/// Never throws. Logs exceptions and failure results through `log_limit`.
HookOutcome run_hooks(Subscriber& subscriber, const std::string& name, const EventPtr& event,
                      RateLimiter& log_limit) noexcept;

/// The batch form for a batch-capable subscriber (Subscriber::handles_batches): one outcome
/// per event, the same per-event rules. Never throws.
void run_batch_hooks(Subscriber& subscriber, const std::string& name,
                     std::span<const EventPtr> events, std::span<HookOutcome> outcomes,
                     RateLimiter& log_limit) noexcept;

}  // namespace herald::detail
