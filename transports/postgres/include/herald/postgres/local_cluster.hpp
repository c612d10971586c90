// LocalCluster: a throwaway PostgreSQL cluster in a temporary directory, listening only on a
// Unix socket in that directory, stopped (`pg_ctl stop -m immediate`) and removed at scope
// exit. For `herald demo` (its durable road), the tests and the benchmarks: not for production
// databases. The server refuses to run as root, so when we run as root, initdb and pg_ctl run
// as the `postgres` user (`runuser -u postgres --`) in a directory chowned to it.
//
// The superuser `postgres` has a password (scram-sha-256 on the socket), so wrong-password
// tests are real. Python and CLI tests follow the same recipe (see docs/durable.md "Tests").
// Not thread safe: one controlling thread per cluster.
#pragma once

#include <fcntl.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

extern char** environ;

namespace herald::durable {

class LocalCluster {
 public:
  /// Where Debian puts the server binaries; HERALD_PG_BIN overrides.
  static std::string bin_dir() {
    const char* env = std::getenv("HERALD_PG_BIN");
    return env != nullptr && *env != '\0' ? std::string(env) : std::string("/usr/lib/postgresql/15/bin");
  }
  /// True when initdb and pg_ctl are installed (tests skip otherwise).
  static bool available() {
    return ::access((bin_dir() + "/initdb").c_str(), X_OK) == 0 &&
           ::access((bin_dir() + "/pg_ctl").c_str(), X_OK) == 0;
  }

  /// Creates the cluster (initdb) and starts it. Throws std::runtime_error with the log on failure.
  /// Tests run with fsync off (speed; a crash of the server process, which is what they
  /// simulate, loses nothing either way); benchmarks pass fsync = true, as shipped.
  /// `parent`: where the cluster's folder is made (default: the temporary directory); when we
  /// run as root it must be traversable by the `postgres` user.
  explicit LocalCluster(std::string password = "herald-test-secret", bool fsync = false,
                        const std::filesystem::path& parent = {})
      : password_(std::move(password)), fsync_(fsync) {
    std::string templ =
        ((parent.empty() ? std::filesystem::temp_directory_path() : parent) / "herald-pg-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + templ);
    dir_ = templ;
    as_root_ = ::geteuid() == 0;
    if (as_root_) {
      const passwd* pw = ::getpwnam("postgres");
      if (pw == nullptr) throw std::runtime_error("running as root but there is no 'postgres' user");
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
      chown(dir_);
    }
    {
      std::ofstream(dir_ + "/pwfile") << password_ << "\n";
    }
    if (as_root_) chown(dir_ + "/pwfile");
    run_checked({bin_dir() + "/initdb", "-D", data_dir(), "-U", "postgres", "--pwfile=" + dir_ + "/pwfile",
                 "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8",
                 "--locale=C", "-N"},
                "initdb");
    start();
  }
  ~LocalCluster() {
    try {
      stop_immediate();
    } catch (...) {
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  /// pg_ctl start -w (waits until the server accepts connections).
  void start() {
    run_checked({bin_dir() + "/pg_ctl", "-D", data_dir(), "-l", dir_ + "/server.log", "-w", "-t", "120",
                 "-o",
                 "-c listen_addresses='' -c unix_socket_directories='" + dir_ +
                     "' -c fsync=" + (fsync_ ? "on" : "off") + " -c max_connections=60",
                 "start"},
                "pg_ctl start");
    running_ = true;
  }
  /// pg_ctl stop -m immediate: the server dies like a crash (recovery at the next start).
  void stop_immediate() {
    if (!running_) return;
    running_ = false;
    run_checked({bin_dir() + "/pg_ctl", "-D", data_dir(), "-w", "-m", "immediate", "stop"}, "pg_ctl stop");
  }

  const std::string& dir() const noexcept { return dir_; }
  std::string data_dir() const { return dir_ + "/data"; }
  const std::string& password() const noexcept { return password_; }
  /// A libpq key=value DSN for `user` over the socket.
  std::string dsn(const std::string& user = "postgres", std::string password = {}) const {
    if (password.empty() && user == "postgres") password = password_;
    std::string d = "host=" + dir_ + " port=5432 dbname=postgres user=" + user;
    if (!password.empty()) d += " password=" + password;
    return d;
  }
  /// The server's log (for failure messages).
  std::string server_log() const {
    std::ifstream in(dir_ + "/server.log");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  void chown(const std::string& path) const {
    if (::chown(path.c_str(), uid_, gid_) != 0) throw std::runtime_error("chown failed for " + path);
  }

  // Runs the command (as postgres when we are root), output to DIR/commands.log; returns its
  // exit status.
  int run(std::vector<std::string> args) const {
    if (as_root_) args.insert(args.begin(), {"/usr/sbin/runuser", "-u", "postgres", "--"});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    const std::string log = dir_ + "/commands.log";
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0666);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot run " + args.front());
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  void run_checked(std::vector<std::string> args, const std::string& what) const {
    if (run(std::move(args)) != 0) {
      std::ifstream in(dir_ + "/commands.log");
      std::stringstream s;
      s << in.rdbuf();
      throw std::runtime_error(what + " failed:\n" + s.str() + "\n" + server_log());
    }
  }

  std::string password_;
  bool fsync_ = false;
  std::string dir_;
  bool as_root_ = false;
  bool running_ = false;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

}  // namespace herald::durable
