// ZmqSubscriber: a SUB socket owned by one I/O thread; exact matching, duplicate suppression,
// gap detection and counted rejection of bad input.
#include "zmq_detail.hpp"

#include <herald/events/error.hpp>
#include <herald/events/ids.hpp>
#include <herald/events/log.hpp>
#include <herald/events/pattern.hpp>
#include <herald/zeromq/transport.hpp>

#include <array>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

namespace herald {

using nlohmann::json;

namespace {

// Recent event ids, least recently seen evicted first. I/O thread only.
class IdLru {
 public:
  explicit IdLru(std::size_t capacity) : capacity_(capacity) {}
  /// True when `id` was already present (and refreshes it); inserts it otherwise.
  bool seen(const std::string& id) {
    if (capacity_ == 0) return false;
    if (auto it = index_.find(id); it != index_.end()) {
      order_.splice(order_.begin(), order_, it->second);
      return true;
    }
    order_.push_front(id);
    index_.emplace(order_.front(), order_.begin());
    if (order_.size() > capacity_) {
      index_.erase(order_.back());
      order_.pop_back();
    }
    return false;
  }

 private:
  std::size_t capacity_;
  std::list<std::string> order_;
  std::unordered_map<std::string_view, std::list<std::string>::iterator> index_;
};

// Reconnects connect-side endpoints that libzmq gave up on. libzmq (4.3) closes a connection
// whose peer sent a frame above ZMQ_MAXMSGSIZE (or broke the protocol) and, on the connecting
// side, never reconnects it: one oversized message would cut a subscriber off that publisher
// for good, silently. A socket monitor shows it: DISCONNECTED after a completed handshake with
// no reconnection attempt (CONNECT_DELAYED / CONNECT_RETRIED / CONNECTED) following. Such an
// endpoint is disconnected and connected again after a short grace, and counted. Connections
// whose handshake never completed (a CURVE refusal) are left alone, as before. I/O thread only.
class ConnectionWatch {
 public:
  static constexpr auto kGrace = std::chrono::milliseconds(250);

  ConnectionWatch(zmq::context_t& context, zmq::socket_t& socket, const std::string& id)
      : socket_(socket), pair_(context, zmq::socket_type::pair) {
    const std::string address = "inproc://herald-subscriber-monitor-" + id;
    const int events = ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_CONNECTED |
                       ZMQ_EVENT_CONNECT_DELAYED | ZMQ_EVENT_CONNECT_RETRIED;
    if (zmq_socket_monitor(socket_.handle(), address.c_str(), events) != 0) throw zmq::error_t();
    pair_.set(zmq::sockopt::linger, 0);
    pair_.connect(address);
  }
  ~ConnectionWatch() { zmq_socket_monitor(socket_.handle(), nullptr, 0); }
  ConnectionWatch(const ConnectionWatch&) = delete;
  ConnectionWatch& operator=(const ConnectionWatch&) = delete;

  void* handle() { return pair_.handle(); }

  /// Reads the monitor's events (call when its socket is readable).
  void read_events() {
    zmq::message_t head, address;
    while (pair_.recv(head, zmq::recv_flags::dontwait)) {
      if (!head.more() || !pair_.recv(address, zmq::recv_flags::none) || head.size() < 2) continue;
      std::uint16_t event = 0;
      std::memcpy(&event, head.data(), sizeof event);
      auto& state = endpoints_[address.to_string()];
      switch (event) {
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: state.handshaken = true; break;
        case ZMQ_EVENT_DISCONNECTED:
          if (state.handshaken) state.check_at = std::chrono::steady_clock::now() + kGrace;
          state.handshaken = false;
          break;
        default: state.check_at.reset(); break;  // libzmq is (re)connecting by itself
      }
    }
  }

  /// Milliseconds until the next check is due, or -1 when none is pending.
  long next_timeout_ms() const {
    std::optional<std::chrono::steady_clock::time_point> first;
    for (const auto& [ep, state] : endpoints_) {
      if (state.check_at && (!first || *state.check_at < *first)) first = state.check_at;
    }
    if (!first) return -1;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*first - std::chrono::steady_clock::now());
    return std::max<long>(0, static_cast<long>(left.count()));
  }

