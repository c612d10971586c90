// The stress suite provokes failures and drops on purpose; keep their logs out of the test
// output unless HERALD_TEST_LOG is set.
#include <herald/events/log.hpp>

#include <cstdlib>

namespace {
const bool quiet = [] {
  if (std::getenv("HERALD_TEST_LOG") == nullptr) herald::logger()->set_level(spdlog::level::off);
  return true;
}();
}  // namespace
