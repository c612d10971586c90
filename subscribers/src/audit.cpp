#include <herald/subscribers/audit.hpp>

#include <herald/events/error.hpp>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <system_error>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

namespace herald {

namespace {
std::string errno_text(int err) { return std::system_category().message(err); }

/// The offset just past the last '\n' of the open file `fd` of `size` bytes (0 if none).
/// Reads backwards in blocks, so a huge file with a short tail costs one read.
off_t end_of_last_line(int fd, off_t size) {
  char block[4096];
  off_t end = size;
  while (end > 0) {
    const off_t begin = end > static_cast<off_t>(sizeof block) ? end - static_cast<off_t>(sizeof block) : 0;
    const ssize_t n = ::pread(fd, block, static_cast<std::size_t>(end - begin), begin);
    if (n <= 0) return size;  // unreadable: leave the file as it is
    for (ssize_t i = n; i > 0; --i) {
      if (block[i - 1] == '\n') return begin + i;
    }
    end = begin;
  }
  return 0;
}
}  // namespace

AuditSubscriber::AuditSubscriber(std::string name, std::vector<std::string> patterns,
                                 std::filesystem::path path, AuditOptions options)
    : name_(std::move(name)),
      patterns_(std::move(patterns)),
      path_(std::move(path)),
      options_(std::move(options)) {
  if (path_.empty()) throw Error("audit subscriber '" + name_ + "': the file path is empty");
}

AuditSubscriber::~AuditSubscriber() {
  std::lock_guard lock(mutex_);
  close_locked();
}

SubscribeOptions AuditSubscriber::subscribe_options() const {
  auto o = options_.subscribe;
  o.name = name_;
  return o;
}

void AuditSubscriber::on_start() {
  std::lock_guard lock(mutex_);
  if (fd_ >= 0) return;
  // O_RDWR rather than O_WRONLY: the tail is read once to find a line cut by a kill -9.
  int fd = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC,
                  static_cast<mode_t>(options_.file_mode));
  if (fd < 0 && errno == EACCES) {
    // A write-only file (or a device such as /dev/full) is still a valid audit target.
    fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                static_cast<mode_t>(options_.file_mode));
  }
  if (fd < 0) {
    const int err = errno;
    throw Error("audit subscriber '" + name_ + "': cannot open '" + path_.string() +
                "' for appending: " + errno_text(err));
  }
  // Repair only when no other audit writer has the file open: each holds a shared flock for as
  // long as it is open (a killed writer's lock goes with it), so getting the exclusive lock means
  // a fragment after the last newline is left over, not a line another writer (the old instance
  // during a worker reload) is in the middle of writing. Then keep a shared lock like the others.
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) repair_torn_tail(fd);
  [[maybe_unused]] const int locked = ::flock(fd, LOCK_SH | LOCK_NB);
  fd_ = fd;
  last_errno_ = 0;
}

void AuditSubscriber::repair_torn_tail(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) return;
  const off_t keep = end_of_last_line(fd, st.st_size);
  if (keep >= st.st_size) return;
  if (::ftruncate(fd, keep) != 0) {
    const int err = errno;
    logger()->warn("subscriber '{}': '{}' ends with {} bytes of a cut-off line that could not be "
                   "removed: {}", name_, path_.string(), st.st_size - keep, errno_text(err));
    return;
  }
  repaired_.fetch_add(static_cast<std::uint64_t>(st.st_size - keep), std::memory_order_relaxed);
  logger()->warn("subscriber '{}': removed {} bytes of a line cut off at the end of '{}' (the "
                 "previous writer was killed mid-write)", name_, st.st_size - keep, path_.string());
}

void AuditSubscriber::on_stop() {
  std::lock_guard lock(mutex_);
  close_locked();
}

void AuditSubscriber::close_locked() noexcept {
  if (fd_ < 0) return;
  if (options_.fsync) ::fdatasync(fd_);
  ::close(fd_);
  fd_ = -1;
}

bool AuditSubscriber::is_open() const {
  std::lock_guard lock(mutex_);
  return fd_ >= 0;
}

SubscriberResult AuditSubscriber::handle(const EventPtr& event) {
  HandleOutcome outcome = HandleOutcome::handled;
  return write_events(std::span<const EventPtr>(&event, 1), std::span<HandleOutcome>(&outcome, 1));
}

SubscriberResult AuditSubscriber::handle_batch(std::span<const EventPtr> events,
                                               std::span<HandleOutcome> outcomes) {
  if (outcomes.size() < events.size()) {
    throw Error("audit subscriber '" + name_ + "': handle_batch: fewer outcomes than events");
  }
  return write_events(events, outcomes);
}

