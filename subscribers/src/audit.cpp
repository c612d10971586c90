#include <herald/subscribers/audit.hpp>

#include <herald/events/error.hpp>

#include <cerrno>
#include <system_error>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
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
  const std::string& text = event->json_text();
  std::lock_guard lock(mutex_);
  if (fd_ < 0) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    return SubscriberResult::failure("audit file '" + path_.string() + "' is not open");
  }
  line_.assign(text);
  line_.push_back('\n');

  std::size_t written = 0;
  int err = 0;
  while (written < line_.size()) {
    const ssize_t n = ::write(fd_, line_.data() + written, line_.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    written += static_cast<std::size_t>(n);
  }
  if (err == 0 && options_.fsync && ::fdatasync(fd_) != 0) err = errno;

  if (err != 0) {
    if (written > 0 && written < line_.size()) {
      // Cut the partial line so that the file stays valid JSON Lines (single writer).
      const off_t end = ::lseek(fd_, 0, SEEK_END);
      if (end >= static_cast<off_t>(written)) {
        [[maybe_unused]] int rc = ::ftruncate(fd_, end - static_cast<off_t>(written));
      }
    }
    last_errno_ = err;
    last_error_at_ = std::chrono::steady_clock::now();
    errors_.fetch_add(1, std::memory_order_relaxed);
    std::string message = "audit write to '" + path_.string() + "' failed: " + errno_text(err);
    std::uint64_t suppressed = 0;
    if (error_log_.allow(&suppressed)) {
      logger()->error("subscriber '{}': {} (event_id={}){}", name_, message, event->event_id(),
                      suppressed ? fmt::format(" ({} similar errors suppressed)", suppressed)
                                 : "");
    }
    return SubscriberResult::failure(std::move(message));
  }
  last_errno_ = 0;
  lines_.fetch_add(1, std::memory_order_relaxed);
  bytes_.fetch_add(line_.size(), std::memory_order_relaxed);
  return {};
}

bool AuditSubscriber::health_check() {
  std::lock_guard lock(mutex_);
  if (fd_ < 0) return false;
  if (last_errno_ == 0) return true;
  return std::chrono::steady_clock::now() - last_error_at_ >= options_.recheck_after;
}

}  // namespace herald
