// herald.ZmqPublisher and herald.ZmqSubscriber: the ZeroMQ transports (DESIGN.md decision 7).
// Their sockets live on their own I/O threads; start/stop/wait release the GIL.
#include "common.hpp"

#include <herald/zeromq/transport.hpp>

#include <chrono>
#include <cmath>

namespace herald::py_bindings {

std::shared_ptr<EventBus> native_bus(const py::handle& obj);

namespace {

std::chrono::milliseconds ms(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(std::max(0.0, seconds) * 1000.0)));
}

std::vector<std::string> string_list(const py::handle& v) {
  if (py::isinstance<py::str>(v)) return {v.cast<std::string>()};
  return v.cast<std::vector<std::string>>();
}

struct PyZmqPublisher {
  std::shared_ptr<ZmqPublisher> publisher;
};

struct PyZmqSubscriber {
  std::shared_ptr<EventBus> bus;  // declared first: destroyed after the subscriber
  std::unique_ptr<ZmqSubscriber, ReleaseGilDelete<ZmqSubscriber>> subscriber;
};

}  // namespace

std::shared_ptr<Transport> native_transport(const py::handle& obj) {
  return obj.cast<PyZmqPublisher&>().publisher;
}

// CURVE from Python keyword arguments (Z85 key text), with the C++ API's roles: the binding side
// is the server (its secret key and an allow-list of client public keys); the connecting side is
// a client of the server public key it names (its own secret key optional: an ephemeral pair).
CurveOptions curve_from_args(bool bind, std::string secret_key, std::string server_key,
                             const py::object& allow) {
  const auto allowed = allow.is_none() ? std::vector<std::string>{} : string_list(allow);
  if (bind) {
    if (!server_key.empty()) {
      throw Error("curve_server_key is for a socket that connects; a binding socket is the CURVE "
                  "server and takes curve_secret_key (and curve_allow)");
    }
    if (secret_key.empty()) {
      if (!allowed.empty()) throw Error("curve_allow needs curve_secret_key (the server's key)");
      return {};
    }
    return CurveOptions::make_server(std::move(secret_key), allowed);
  }
  if (!allowed.empty()) throw Error("curve_allow is for a binding (server) socket");
  if (server_key.empty()) {
    if (!secret_key.empty()) throw Error("curve_secret_key on a connecting socket needs curve_server_key");
    return {};
  }
  return CurveOptions::make_client(std::move(server_key), std::move(secret_key));
}

