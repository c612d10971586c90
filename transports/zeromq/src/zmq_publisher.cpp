// ZmqPublisher: an XPUB socket owned by one I/O thread, fed through a bounded queue.
#include "zmq_detail.hpp"

#include <herald/events/error.hpp>
#include <herald/events/ids.hpp>
#include <herald/events/log.hpp>
#include <herald/zeromq/transport.hpp>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

namespace herald {

using nlohmann::json;

struct ZmqPublisher::Impl {
  std::shared_ptr<zmq::context_t> context;
  std::shared_ptr<ZapHandler> zap;
  std::string zap_domain;
  std::string publisher_id_json;
  detail::Wakeup wakeup;
  detail::SocketThread thread;
  bool started = false;  // controlling thread only

  // One encoded message waiting for the I/O thread. The envelope is built by send(), on the
  // caller's thread: the I/O thread no longer holds the event, so the event (and its payload)
  // is freed on the thread that allocated it. With the I/O thread releasing events, glibc
  // freed every >1 KiB payload across threads into the caller's arena, under its lock, and the
  // publishing side of a 1 KiB run spent about a fifth of its time in malloc/free (perf,
  // bench/zmq_scenario4).
  struct Outgoing {
    std::string name;                       // frame 1
    std::unique_ptr<std::string> envelope;  // frame 2, handed to libzmq without a copy
    std::uint64_t seq = 0;
  };

  mutable std::mutex mutex;
  mutable std::condition_variable changed;  // subscriptions arrived
  std::deque<Outgoing> queue;               // under mutex
  std::uint64_t seq = 0;                    // under mutex: assigned in send() order
  std::unordered_map<std::string, std::uint64_t> name_seqs;  // under mutex
  bool accepting = false;                   // under mutex
  bool stopping = false;                    // under mutex
  std::set<std::string> subscribers;        // marker topics seen, under mutex
  std::uint64_t subscriptions = 0;          // under mutex
  std::vector<std::string> resolved;        // under mutex

  std::atomic<std::uint64_t> sent{0}, bytes{0}, send_errors{0}, queue_full{0}, unrouted{0},
      oversized{0};
  RateLimiter oversized_log{5, std::chrono::seconds(10)};
  std::atomic<std::size_t> topic_count{0};
  std::atomic<bool> topics_tracked{true};
  std::atomic<bool> running{false};

  // I/O thread only.
  struct NameState {
    std::uint64_t routed_at = 0;        // topics_generation when `routed` was computed (0: never)
    bool routed = false;
  };
  std::unordered_map<std::string, NameState> names;
  // Topics with at least one subscriber. XPUB verbose hands over every subscription, and an
  // unsubscription only when the last subscriber of a topic is gone (by message or by
  // disconnecting), so this set is exactly what libzmq routes by. Bounded: beyond
  // kMaxTrackedTopics the set is dropped and routing is no longer judged (topics_tracked false).
  static constexpr std::size_t kMaxTrackedTopics = 65'536;
  std::set<std::string, std::less<>> topics;
  std::uint64_t topics_generation = 1;

  bool routed(NameState& state, const std::string& name);

  void run(const ZmqPublisherOptions& options, const std::function<void()>& ready);
  void on_subscription(const zmq::message_t& msg);
  void send_one(zmq::socket_t& socket, Outgoing& out, const ZmqPublisherOptions& options);
};

ZmqPublisher::ZmqPublisher(ZmqPublisherOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  if (options_.endpoints.empty()) throw TransportError(options_.name + ": no endpoints given");
  if (options_.publisher_id.empty()) options_.publisher_id = new_uuid_v7();
  if (options_.max_queue == 0) options_.max_queue = 1;
  impl_->publisher_id_json =
      json(options_.publisher_id).dump(-1, ' ', false, json::error_handler_t::replace);
}

ZmqPublisher::~ZmqPublisher() { stop(); }

void ZmqPublisher::start() {
  if (impl_->started) throw StateError(options_.name + ": publisher already started");
  impl_->started = true;
  impl_->context = options_.context ? options_.context : shared_zmq_context();
  try {
    impl_->thread.start(options_.name, "publisher I/O thread",
                        [this](const std::function<void()>& ready) { impl_->run(options_, ready); });
  } catch (...) {
    impl_->zap.reset();
    impl_->context.reset();
    throw;
  }
}

void ZmqPublisher::Impl::run(const ZmqPublisherOptions& options, const std::function<void()>& ready) {
  try {
    zmq::socket_t socket(*context, zmq::socket_type::xpub);
    socket.set(zmq::sockopt::linger, static_cast<int>(options.linger.count()));
    socket.set(zmq::sockopt::sndhwm, options.sndhwm);
    socket.set(zmq::sockopt::xpub_verbose, 1);
    if (options.curve.enabled()) {
      CurveOptions curve = options.curve;
      zap = detail::apply_curve(socket, curve, context, options.name, &zap_domain);
    }
    std::vector<std::string> eps;
    for (const auto& ep : options.endpoints) {
      eps.push_back(detail::attach(socket, ep, options.bind, options.name));
    }
    {
      std::lock_guard lock(mutex);
      resolved = eps;
      accepting = true;
    }
    running = true;
    ready();

    std::deque<Outgoing> batch;
    for (;;) {
      zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0},
                                 {nullptr, wakeup.fd(), ZMQ_POLLIN, 0}};
      zmq::poll(items, 2, std::chrono::milliseconds(-1));
      if (items[0].revents & ZMQ_POLLIN) {
        zmq::message_t msg;
        while (socket.recv(msg, zmq::recv_flags::dontwait)) on_subscription(msg);
      }
      bool last = false;
      if (items[1].revents & ZMQ_POLLIN) {
        wakeup.drain();
        std::lock_guard lock(mutex);
        batch.swap(queue);
        last = stopping;
      }
      for (auto& out : batch) send_one(socket, out, options);
      batch.clear();
      if (last) break;
    }
    running = false;
    // The socket closes here with its linger; pending messages are flushed by the context.
  } catch (...) {
    running = false;
    {
      std::lock_guard lock(mutex);
      accepting = false;
    }
    throw;  // SocketThread reports it
  }
}

