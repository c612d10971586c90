// Publishers written in Python and the PublisherRegistry.
//
// PyPublisher is a C++ Publisher that owns the user's Python publisher object (any object with
// the hooks as methods; herald.BasePublisher supplies defaults) and calls its methods by name.
// Hooks the object does not override run the C++ defaults without touching Python.
#include "common.hpp"

#include <herald/publishers/registry.hpp>

#include <set>

namespace herald::py_bindings {

StepCompletion completion_from_python(const py::handle& obj);

namespace {

py::object make_context(const StepEventContext& ctx) {
  return runtime().step_event_context(to_python(ctx.completion.to_json()),
                                      to_python(ctx.declaration.to_json()));
}

class PyPublisher final : public Publisher {
 public:
  // GIL held.
  PyPublisher(const py::object& obj, const py::object& runner, const std::set<std::string>& overrides)
      : obj_(hold(obj)), runner_(hold(runner)) {
    name_ = py::str(obj.attr("publisher_name")).cast<std::string>();
    if (py::hasattr(obj, "publishes_for")) {
      py::object steps = call_hook(runner, obj.attr("publishes_for"));
      if (!steps.is_none()) publishes_for_ = steps.cast<std::vector<std::string>>();
    }
    auto has = [&](const char* n) { return overrides.count(n) > 0; };
    should_publish_ = has("should_publish");
    transform_payload_ = has("transform_payload");
    additional_metadata_ = has("additional_metadata");
    before_publish_ = has("before_publish");
    after_publish_ = has("after_publish");
    on_publish_error_ = has("on_publish_error");
  }

  std::string name() const override { return name_; }
  std::vector<std::string> publishes_for() const override { return publishes_for_; }
  const py::object& object() const { return *obj_; }

  bool should_publish(const StepEventContext& ctx, const EventDeclaration& d) override {
    if (!should_publish_) return Publisher::should_publish(ctx, d);
    PyCall call;
    try {
      return py::bool_(hook("should_publish", make_context(ctx))).cast<bool>();
    } catch (py::error_already_set& e) {
      throw capture(e);
    }
  }

  nlohmann::json transform_payload(const StepEventContext& ctx, const EventDeclaration& d) override {
    if (!transform_payload_) return Publisher::transform_payload(ctx, d);
    PyCall call;
    try {
      py::object payload = hook("transform_payload", make_context(ctx));
      return payload.is_none() ? nlohmann::json::object() : to_json(payload, "payload");
    } catch (py::error_already_set& e) {
      throw capture(e);
    }
  }

  nlohmann::json additional_metadata(const StepEventContext& ctx, const EventDeclaration& d) override {
    if (!additional_metadata_) return Publisher::additional_metadata(ctx, d);
    PyCall call;
    try {
      py::object meta = hook("additional_metadata", make_context(ctx));
      return meta.is_none() ? nlohmann::json() : to_json(meta, "metadata");
    } catch (py::error_already_set& e) {
      throw capture(e);
    }
  }

  bool before_publish(const StepEventContext& ctx, const EventPtr& event) override {
    if (!before_publish_) return Publisher::before_publish(ctx, event);
    PyCall call;
    try {
      py::object c = make_context(ctx);
      c.attr("event") = wrap_event(event);
      py::object r = hook("before_publish", c);
      return r.is_none() || py::bool_(r).cast<bool>();  // None (no return) publishes
    } catch (py::error_already_set& e) {
      throw capture(e);
    }
  }

  void after_publish(const StepEventContext& ctx, const EventPtr& event) override {
    if (!after_publish_) return;
    PyCall call;
    try {
      py::object e = wrap_event(event);
      py::object c = make_context(ctx);
      c.attr("event") = e;
      hook("after_publish", c, e);
    } catch (py::error_already_set& e) {
      throw capture(e);
    }
  }

  void on_publish_error(const StepEventContext& ctx, const EventDeclaration& d,
                        const PublishFailure& failure) override {
    if (!python_alive()) return;
    PyCall call;
    py::object exc = python_exception(failure.exception);
    log_exception("publisher '" + name_ + "': " + std::string(to_string(failure.stage)) + " failed for event '" + d.name +
                      "' of step '" + ctx.step_name() + "'",
                  exc);
    if (!on_publish_error_) return;
    try {
      py::object c = make_context(ctx);
      c.attr("error_stage") = std::string(to_string(failure.stage));
      hook("on_publish_error", c, exc);
    } catch (py::error_already_set& e) {
      auto err = capture(e);
      log_exception("publisher '" + name_ + "': on_publish_error raised", *err.exception());
      throw err;
    }
  }

 private:
  template <typename... Args>
  py::object hook(const char* method, Args&&... args) {
    return call_hook(*runner_, obj_->attr(method), std::forward<Args>(args)...);
  }