  /// Reconnects the endpoints whose grace ran out; returns how many.
  std::uint64_t reconnect_due(const std::string& name) {
    std::uint64_t done = 0;
    const auto now = std::chrono::steady_clock::now();
    for (auto& [ep, state] : endpoints_) {
      if (!state.check_at || *state.check_at > now) continue;
      state.check_at.reset();
      try {
        try {
          socket_.disconnect(ep);
        } catch (const zmq::error_t&) {
          // Already gone from the socket's endpoints: connecting again is all that is needed.
        }
        socket_.connect(ep);
        ++done;
        std::uint64_t suppressed = 0;
        if (log_.allow(&suppressed)) {
          logger()->warn("{}: connection to {} was closed after a protocol error (e.g. a frame above "
                         "the size limit) and not retried by ZeroMQ; reconnecting ({} similar "
                         "suppressed)",
                         name, ep, suppressed);
        }
      } catch (const zmq::error_t& e) {
        logger()->error("{}: cannot reconnect to {}: {}", name, ep, e.what());
      }
    }
    return done;
  }

 private:
  struct Endpoint {
    bool handshaken = false;
    std::optional<std::chrono::steady_clock::time_point> check_at;
  };
  zmq::socket_t& socket_;
  zmq::socket_t pair_;
  std::map<std::string, Endpoint> endpoints_;
  RateLimiter log_{5, std::chrono::seconds(10)};
};

}  // namespace

struct ZmqSubscriber::Impl {
  EventBus* bus = nullptr;
  ReceiveCallback callback;
  std::shared_ptr<zmq::context_t> context;
  std::shared_ptr<ZapHandler> zap;
  std::string zap_domain;
  std::unique_ptr<CachedPatternSet> patterns;
  std::vector<std::size_t> match_scratch;  // receive thread only
  std::vector<std::string> prefixes;
  detail::Wakeup wakeup;
  detail::SocketThread thread;
  bool started = false;

  mutable std::mutex mutex;
  std::vector<std::string> resolved;  // under mutex
  struct PublisherStats {
    std::uint64_t received = 0;
    std::uint64_t last_seq = 0;
    std::uint64_t gaps = 0;
  };
  std::map<std::string, PublisherStats> publishers;  // under mutex

  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> received{0}, delivered{0}, filtered{0}, duplicates{0}, gaps{0},
      out_of_order{0}, reconnects{0};
  std::array<std::atomic<std::uint64_t>, kWireRejectCount> rejected{};

  // I/O thread only.
  std::unique_ptr<IdLru> lru;
  struct Stream {
    std::uint64_t last = 0;
    std::uint64_t touched = 0;
  };
  std::map<std::pair<std::string, std::string>, Stream> streams;  // (publisher, name or "")
  std::uint64_t tick = 0;
  RateLimiter reject_log{10, std::chrono::seconds(1)};
  RateLimiter gap_log{10, std::chrono::seconds(1)};

  void run(const ZmqSubscriberOptions& options, const std::string& marker, const std::function<void()>& ready);
  void handle(std::span<const std::string_view> frames, const ZmqSubscriberOptions& options);
  void track_sequence(const WireMessage& msg, const ZmqSubscriberOptions& options);
};

ZmqSubscriber::ZmqSubscriber(ZmqSubscriberOptions options, EventBus& bus)
    : options_(std::move(options)), subscriber_id_(new_uuid_v7()), impl_(std::make_unique<Impl>()) {
  impl_->bus = &bus;
}

ZmqSubscriber::ZmqSubscriber(ZmqSubscriberOptions options, ReceiveCallback callback)
    : options_(std::move(options)), subscriber_id_(new_uuid_v7()), impl_(std::make_unique<Impl>()) {
  if (!callback) throw TransportError(options_.name + ": empty receive callback");
  impl_->callback = std::move(callback);
}

ZmqSubscriber::~ZmqSubscriber() { stop(); }

void ZmqSubscriber::start() {
  if (impl_->started) throw StateError(options_.name + ": subscriber already started");
  if (options_.endpoints.empty()) throw TransportError(options_.name + ": no endpoints given");
  if (options_.patterns.empty()) throw TransportError(options_.name + ": no patterns given");
  std::vector<std::pair<Pattern, std::size_t>> entries;
  std::set<std::string> prefixes;
  for (const auto& text : options_.patterns) {
    auto pattern = Pattern::compile(text);
    prefixes.insert(pattern.literal_prefix());
    entries.emplace_back(std::move(pattern), 0);
  }
  // "" subscribes to everything and makes the other prefixes redundant.
  if (prefixes.count("")) prefixes = {""};
  impl_->prefixes.assign(prefixes.begin(), prefixes.end());
  impl_->patterns = std::make_unique<CachedPatternSet>(PatternSet(entries), 4096);
  impl_->lru = std::make_unique<IdLru>(options_.dedup_capacity);
  impl_->started = true;
  impl_->context = options_.context ? options_.context : shared_zmq_context();
  std::string marker(kSubscriberMarkerPrefix);
  marker += subscriber_id_;
  try {
    impl_->thread.start(options_.name, "subscriber I/O thread",
                        [this, marker](const std::function<void()>& ready) { impl_->run(options_, marker, ready); });
  } catch (...) {
    impl_->zap.reset();
    impl_->context.reset();
    throw;
  }
}

