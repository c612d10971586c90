#include "common.hpp"

#include <herald/publishers/schema.hpp>
#include <herald/worker/worker.hpp>

#include <utility>

namespace herald::py_bindings {

bool python_alive() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsInitialized() && !Py_IsFinalizing();
#else
  return Py_IsInitialized() && !_Py_IsFinalizing();
#endif
}

void GilDecref::operator()(py::object* object) const noexcept {
  if (!python_alive()) {
    (void)object->release();  // the interpreter is going away: leak rather than crash
    delete object;
    return;
  }
  PyCall call;
  delete object;
}

GilObject hold(py::object object) { return GilObject(new py::object(std::move(object)), GilDecref{}); }

namespace {

// One C++ thread's persistent Python thread state.
struct ThreadStateSlot {
  PyThreadState* tstate = nullptr;
  PyGILState_STATE gstate = PyGILState_UNLOCKED;
  ~ThreadStateSlot() { detach_thread_state(); }
};
thread_local ThreadStateSlot t_slot;

// What threading.Thread does for the threads it starts: the trace and profile functions set with
// threading.settrace / threading.setprofile (coverage tools, profilers, debuggers) apply to this
// thread too, so that handlers and hooks run by C++ threads are seen by them. The GIL is held.
void inherit_threading_hooks() noexcept {
  try {
    py::module_ sys = py::module_::import("sys");
    py::dict modules = sys.attr("modules");
    if (!modules.contains("threading")) return;  // nobody can have set one
    py::object threading = modules["threading"];
    for (const auto& [getter, setter] : {std::pair{"gettrace", "settrace"}, std::pair{"getprofile", "setprofile"}}) {
      if (!py::hasattr(threading, getter)) continue;  // Python < 3.10
      py::object hook = threading.attr(getter)();
      if (!hook.is_none()) sys.attr(setter)(hook);
    }
  } catch (...) {
    // A tracing convenience: never let it fail a dispatcher thread.
  }
}

}  // namespace

void attach_thread_state() noexcept {
  if (t_slot.tstate != nullptr || !python_alive()) return;
  if (PyGILState_GetThisThreadState() != nullptr) return;  // a Python thread, or nested
  t_slot.gstate = PyGILState_Ensure();   // creates the thread state and takes the GIL
  inherit_threading_hooks();
  t_slot.tstate = PyEval_SaveThread();   // keeps the state, drops the GIL
}

void detach_thread_state() noexcept {
  PyThreadState* tstate = std::exchange(t_slot.tstate, nullptr);
  if (tstate == nullptr || !python_alive()) return;  // finalizing: leak the state
  PyEval_RestoreThread(tstate);
  PyGILState_Release(t_slot.gstate);  // deletes the state and drops the GIL
}

Runtime& runtime() {
  static auto* r = new Runtime();  // leaked: holds Python objects past static destruction
  return *r;
}

PythonError capture(py::error_already_set& e) {
  const py::object& value = e.value();
  if (e.trace() && value) PyException_SetTraceback(value.ptr(), e.trace().ptr());
  std::string message;
  try {
    message = py::str(py::type::handle_of(value).attr("__name__")).cast<std::string>() + ": " +
              py::str(value).cast<std::string>();
  } catch (...) {
    message = e.what();
  }
  return PythonError(std::move(message), hold(value));
}

void log_exception(const std::string& message, const py::handle& exc) noexcept {
  try {
    if (runtime().log_exception) runtime().log_exception(message, exc);
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable("herald: logging an exception");
  } catch (...) {
  }
}

namespace {
thread_local const DomainEvent* t_inline_event = nullptr;
thread_local PyObject* t_inline_wrapper = nullptr;  // borrowed: the publish call owns it
}  // namespace

InlineWrapperScope::InlineWrapperScope(const DomainEvent* event, PyObject* wrapper) noexcept
    : saved_event_(std::exchange(t_inline_event, event)),
      saved_wrapper_(std::exchange(t_inline_wrapper, wrapper)) {}

InlineWrapperScope::~InlineWrapperScope() {
  t_inline_event = saved_event_;
  t_inline_wrapper = saved_wrapper_;
}

py::object wrap_event(const EventPtr& event) {
  if (event.get() == t_inline_event && t_inline_wrapper != nullptr) {
    return py::reinterpret_borrow<py::object>(t_inline_wrapper);
  }
  return new_event_wrapper(event);
}

// ----------------------------------------------------------------------------------------------
// Exceptions

