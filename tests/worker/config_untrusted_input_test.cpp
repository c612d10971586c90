// Regressions found by fuzzing (tests/fuzz/): every malformed configuration file is a
// ConfigError, never one of json's own exceptions.
#include <herald/events/error.hpp>
#include <herald/worker/config.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

TEST(WorkerConfigFiles, ANumberTooLargeForADoubleIsAConfigErrorNamingTheFile) {
  // json::parse throws out_of_range (not parse_error) for 1e999; it used to escape load().
  const auto dir = std::filesystem::temp_directory_path() / ("herald-config-1e999-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "overflow.json") << R"({"worker": {"dispatcher_threads": 1e999}})";
  try {
    herald::WorkerConfig::load(dir / "overflow.json");
    ADD_FAILURE() << "accepted";
  } catch (const herald::ConfigError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("overflow.json"), std::string::npos) << message;
    EXPECT_NE(message.find("not valid JSON"), std::string::npos) << message;
  }
  std::filesystem::remove_all(dir);
}
