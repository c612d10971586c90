#include <herald/events/ids.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <thread>

namespace herald {
namespace {

// (unix_ms << 12) | sequence, shared by all threads: each id takes the next value that is
// greater than the last one handed out and not behind the clock, so ids are strictly ordered.
std::atomic<std::uint64_t> last_time_and_seq{0};

std::uint64_t next_time_and_seq(std::chrono::system_clock::time_point now) {
  const auto now_ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count());
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

std::string new_uuid_v7() { return new_uuid_v7(std::chrono::system_clock::now()); }

std::string new_uuid_v7(std::chrono::system_clock::time_point now) {
  const std::uint64_t ts = next_time_and_seq(now);
  const std::uint64_t unix_ms = ts >> 12;
  const std::uint64_t seq = ts & 0xFFF;
  std::array<std::uint8_t, 16> b{};
  for (int i = 0; i < 6; ++i) b[i] = static_cast<std::uint8_t>(unix_ms >> (40 - 8 * i));
  b[6] = static_cast<std::uint8_t>(0x70 | (seq >> 8));  // version 7, rand_a = sequence
  b[7] = static_cast<std::uint8_t>(seq & 0xFF);
  const std::uint64_t r = random_bits();
  for (int i = 0; i < 8; ++i) b[8 + i] = static_cast<std::uint8_t>(r >> (56 - 8 * i));
  b[8] = static_cast<std::uint8_t>(0x80 | (b[8] & 0x3F));  // RFC 9562 variant

  // Written into a fixed buffer from a byte -> two hex digits table, and copied once: this runs
  // for every event created.
  static constexpr auto pairs = [] {
    std::array<std::array<char, 2>, 256> t{};
    constexpr char hex[] = "0123456789abcdef";
    for (int i = 0; i < 256; ++i) t[static_cast<std::size_t>(i)] = {hex[i >> 4], hex[i & 0xF]};
    return t;
  }();
  char text[36];
  char* out = text;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *out++ = '-';
    std::memcpy(out, pairs[b[static_cast<std::size_t>(i)]].data(), 2);
    out += 2;
  }
  return std::string(text, sizeof text);
}

namespace {
void put2(char* out, int v) noexcept {
  out[0] = static_cast<char>('0' + v / 10);
  out[1] = static_cast<char>('0' + v % 10);
}
}  // namespace

// Every event is stamped, so this is on the publish path: the "YYYY-MM-DDTHH:MM:SS" part is
// computed once per second per thread and only the milliseconds are written each time
// (snprintf + gmtime_r per call cost more than the rest of event creation).
std::string format_rfc3339_ms(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  const int millis = static_cast<int>(ms - static_cast<long long>(secs) * 1000);
  thread_local std::time_t cached_secs = -1;
  thread_local char cached[20];  // "YYYY-MM-DDTHH:MM:SS"
  if (secs != cached_secs) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    const int year = tm.tm_year + 1900;
    if (year < 0 || year > 9999) {  // outside RFC 3339's four digits: the slow, general path
      char buf[64];
      std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, tm.tm_mon + 1,
                    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
      return buf;
    }
    put2(cached, year / 100);
    put2(cached + 2, year % 100);
    cached[4] = '-';
    put2(cached + 5, tm.tm_mon + 1);
    cached[7] = '-';
    put2(cached + 8, tm.tm_mday);
    cached[10] = 'T';
    put2(cached + 11, tm.tm_hour);
    cached[13] = ':';
    put2(cached + 14, tm.tm_min);
    cached[16] = ':';
    put2(cached + 17, tm.tm_sec);
    cached[19] = '\0';
    cached_secs = secs;
  }
  std::string out(24, '\0');
  std::memcpy(out.data(), cached, 19);
  out[19] = '.';
  out[20] = static_cast<char>('0' + millis / 100);
  put2(out.data() + 21, millis % 100);
  out[23] = 'Z';
  return out;
}

std::string now_rfc3339_ms() { return format_rfc3339_ms(std::chrono::system_clock::now()); }

}  // namespace herald
