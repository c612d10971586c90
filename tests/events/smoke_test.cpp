#include <herald/events/event_bus.hpp>
#include <gtest/gtest.h>
TEST(Smoke, Builds) { herald::EventBus bus; EXPECT_FALSE(bus.stopped()); }