void ZmqSubscriber::Impl::run(const ZmqSubscriberOptions& options, const std::string& marker,
                              const std::function<void()>& ready) {
  zmq::socket_t socket(*context, zmq::socket_type::sub);
  socket.set(zmq::sockopt::linger, static_cast<int>(options.linger.count()));
  socket.set(zmq::sockopt::rcvhwm, options.rcvhwm);
  std::int64_t socket_max = options.socket_max_message_size;
  if (socket_max == 0 && options.max_message_size != 0) {
    socket_max = static_cast<std::int64_t>(options.max_message_size) * 2 + 64 * 1024;
  }
  if (socket_max > 0) socket.set(zmq::sockopt::maxmsgsize, socket_max);
  socket.set(zmq::sockopt::reconnect_ivl, 100);
  socket.set(zmq::sockopt::reconnect_ivl_max, 1000);
  for (const auto& prefix : prefixes) socket.set(zmq::sockopt::subscribe, prefix);
  socket.set(zmq::sockopt::subscribe, marker);  // last: see kSubscriberMarkerPrefix
  if (options.curve.enabled()) {
    zap = detail::apply_curve(socket, options.curve, context, options.name, &zap_domain);
  }
  // Connecting: watch the connections (see ConnectionWatch). Declared after `socket`, so it is
  // destroyed (the monitor stopped) before the socket closes.
  std::optional<ConnectionWatch> watch;
  if (!options.bind) watch.emplace(*context, socket, marker.substr(kSubscriberMarkerPrefix.size()));
  std::vector<std::string> eps;
  for (const auto& ep : options.endpoints) {
    eps.push_back(detail::attach(socket, ep, options.bind, options.name));
  }
  {
    std::lock_guard lock(mutex);
    resolved = eps;
  }
  ready();

  std::vector<zmq::message_t> frames(3);
  std::array<std::string_view, 3> views;
  while (!stopping.load()) {
    zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, wakeup.fd(), ZMQ_POLLIN, 0},
                               {watch ? watch->handle() : nullptr, 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, watch ? 3 : 2, std::chrono::milliseconds(watch ? watch->next_timeout_ms() : -1));
    if (items[1].revents & ZMQ_POLLIN) wakeup.drain();
    if (watch) {
      if (items[2].revents & ZMQ_POLLIN) watch->read_events();
      reconnects.fetch_add(watch->reconnect_due(options.name), std::memory_order_relaxed);
    }
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    // Read what is there, a bounded batch at a time, so that stop() is seen promptly.
    for (int budget = 0; budget < 1024 && !stopping.load(); ++budget) {
      std::size_t count = 0;
      zmq::message_t part;
      if (!socket.recv(part, zmq::recv_flags::dontwait)) break;
      for (;;) {
        const bool more = part.more();
        if (count < frames.size()) {
          detail::tsan_acquire(part.data());
          frames[count] = std::move(part);
          views[count] = frames[count].to_string_view();
        }
        ++count;
        if (!more) break;
        // The rest of a multipart message is already here (atomic delivery).
        if (!socket.recv(part, zmq::recv_flags::none)) break;
      }
      std::span<const std::string_view> view(views.data(), std::min(count, views.size()));
      if (count > views.size()) {
        // Frame count is all that matters for the reject; pass a span of the right size.
        std::vector<std::string_view> many(count);
        handle(many, options);
      } else {
        handle(view, options);
      }
    }
  }
}

