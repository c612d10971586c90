// Shared machinery of the `_herald` extension: Python objects held by C++ (released under the
// GIL), persistent thread states for C++ threads that call Python, Python exceptions carried
// through C++ code, payload conversion with key paths, and the exception hierarchy.
//
// GIL rules (DESIGN.md decision 9):
//  - C++ code never waits while holding the GIL: every binding that may block or take a lock
//    releases it first.
//  - A C++ thread calls Python only inside a PyCall scope: it attaches a persistent thread state
//    to the thread on first use (kept until the thread exits or detach_thread_state()), so each
//    later acquisition costs a mutex hand-over, not a thread-state allocation.
//  - Python objects owned by C++ live in a GilObject: the last owner releases it under the GIL,
//    whatever thread that is. After interpreter finalization began they are leaked instead.
#pragma once

#include <herald/events/domain_event.hpp>
#include <herald/events/error.hpp>
#include <herald/events/event_bus.hpp>
#include <herald/events/json_fields.hpp>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <nlohmann/json.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <string>
#include <string_view>

namespace herald::py_bindings {

namespace py = pybind11;

/// The interpreter is initialized and not finalizing: it is safe to take the GIL.
bool python_alive() noexcept;

/// Deletes a py::object under the GIL (or leaks it when the interpreter is going away).
struct GilDecref {
  void operator()(py::object* object) const noexcept;
};
/// A Python object owned by C++. Copy freely; the last copy decrefs under the GIL.
using GilObject = std::shared_ptr<py::object>;
/// Call with the GIL held.
GilObject hold(py::object object);

/// Gives the calling C++ thread a persistent Python thread state (no-op for threads that
/// already have one, such as Python's own threads). Call without holding the GIL.
void attach_thread_state() noexcept;
/// Releases the state attach_thread_state() created for this thread (also done at thread
/// exit). Call without holding the GIL.
void detach_thread_state() noexcept;

/// Scope in which a C++ thread calls Python. A thread that already holds the GIL (an inline
/// bus publishing from Python) keeps it and pays only the check.
class PyCall {
 public:
  PyCall() {
    if (PyGILState_Check() == 0) {
      attach_thread_state();
      gil_.emplace();
    }
  }

 private:
  std::optional<py::gil_scoped_acquire> gil_;
};

/// Deleter for C++ objects whose destructor may wait for threads that call Python: drops the
/// GIL (when the calling thread holds it) around the delete.
template <typename T>
struct ReleaseGilDelete {
  void operator()(T* p) const noexcept {
    if (python_alive() && PyGILState_Check()) {
      py::gil_scoped_release nogil;
      delete p;
    } else {
      delete p;
    }
  }
};

/// A Python exception raised by user code, carried through C++ (e.g. in an exception_ptr handed
/// to on_publish_error / on_handle_error) so that Python sees the original object again.
class PythonError : public herald::Error {
 public:
  PythonError(std::string message, GilObject exception)
      : Error(std::move(message)), exception_(std::move(exception)) {}
  const GilObject& exception() const noexcept { return exception_; }

