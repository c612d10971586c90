// Subscribers written in Python and the SubscriberRegistry.
//
// PySubscriber is a C++ Subscriber that owns the user's Python subscriber object and calls its
// methods by name; hooks it does not override keep the C++ defaults and never take the GIL.
// The registry runs one subscriber's per-event hooks one at a time, so the adapter can hand the
// same Python event object (and handle()'s own result object) to before_handle, handle,
// after_handle and on_handle_error.
#include "common.hpp"

#include <herald/subscribers/registry.hpp>

#include <chrono>
#include <cmath>
#include <set>

namespace herald::py_bindings {

std::shared_ptr<EventBus> native_bus(const py::handle& obj);

namespace {

std::chrono::milliseconds ms(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000.0)));
}

class PySubscriber final : public Subscriber {
 public:
  // GIL held.
  PySubscriber(const py::object& obj, const py::object& runner, const std::set<std::string>& overrides,
               const py::dict& options)
      : obj_(hold(obj)), runner_(hold(runner)) {
    name_ = py::str(obj.attr("subscriber_name")).cast<std::string>();
    py::object patterns = call_hook(runner, obj.attr("subscribes_to"));
    if (py::isinstance<py::str>(patterns)) {
      patterns_ = {patterns.cast<std::string>()};
    } else {
      patterns_ = patterns.cast<std::vector<std::string>>();
    }
    auto has = [&](const char* n) { return overrides.count(n) > 0; };
    before_ = has("before_handle");
    after_ = has("after_handle");
    on_error_ = has("on_handle_error");
    on_start_ = has("on_start");
    on_stop_ = has("on_stop");
    health_ = has("health_check");
    // Bound once, like subscribes_to(): the per-event call skips the attribute lookup.
    handle_ = hold(obj.attr("handle"));
    options_ = hosted_subscribe_options(name_);
    if (options.contains("capacity")) options_.capacity = options["capacity"].cast<std::size_t>();
    if (options.contains("overflow")) {
      options_.overflow = parse_overflow_policy(options["overflow"].cast<std::string>());
    }
    if (options.contains("block_timeout")) options_.block_timeout = ms(options["block_timeout"].cast<double>());
    if (options.contains("slow_threshold")) options_.slow_threshold = ms(options["slow_threshold"].cast<double>());
    if (options.contains("failure_threshold")) {
      breaker_.failure_threshold = options["failure_threshold"].cast<std::uint32_t>();
    }
    if (options.contains("cooldown")) breaker_.cooldown = ms(options["cooldown"].cast<double>());
  }

  std::string name() const override { return name_; }
  std::vector<std::string> subscribes_to() const override { return patterns_; }
  SubscribeOptions subscribe_options() const override { return options_; }
  CircuitBreakerOptions circuit_breaker() const override { return breaker_; }
  const py::object& object() const { return *obj_; }

  bool before_handle(const EventPtr& event) override {
    if (!before_) return true;
    PyCall call;
    try {
      py::object r = hook("before_handle", py_event(event));
      return r.is_none() || py::bool_(r).cast<bool>();
    } catch (py::error_already_set& e) {
      throw capture(e);
    }
  }

  SubscriberResult handle(const EventPtr& event) override {
    if (!python_alive()) throw Error("the Python interpreter is shutting down");
    PyCall call;
    try {
      // Only handle() overridden (the common subscriber): a wrapper of its own, released at
      // once, no cached state (issue 16: a shared_ptr and a result object less per event).
      const bool shared_wrapper = before_ || after_ || on_error_;
      py::object r = shared_wrapper ? call_hook(*runner_, *handle_, py_event(event))
                                    : call_hook(*runner_, *handle_, wrap_event(event));
      SubscriberResult out;
      if (r.is_none()) {
        if (after_) r = runtime().subscriber_result(true);
      } else if (PyBool_Check(r.ptr())) {
        out.success = r.ptr() == Py_True;
        if (after_) r = runtime().subscriber_result(out.success);
      } else if (py::hasattr(r, "success")) {
        out.success = py::bool_(r.attr("success")).cast<bool>();
        py::object msg = py::getattr(r, "message", py::none());
        if (!msg.is_none()) out.message = py::str(msg).cast<std::string>();
      }
      if (after_) result_ = hold(r);
      return out;
    } catch (py::error_already_set& e) {
      throw capture(e);
    }
  }

  void after_handle(const EventPtr& event, const SubscriberResult& result) override {
    if (!after_) return;
    PyCall call;
    try {
      py::object r = result_ ? *result_ : runtime().subscriber_result(result.success, result.message);
      hook("after_handle", py_event(event), r);
    } catch (py::error_already_set& e) {
      throw capture(e);
    }
  }

  void on_handle_error(const EventPtr& event, const HandleError& error) override {
    if (!python_alive()) return;
    PyCall call;
    py::object exc = python_exception(error.exception);
    log_exception("subscriber '" + name_ + "': " + std::string(to_string(error.stage)) +
                      " failed on event_name=" + event->event_name() + " event_id=" + event->event_id(),
                  exc);
    if (!on_error_) return;
    try {
      hook("on_handle_error", py_event(event), exc);
    } catch (py::error_already_set& e) {
      auto err = capture(e);
      log_exception("subscriber '" + name_ + "': on_handle_error raised", *err.exception());
      throw err;
    }
  }

