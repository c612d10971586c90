#include "http_endpoint.hpp"

#include <herald/events/error.hpp>
#include <herald/events/log.hpp>
#include <herald/worker/config.hpp>
#include <herald/worker/worker.hpp>

#include <httplib.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sys/socket.h>
#include <thread>

namespace herald::detail {

namespace {

constexpr const char* kJson = "application/json";
constexpr const char* kPrometheus = "text/plain; version=0.0.4; charset=utf-8";

// A route that throws answers 500 with the reason; the server thread carries on.
void answer(httplib::Response& response, const std::function<void(httplib::Response&)>& fill) {
  try {
    fill(response);
  } catch (const std::exception& e) {
    response.status = 500;
    response.set_content(nlohmann::json{{"error", e.what()}}.dump(), kJson);
  }
}

}  // namespace

struct HttpEndpoint::Impl {
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> exited{false};  // the serving thread returned (only on an error before stop)
  bool stopped = false;
};

HttpEndpoint::HttpEndpoint(const std::string& listen, HttpRoutes routes) : impl_(std::make_unique<Impl>()) {
  HostPort where;
  try {
    where = parse_host_port(listen, "http.listen");
  } catch (const ValidationError& e) {
    throw HttpError(listen, e.problem());
  }
  auto& server = impl_->server;
  // A metrics scrape is one small request: two threads are plenty (httplib's default pool has
  // one per core, at least eight).
  server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, with which a second process
  // binding the same port succeeds silently and the two share the scrapes.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  // Bounds what stop() waits for: an idle keep-alive connection is closed within 1 s.
  server.set_keep_alive_timeout(1);
  server.set_read_timeout(2, 0);
  server.set_write_timeout(2, 0);
  server.set_payload_max_length(64 * 1024);

  server.Get("/metrics", [metrics = routes.metrics](const httplib::Request&, httplib::Response& r) {
    answer(r, [&](httplib::Response& out) { out.set_content(metrics(), kPrometheus); });
  });
  server.Get("/health", [health = routes.health](const httplib::Request&, httplib::Response& r) {
    answer(r, [&](httplib::Response& out) {
      const auto report = health();
      const auto healthy = report.find("healthy");
      const bool ok = healthy != report.end() && healthy->is_boolean() && healthy->get<bool>();
      out.status = ok ? 200 : 503;
      out.set_content(report.dump(), kJson);
    });
  });
  server.Get("/status", [status = routes.status](const httplib::Request&, httplib::Response& r) {
    answer(r, [&](httplib::Response& out) { out.set_content(status().dump(), kJson); });
  });

  errno = 0;
  int port = where.port;
  bool bound = false;
  if (where.port == 0) {
    port = server.bind_to_any_port(where.host);
    bound = port > 0;
  } else {
    bound = server.bind_to_port(where.host, where.port);
  }
  if (!bound) {
    const int error = errno;
    throw HttpError(listen, std::string("cannot listen there: ") +
                                (error != 0 ? std::strerror(error) : "the host does not resolve to a local address"));
  }
  const bool v6 = where.host.find(':') != std::string::npos;
  address_ = (v6 ? "[" + where.host + "]" : where.host) + ":" + std::to_string(port);

  impl_->thread = std::thread([this] {
    if (!impl_->server.listen_after_bind()) {
      logger()->error("http: serving {} ended with an error", address_);
    }
    impl_->exited.store(true);
  });
  // httplib's stop() does nothing until the accept loop has begun: wait for it, so that a stop
  // right after construction cannot leave the thread serving.
  while (!server.is_running() && !impl_->exited.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  logger()->info("http: serving /metrics, /health and /status on http://{}", address_);
}

HttpEndpoint::~HttpEndpoint() { stop(); }

void HttpEndpoint::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace herald::detail
