// herald.Worker's native part: configuration, hooks, lifecycle, intake and status.
//
// Hooks are Python callables wrapped by the pure-Python layer (which resolves coroutines on the
// worker's event loop and logs tracebacks); here they are called with the GIL taken for the call
// only. start(), stop(), drain(), complete_step() and add_subscriber() release the GIL: they
// wait for threads that call Python.
#include "common.hpp"

#include <herald/events/log.hpp>
#include <herald/zeromq/transport.hpp>
#include <herald/worker/worker.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <span>

namespace herald::py_bindings {

StepCompletion completion_from_python(const py::handle& obj);
PublisherRegistry* native_publisher_registry(const py::handle& obj);
std::shared_ptr<Subscriber> native_subscriber(const py::handle& obj);
py::object wrap_bus(std::shared_ptr<EventBus> bus);
std::shared_ptr<Transport> native_transport(const py::handle& obj);

namespace {

struct PyWorker {
  std::shared_ptr<Worker> worker;
};

WorkerConfig make_config(const py::object& config, const py::object& name, const py::object& steps,
                         const py::object& dispatcher_threads) {
  WorkerConfig c;
  if (config.is_none()) {
    c = WorkerConfig::from_json(nlohmann::json::object());
  } else if (py::isinstance<py::dict>(config)) {
    c = WorkerConfig::from_json(to_json(config, "config"), std::filesystem::current_path());
  } else {
    const auto path = py::str(py::module_::import("os").attr("fspath")(config)).cast<std::string>();
    py::gil_scoped_release nogil;
    c = WorkerConfig::load(path);
  }
  if (!name.is_none()) c.name = name.cast<std::string>();
  if (!dispatcher_threads.is_none()) c.dispatcher_threads = dispatcher_threads.cast<std::size_t>();
  if (!steps.is_none()) {
    nlohmann::json j = {{"steps", to_json(steps, "steps")}};
    for (auto& [step, declarations] : WorkerConfig::from_json(j).steps) c.steps[step] = std::move(declarations);
  }
  return c;
}

// A hook calling a Python callable with the GIL; a Python exception becomes a PythonError
// (which the worker reports, naming the hook, or logs).
Worker::Hook plain_hook(const py::object& fn) {
  return [f = hold(fn)] {
    if (!python_alive()) return;
    PyCall call;
    try {
      (*f)();
    } catch (py::error_already_set& e) {
      throw capture(e);
    }
  };
}

std::optional<std::chrono::milliseconds> optional_ms(const py::object& seconds) {
  if (seconds.is_none()) return std::nullopt;
  const double s = seconds.cast<double>();
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(std::max(0.0, s) * 1000.0)));
}

}  // namespace

