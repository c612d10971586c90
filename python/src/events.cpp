// herald.DomainEvent, herald.StepCompletion, patterns and the in-process EventBus.
#include "common.hpp"

#include <herald/events/detail/metadata_fields.hpp>
#include <herald/events/event_bus.hpp>
#include <herald/events/ids.hpp>
#include <herald/events/pattern.hpp>
#include <herald/events/step_completion.hpp>

#include <chrono>
#include <climits>
#include <cmath>
#include <optional>

namespace herald::py_bindings {

namespace {

std::chrono::milliseconds seconds_to_ms(double seconds) {
  if (!(seconds >= 0) || std::isinf(seconds)) seconds = 365.0 * 24 * 3600;  // "forever"
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000.0)));
}

std::vector<std::string> pattern_list(const py::handle& patterns) {
  if (py::isinstance<py::str>(patterns)) return {patterns.cast<std::string>()};
  return patterns.cast<std::vector<std::string>>();
}

/// The Python EventBus: owns its bus, or shares one owned by something else (a worker).
struct PyBus {
  std::shared_ptr<EventBus> bus;
};

/// A subscription handle. Dropping it leaves the subscription in place (the Python idiom:
/// `bus.subscribe(...)` without keeping the result); unsubscribe() ends it.
struct PySubscription {
  std::shared_ptr<EventBus> bus;  // keeps the bus alive while the handle exists
  Subscription subscription;
  PySubscription(std::shared_ptr<EventBus> b, Subscription s)
      : bus(std::move(b)), subscription(std::move(s)) {}
  PySubscription(PySubscription&&) = default;
  ~PySubscription() { subscription.release(); }
};

py::dict stats_dict(const SubscriptionStats& s) { return to_python(s.to_json()); }

// The fast path of a completion dict (issue 16: complete_steps converts each item with the GIL
// held, so this time is serial with the Python handlers'): reads the known keys straight into
// the completion's fields, building JSON only for result and metadata, instead of converting
// the whole dict to a JSON tree (a node and a key string per field) and reading that.
// Anything it does not take as it is (a missing or mistyped field, a key that is not a str, an
// error object, a value to_json refuses) returns nullopt, and the general path raises the
// error exactly as before (a value's conversion runs again there: the Python error it raised
// here is dropped). Unknown keys are converted and discarded, as the general path's walk would
// (a value it cannot convert is an error there too).
std::optional<StepCompletion> completion_from_dict_fast(PyObject* dict) {
  constexpr std::size_t kNested = kMaxConvertedDepth - 1;  // one level is the completion dict
  StepCompletion c;
  bool has_name = false, has_success = false;
  const auto text = [](PyObject* v, std::string& out) { return PyUnicode_Check(v) && utf8_of(v, out); };
  const auto count = [](PyObject* v, int& out) {
    if (!PyLong_Check(v) || PyBool_Check(v)) return false;
    int overflow = 0;
    const long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow != 0 || n < 0 || n > INT_MAX) return false;
    out = static_cast<int>(n);
    return true;
  };
  Py_ssize_t pos = 0;
  PyObject *key = nullptr, *value = nullptr;
  while (PyDict_Next(dict, &pos, &key, &value)) {
    if (!PyUnicode_Check(key)) return std::nullopt;
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(key, &size);
    if (data == nullptr) {
      PyErr_Clear();
      return std::nullopt;
    }
    const std::string_view k(data, static_cast<std::size_t>(size));
    bool ok = true;
    if (k == "step_name") {
      ok = text(value, c.step_name) && !c.step_name.empty();
      has_name = true;
    } else if (k == "success") {
      ok = PyBool_Check(value);
      c.success = value == Py_True;
      has_success = true;
    } else if (k == "task_uuid") {
      ok = text(value, c.task_uuid);
    } else if (k == "step_uuid") {
      ok = text(value, c.step_uuid);
    } else if (k == "namespace") {
      ok = text(value, c.namespace_name);
    } else if (k == "correlation_id") {
      ok = text(value, c.correlation_id);
    } else if (k == "retryable") {
      ok = PyBool_Check(value);
      c.retryable = value == Py_True;
    } else if (k == "retry_count") {
      ok = count(value, c.retry_count);
    } else if (k == "max_retries") {
      ok = count(value, c.max_retries);
    } else if (k == "error") {
      std::string message;
      ok = text(value, message);
      if (ok) c.error = StepError{std::move(message), ""};
    } else {
      // result (None leaves it {}), metadata (an object; None leaves it {}), unknown keys.
      const bool result = k == "result", metadata = k == "metadata";
      if ((result || metadata) && value == Py_None) continue;
      if (metadata && !PyDict_Check(value)) return std::nullopt;
      try {
        nlohmann::json j = to_json(value, "completion", kNested);
        if (result) c.result = std::move(j);
        if (metadata) c.metadata = std::move(j);
      } catch (const std::exception&) {
        return std::nullopt;  // the general path raises it, with its key path
      }
    }
    if (!ok) return std::nullopt;
  }
  if (!has_name || !has_success) return std::nullopt;
  return c;
}

