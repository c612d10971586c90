#include <herald/events/ids.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <functional>
#include <random>
#include <thread>

namespace herald {
namespace {

// (unix_ms << 12) | sequence, shared by all threads: each id takes the next value that is
// greater than the last one handed out and not behind the clock, so ids are strictly ordered.
std::atomic<std::uint64_t> last_time_and_seq{0};

std::uint64_t next_time_and_seq() {
  const auto now_ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  const std::uint64_t floor = now_ms << 12;
  auto prev = last_time_and_seq.load(std::memory_order_relaxed);
  std::uint64_t next;
  do {
    next = prev + 1 > floor ? prev + 1 : floor;
  } while (!last_time_and_seq.compare_exchange_weak(prev, next, std::memory_order_relaxed));
  return next;
}

std::uint64_t random_bits() {
  thread_local std::mt19937_64 engine = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device(),
                       static_cast<unsigned>(std::hash<std::thread::id>{}(std::this_thread::get_id()))};
    return std::mt19937_64(seed);
  }();
  return engine();
}

}  // namespace

std::string new_uuid_v7() {
  const std::uint64_t ts = next_time_and_seq();
  const std::uint64_t unix_ms = ts >> 12;
  const std::uint64_t seq = ts & 0xFFF;
  std::array<std::uint8_t, 16> b{};
  for (int i = 0; i < 6; ++i) b[i] = static_cast<std::uint8_t>(unix_ms >> (40 - 8 * i));
  b[6] = static_cast<std::uint8_t>(0x70 | (seq >> 8));  // version 7, rand_a = sequence
  b[7] = static_cast<std::uint8_t>(seq & 0xFF);
  const std::uint64_t r = random_bits();
  for (int i = 0; i < 8; ++i) b[8 + i] = static_cast<std::uint8_t>(r >> (56 - 8 * i));
  b[8] = static_cast<std::uint8_t>(0x80 | (b[8] & 0x3F));  // RFC 9562 variant

  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(hex[b[i] >> 4]);
    out.push_back(hex[b[i] & 0xF]);
  }
  return out;
}

std::string format_rfc3339_ms(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  const int millis = static_cast<int>(ms - static_cast<long long>(secs) * 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return buf;
}

std::string now_rfc3339_ms() { return format_rfc3339_ms(std::chrono::system_clock::now()); }

}  // namespace herald
