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

// The 62 random bits of each id come from a per-thread xoshiro256** (32 bytes of state) rather
// than std::mt19937_64 (2.5 KiB): the small state keeps the library's thread-local block small
// enough for the dynamic loader to place it in static TLS when the Python extension is
// dlopen'ed, so thread-local access there is a load, not a __tls_get_addr call per access
// (measured with the Python inline publish, README "Benchmarks"). Ids need uniqueness, not
// cryptographic strength: the sequence and the millisecond clock already order them.
struct Xoshiro256StarStar {
  std::uint64_t s[4];
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(s[1] * 5, 7) * 9;
    const std::uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
};

Xoshiro256StarStar seeded_engine() {
  std::random_device device;
  // splitmix64 spreads the seed words over the state, as xoshiro's authors recommend.
  std::uint64_t x = (static_cast<std::uint64_t>(device()) << 32) ^ device() ^
                    static_cast<std::uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id()));
  Xoshiro256StarStar engine{};
  for (auto& word : engine.s) {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    word = z ^ (z >> 31);
  }
  return engine;
}

std::uint64_t random_bits() {
  thread_local Xoshiro256StarStar engine = seeded_engine();
  return engine.next();
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