namespace {

struct ErrorTypes {
  py::object herald, event_name, pattern, validation, payload_schema, parse, config, registry,
      state, transport, unknown_value, startup, handler_failure, http;
};
ErrorTypes& error_types() {
  static auto* t = new ErrorTypes();  // leaked: module lifetime
  return *t;
}

py::object new_error(py::module_& m, const char* name, std::initializer_list<py::handle> bases,
                     const char* doc) {
  py::tuple b(bases.size());
  std::size_t i = 0;
  for (auto h : bases) b[i++] = py::reinterpret_borrow<py::object>(h);
  const std::string qualified = std::string("herald.") + name;
  PyObject* type = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, b.ptr(), nullptr);
  if (type == nullptr) throw py::error_already_set();
  auto obj = py::reinterpret_steal<py::object>(type);
  m.attr(name) = obj;
  return obj;
}

py::object instance(const py::object& type, const std::exception& e) { return type(e.what()); }

}  // namespace

py::object python_exception(std::exception_ptr error) {
  const auto& t = error_types();
  try {
    std::rethrow_exception(std::move(error));
  } catch (const PythonError& e) {
    return *e.exception();
  } catch (const StartupError& e) {
    auto x = instance(t.startup, e);
    x.attr("hook") = e.hook();
    return x;
  } catch (const HttpError& e) {
    auto x = instance(t.http, e);
    x.attr("address") = e.address();
    return x;
  } catch (const PayloadSchemaError& e) {
    auto x = instance(t.payload_schema, e);
    x.attr("field") = e.field();
    x.attr("problem") = e.problem();
    return x;
  } catch (const ValidationError& e) {
    auto x = instance(t.validation, e);
    x.attr("field") = e.field();
    x.attr("problem") = e.problem();
    return x;
  } catch (const EventNameError& e) {
    auto x = instance(t.event_name, e);
    x.attr("name") = e.name();
    x.attr("reason") = e.reason();
    return x;
  } catch (const PatternError& e) {
    auto x = instance(t.pattern, e);
    x.attr("pattern") = e.pattern();
    x.attr("reason") = e.reason();
    return x;
  } catch (const ConfigError& e) {
    auto x = instance(t.config, e);
    x.attr("key_path") = e.key_path();
    return x;
  } catch (const ParseError& e) {
    return instance(t.parse, e);
  } catch (const RegistryError& e) {
    return instance(t.registry, e);
  } catch (const StateError& e) {
    return instance(t.state, e);
  } catch (const TransportError& e) {
    return instance(t.transport, e);
  } catch (const UnknownValueError& e) {
    return instance(t.unknown_value, e);
  } catch (const HandlerFailure& e) {
    return instance(t.handler_failure, e);
  } catch (const Error& e) {
    return instance(t.herald, e);
  } catch (py::error_already_set& e) {
    return *capture(e).exception();
  } catch (const std::exception& e) {
    return py::reinterpret_borrow<py::object>(PyExc_RuntimeError)(e.what());
  } catch (...) {
    return py::reinterpret_borrow<py::object>(PyExc_RuntimeError)("unknown C++ exception");
  }
}

void bind_errors(py::module_& m) {
  auto& t = error_types();
  const py::handle value_error = PyExc_ValueError;
  t.herald = new_error(m, "HeraldError", {PyExc_Exception}, "Base of every herald error.");
  t.event_name = new_error(m, "EventNameError", {t.herald, value_error},
                           "An event name that is not dot-separated tokens of [A-Za-z0-9_-].");
  t.pattern = new_error(m, "PatternError", {t.herald, value_error},
                        "A glob pattern that cannot be compiled.");
  t.validation = new_error(m, "ValidationError", {t.herald, value_error},
                           "Input data that does not have the expected shape.");
  t.payload_schema = new_error(m, "PayloadSchemaError", {t.validation},
                               "A payload that does not match its event's schema.");
  t.parse = new_error(m, "ParseError", {t.herald, value_error}, "Text that is not valid JSON.");
  t.config = new_error(m, "ConfigError", {t.herald}, "Configuration that cannot be used.");
  t.registry = new_error(m, "RegistryError", {t.herald},
                         "Registry misuse: duplicate or unknown name, frozen registry.");
  t.state = new_error(m, "StateError", {t.herald},
                      "An operation not allowed in the current lifecycle state.");
  t.transport = new_error(m, "TransportError", {t.herald},
                          "A transport that cannot do what was asked.");
  t.unknown_value = new_error(m, "UnknownValueError", {t.herald, value_error},
                              "A value outside a closed set of names.");
  t.startup = new_error(m, "StartupError", {t.herald}, "An on_startup hook failed.");
  t.http = new_error(m, "HttpError", {t.herald},
                     "The worker's HTTP endpoint (http.listen) cannot serve on its address.");
  t.handler_failure = new_error(m, "HandlerFailure", {t.herald},
                                "A handler failure that was already reported.");

  py::register_exception_translator([](std::exception_ptr p) {
    if (!p) return;
    try {
      std::rethrow_exception(p);
    } catch (const PythonError& e) {
      const auto& exc = *e.exception();
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    } catch (const Error&) {
      py::object exc = python_exception(p);
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    }
    // anything else falls through to pybind11's default translators
  });
}

}  // namespace herald::py_bindings
