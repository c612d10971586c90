// The publisher's spool file (spool.hpp).
#include "spool.hpp"

#include <herald/postgres/common.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace herald::durable::detail {

void Spool::fail(const std::string& what) const {
  throw DurableError(DurableErrorKind::state,
                     "spool file '" + path_ + "': " + what + ": " + std::strerror(errno));
}

Spool::Spool(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) fail("cannot open");
  pos_fd_ = ::open((path_ + ".pos").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (pos_fd_ < 0) fail("cannot open its .pos file");
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail("cannot stat");
  size_ = static_cast<std::uint64_t>(st.st_size);
  std::uint64_t pos = 0;
  if (::pread(pos_fd_, &pos, sizeof pos, 0) == static_cast<ssize_t>(sizeof pos) && pos <= size_) {
    committed_ = pos;
  }
  // A crash can leave a torn last line: drop it (it was never acknowledged as spooled).
  if (size_ > committed_) {
    char c = 0;
    if (::pread(fd_, &c, 1, static_cast<off_t>(size_ - 1)) == 1 && c != '\n') {
      std::uint64_t end = size_;
      while (end > committed_) {
        if (::pread(fd_, &c, 1, static_cast<off_t>(end - 1)) != 1 || c == '\n') break;
        --end;
      }
      if (::ftruncate(fd_, static_cast<off_t>(end)) != 0) fail("cannot truncate a torn line");
      size_ = end;
    }
  }
  cursor_ = committed_;
  recovered_end_ = size_;
}

Spool::~Spool() {
  if (fd_ >= 0) ::close(fd_);
  if (pos_fd_ >= 0) ::close(pos_fd_);
}

void Spool::append(std::string_view stream, std::string_view body) {
  std::string line;
  line.reserve(stream.size() + body.size() + 2);
  line.append(stream).append(1, '\t').append(body).append(1, '\n');
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      // Leave no partial line behind.
      [[maybe_unused]] int rc = ::ftruncate(fd_, static_cast<off_t>(size_));
      fail("cannot append");
    }
    done += static_cast<std::size_t>(n);
  }
  size_ += line.size();
}

std::vector<Spool::Line> Spool::read(std::size_t n) {
  std::vector<Line> out;
  std::string buf;
  std::uint64_t at = cursor_;
  std::string pending;  // a line split across chunks
  std::uint64_t line_start = at;
  char chunk[64 * 1024];
  while (out.size() < n && at < size_) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(sizeof chunk, size_ - at));
    const ssize_t got = ::pread(fd_, chunk, want, static_cast<off_t>(at));
    if (got <= 0) {
      if (got < 0 && errno == EINTR) continue;
      fail("cannot read");
    }
    std::size_t i = 0;
    while (i < static_cast<std::size_t>(got) && out.size() < n) {
      const void* nl = std::memchr(chunk + i, '\n', static_cast<std::size_t>(got) - i);
      if (nl == nullptr) {
        pending.append(chunk + i, static_cast<std::size_t>(got) - i);
        i = static_cast<std::size_t>(got);
        break;
      }
      const std::size_t len = static_cast<std::size_t>(static_cast<const char*>(nl) - (chunk + i));
      pending.append(chunk + i, len);
      i += len + 1;
      Line l;
      l.end = at + i;
      const auto tab = pending.find('\t');
      if (tab != std::string::npos) {
        l.stream = pending.substr(0, tab);
        l.body = pending.substr(tab + 1);
      } else {
        l.body = pending;  // malformed: the publisher counts it
      }
      out.push_back(std::move(l));
      pending.clear();
      line_start = at + i;
    }
    at += i;
    if (out.size() >= n) break;
  }
  cursor_ = out.empty() ? cursor_ : out.back().end;
  (void)line_start;
  return out;
}

void Spool::write_pos() {
  if (::pwrite(pos_fd_, &committed_, sizeof committed_, 0) != static_cast<ssize_t>(sizeof committed_)) {
    fail("cannot write its .pos file");
  }
}

void Spool::commit(std::uint64_t end) {
  if (end <= committed_) return;
  committed_ = end;
  if (committed_ == size_) {
    if (::ftruncate(fd_, 0) != 0) fail("cannot truncate");
    size_ = committed_ = cursor_ = 0;
    recovered_end_ = 0;
  }
  write_pos();
}

void Spool::prepend(const std::vector<std::pair<std::string, std::string>>& lines) {
  if (lines.empty()) return;
  const std::string tmp = path_ + ".tmp";
  const int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) fail("cannot create " + tmp);
  auto put = [&](const char* p, std::size_t len) {
    while (len > 0) {
      const ssize_t n = ::write(out, p, len);
      if (n < 0) {
        if (errno == EINTR) continue;
        ::close(out);
        fail("cannot write " + tmp);
      }
      p += n;
      len -= static_cast<std::size_t>(n);
    }
  };
  std::uint64_t new_size = 0;
  for (const auto& [stream, body] : lines) {
    std::string line = stream + "\t" + body + "\n";
    put(line.data(), line.size());
    new_size += line.size();
  }
  char chunk[64 * 1024];
  for (std::uint64_t at = committed_; at < size_;) {
    const ssize_t got = ::pread(fd_, chunk, static_cast<std::size_t>(std::min<std::uint64_t>(sizeof chunk, size_ - at)),
                                static_cast<off_t>(at));
    if (got <= 0) {
      ::close(out);
      fail("cannot read");
    }
    put(chunk, static_cast<std::size_t>(got));
    at += static_cast<std::uint64_t>(got);
    new_size += static_cast<std::uint64_t>(got);
  }
  if (::fsync(out) != 0 || ::close(out) != 0) fail("cannot sync " + tmp);
  // Position 0 first: a crash before the rename re-sends committed lines (at least once) rather
  // than skipping the new ones.
  committed_ = 0;
  write_pos();
  if (::rename(tmp.c_str(), path_.c_str()) != 0) fail("cannot replace it with " + tmp);
  ::close(fd_);
  fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) fail("cannot reopen");
  size_ = new_size;
  committed_ = cursor_ = 0;
  write_pos();
}

}  // namespace herald::durable::detail