void ZmqPublisher::Impl::on_subscription(const zmq::message_t& msg) {
  if (msg.size() == 0) return;
  const auto* data = static_cast<const char*>(msg.data());
  if (data[0] != 0 && data[0] != 1) return;  // not a subscription message
  std::string_view topic(data + 1, msg.size() - 1);
  if (topics_tracked.load(std::memory_order_relaxed)) {
    if (data[0] == 0) {
      if (auto it = topics.find(topic); it != topics.end()) topics.erase(it);
    } else if (topics.size() >= kMaxTrackedTopics && !topics.count(topic)) {
      topics = {};
      topics_tracked.store(false, std::memory_order_relaxed);
    } else {
      topics.emplace(topic);
    }
    ++topics_generation;
    topic_count.store(topics.size(), std::memory_order_relaxed);
  }
  if (data[0] != 1) return;  // an unsubscription: nothing more to count
  {
    std::lock_guard lock(mutex);
    if (topic.rfind(kSubscriberMarkerPrefix, 0) == 0) {
      subscribers.emplace(topic);
    } else {
      ++subscriptions;
    }
  }
  changed.notify_all();
}

// Whether a subscription covers `name` (ZeroMQ matches topics as byte prefixes), cached per name
// until the topic set changes. Unknown (true) once the set overflowed.
bool ZmqPublisher::Impl::routed(NameState& state, const std::string& name) {
  if (!topics_tracked.load(std::memory_order_relaxed)) return true;
  if (state.routed_at != topics_generation) {
    state.routed = false;
    const std::string_view view(name);
    for (std::size_t len = 0; len <= view.size() && !state.routed; ++len) {
      state.routed = topics.find(view.substr(0, len)) != topics.end();
    }
    state.routed_at = topics_generation;
  }
  return state.routed;
}

void ZmqPublisher::Impl::send_one(zmq::socket_t& socket, Outgoing& out,
                                  const ZmqPublisherOptions& options) {
  try {
    const bool has_subscriber = routed(names[out.name], out.name);
    const std::size_t size = out.name.size() + out.envelope->size();
    std::string* envelope = out.envelope.release();
    zmq::message_t body(
        envelope->data(), envelope->size(),
        [](void* data, void* hint) {
          // libzmq frees the buffer on its own I/O thread once sent: pairs with the release
          // below, so that ThreadSanitizer sees the hand-over (without it every message is a
          // suppressed race report, which slows a sanitized publisher down quadratically).
          detail::tsan_acquire(data);
          delete static_cast<std::string*>(hint);
        },
        envelope);
    zmq::message_t topic(out.name.data(), out.name.size());
    detail::tsan_release(envelope->data());
    if (socket.send(topic, zmq::send_flags::sndmore | zmq::send_flags::dontwait) &&
        socket.send(body, zmq::send_flags::dontwait)) {
      // Sent, but no subscription matched: ZeroMQ dropped it (PUB semantics). Counted so that a
      // publisher whose peers are absent or unreachable does not look like a healthy one.
      // Before `sent`, so that a reader who saw `sent` reach n sees every unrouted among them.
      if (!has_subscriber) unrouted.fetch_add(1, std::memory_order_release);
      bytes.fetch_add(size, std::memory_order_relaxed);
      sent.fetch_add(1, std::memory_order_release);
    } else {
      send_errors.fetch_add(1, std::memory_order_relaxed);
    }
  } catch (const std::exception& e) {
    send_errors.fetch_add(1, std::memory_order_relaxed);
    static RateLimiter limiter;
    std::uint64_t suppressed = 0;
    if (limiter.allow(&suppressed)) {
      logger()->warn("{}: cannot send event {} (seq {}): {} ({} similar suppressed)", options.name,
                     out.name, out.seq, e.what(), suppressed);
    }
  }
}

