// The publisher's spool: events waiting for the database in a local file, so that a long outage
// does not overflow the memory buffer and a stop (or crash) during one does not lose them.
// One line per event, "<stream>\t<event JSON>\n" (event JSON never holds a raw newline or tab:
// JSON escapes control characters); "<path>.pos" holds the byte offset of the first line not yet
// committed to PostgreSQL. Not thread safe: the publisher calls it under its mutex.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace herald::durable::detail {

class Spool {
 public:
  struct Line {
    std::string stream;
    std::string body;
    std::uint64_t end = 0;  // byte offset just after the line
  };

  /// Opens (creating) the file and its position. Throws DurableError(state) on I/O errors.
  explicit Spool(std::string path);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  /// Appends one event. Throws DurableError(state) on I/O errors (disk full).
  void append(std::string_view stream, std::string_view body);
  /// Up to `n` complete lines after the read cursor; advances the cursor.
  std::vector<Line> read(std::size_t n);
  /// Lines up to `end` are in the database: persists the position; when everything is, empties
  /// the file.
  void commit(std::uint64_t end);
  /// Puts `lines` (older events, still in memory at stop) before what the file holds.
  void prepend(const std::vector<std::pair<std::string, std::string>>& lines);
  /// Everything appended is committed.
  bool empty() const noexcept { return committed_ == size_; }
  /// Lines not yet handed out by read().
  bool has_unread() const noexcept { return cursor_ < size_; }
  std::uint64_t pending_bytes() const noexcept { return size_ - committed_; }
  /// Bytes that were in the file (uncommitted) when it was opened: left by an earlier process.
  std::uint64_t recovered_end() const noexcept { return recovered_end_; }
  const std::string& path() const noexcept { return path_; }

 private:
  void write_pos();
  [[noreturn]] void fail(const std::string& what) const;

  std::string path_;
  int fd_ = -1;
  int pos_fd_ = -1;
  std::uint64_t size_ = 0;
  std::uint64_t committed_ = 0;
  std::uint64_t cursor_ = 0;
  std::uint64_t recovered_end_ = 0;
};

}  // namespace herald::durable::detail
