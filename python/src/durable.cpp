// The durable road from Python (herald::postgres): herald.DurableError, the native half of
// herald.DurableConsumer, and the name/DSN/start-position helpers the pure-Python outbox
// (python/herald/durable.py) uses so that its rules are the C++ rules, not a copy of them.
//
// Threads and the GIL (DESIGN.md decisions 9 and 12):
//  - The consumer's own C++ thread takes the GIL only inside the hooks below (a PyCall scope,
//    with the persistent thread state of common.hpp) and never while it polls, fetches, commits
//    or backs off: those are libpq and poll() calls made by herald::DurableConsumer with no
//    Python state at all.
//  - start() (connect, schema check, group creation) and stop() (join) release the GIL, so a
//    handler that is waiting for the GIL, or for a Python thread, can finish while they wait.
//  - The Python objects (hooks, runner, the event being handled) are GilObjects: released under
//    the GIL on whichever thread drops the last reference. release_handlers() drops them after
//    stop() so that a subclass-style consumer (whose bound methods point back at it) leaves no
//    cycle through C++ that the garbage collector cannot see.
#include "common.hpp"

#include <herald/postgres/admin.hpp>
#include <herald/postgres/common.hpp>
#include <herald/postgres/consumer.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

namespace herald::py_bindings {

namespace {

py::object& durable_error_type() {
  static auto* t = new py::object();  // leaked: module lifetime
  return *t;
}

std::chrono::milliseconds ms_of(const py::dict& options, const char* key, std::chrono::milliseconds fallback) {
  if (!options.contains(key)) return fallback;
  const double seconds = options[key].cast<double>();
  if (!(seconds >= 0) || std::isinf(seconds)) {
    throw DurableError(DurableErrorKind::invalid_argument,
                       std::string(key) + " must be a finite number of seconds >= 0");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000.0)));
}

// The Python hooks of one consumer and the per-event state they share. Every method runs on the
// consumer's thread (one at a time, so the cached event and result need no lock), except
// release() and on_consumer_thread().
class PyDurableHooks {
 public:
  // GIL held.
  PyDurableHooks(std::string name, const py::object& runner, const py::object& record_type,
                 const py::object& handle, const py::object& before, const py::object& after,
                 const py::object& on_error)
      : name_(std::move(name)),
        runner_(hold(runner)),
        record_type_(hold(record_type)),
        handle_(hold(handle)),
        before_(before.is_none() ? nullptr : hold(before)),
        after_(after.is_none() ? nullptr : hold(after)),
        on_error_(on_error.is_none() ? nullptr : hold(on_error)) {}

  DurableHandlers handlers(const std::shared_ptr<PyDurableHooks>& self) {
    DurableHandlers h;
    h.handle = [self](const EventPtr& e, const DurableRecord& r) { return self->handle(e, r); };
    if (before_) {
      h.before_handle = [self](const EventPtr& e, const DurableRecord& r) { return self->before(e, r); };
    }
    if (after_) {
      h.after_handle = [self](const EventPtr& e, const DurableRecord& r, const DurableResult& res) {
        self->after(e, r, res);
      };
    }
    // Always installed: a failure is logged with its Python traceback even without a user hook.
    h.on_handle_error = [self](const EventPtr& e, const DurableRecord& r, const DurableHandleError& err) {
      self->on_error(e, r, err);
    };
    return h;
  }

  /// The calling thread is the consumer's, inside one of the hooks (any thread).
  bool on_consumer_thread() const noexcept {
    return consumer_thread_.load(std::memory_order_acquire) == std::this_thread::get_id();
  }

  // Drops every Python object (GIL held). The consumer thread has been joined.
  void release() {
    current_.reset();
    py_current_.reset();
    result_.reset();
    handle_.reset();
    before_.reset();
    after_.reset();
    on_error_.reset();
    runner_.reset();
    record_type_.reset();
  }