 private:
  GilObject exception_;
};

/// Takes the exception out of `e` (GIL held) into a PythonError ("ValueError: boom"), with its
/// traceback attached to the exception object.
PythonError capture(py::error_already_set& e);

/// The Python exception object for a C++ exception: the original for PythonError, an instance of
/// the matching herald exception type for herald errors (with attributes such as `field`,
/// `pattern`, `key_path`), RuntimeError otherwise. GIL held.
py::object python_exception(std::exception_ptr error);

/// Logs `exc` with its traceback through the `herald` Python logger (rate limited). GIL held;
/// never throws.
void log_exception(const std::string& message, const py::handle& exc) noexcept;

/// Calls `fn(args...)`; when the result is awaitable, runs it to completion through
/// `runner.await_(...)` (the worker's or bus's event loop) and returns its result. GIL held.
template <typename... Args>
py::object call_hook(const py::handle& runner, const py::handle& fn, Args&&... args) {
  py::object result;
  if constexpr ((std::is_convertible_v<Args, py::handle> && ...)) {
    // Python objects only: a vectorcall, without building an argument tuple.
    PyObject* argv[sizeof...(Args) + 1] = {nullptr, py::handle(args).ptr()...};
    PyObject* r = PyObject_Vectorcall(fn.ptr(), argv + 1, sizeof...(Args) | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
    if (r == nullptr) throw py::error_already_set();
    result = py::reinterpret_steal<py::object>(r);
  } else {
    result = fn(std::forward<Args>(args)...);
  }
  PyObject* r = result.ptr();
  auto* async = Py_TYPE(r)->tp_as_async;
  if (async != nullptr && async->am_await != nullptr) {
    result = runner.attr("await_")(result);
  }
  return result;
}

inline constexpr std::size_t kMaxConvertedDepth = json_fields::kMaxDepth - 1;

/// Python value -> JSON (json_convert.cpp). A value that is not JSON serialisable raises
/// TypeError naming its key path below `root` ("payload['items'][2]: object of type set is not
/// JSON serialisable"). GIL held.
/// Lists and dicts may nest `max_depth` levels (the value itself included); the default leaves
/// room for the event envelope a payload or metadata dict goes into, so that what Python builds
/// always decodes on the wire (json_fields::kMaxDepth levels in all).
nlohmann::json to_json(const py::handle& value, std::string_view root,
                       std::size_t max_depth = kMaxConvertedDepth);
/// JSON -> Python value. GIL held.
py::object to_python(const nlohmann::json& value);
/// Sets `out` to the UTF-8 of the str `str`; false (the Python error cleared) for a str that
/// has no UTF-8 form (lone surrogates). GIL held.
bool utf8_of(PyObject* str, std::string& out);

/// Objects the pure-Python layer installs at import (herald/__init__.py): the StepEventContext
/// and SubscriberResult classes and the exception logger. Leaked on purpose (module lifetime).
struct Runtime {
  py::object step_event_context;
  py::object subscriber_result;
  py::object log_exception;
};
Runtime& runtime();

/// Wraps an event for Python. GIL held. Inside an InlineWrapperScope for the same event, returns
/// that scope's wrapper instead of a new one.
py::object wrap_event(const EventPtr& event);

/// While an inline bus runs handlers for an event published from Python, every Python handler
/// (and the caller, who gets it back from publish) receives the same wrapper: one allocation and
/// at most one payload conversion per event instead of one per handler. Nests (a handler may
/// publish); the calling thread holds the GIL.
class InlineWrapperScope {
 public:
  InlineWrapperScope(const DomainEvent* event, PyObject* wrapper) noexcept;
  ~InlineWrapperScope();
  InlineWrapperScope(const InlineWrapperScope&) = delete;
  InlineWrapperScope& operator=(const InlineWrapperScope&) = delete;

 private:
  const DomainEvent* saved_event_;
  PyObject* saved_wrapper_;
};

/// A new event from Python arguments (event_type.cpp): `payload` None means {}, `metadata` None
/// means none; TypeError naming the key path of what is not JSON, EventNameError for the name.
/// GIL held.
EventPtr event_from_python(std::string name, const py::handle& payload, const py::handle& metadata);
/// How a publish (or complete_step) from the calling Python thread may wait on a full `block`
/// queue: never on the thread of a running asyncio event loop (DESIGN.md 12: its handlers may
/// need that very loop; the event is queued beyond capacity with a warning, and
/// `await publish_async()` is the way to wait for room), otherwise as the policy says. GIL held.
PublishWait loop_aware_wait();

/// Routes an event published from Python: on an inline bus with the GIL held and with `wrapper`
/// (the object the caller gets back) as the one every Python handler receives (a busy gate is
/// waited for with the GIL released: BlockingScope); otherwise with the GIL released (a full
/// `block` mailbox may wait for room, as `wait` allows). GIL held on entry.
PublishReport publish_from_python(EventBus& bus, const EventPtr& event, const py::handle& wrapper,
                                  PublishWait wait);

/// Installs herald's BlockingHooks for Python: every herald wait drops the GIL if the waiting
/// thread holds it (module init).
void install_blocking_hooks();

/// herald.DomainEvent (event_type.cpp): a new wrapper for `event`. GIL held.
py::object new_event_wrapper(EventPtr event);
/// `obj` is a herald.DomainEvent.
bool is_event(const py::handle& obj);
/// The event inside a herald.DomainEvent; TypeError naming `what` for anything else. GIL held.
EventPtr event_of(const py::handle& obj, const char* what);

/// `bus.publish` as a native function of its own (event_type.cpp): what the Python EventBus
/// exposes as its publish method. GIL held.
py::object bus_publish_function(std::shared_ptr<EventBus> bus);

// Module parts, defined in their own files.
void bind_event_type(py::module_& m);
void bind_errors(py::module_& m);
void bind_events(py::module_& m);
void bind_publishers(py::module_& m);
void bind_subscribers(py::module_& m);
void bind_worker(py::module_& m);
void bind_zmq(py::module_& m);
void bind_durable(py::module_& m);  // durable.cpp

/// Runs `wait` (a call that waits for handlers to finish) with the GIL released, inside
/// herald._loop.blocking_call(what): an async handler whose coroutine needs this thread's event
/// loop is then cancelled instead of waiting for a loop that waits for it (a deadlock).
/// Called with the GIL held.
template <typename Wait>
auto blocking_call(const char* what, Wait&& wait) {
  py::object scope = py::module_::import("herald._loop").attr("blocking_call")(what);
  scope.attr("__enter__")();
  struct Exit {
    py::object& scope;
    ~Exit() {
      try {
        scope.attr("__exit__")(py::none(), py::none(), py::none());
      } catch (py::error_already_set& e) {
        e.discard_as_unraisable("herald: leaving blocking_call");
      }
    }
  } exit{scope};
  py::gil_scoped_release nogil;
  return wait();
}

}  // namespace herald::py_bindings