StepCompletion completion_from(const py::handle& obj) {
  if (PyDict_Check(obj.ptr())) {
    if (auto fast = completion_from_dict_fast(obj.ptr())) return std::move(*fast);
    return StepCompletion::from_json(to_json(obj, "completion"));
  }
  if (py::isinstance<StepCompletion>(obj)) return obj.cast<StepCompletion>();
  throw py::type_error("expected a dict or herald.StepCompletion, got " +
                       py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>());
}

}  // namespace

StepCompletion completion_from_python(const py::handle& obj) { return completion_from(obj); }

std::shared_ptr<EventBus> native_bus(const py::handle& obj) {
  return obj.cast<PyBus&>().bus;
}

py::object wrap_bus(std::shared_ptr<EventBus> bus) { return py::cast(PyBus{std::move(bus)}); }

void bind_events(py::module_& m) {
  m.def(
      "_install_runtime",
      [](py::object step_event_context, py::object subscriber_result, py::object log) {
        auto& r = runtime();
        r.step_event_context = std::move(step_event_context);
        r.subscriber_result = std::move(subscriber_result);
        r.log_exception = std::move(log);
      },
      py::arg("step_event_context"), py::arg("subscriber_result"), py::arg("log_exception"));

  m.def("new_uuid_v7", [] { return new_uuid_v7(); }, "A new UUID v7 as text (time ordered).");
  m.def("validate_event_name", [](std::string_view n) { validate_event_name(n); },
        "Raises EventNameError naming the offending character or token.");
  m.def("is_valid_event_name", [](std::string_view n) { return is_valid_event_name(n); });

  py::class_<Pattern>(m, "Pattern", "A compiled glob pattern (AMQP topic semantics).")
      .def(py::init([](std::string_view text) { return Pattern::compile(text); }), py::arg("text"))
      .def_property_readonly("text", &Pattern::text)
      .def("matches", &Pattern::matches, py::arg("name"))
      .def_property_readonly("is_literal", &Pattern::is_literal)
      .def_property_readonly("matches_everything", &Pattern::matches_everything)
      .def_property_readonly("literal_prefix", &Pattern::literal_prefix)
      .def("__repr__", [](const Pattern& p) { return "Pattern(" + py::repr(py::str(p.text())).cast<std::string>() + ")"; });

  // herald.DomainEvent itself is event_type.cpp's; its constructors are ordinary functions.
  py::object event_type = m.attr("DomainEvent");
  event_type.attr("create") = py::staticmethod(py::cpp_function(
      [](std::string name, const py::object& payload, const py::object& metadata) {
        return new_event_wrapper(event_from_python(std::move(name), payload, metadata));
      },
      py::name("create"), py::arg("event_name"), py::arg("payload") = py::none(),
      py::arg("metadata") = py::none(),
      "A new event: validates the name, assigns event_id (UUID v7) and fired_at."));
  event_type.attr("from_dict") = py::staticmethod(py::cpp_function(
      [](const py::dict& d) {
        return new_event_wrapper(DomainEvent::from_json(to_json(d, "event", json_fields::kMaxDepth)));
      },
      py::name("from_dict"), py::arg("data"), "The event a to_dict() produced (ValidationError otherwise)."));

  py::class_<StepCompletion> completion(m, "StepCompletion", "A step's completion: the input of publishing.");
  completion
      .def(py::init([](std::string step_name, bool success, std::string task_uuid, std::string step_uuid,
                       std::string namespace_name, std::string correlation_id, bool retryable,
                       int retry_count, int max_retries, py::object result, py::object metadata,
                       py::object error) {
             py::dict d;
             d["step_name"] = step_name;
             d["success"] = success;
             d["task_uuid"] = task_uuid;
             d["step_uuid"] = step_uuid;
             d["namespace"] = namespace_name;
             d["correlation_id"] = correlation_id;
             d["retryable"] = retryable;
             d["retry_count"] = retry_count;
             d["max_retries"] = max_retries;
             if (!result.is_none()) d["result"] = result;
             if (!metadata.is_none()) d["metadata"] = metadata;
             if (!error.is_none()) d["error"] = error;
             return StepCompletion::from_json(to_json(d, "completion"));
           }),
           py::arg("step_name"), py::arg("success"), py::kw_only(), py::arg("task_uuid") = "",
           py::arg("step_uuid") = "", py::arg("namespace") = "", py::arg("correlation_id") = "",
           py::arg("retryable") = false, py::arg("retry_count") = 0, py::arg("max_retries") = 0,
           py::arg("result") = py::none(), py::arg("metadata") = py::none(), py::arg("error") = py::none())
      .def_static("from_dict", [](const py::handle& d) { return completion_from(d); }, py::arg("data"))
      .def("to_dict", [](const StepCompletion& c) { return to_python(c.to_json()); })
      .def_readwrite("success", &StepCompletion::success)
      .def_readwrite("retryable", &StepCompletion::retryable)
      .def_readwrite("retry_count", &StepCompletion::retry_count)
      .def_readwrite("max_retries", &StepCompletion::max_retries)
      .def_property(
          "result", [](const StepCompletion& c) { return to_python(c.result); },
          [](StepCompletion& c, const py::object& v) { c.result = to_json(v, "result"); })
      .def_property(
          "metadata", [](const StepCompletion& c) { return to_python(c.metadata); },
          [](StepCompletion& c, const py::object& v) { c.metadata = to_json(v, "metadata"); })
      .def_property_readonly("error",
                             [](const StepCompletion& c) -> py::object {
                               if (!c.error) return py::none();
                               py::dict d;
                               d["message"] = c.error->message;
                               d["error_type"] = c.error->error_type;
                               return d;
                             })
      .def_property_readonly("will_retry", &StepCompletion::will_retry)
      .def("__eq__", [](const StepCompletion& a, const StepCompletion& b) { return a == b; })
      .def("__repr__", [](const StepCompletion& c) {
        return "StepCompletion(step_name='" + c.step_name + "', success=" + (c.success ? "True" : "False") + ")";
      });
  // The string fields that become event metadata (step_name, task_uuid, ...), under their
  // metadata keys, from the one field table.
  for (const auto& f : detail::kMetadataFields) {
    if (f.from_completion != nullptr) completion.def_readwrite(f.name.data(), f.from_completion);
  }

  py::class_<PySubscription>(m, "Subscription",
                             "A subscription; unsubscribe() ends it (dropping the handle does not).")
      .def("unsubscribe",
           [](PySubscription& s) {
             blocking_call("Subscription.unsubscribe()", [&] { s.subscription.unsubscribe(); });
           },
           "Stops deliveries; when it returns the handler is not running (unless called from "
           "inside it). Idempotent.")
      .def_property_readonly("active", [](const PySubscription& s) { return s.subscription.active(); })
      .def_property_readonly("name", [](const PySubscription& s) { return s.subscription.name(); })
      .def("stats", [](const PySubscription& s) {
        SubscriptionStats st;
        {
          py::gil_scoped_release nogil;
          st = s.subscription.stats();
        }
        return stats_dict(st);
      })
      .def("pause", [](PySubscription& s) { s.subscription.pause(); }, py::call_guard<py::gil_scoped_release>())
      .def("resume", [](PySubscription& s) { s.subscription.resume(); }, py::call_guard<py::gil_scoped_release>())
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PySubscription& s, py::args) {
        blocking_call("Subscription.__exit__()", [&] { s.subscription.unsubscribe(); });
      });

  py::class_<PyBus>(m, "_EventBus")
      .def(py::init([](std::size_t threads, bool inline_dispatch, std::size_t batch_size, std::string name,
                       double idle_spin) {
             if (!(idle_spin >= 0) || idle_spin > 1.0) {
               throw py::value_error("idle_spin: expected seconds in [0, 1], got " + std::to_string(idle_spin));
             }
             BusOptions options;
             options.dispatcher_threads = threads;
             options.inline_dispatch = inline_dispatch;
             options.batch_size = batch_size == 0 ? 1 : batch_size;
             options.idle_spin = std::chrono::microseconds(static_cast<std::int64_t>(idle_spin * 1e6));
             options.name = std::move(name);
             options.on_dispatcher_start = [] { attach_thread_state(); };
             options.on_dispatcher_stop = [] { detach_thread_state(); };
             py::gil_scoped_release nogil;
             return PyBus{std::shared_ptr<EventBus>(new EventBus(std::move(options)), ReleaseGilDelete<EventBus>{})};
           }),
           py::arg("dispatcher_threads") = 0, py::arg("inline") = false, py::arg("batch_size") = 64,
           py::arg("name") = "bus", py::arg("idle_spin") = 0.0)
      .def(
          "subscribe",
          [](PyBus& self, const py::object& patterns, const py::object& fn, const py::object& runner,
             std::string name, std::size_t capacity, std::string overflow, double block_timeout,
             double slow_threshold) {
            SubscribeOptions options;
            options.name = std::move(name);
            options.capacity = capacity == 0 ? 1 : capacity;
            options.overflow = parse_overflow_policy(overflow);
            options.block_timeout = seconds_to_ms(block_timeout);
            options.slow_threshold = seconds_to_ms(slow_threshold);
            auto list = pattern_list(patterns);
            if (!PyCallable_Check(fn.ptr())) throw py::type_error("subscribe: the handler is not callable");
            // Label for logs: the subscription name, else the handler's qualified name.
            std::string label = options.name;
            if (label.empty()) {
              label = py::str(py::getattr(fn, "__qualname__", py::repr(fn))).cast<std::string>();
            }
            BatchHandler handler = [f = hold(fn), r = hold(runner), label](
                                       std::span<const EventPtr> events, std::span<HandleOutcome> outcomes) {
              if (!python_alive()) {
                for (auto& o : outcomes) o = HandleOutcome::failed;
                return;
              }
              PyCall call;  // one GIL acquisition per batch
              for (std::size_t i = 0; i < events.size(); ++i) {
                try {
                  call_hook(*r, *f, wrap_event(events[i]));
                } catch (py::error_already_set& e) {
                  outcomes[i] = HandleOutcome::failed;
                  const auto err = capture(e);
                  log_exception("handler '" + label + "' failed on event_name=" + events[i]->event_name() +
                                    " event_id=" + events[i]->event_id(),
                                *err.exception());
                } catch (const std::exception& e) {
                  outcomes[i] = HandleOutcome::failed;
                  log_exception("handler '" + label + "' failed on event_name=" + events[i]->event_name(),
                                py::reinterpret_borrow<py::object>(PyExc_RuntimeError)(e.what()));
                }
              }
            };
            std::shared_ptr<EventBus> bus = self.bus;
            Subscription s;
            {
              py::gil_scoped_release nogil;
              s = bus->subscribe_batch(list, std::move(handler), std::move(options));
            }
            return PySubscription(std::move(bus), std::move(s));
          },
          py::arg("patterns"), py::arg("handler"), py::arg("runner"), py::arg("name") = "",
          py::arg("capacity") = 10'000, py::arg("overflow") = "block", py::arg("block_timeout") = 5.0,
          py::arg("slow_threshold") = 0.0)
      .def("publish_function", [](PyBus& self) { return bus_publish_function(self.bus); },
           "The bus's publish(event_name, payload=None, *, metadata=None) as a native function.")
      .def(
          "publish_event",
          [](PyBus& self, const py::handle& e) {
            const PublishReport r = publish_from_python(*self.bus, event_of(e, "publish_event"), e, loop_aware_wait());
            py::dict d;
            d["matched"] = r.matched;
            d["delivered"] = r.delivered;
            d["dropped"] = r.dropped;
            d["displaced"] = r.displaced;
            d["failed"] = r.failed;
            d["rejected"] = r.rejected;
            return d;
          },
          py::arg("event"))
      .def("has_room", [](PyBus& self, std::string_view name) { return self.bus->has_room(name); },
           py::arg("event_name"), py::call_guard<py::gil_scoped_release>(),
           "True when no `block` subscription matching the name has a full mailbox.")
      .def(
          "publish_dropping",
          [](PyBus& self, std::string name, const py::handle& payload, const py::handle& metadata) {
            EventPtr event = event_from_python(std::move(name), payload, metadata);
            auto wrapper = new_event_wrapper(event);
            if (publish_from_python(*self.bus, event, wrapper, PublishWait::drop).rejected) {
              throw StateError("publish: the bus is closed (event '" + event->event_name() + "')");
            }
            return wrapper;
          },
          py::arg("event_name"), py::arg("payload"), py::arg("metadata"),
          "publish() that never waits: a full `block` mailbox drops the event (counted).")
      .def("drain", [](PyBus& self, double timeout) { return self.bus->drain(seconds_to_ms(timeout)); },
           py::arg("timeout") = 5.0, py::call_guard<py::gil_scoped_release>())
      .def(
          "close",
          [](PyBus& self, double timeout) {
            const StopReport r =
                blocking_call("EventBus.close()", [&] { return self.bus->stop(seconds_to_ms(timeout)); });
            py::dict d;
            d["drained"] = r.drained;
            d["undelivered"] = r.undelivered;
            d["duration_ms"] = r.duration.count();
            return d;
          },
          py::arg("timeout") = 5.0)
      .def_property_readonly("closed", [](const PyBus& self) { return self.bus->stopped(); })
      .def_property_readonly("dispatcher_threads", [](const PyBus& self) { return self.bus->dispatcher_threads(); })
      .def_property_readonly("pending", [](const PyBus& self) { return self.bus->pending(); })
      .def("stats", [](const PyBus& self) {
        nlohmann::json j;
        {
          py::gil_scoped_release nogil;
          j = self.bus->stats().to_json();
        }
        return to_python(j);
      });
}

}  // namespace herald::py_bindings
