// herald::publishers — the Publisher base and GenericPublisher, the PublisherRegistry, event
// declarations and publication conditions, payload schema checks and the publishing pipeline.
#pragma once

#include <herald/publishers/declaration.hpp>
#include <herald/publishers/pipeline.hpp>
#include <herald/publishers/publisher.hpp>
#include <herald/publishers/registry.hpp>
#include <herald/publishers/schema.hpp>