 private:
  DurableResult handle(const EventPtr& event, const DurableRecord& rec) {
    InHook in_hook(consumer_thread_);
    if (!python_alive()) throw Error("the Python interpreter is shutting down");
    PyCall call;
    if (!handle_) throw StateError("durable consumer '" + name_ + "': handlers were released");
    try {
      py::object r = call_hook(*runner_, *handle_, py_event(event), record(rec));
      DurableResult out;
      if (r.is_none()) {
        r = runtime().subscriber_result(true);
      } else if (py::isinstance<py::bool_>(r)) {
        out.success = r.cast<bool>();
        r = runtime().subscriber_result(out.success);
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

  bool before(const EventPtr& event, const DurableRecord& rec) {
    InHook in_hook(consumer_thread_);
    if (!python_alive()) throw Error("the Python interpreter is shutting down");
    PyCall call;
    if (!before_) return true;
    try {
      py::object r = call_hook(*runner_, *before_, py_event(event), record(rec));
      return r.is_none() || py::bool_(r).cast<bool>();
    } catch (py::error_already_set& e) {
      throw capture(e);
    }
  }

  void after(const EventPtr& event, const DurableRecord& rec, const DurableResult& result) {
    InHook in_hook(consumer_thread_);
    if (!python_alive()) return;
    PyCall call;
    if (!after_) return;
    try {
      py::object r = result_ ? *result_ : runtime().subscriber_result(result.success, result.message);
      result_.reset();
      call_hook(*runner_, *after_, py_event(event), r, record(rec));
    } catch (py::error_already_set& e) {
      throw capture(e);
    }
  }

  void on_error(const EventPtr& event, const DurableRecord& rec, const DurableHandleError& err) {
    InHook in_hook(consumer_thread_);
    if (!python_alive()) return;
    PyCall call;
    result_.reset();
    py::object exc = err.exception ? python_exception(err.exception)
                                   : python_exception(std::make_exception_ptr(HandlerFailure(err.message)));
    const std::string stage(to_string(err.stage));
    log_exception("durable consumer '" + name_ + "': " + stage + " failed on event_name=" + event->event_name() +
                      " event_id=" + event->event_id() + " offset=" + std::to_string(rec.offset) +
                      " attempt=" + std::to_string(rec.attempt),
                  exc);
    if (!on_error_) return;
    try {
      call_hook(*runner_, *on_error_, py_event(event), exc, record(rec, stage));
    } catch (py::error_already_set& e) {
      auto error = capture(e);
      log_exception("durable consumer '" + name_ + "': on_handle_error raised", *error.exception());
      throw error;
    }
  }

  // Marks the calling thread as "in a hook" for its duration only: a thread id is reused once its
  // thread has exited, so an id kept after the hook could later match an unrelated thread.
  class InHook {
   public:
    explicit InHook(std::atomic<std::thread::id>& slot) noexcept : slot_(slot) {
      slot_.store(std::this_thread::get_id(), std::memory_order_release);
    }
    ~InHook() { slot_.store(std::thread::id(), std::memory_order_release); }
    InHook(const InHook&) = delete;
    InHook& operator=(const InHook&) = delete;

   private:
    std::atomic<std::thread::id>& slot_;
  };

  // GIL held.
  py::object record(const DurableRecord& r, const std::string& error_stage = {}) {
    return (*record_type_)(r.stream, r.offset, r.stored_at, r.attempt, r.redrive,
                           error_stage.empty() ? py::object(py::none()) : py::object(py::str(error_stage)));
  }

  // The Python wrapper of the event in hand: every hook of one event gets the same object (and
  // so the same payload dict). Keeping the EventPtr pins the address. GIL held.
  py::object py_event(const EventPtr& event) {
    if (current_ != event || !py_current_) {
      current_ = event;
      py_current_ = hold(wrap_event(event));
    }
    return *py_current_;
  }

  std::string name_;
  GilObject runner_, record_type_, handle_, before_, after_, on_error_;
  EventPtr current_;
  GilObject py_current_;
  GilObject result_;
  std::atomic<std::thread::id> consumer_thread_{};
};

// The native half of herald.DurableConsumer. `hooks` outlives `consumer` (declared first) and the
// consumer's thread is joined before either goes: stop() runs in the destructor with the GIL
// released (ReleaseGilDelete), since the thread may be waiting for it.
struct PyDurableConsumer {
  std::shared_ptr<PyDurableHooks> hooks;
  std::unique_ptr<DurableConsumer, ReleaseGilDelete<DurableConsumer>> consumer;
};

DurableConsumerOptions consumer_options(const py::dict& o) {
  DurableConsumerOptions opts;
  opts.dsn = o["dsn"].cast<std::string>();
  if (o.contains("schema")) opts.schema = o["schema"].cast<std::string>();
  opts.stream = o["stream"].cast<std::string>();
  opts.group = o["group"].cast<std::string>();
  if (o.contains("start")) opts.start = durable::StartPosition::parse(o["start"].cast<std::string>());
  if (o.contains("patterns")) opts.patterns = o["patterns"].cast<std::vector<std::string>>();
  if (o.contains("batch_size")) opts.batch_size = o["batch_size"].cast<std::size_t>();
  if (o.contains("max_attempts")) opts.max_attempts = o["max_attempts"].cast<std::uint32_t>();
  opts.retry_initial = ms_of(o, "retry_initial", opts.retry_initial);
  opts.retry_max = ms_of(o, "retry_max", opts.retry_max);
  opts.poll_interval = ms_of(o, "poll_interval", opts.poll_interval);
  opts.lease = ms_of(o, "lease", opts.lease);
  opts.reconnect_initial = ms_of(o, "reconnect_initial", opts.reconnect_initial);
  opts.reconnect_max = ms_of(o, "reconnect_max", opts.reconnect_max);
  if (o.contains("member_id")) opts.member_id = o["member_id"].cast<std::string>();
  if (o.contains("name")) opts.name = o["name"].cast<std::string>();
  return opts;
}

py::object durable_exception(const DurableError& e) {
  py::object x = durable_error_type()(e.what());
  x.attr("kind") = std::string(to_string(e.kind()));
  x.attr("sqlstate") = e.sqlstate();
  return x;
}

}  // namespace

void bind_durable(py::module_& m) {
  durable_error_type() = [&] {
    py::tuple bases(1);
    bases[0] = m.attr("TransportError");
    PyObject* type = PyErr_NewExceptionWithDoc(
        "herald.DurableError",
        "An error of the durable road (PostgreSQL): `kind` is one of connection, authentication, "
        "missing_schema, permission, invalid_name, invalid_argument, state, query; `sqlstate` the "
        "server's SQLSTATE when it sent one. Messages carry the DSN with its password redacted.",
        bases.ptr(), nullptr);
    if (type == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(type);
  }();
  m.attr("DurableError") = durable_error_type();
  // Registered after bind_errors' translator, so tried before it (pybind11 tries the most
  // recent first): a DurableError becomes herald.DurableError, not its base TransportError.
  py::register_exception_translator([](std::exception_ptr p) {
    if (!p) return;
    try {
      std::rethrow_exception(p);
    } catch (const DurableError& e) {
      py::object exc = durable_exception(e);
      PyErr_SetObject(durable_error_type().ptr(), exc.ptr());
    }
  });

  m.def("_durable_validate_stream_name",
        [](std::string_view name, std::string_view what) { durable::validate_stream_name(name, what); },
        py::arg("name"), py::arg("what") = "stream");
  m.def("_durable_validate_schema_name", [](std::string_view name) { durable::validate_schema_name(name); },
        py::arg("name"));
  m.def("_durable_redact_dsn", [](const std::string& dsn) { return durable::redact_dsn(dsn); }, py::arg("dsn"));
  m.def("_durable_notify_channel", [](std::string_view schema) { return durable::notify_channel(schema); },
        py::arg("schema"));
  m.def("_durable_parse_start", [](std::string_view text) { return durable::StartPosition::parse(text).to_string(); },
        py::arg("text"), "Normalises a start position (DurableError(invalid_argument) if it is not one).");
  m.def(
      "_durable_ensure_schema",
      [](const std::string& dsn, const std::string& schema) {
        durable::validate_schema_name(schema);
        auto conn = durable::Connection::open(dsn);
        durable::ensure_schema(conn.get(), schema);
      },
      py::arg("dsn"), py::arg("schema"), py::call_guard<py::gil_scoped_release>());
  m.def(
      "_durable_stream_for_namespace",
      [](std::string_view ns) { return durable::stream_for_namespace(ns); }, py::arg("namespace"));

  py::class_<PyDurableConsumer>(m, "_DurableConsumer")
      .def(py::init([](const py::dict& options, const py::object& runner, const py::object& record_type,
                       const py::object& handle, const py::object& before, const py::object& after,
                       const py::object& on_error) {
             DurableConsumerOptions opts = consumer_options(options);
             PyDurableConsumer self;
             self.hooks = std::make_shared<PyDurableHooks>(opts.name, runner, record_type, handle, before,
                                                           after, on_error);
             self.consumer.reset(new DurableConsumer(std::move(opts), self.hooks->handlers(self.hooks)));
             return self;
           }),
           py::arg("options"), py::arg("runner"), py::arg("record_type"), py::arg("handle"),
           py::arg("before_handle"), py::arg("after_handle"), py::arg("on_handle_error"))
      .def("start", [](PyDurableConsumer& self) { self.consumer->start(); },
           py::call_guard<py::gil_scoped_release>())
      .def("stop", [](PyDurableConsumer& self) { self.consumer->stop(); },
           py::call_guard<py::gil_scoped_release>())
      .def("request_stop", [](PyDurableConsumer& self) { self.consumer->request_stop(); })
      .def("on_consumer_thread", [](const PyDurableConsumer& self) { return self.hooks->on_consumer_thread(); })
      .def("release_handlers", [](PyDurableConsumer& self) { self.hooks->release(); })
      .def("stats",
           [](const PyDurableConsumer& self) {
             nlohmann::json j = self.consumer->stats();  // atomics and one short mutex
             return to_python(j);
           })
      .def_property_readonly("active", [](const PyDurableConsumer& self) { return self.consumer->active(); })
      .def_property_readonly("committed_offset",
                             [](const PyDurableConsumer& self) { return self.consumer->committed_offset(); })
      .def_property_readonly("member_id", [](const PyDurableConsumer& self) { return self.consumer->member_id(); });
}

}  // namespace herald::py_bindings