void bind_worker(py::module_& m) {
  m.def(
      "set_native_log_level",
      [](const std::string& level) {
        const auto l = spdlog::level::from_str(level);
        if (l == spdlog::level::off && level != "off") {
          throw UnknownValueError("log level", level, "trace, debug, info, warning, error, critical, off");
        }
        logger()->set_level(l);
      },
      py::arg("level"), "Level of the C++ engine's own log (spdlog, on stderr).");

  py::class_<PyWorker>(m, "_Worker")
      .def(py::init([](const py::object& config, const py::object& name, const py::object& steps,
                       const py::object& publishers, const py::object& dispatcher_threads) {
             WorkerConfig c = make_config(config, name, steps, dispatcher_threads);
             PublisherRegistry* registry = native_publisher_registry(publishers);
             auto* w = new Worker(std::move(c), registry);
             PyWorker pw{std::shared_ptr<Worker>(w, ReleaseGilDelete<Worker>{})};
             // First dispatcher-thread hook: a persistent Python thread state for the thread.
             w->on_worker_startup([] { attach_thread_state(); });
             return pw;
           }),
           py::arg("config"), py::arg("name"), py::arg("steps"), py::arg("publishers"),
           py::arg("dispatcher_threads"))
      .def("on_startup", [](PyWorker& self, const py::object& fn, std::string name) {
        self.worker->on_startup(plain_hook(fn), std::move(name));
      })
      .def("on_shutdown", [](PyWorker& self, const py::object& fn, std::string name) {
        self.worker->on_shutdown(plain_hook(fn), std::move(name));
      })
      .def("on_worker_startup",
           [](PyWorker& self, const py::object& fn) { self.worker->on_worker_startup(plain_hook(fn)); })
      .def("on_worker_shutdown",
           [](PyWorker& self, const py::object& fn) { self.worker->on_worker_shutdown(plain_hook(fn)); })
      .def("on_success",
           [](PyWorker& self, const py::object& fn) {
             self.worker->on_success([f = hold(fn)](const StepCompletion& c) {
               if (!python_alive()) return;
               PyCall call;
               try {
                 (*f)(c);
               } catch (py::error_already_set& e) {
                 throw capture(e);
               }
             });
           })
      .def("on_error",
           [](PyWorker& self, const py::object& fn) {
             self.worker->on_error([f = hold(fn)](const StepCompletion& c, const PublishFailure& failure) {
               if (!python_alive()) return;
               PyCall call;
               try {
                 py::object exc = python_exception(failure.exception);
                 if (!py::hasattr(exc, "stage")) {
                   try {
                     exc.attr("stage") = std::string(to_string(failure.stage));
                     exc.attr("event_name") = failure.event_name;
                     exc.attr("publisher") = failure.publisher;
                   } catch (py::error_already_set&) {  // e.g. __slots__: not worth failing for
                   }
                 }
                 (*f)(c, exc);
               } catch (py::error_already_set& e) {
                 throw capture(e);
               }
             });
           })
      .def("on_state_change",
           [](PyWorker& self, const py::object& fn) {
             self.worker->on_state_change([f = hold(fn)](WorkerState from, WorkerState to) {
               if (!python_alive()) return;
               PyCall call;
               try {
                 (*f)(std::string(to_string(from)), std::string(to_string(to)));
               } catch (py::error_already_set& e) {
                 throw capture(e);
               }
             });
           })
      .def("finish_hooks",
           [](PyWorker& self) {
             // Last dispatcher-thread hook: drop the thread's Python state.
             self.worker->on_worker_shutdown([] { detach_thread_state(); });
           })
      .def("add_subscriber",
           [](PyWorker& self, const py::object& adapter) {
             auto s = native_subscriber(adapter);
             py::gil_scoped_release nogil;
             self.worker->add_subscriber(std::move(s));
           })
      .def("set_transport",
           [](PyWorker& self, const py::object& transport) {
             auto t = native_transport(transport);
             py::gil_scoped_release nogil;
             self.worker->set_transport(std::move(t));
           })
      .def("start", [](PyWorker& self) { self.worker->start(); }, py::call_guard<py::gil_scoped_release>())
      .def(
          "stop",
          [](PyWorker& self, const py::object& timeout) {
            auto deadline = optional_ms(timeout);
            nlohmann::json j;
            {
              py::gil_scoped_release nogil;
              j = self.worker->stop(deadline).to_json();
            }
            return to_python(j);
          },
          py::arg("timeout") = py::none())
      .def("complete_step",
           [](PyWorker& self, const py::object& completion, bool may_wait) {
             StepCompletion c = completion_from_python(completion);
             const PublishWait wait = may_wait ? loop_aware_wait() : PublishWait::drop;
             py::gil_scoped_release nogil;
             return self.worker->complete_step(std::move(c), wait);
           },
           py::arg("completion"), py::arg("may_wait") = true)
      .def(
          "complete_steps",
          [](PyWorker& self, const py::iterable& completions, bool may_wait) {
            // Converted in chunks, so a generator of any length streams through bounded memory;
            // each chunk is published with the GIL released. A caller that may wait (not an
            // event loop's thread) with a `block` intake runs the pipeline itself
            // (Worker::process_steps: no hand-over to the intake thread, whose wake-ups and
            // copies cost 17% of the CPU per completion, issue 16); otherwise the chunk is
            // queued (one hand-over per chunk). A bad item raises after the ones before it
            // were submitted.
            constexpr std::size_t kChunk = 256;
            const PublishWait wait = may_wait ? loop_aware_wait() : PublishWait::drop;
            const bool caller_runs =
                wait == PublishWait::allowed && self.worker->config().intake_overflow == OverflowPolicy::block;
            std::vector<StepCompletion> chunk;
            chunk.reserve(kChunk);
            std::size_t accepted = 0;
            const auto submit = [&] {
              py::gil_scoped_release nogil;
              const std::span<StepCompletion> items(chunk);
              accepted += caller_runs ? self.worker->process_steps(items) : self.worker->complete_steps(items, wait);
              chunk.clear();
            };
            for (const py::handle item : completions) {
              try {
                chunk.push_back(completion_from_python(item));
              } catch (...) {
                submit();  // the ones before the bad item go; its error (as complete_step's) is raised
                throw;
              }
              if (chunk.size() == kChunk) submit();
            }
            submit();
            return accepted;
          },
          py::arg("completions"), py::arg("may_wait") = true)
      .def("intake_has_room", [](PyWorker& self) { return self.worker->intake_has_room(); },
           py::call_guard<py::gil_scoped_release>())
      .def(
          "drain",
          [](PyWorker& self, double timeout) {
            return self.worker->drain(std::chrono::milliseconds(static_cast<std::int64_t>(timeout * 1000.0)));
          },
          py::arg("timeout") = 5.0, py::call_guard<py::gil_scoped_release>())
      .def("request_stop", [](PyWorker& self) { self.worker->request_stop(); })
      .def("set_health_check",
           [](PyWorker& self, const py::object& fn) {
             // Called by Worker::health() on whichever thread asks (an HTTP thread for /health).
             self.worker->set_health_check([f = hold(fn)] {
               if (!python_alive()) return false;
               PyCall call;
               try {
                 return static_cast<bool>(py::bool_((*f)()));
               } catch (py::error_already_set& e) {
                 throw capture(e);
               }
             });
           })
      .def_property_readonly("http_address",
                             [](const PyWorker& self) -> py::object {
                               const auto address = self.worker->http_address();
                               return address ? py::object(py::str(*address)) : py::object(py::none());
                             })
      .def_property_readonly("state", [](const PyWorker& self) { return std::string(to_string(self.worker->state())); })
      .def_property_readonly("name", [](const PyWorker& self) { return self.worker->name(); })
      .def("status",
           [](PyWorker& self) {
             nlohmann::json j;
             {
               py::gil_scoped_release nogil;
               j = self.worker->status();
             }
             return to_python(j);
           })
      .def("health",
           [](PyWorker& self) {
             nlohmann::json j;
             {
               py::gil_scoped_release nogil;
               j = self.worker->health();
             }
             return to_python(j);
           })
      .def("subscriber_stats",
           [](PyWorker& self) {
             nlohmann::json j;
             {
               py::gil_scoped_release nogil;
               j = self.worker->subscribers().stats();
             }
             return to_python(j);
           })
      .def("bus",
           [](PyWorker& self) {
             // Shares ownership with the worker: the bus lives while either is referenced.
             EventBus& bus = self.worker->bus();
             return wrap_bus(std::shared_ptr<EventBus>(self.worker, &bus));
           })
      .def("config", [](PyWorker& self) {
        const auto& c = self.worker->config();
        py::dict d;
        d["name"] = c.name;
        d["dispatcher_threads"] = c.dispatcher_threads;
        d["shutdown_drain_timeout"] = static_cast<double>(c.shutdown_drain_timeout.count()) / 1000.0;
        d["intake_capacity"] = c.intake_capacity;
        d["intake_block_timeout"] = static_cast<double>(c.intake_block_timeout.count()) / 1000.0;
        py::list steps;
        for (const auto& [name, decls] : c.steps) steps.append(name);
        d["steps"] = steps;
        d["source"] = c.source.string();
        return d;
      });
}

}  // namespace herald::py_bindings