  GilObject obj_;
  GilObject runner_;
  std::string name_;
  std::vector<std::string> publishes_for_;
  bool should_publish_ = false, transform_payload_ = false, additional_metadata_ = false,
       before_publish_ = false, after_publish_ = false, on_publish_error_ = false;
};

/// A publisher registered from C++ (or the generic one), seen from Python.
struct NativePublisher {
  std::shared_ptr<Publisher> publisher;
};

py::object to_python_publisher(const std::shared_ptr<Publisher>& p) {
  if (!p) return py::none();
  if (auto* py_pub = dynamic_cast<PyPublisher*>(p.get())) return py_pub->object();
  return py::cast(NativePublisher{p});
}

std::vector<EventDeclaration> declarations_from(const py::object& list) {
  std::vector<EventDeclaration> out;
  if (list.is_none()) return out;
  std::size_t i = 0;
  for (const py::handle d : list) {
    const std::string path = "declarations[" + std::to_string(i++) + "]";
    out.push_back(EventDeclaration::from_json(to_json(d, path), path));
  }
  return out;
}

/// Runs a registry lookup without the GIL (it takes the registry's lock), converts with it.
template <typename F>
py::object lookup(F&& f) {
  std::shared_ptr<Publisher> p;
  {
    py::gil_scoped_release nogil;
    p = f();
  }
  return to_python_publisher(p);
}

struct PyPublisherRegistry {
  std::shared_ptr<PublisherRegistry> registry;
};

}  // namespace

PublisherRegistry* native_publisher_registry(const py::handle& obj) {
  return obj.cast<PyPublisherRegistry&>().registry.get();
}

void bind_publishers(py::module_& m) {
  py::class_<NativePublisher>(m, "NativePublisher", "A publisher implemented in C++.")
      .def_property_readonly("publisher_name", [](const NativePublisher& p) { return p.publisher->name(); })
      .def("publishes_for", [](const NativePublisher& p) { return p.publisher->publishes_for(); })
      .def("__repr__", [](const NativePublisher& p) { return "NativePublisher('" + p.publisher->name() + "')"; });

  py::class_<PyPublisherRegistry>(m, "_PublisherRegistry")
      .def(py::init([] { return PyPublisherRegistry{std::make_shared<PublisherRegistry>()}; }))
      .def_static("instance",
                  [] {
                    // The process-wide registry; never deleted.
                    return PyPublisherRegistry{
                        std::shared_ptr<PublisherRegistry>(&PublisherRegistry::instance(), [](PublisherRegistry*) {})};
                  })
      .def(
          "register",
          [](PyPublisherRegistry& self, const py::object& obj, const py::object& runner,
             const std::set<std::string>& overrides) {
            auto adapter = std::make_shared<PyPublisher>(obj, runner, overrides);
            py::gil_scoped_release nogil;
            self.registry->register_publisher(std::move(adapter));
          },
          py::arg("publisher"), py::arg("runner"), py::arg("overrides"))
      .def("get", [](PyPublisherRegistry& self, std::string n) {
        return lookup([&] { return self.registry->get(n); });
      })
      .def("get_or_default", [](PyPublisherRegistry& self, std::string n) {
        return lookup([&] { return self.registry->get_or_default(n); });
      })
      .def("get_strict", [](PyPublisherRegistry& self, std::string n) {
        return lookup([&] { return self.registry->get_strict(n); });
      })
      .def(
          "get_for_step",
          [](PyPublisherRegistry& self, std::string step, const py::object& declarations) {
            auto decls = declarations_from(declarations);
            return lookup([&] { return self.registry->get_for_step(step, decls); });
          },
          py::arg("step_name"), py::arg("declarations") = py::none())
      .def("generic", [](PyPublisherRegistry& self) { return to_python_publisher(self.registry->generic()); })
      .def("names", [](PyPublisherRegistry& self) { return self.registry->names(); },
           py::call_guard<py::gil_scoped_release>())
      .def("size", [](PyPublisherRegistry& self) { return self.registry->size(); },
           py::call_guard<py::gil_scoped_release>())
      .def("contains", [](PyPublisherRegistry& self, std::string n) { return self.registry->contains(n); },
           py::call_guard<py::gil_scoped_release>())
      .def("freeze", [](PyPublisherRegistry& self) { self.registry->freeze(); })
      .def("unfreeze", [](PyPublisherRegistry& self) { self.registry->unfreeze(); })
      .def("frozen", [](PyPublisherRegistry& self) { return self.registry->frozen(); })
      .def("clear", [](PyPublisherRegistry& self) {
        std::shared_ptr<PublisherRegistry> r = self.registry;
        py::gil_scoped_release nogil;  // publishers' adapters are released here (GIL re-taken per object)
        r->clear();
      })
      .def("validate_required",
           [](PyPublisherRegistry& self, const std::vector<std::string>& names) {
             self.registry->validate_required(names);
           },
           py::call_guard<py::gil_scoped_release>());
}

}  // namespace herald::py_bindings