void ZmqSubscriber::Impl::handle(std::span<const std::string_view> frames,
                                 const ZmqSubscriberOptions& options) {
  received.fetch_add(1, std::memory_order_relaxed);
  auto result = decode_wire_message(frames, options.max_message_size);
  if (auto* error = std::get_if<WireError>(&result)) {
    rejected[static_cast<std::size_t>(error->reason)].fetch_add(1, std::memory_order_relaxed);
    std::uint64_t suppressed = 0;
    if (reject_log.allow(&suppressed)) {
      logger()->warn("{}: dropped message ({}): {} ({} similar suppressed)", options.name,
                     to_string(error->reason), error->detail, suppressed);
    }
    return;
  }
  auto& msg = std::get<WireMessage>(result);
  if (patterns->match(msg.event->event_name(), match_scratch).empty()) {
    filtered.fetch_add(1, std::memory_order_relaxed);  // shares a prefix, not a pattern
    return;
  }
  if (lru->seen(msg.event->event_id())) {
    duplicates.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  track_sequence(msg, options);
  if (callback) {
    try {
      callback(msg);
    } catch (const std::exception& e) {
      logger()->warn("{}: receive callback threw: {}", options.name, e.what());
    }
  } else {
    bus->publish(msg.event);
  }
  delivered.fetch_add(1, std::memory_order_relaxed);
}

// Gap rule (docs/wire-format.md): each (publisher_id, event_name) stream counts name_seq from 1;
// envelopes without name_seq fall back to (publisher_id, seq). Missing numbers are gaps,
// including those before the first message seen; a number at or below the last one (not a
// duplicate event id) is counted out_of_order and restarts tracking from it.
void ZmqSubscriber::Impl::track_sequence(const WireMessage& msg, const ZmqSubscriberOptions& options) {
  const bool by_name = msg.header.name_seq != 0;
  const std::uint64_t n = by_name ? msg.header.name_seq : msg.header.seq;
  auto key = std::make_pair(msg.header.publisher_id, by_name ? msg.event->event_name() : std::string());
  auto [it, inserted] = streams.try_emplace(std::move(key));
  Stream& stream = it->second;
  stream.touched = ++tick;
  std::uint64_t missing = 0;
  if (n > stream.last + 1) {
    missing = n - stream.last - 1;
  } else if (n <= stream.last) {
    out_of_order.fetch_add(1, std::memory_order_relaxed);
  }
  stream.last = n;
  if (missing) {
    gaps.fetch_add(missing, std::memory_order_relaxed);
    std::uint64_t suppressed = 0;
    if (gap_log.allow(&suppressed)) {
      logger()->warn("{}: gap of {} event(s) from publisher {} ({}), before seq {} ({} similar "
                     "suppressed)",
                     options.name, missing, msg.header.publisher_id,
                     by_name ? msg.event->event_name() : std::string("all events"), n, suppressed);
    }
  }
  {
    std::lock_guard lock(mutex);
    auto& p = publishers[msg.header.publisher_id];
    ++p.received;
    p.last_seq = std::max(p.last_seq, msg.header.seq);
    p.gaps += missing;
    if (publishers.size() > options.max_tracked_streams) publishers.erase(publishers.begin());
  }
  if (streams.size() > options.max_tracked_streams) {
    auto oldest = streams.begin();
    for (auto s = streams.begin(); s != streams.end(); ++s) {
      if (s->second.touched < oldest->second.touched) oldest = s;
    }
    streams.erase(oldest);
  }
}

void ZmqSubscriber::stop() {
  if (!impl_->started) return;
  impl_->stopping = true;
  impl_->wakeup.signal();
  if (impl_->thread.joinable()) impl_->thread.join();
  if (impl_->zap && !impl_->zap_domain.empty()) impl_->zap->remove_domain(impl_->zap_domain);
  impl_->zap.reset();
  impl_->context.reset();
}

std::uint64_t ZmqSubscriber::received() const noexcept { return impl_->received.load(); }
std::uint64_t ZmqSubscriber::delivered() const noexcept { return impl_->delivered.load(); }
std::uint64_t ZmqSubscriber::gaps() const noexcept { return impl_->gaps.load(); }
std::uint64_t ZmqSubscriber::duplicates() const noexcept { return impl_->duplicates.load(); }

std::uint64_t ZmqSubscriber::rejected(WireReject reason) const noexcept {
  return impl_->rejected[static_cast<std::size_t>(reason)].load();
}

std::uint64_t ZmqSubscriber::rejected_total() const noexcept {
  std::uint64_t total = 0;
  for (const auto& r : impl_->rejected) total += r.load();
  return total;
}

std::vector<std::string> ZmqSubscriber::endpoints() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->resolved;
}

json ZmqSubscriber::stats() const {
  json j;
  j["subscriber"] = options_.name;
  j["subscriber_id"] = subscriber_id_;
  j["received"] = impl_->received.load();
  j["delivered"] = impl_->delivered.load();
  j["filtered"] = impl_->filtered.load();
  j["duplicates"] = impl_->duplicates.load();
  j["gaps"] = impl_->gaps.load();
  j["out_of_order"] = impl_->out_of_order.load();
  j["reconnects"] = impl_->reconnects.load();
  json rejected = json::object();
  for (std::size_t i = 0; i < kWireRejectCount; ++i) {
    rejected[std::string(to_string(static_cast<WireReject>(i)))] = impl_->rejected[i].load();
  }
  j["rejected"] = std::move(rejected);
  j["rejected_total"] = rejected_total();
  json publishers = json::object();
  std::lock_guard lock(impl_->mutex);
  for (const auto& [id, p] : impl_->publishers) {
    publishers[id] = {{"received", p.received}, {"last_seq", p.last_seq}, {"gaps", p.gaps}};
  }
  j["publishers"] = std::move(publishers);
  j["endpoints"] = impl_->resolved;
  return j;
}

}  // namespace herald