SubscriberResult AuditSubscriber::write_events(std::span<const EventPtr> events,
                                               std::span<HandleOutcome> outcomes) {
  if (events.empty()) return {};
  // Encode outside the lock (json_text() is computed once per event and shared).
  static constexpr char kNewline = '\n';
  thread_local std::vector<iovec> iov;
  iov.clear();
  iov.reserve(events.size() * 2);
  std::size_t total = 0;
  for (const auto& event : events) {
    const std::string& text = event->json_text();
    iov.push_back({const_cast<char*>(text.data()), text.size()});
    iov.push_back({const_cast<char*>(&kNewline), 1});
    total += text.size() + 1;
  }

  std::lock_guard lock(mutex_);
  if (fd_ < 0) {
    errors_.fetch_add(events.size(), std::memory_order_relaxed);
    for (std::size_t i = 0; i < events.size(); ++i) outcomes[i] = HandleOutcome::failed;
    return SubscriberResult::failure("audit file '" + path_.string() + "' is not open");
  }

  // Every line in as few writev(2) calls as the kernel allows (IOV_MAX vectors each); a short
  // write is continued where it stopped.
  std::size_t written = 0;
  int err = 0;
  {
    std::size_t first = 0;       // first vector not yet fully written
    std::size_t first_done = 0;  // bytes of it already written
    while (first < iov.size()) {
      iovec saved = iov[first];
      iov[first].iov_base = static_cast<char*>(saved.iov_base) + first_done;
      iov[first].iov_len = saved.iov_len - first_done;
      const int count = static_cast<int>(std::min<std::size_t>(iov.size() - first, IOV_MAX));
      const ssize_t n = ::writev(fd_, iov.data() + first, count);
      iov[first] = saved;
      if (n < 0) {
        if (errno == EINTR) continue;
        err = errno;
        break;
      }
      written += static_cast<std::size_t>(n);
      std::size_t left = static_cast<std::size_t>(n) + first_done;
      while (first < iov.size() && left >= iov[first].iov_len) {
        left -= iov[first].iov_len;
        ++first;
      }
      first_done = left;
    }
  }
  if (err == 0 && options_.fsync && ::fdatasync(fd_) != 0) err = errno;

  if (err == 0) {
    last_errno_ = 0;
    lines_.fetch_add(events.size(), std::memory_order_relaxed);
    return {};
  }

  // The lines written whole before the error stay (with fsync on, the fdatasync failed and
  // none of them is known to be durable: all fail). A line cut by the error is truncated away
  // so that the file stays valid JSON Lines (single writer); the rest of the batch fails.
  std::size_t whole_lines = 0, whole_bytes = 0;
  if (!(options_.fsync && written == total)) {
    for (const auto& event : events) {
      const std::size_t line = event->json_text().size() + 1;
      if (whole_bytes + line > written) break;
      whole_bytes += line;
      ++whole_lines;
    }
    if (written > whole_bytes) {
      const off_t end = ::lseek(fd_, 0, SEEK_END);
      const auto cut = static_cast<off_t>(written - whole_bytes);
      if (end >= cut) {
        [[maybe_unused]] int rc = ::ftruncate(fd_, end - cut);
      }
    }
    if (options_.fsync) whole_lines = 0;  // not known to be durable
  }
  if (whole_lines > 0) {
    lines_.fetch_add(whole_lines, std::memory_order_relaxed);
  }
  for (std::size_t i = whole_lines; i < events.size(); ++i) outcomes[i] = HandleOutcome::failed;
  const EventPtr& first_failed = events[whole_lines < events.size() ? whole_lines : 0];
  last_errno_ = err;
  last_error_at_ = std::chrono::steady_clock::now();
  errors_.fetch_add(events.size() - whole_lines, std::memory_order_relaxed);
  std::string message = "audit write to '" + path_.string() + "' failed: " + errno_text(err);
  std::uint64_t suppressed = 0;
  if (error_log_.allow(&suppressed)) {
    logger()->error("subscriber '{}': {} (event_id={}{}){}", name_, message,
                    first_failed->event_id(),
                    events.size() - whole_lines > 1
                        ? fmt::format(" and {} more", events.size() - whole_lines - 1)
                        : "",
                    suppressed ? fmt::format(" ({} similar errors suppressed)", suppressed) : "");
  }
  return SubscriberResult::failure(std::move(message));
}

bool AuditSubscriber::health_check() {
  std::lock_guard lock(mutex_);
  if (fd_ < 0) return false;
  if (last_errno_ == 0) return true;
  return std::chrono::steady_clock::now() - last_error_at_ >= options_.recheck_after;
}

}  // namespace herald
