// ZmqProxy: XSUB frontend <-> XPUB backend on one thread, with counters.
#include "zmq_detail.hpp"

#include <herald/events/log.hpp>
#include <herald/zeromq/proxy.hpp>
#include <herald/zeromq/transport.hpp>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

namespace herald {

using nlohmann::json;

json ProxyStats::to_json() const {
  return json{{"messages_in", messages_in},     {"bytes_in", bytes_in},
              {"messages_out", messages_out},   {"bytes_out", bytes_out},
              {"subscriptions", subscriptions}, {"subscriptions_refused", subscriptions_refused},
              {"topics", topics},               {"forward_errors", forward_errors}};
}

struct ZmqProxy::Impl {
  std::shared_ptr<zmq::context_t> context;
  std::vector<std::shared_ptr<ZapHandler>> zaps;
  std::vector<std::string> zap_domains;
  detail::Wakeup wakeup;
  detail::SocketThread thread;
  bool started = false;
  std::atomic<bool> stopping{false};
  mutable std::mutex mutex;
  std::vector<std::string> frontend, backend;  // under mutex
  std::atomic<std::uint64_t> messages_in{0}, bytes_in{0}, messages_out{0}, bytes_out{0},
      subscriptions{0}, subscriptions_refused{0}, topics{0}, forward_errors{0};
  RateLimiter refuse_log{5, std::chrono::seconds(10)};

  void run(const ZmqProxyOptions& options, const std::function<void()>& ready);
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
  try {
    impl_->thread.start(options_.name, "proxy thread",
                        [this](const std::function<void()>& ready) { impl_->run(options_, ready); });
  } catch (...) {
    impl_->zaps.clear();
    impl_->context.reset();
    throw;
  }
}

void ZmqProxy::Impl::run(const ZmqProxyOptions& options, const std::function<void()>& ready) {
  zmq::socket_t front(*context, zmq::socket_type::xsub);
  zmq::socket_t back(*context, zmq::socket_type::xpub);
  for (auto* s : {&front, &back}) {
    s->set(zmq::sockopt::linger, static_cast<int>(options.linger.count()));
    s->set(zmq::sockopt::sndhwm, options.hwm);
    s->set(zmq::sockopt::rcvhwm, options.hwm);
  }
  if (options.max_frame_size > 0) front.set(zmq::sockopt::maxmsgsize, options.max_frame_size);
  if (options.max_subscription_size > 0) back.set(zmq::sockopt::maxmsgsize, options.max_subscription_size);
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
  ready();

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

  // Subscriptions (backend -> frontend). XPUB verbose hands over every subscription and an
  // unsubscription when a topic's last subscriber is gone, so `forwarded` is the set of topics
  // publishers currently filter for; new topics beyond max_topics are refused.
  std::set<std::string, std::less<>> forwarded;
  auto upstream = [&](zmq::socket_t& from, zmq::socket_t& to, const ZmqProxyOptions& o) {
    zmq::message_t msg;
    if (!from.recv(msg, zmq::recv_flags::none)) return;
    const auto* data = static_cast<const char*>(msg.data());
    const bool subscription = !msg.more() && msg.size() > 0 && (data[0] == 0 || data[0] == 1);
    if (!subscription) {  // anything else goes upstream untouched
      const bool more = msg.more();
      try {
        to.send(msg, more ? zmq::send_flags::sndmore : zmq::send_flags::none);
      } catch (const zmq::error_t&) {
        forward_errors.fetch_add(1, std::memory_order_relaxed);
      }
      if (more) forward(from, to);
      return;
    }
    const std::string_view topic(data + 1, msg.size() - 1);
    auto it = forwarded.find(topic);
    if (data[0] == 0) {
      if (it == forwarded.end()) return;  // never forwarded (refused): nothing to undo
      forwarded.erase(it);
    } else if (it == forwarded.end()) {
      if (o.max_topics != 0 && forwarded.size() >= o.max_topics) {
        const auto refused = subscriptions_refused.fetch_add(1, std::memory_order_relaxed) + 1;
        std::uint64_t suppressed = 0;
        if (refuse_log.allow(&suppressed)) {
          logger()->warn("{}: subscription refused: {} distinct topics forwarded already "
                         "(max_topics); {} refused so far ({} similar suppressed)",
                         o.name, forwarded.size(), refused, suppressed);
        }
        return;
      }
      forwarded.emplace(topic);
    }
    topics.store(forwarded.size(), std::memory_order_relaxed);
    try {
      to.send(msg, zmq::send_flags::none);
    } catch (const zmq::error_t&) {
      forward_errors.fetch_add(1, std::memory_order_relaxed);
    }
    subscriptions.fetch_add(1, std::memory_order_relaxed);
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
      // Bounded like the other direction, so that a subscription flood cannot starve events.
      for (int budget = 0; budget < 1024 && !stopping.load(); ++budget) {
        if (!(back.get(zmq::sockopt::events) & ZMQ_POLLIN)) break;
        upstream(back, front, options);
      }
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
  s.subscriptions_refused = impl_->subscriptions_refused.load();
  s.topics = impl_->topics.load();
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