void bind_zmq(py::module_& m) {
  m.def("curve_keypair", [] {
        const auto keys = generate_curve_keypair();
        return py::make_tuple(keys.public_key, keys.secret_key);
      }, "A new CURVE key pair as (public_key, secret_key), 40-character Z85 text each.");
  m.def("read_curve_public_key", [](const std::string& path) { return read_curve_public_key(path); },
        py::arg("path"), "The Z85 public key in a file written by `herald keygen` (PREFIX.pub).");
  m.def("read_curve_secret_key", [](const std::string& path) { return read_curve_secret_key(path); },
        py::arg("path"), "The Z85 secret key in PREFIX.key; refuses a group- or world-readable file.");

  py::class_<PyZmqPublisher>(m, "ZmqPublisher",
                             "Publishes events over ZeroMQ (XPUB). Use as a context manager or "
                             "start()/stop(); or hand it to Worker.set_transport().")
      .def(py::init([](const py::object& endpoints, bool bind, std::string encoding, int sndhwm, double linger,
                       std::string publisher_id, std::size_t max_queue, std::string name,
                       std::string curve_secret_key, std::string curve_server_key, const py::object& curve_allow) {
             ZmqPublisherOptions o;
             o.curve = curve_from_args(bind, std::move(curve_secret_key), std::move(curve_server_key), curve_allow);
             o.endpoints = string_list(endpoints);
             o.bind = bind;
             o.encoding = parse_wire_encoding(encoding);
             o.sndhwm = sndhwm;
             o.linger = ms(linger);
             if (!publisher_id.empty()) o.publisher_id = std::move(publisher_id);
             o.max_queue = max_queue;
             o.name = std::move(name);
             return PyZmqPublisher{std::shared_ptr<ZmqPublisher>(new ZmqPublisher(std::move(o)),
                                                                  ReleaseGilDelete<ZmqPublisher>{})};
           }),
           py::arg("endpoints"), py::kw_only(), py::arg("bind") = true, py::arg("encoding") = "json",
           py::arg("sndhwm") = 10'000, py::arg("linger") = 1.0, py::arg("publisher_id") = "",
           py::arg("max_queue") = 100'000, py::arg("name") = "zeromq", py::arg("curve_secret_key") = "",
           py::arg("curve_server_key") = "", py::arg("curve_allow") = py::none())
      .def("start", [](PyZmqPublisher& self) { self.publisher->start(); }, py::call_guard<py::gil_scoped_release>())
      .def("stop", [](PyZmqPublisher& self) { self.publisher->stop(); }, py::call_guard<py::gil_scoped_release>())
      .def("send",
           [](PyZmqPublisher& self, const py::handle& e) {
             EventPtr event = event_of(e, "ZmqPublisher.send");
             py::gil_scoped_release nogil;
             self.publisher->send(event);
           })
      .def(
          "publish",
          [](PyZmqPublisher& self, std::string name, const py::object& payload) {
            EventPtr event = event_from_python(std::move(name), payload, py::none());
            {
              py::gil_scoped_release nogil;
              self.publisher->send(event);
            }
            return new_event_wrapper(std::move(event));
          },
          py::arg("event_name"), py::arg("payload") = py::none())
      .def(
          "wait_for_subscribers",
          [](PyZmqPublisher& self, std::size_t n, double timeout) {
            return self.publisher->wait_for_subscribers(n, ms(timeout));
          },
          py::arg("n"), py::arg("timeout") = 5.0, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("endpoints", [](PyZmqPublisher& self) { return self.publisher->endpoints(); })
      .def_property_readonly("publisher_id", [](PyZmqPublisher& self) { return self.publisher->publisher_id(); })
      .def("queue_depth", [](PyZmqPublisher& self) { return self.publisher->queue_depth(); })
      .def("stats",
           [](PyZmqPublisher& self) {
             nlohmann::json j;
             {
               py::gil_scoped_release nogil;
               j = self.publisher->stats();
             }
             return to_python(j);
           })
      .def("__enter__",
           [](py::object self) {
             auto& p = self.cast<PyZmqPublisher&>();
             {
               py::gil_scoped_release nogil;
               p.publisher->start();
             }
             return self;
           })
      .def("__exit__", [](PyZmqPublisher& self, py::args) {
        py::gil_scoped_release nogil;
        self.publisher->stop();
      });

  py::class_<PyZmqSubscriber>(m, "_ZmqSubscriber")
      .def(py::init([](const py::object& endpoints, const py::object& patterns, const py::object& bus, bool bind,
                       std::size_t dedup_capacity, int rcvhwm, std::string name, std::string curve_secret_key,
                       std::string curve_server_key, const py::object& curve_allow) {
             ZmqSubscriberOptions o;
             o.curve = curve_from_args(bind, std::move(curve_secret_key), std::move(curve_server_key), curve_allow);
             o.endpoints = string_list(endpoints);
             o.patterns = string_list(patterns);
             o.bind = bind;
             o.dedup_capacity = dedup_capacity;
             o.rcvhwm = rcvhwm;
             o.name = std::move(name);
             PyZmqSubscriber s;
             s.bus = native_bus(bus);
             s.subscriber.reset(new ZmqSubscriber(std::move(o), *s.bus));
             return s;
           }),
           py::arg("endpoints"), py::arg("patterns"), py::arg("bus"), py::arg("bind") = false,
           py::arg("dedup_capacity") = 10'000, py::arg("rcvhwm") = 10'000, py::arg("name") = "zmq-subscriber",
           py::arg("curve_secret_key") = "", py::arg("curve_server_key") = "", py::arg("curve_allow") = py::none())
      .def("start", [](PyZmqSubscriber& self) { self.subscriber->start(); }, py::call_guard<py::gil_scoped_release>())
      .def("stop", [](PyZmqSubscriber& self) { self.subscriber->stop(); }, py::call_guard<py::gil_scoped_release>())
      .def("stats",
           [](PyZmqSubscriber& self) {
             nlohmann::json j;
             {
               py::gil_scoped_release nogil;
               j = self.subscriber->stats();
             }
             return to_python(j);
           })
      .def_property_readonly("received", [](PyZmqSubscriber& self) { return self.subscriber->received(); })
      .def_property_readonly("delivered", [](PyZmqSubscriber& self) { return self.subscriber->delivered(); })
      .def_property_readonly("gaps", [](PyZmqSubscriber& self) { return self.subscriber->gaps(); })
      .def_property_readonly("endpoints", [](PyZmqSubscriber& self) { return self.subscriber->endpoints(); })
      .def_property_readonly("subscriber_id",
                             [](PyZmqSubscriber& self) { return self.subscriber->subscriber_id(); });
}

}  // namespace herald::py_bindings