  void on_start() override {
    if (!on_start_) return;
    PyCall call;
    try {
      hook("on_start");
    } catch (py::error_already_set& e) {
      auto err = capture(e);
      log_exception("subscriber '" + name_ + "': on_start raised", *err.exception());
      throw err;
    }
  }

  void on_stop() override {
    if (!python_alive()) return;
    PyCall call;
    current_.reset();
    py_current_.reset();
    result_.reset();
    if (!on_stop_) return;
    try {
      hook("on_stop");
    } catch (py::error_already_set& e) {
      auto err = capture(e);
      log_exception("subscriber '" + name_ + "': on_stop raised", *err.exception());
      throw err;
    }
  }

  bool health_check() override {
    if (!health_) return true;
    if (!python_alive()) return false;
    PyCall call;
    try {
      return py::bool_(hook("health_check")).cast<bool>();
    } catch (py::error_already_set& e) {
      throw capture(e);
    }
  }

 private:
  template <typename... Args>
  py::object hook(const char* method, Args&&... args) {
    return call_hook(*runner_, obj_->attr(method), std::forward<Args>(args)...);
  }

  // The Python wrapper of the event being handled (GIL held). Keeping the EventPtr pins the
  // address, so a new event can never be mistaken for the cached one.
  py::object py_event(const EventPtr& event) {
    if (current_ != event || !py_current_) {
      result_.reset();
      current_ = event;
      py_current_ = hold(wrap_event(event));
    }
    return *py_current_;
  }

  GilObject obj_;
  GilObject runner_;
  GilObject handle_;  // obj_.handle, bound
  std::string name_;
  std::vector<std::string> patterns_;
  SubscribeOptions options_;
  CircuitBreakerOptions breaker_;
  bool before_ = false, after_ = false, on_error_ = false, on_start_ = false, on_stop_ = false,
       health_ = false;
  EventPtr current_;
  GilObject py_current_;
  GilObject result_;
};

/// The registry seen from Python: attached to one bus, which it keeps alive.
struct PySubscriberRegistry {
  std::shared_ptr<EventBus> bus;
  std::unique_ptr<SubscriberRegistry, ReleaseGilDelete<SubscriberRegistry>> registry;
};

}  // namespace

std::shared_ptr<Subscriber> native_subscriber(const py::handle& obj) {
  return obj.cast<std::shared_ptr<PySubscriber>>();
}

void bind_subscribers(py::module_& m) {
  py::class_<PySubscriber, std::shared_ptr<PySubscriber>>(m, "_SubscriberAdapter")
      .def(py::init<const py::object&, const py::object&, const std::set<std::string>&, const py::dict&>(),
           py::arg("subscriber"), py::arg("runner"), py::arg("overrides"), py::arg("options"))
      .def_property_readonly("name", &PySubscriber::name)
      .def_property_readonly("patterns", &PySubscriber::subscribes_to)
      .def_property_readonly("subscriber", &PySubscriber::object);

  py::class_<PySubscriberRegistry>(m, "_SubscriberRegistry")
      .def(py::init([](const py::object& bus) {
             PySubscriberRegistry r;
             r.bus = native_bus(bus);
             r.registry.reset(new SubscriberRegistry(*r.bus));
             return r;
           }),
           py::arg("bus"))
      .def(
          "register",
          [](PySubscriberRegistry& self, std::shared_ptr<PySubscriber> s) {
            py::gil_scoped_release nogil;
            self.registry->register_subscriber(std::move(s));
          },
          py::arg("adapter"))
      .def("remove", [](PySubscriberRegistry& self, std::string n) { return self.registry->remove(n); },
           py::call_guard<py::gil_scoped_release>())
      .def("start_all", [](PySubscriberRegistry& self) { return self.registry->start_all(); },
           py::call_guard<py::gil_scoped_release>())
      .def(
          "stop_all",
          [](PySubscriberRegistry& self, double timeout) {
            const nlohmann::json j = blocking_call("SubscriberRegistry.stop_all()", [&] {
              return self.registry->stop_all(ms(timeout)).to_json();
            });
            return to_python(j);
          },
          py::arg("timeout") = 5.0)
      .def("stats",
           [](PySubscriberRegistry& self) {
             nlohmann::json j;
             {
               py::gil_scoped_release nogil;
               j = self.registry->stats();
             }
             return to_python(j);
           })
      .def("health",
           [](PySubscriberRegistry& self) {
             nlohmann::json j;
             {
               py::gil_scoped_release nogil;
               j = self.registry->health();
             }
             return to_python(j);
           })
      .def("names", [](PySubscriberRegistry& self) { return self.registry->names(); },
           py::call_guard<py::gil_scoped_release>())
      .def("started", [](PySubscriberRegistry& self) { return self.registry->started(); },
           py::call_guard<py::gil_scoped_release>())
      .def("stopped", [](PySubscriberRegistry& self) { return self.registry->stopped(); },
           py::call_guard<py::gil_scoped_release>());
}

}  // namespace herald::py_bindings