void ZmqPublisher::send(const EventPtr& event) {
  if (!event) throw TransportError(options_.name + ": cannot send a null event");
  // Serialise the event (cached on it, once) before taking the lock; under the lock only the
  // sequence numbers are assigned and spliced in, so that the queue is in sequence order.
  if (options_.encoding == WireEncoding::msgpack) {
    (void)event->msgpack();
  } else {
    (void)event->json_text();
  }
  bool wake = false;
  std::uint64_t seq = 0;
  std::size_t oversize = 0;
  {
    std::lock_guard lock(impl_->mutex);
    if (!impl_->accepting) throw TransportError(options_.name + ": publisher is not running");
    if (impl_->queue.size() >= options_.max_queue) {
      impl_->queue_full.fetch_add(1, std::memory_order_relaxed);
      throw TransportError(options_.name + ": send queue full (" +
                           std::to_string(options_.max_queue) + " events)");
    }
    seq = ++impl_->seq;
    const auto name_seq = ++impl_->name_seqs[event->event_name()];
    auto envelope = std::make_unique<std::string>(
        encode_envelope(*event, options_.encoding, impl_->publisher_id_json, seq, name_seq));
    const std::size_t size = event->event_name().size() + envelope->size();
    if (options_.max_message_size != 0 && size > options_.max_message_size) {
      oversize = size;  // not sent; its sequence numbers stay used, so receivers see the gap
    } else {
      wake = impl_->queue.empty();
      impl_->queue.push_back({event->event_name(), std::move(envelope), seq});
    }
  }
  if (oversize != 0) {
    impl_->oversized.fetch_add(1, std::memory_order_relaxed);
    std::uint64_t suppressed = 0;
    if (impl_->oversized_log.allow(&suppressed)) {
      logger()->warn("{}: event {} ({}) not sent: {} bytes is over max_message_size {} ({} similar "
                     "suppressed)",
                     options_.name, event->event_name(), event->event_id(), oversize,
                     options_.max_message_size, suppressed);
    }
    return;
  }
  if (wake) impl_->wakeup.signal();
}

void ZmqPublisher::stop() {
  if (!impl_->started) return;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->accepting = false;
    impl_->stopping = true;
  }
  impl_->wakeup.signal();
  if (impl_->thread.joinable()) impl_->thread.join();
  if (impl_->zap && !impl_->zap_domain.empty()) impl_->zap->remove_domain(impl_->zap_domain);
  impl_->zap.reset();
  impl_->context.reset();  // the last holder terminates the context (bounded by linger)
  impl_->changed.notify_all();
}

bool ZmqPublisher::healthy() const { return impl_->running.load(); }

bool ZmqPublisher::wait_for_subscribers(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mutex);
  return impl_->changed.wait_for(lock, timeout, [&] { return impl_->subscribers.size() >= n; });
}

bool ZmqPublisher::wait_for_subscriptions(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mutex);
  return impl_->changed.wait_for(lock, timeout, [&] { return impl_->subscriptions >= n; });
}

std::size_t ZmqPublisher::queue_depth() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->queue.size();
}

std::vector<std::string> ZmqPublisher::endpoints() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->resolved;
}

json ZmqPublisher::stats() const {
  json j;
  j["transport"] = options_.name;
  j["publisher_id"] = options_.publisher_id;
  j["encoding"] = to_string(options_.encoding);
  j["running"] = impl_->running.load();
  j["sent"] = impl_->sent.load();
  j["bytes"] = impl_->bytes.load();
  j["send_errors"] = impl_->send_errors.load();
  j["queue_full"] = impl_->queue_full.load();
  j["unrouted"] = impl_->unrouted.load();
  j["oversized"] = impl_->oversized.load();
  j["topics"] = impl_->topic_count.load();
  j["topics_tracked"] = impl_->topics_tracked.load();
  std::lock_guard lock(impl_->mutex);
  j["queue_depth"] = impl_->queue.size();
  j["subscribers_seen"] = impl_->subscribers.size();
  j["subscriptions_seen"] = impl_->subscriptions;
  j["endpoints"] = impl_->resolved;
  return j;
}

}  // namespace herald
