// ZmqProxy: XSUB frontend <-> XPUB backend on one thread, with counters.
#include "zmq_detail.hpp"

#include <herald/events/log.hpp>
#include <herald/events/zmq_proxy.hpp>
#include <herald/events/zmq_transport.hpp>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

namespace herald {

using nlohmann::json;

json ProxyStats::to_json() const {
  return json{{"messages_in", messages_in},     {"bytes_in", bytes_in},
              {"messages_out", messages_out},   {"bytes_out", bytes_out},
              {"subscriptions", subscriptions}, {"forward_errors", forward_errors}};
}

struct ZmqProxy::Impl {
  std::shared_ptr<zmq::context_t> context;
  std::vector<std::shared_ptr<ZapHandler>> zaps;
  std::vector<std::string> zap_domains;
  detail::Wakeup wakeup;
  std::thread thread;
  bool started = false;
  std::atomic<bool> stopping{false};
  mutable std::mutex mutex;
  std::vector<std::string> frontend, backend;  // under mutex
  std::atomic<std::uint64_t> messages_in{0}, bytes_in{0}, messages_out{0}, bytes_out{0},
      subscriptions{0}, forward_errors{0};

  void run(const ZmqProxyOptions& options, std::promise<void>& ready);
};

ZmqProxy::ZmqProxy(ZmqProxyOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  if (options_.frontend.empty() || options_.backend.empty()) {
    throw TransportError(options_.name + ": both frontend and backend endpoints are required");
  }
}

ZmqProxy::~ZmqProxy() { stop(); }

void ZmqProxy::start() {
  if (impl_->started) throw StateError(options_.name + ": proxy already started");
  impl_->started = true;
  impl_->context = options_.context ? options_.context : shared_zmq_context();
  std::promise<void> ready;
  auto started = ready.get_future();
  impl_->thread = std::thread([this, &ready] { impl_->run(options_, ready); });
  try {
    started.get();
  } catch (...) {
    impl_->thread.join();
    impl_->zaps.clear();
    impl_->context.reset();
    throw;
  }
}

void ZmqProxy::Impl::run(const ZmqProxyOptions& options, std::promise<void>& ready) {
  bool announced = false;
  try {
    zmq::socket_t front(*context, zmq::socket_type::xsub);
    zmq::socket_t back(*context, zmq::socket_type::xpub);
    for (auto* s : {&front, &back}) {
      s->set(zmq::sockopt::linger, static_cast<int>(options.linger.count()));
      s->set(zmq::sockopt::sndhwm, options.hwm);
      s->set(zmq::sockopt::rcvhwm, options.hwm);
    }
    // Pass every subscription upstream, so publishers can count subscribers through the proxy.
    back.set(zmq::sockopt::xpub_verbose, 1);
    if (options.curve.enabled()) {
      for (auto [s, side] : {std::pair{&front, "frontend"}, std::pair{&back, "backend"}}) {
        std::string domain;
        auto zap = detail::apply_curve(*s, options.curve, context, options.name + " " + side, &domain);
        if (zap) {
          zaps.push_back(zap);
          zap_domains.push_back(domain);
        }
      }
    }
    std::vector<std::string> f, b;
    for (const auto& ep : options.frontend) f.push_back(detail::attach(front, ep, true, options.name + " frontend"));
    for (const auto& ep : options.backend) b.push_back(detail::attach(back, ep, true, options.name + " backend"));
    {
      std::lock_guard lock(mutex);
      frontend = f;
      backend = b;
    }
    announced = true;
    ready.set_value();

    // Forwards one whole multipart message; returns its size in bytes.
    auto forward = [this](zmq::socket_t& from, zmq::socket_t& to) -> std::size_t {
      std::size_t bytes = 0;
      zmq::message_t part;
      bool failed = false;
      for (;;) {
        if (!from.recv(part, zmq::recv_flags::none)) break;
        bytes += part.size();
        const bool more = part.more();
        if (!failed) {
          try {
            if (!to.send(part, more ? zmq::send_flags::sndmore : zmq::send_flags::none)) failed = true;
          } catch (const zmq::error_t&) {
            failed = true;
          }
        }
        if (!more) break;
      }
      if (failed) forward_errors.fetch_add(1, std::memory_order_relaxed);
      return bytes;
    };

    while (!stopping.load()) {
      zmq::pollitem_t items[] = {{front.handle(), 0, ZMQ_POLLIN, 0},
                                 {back.handle(), 0, ZMQ_POLLIN, 0},
                                 {nullptr, wakeup.fd(), ZMQ_POLLIN, 0}};
      zmq::poll(items, 3, std::chrono::milliseconds(-1));
      if (items[2].revents & ZMQ_POLLIN) wakeup.drain();
      if (items[0].revents & ZMQ_POLLIN) {
        for (int budget = 0; budget < 1024 && !stopping.load(); ++budget) {
          if (!(front.get(zmq::sockopt::events) & ZMQ_POLLIN)) break;
          const auto bytes = forward(front, back);
          messages_in.fetch_add(1, std::memory_order_relaxed);
          bytes_in.fetch_add(bytes, std::memory_order_relaxed);
          messages_out.fetch_add(1, std::memory_order_relaxed);
          bytes_out.fetch_add(bytes, std::memory_order_relaxed);
        }
      }
      if (items[1].revents & ZMQ_POLLIN) {
        while (back.get(zmq::sockopt::events) & ZMQ_POLLIN) {
          forward(back, front);
          subscriptions.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
  } catch (const std::exception& e) {
    if (!announced) {
      ready.set_exception(std::make_exception_ptr(
          TransportError(dynamic_cast<const Error*>(&e) ? e.what() : options.name + ": " + e.what())));
    } else {
      logger()->error("{}: proxy thread failed: {}", options.name, e.what());
    }
  }
}

void ZmqProxy::stop() {
  if (!impl_->started) return;
  impl_->stopping = true;
  impl_->wakeup.signal();
  if (impl_->thread.joinable()) impl_->thread.join();
  for (std::size_t i = 0; i < impl_->zaps.size(); ++i) impl_->zaps[i]->remove_domain(impl_->zap_domains[i]);
  impl_->zaps.clear();
  impl_->context.reset();
}

ProxyStats ZmqProxy::stats() const {
  ProxyStats s;
  s.messages_in = impl_->messages_in.load();
  s.bytes_in = impl_->bytes_in.load();
  s.messages_out = impl_->messages_out.load();
  s.bytes_out = impl_->bytes_out.load();
  s.subscriptions = impl_->subscriptions.load();
  s.forward_errors = impl_->forward_errors.load();
  return s;
}

std::vector<std::string> ZmqProxy::frontend_endpoints() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->frontend;
}

std::vector<std::string> ZmqProxy::backend_endpoints() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->backend;
}

}  // namespace herald
