// herald::subscribers: the Subscriber base class, the SubscriberRegistry that attaches
// subscribers to an EventBus (lifecycle, statistics, health, circuit breakers), and the
// built-in audit (JSON Lines file) and metrics (JSON / Prometheus text) subscribers.
#pragma once

#include <herald/subscribers/audit.hpp>
#include <herald/subscribers/circuit_breaker.hpp>
#include <herald/subscribers/metrics.hpp>
#include <herald/subscribers/registry.hpp>
#include <herald/subscribers/subscriber.hpp>
