// herald.DomainEvent as a plain CPython type, and the bus's native publish callable.
//
// Why not pybind11 here: one Python publish on an inline bus creates one event wrapper and makes
// one call, and with pybind11 each of those paid for type lookups by name, an instance registry
// insert and erase, and argument-tuple dispatch: more than the rest of the publish. These two
// objects are the whole per-event path from Python, so they are written against the CPython API
// (about 150 ns less per publish, measured with bench/python_bench.py); everything else stays in
// pybind11.
#include "common.hpp"

#include <herald/events/event_bus.hpp>

#include <structmember.h>

#include <new>

namespace herald::py_bindings {

namespace {

struct EventObject {
  PyObject_HEAD
  EventPtr event;      // constructed in place by new_event_object
  PyObject* payload;   // dict converted on first read (then shared by later reads)
  PyObject* metadata;
};

PyTypeObject* g_event_type = nullptr;  // set once by bind_event_type, owned by the module

EventObject* as_event(PyObject* self) { return reinterpret_cast<EventObject*>(self); }

PyObject* new_event_object(EventPtr event) {
  auto* self = PyObject_GC_New(EventObject, g_event_type);
  if (self == nullptr) throw py::error_already_set();
  new (&self->event) EventPtr(std::move(event));
  self->payload = nullptr;
  self->metadata = nullptr;
  PyObject_GC_Track(self);
  return reinterpret_cast<PyObject*>(self);
}

int event_traverse(PyObject* self, visitproc visit, void* arg) {
  // The cached dicts are the only Python references (a user may put the event in its own
  // payload dict, making a cycle the collector must be able to break).
  Py_VISIT(as_event(self)->payload);
  Py_VISIT(as_event(self)->metadata);
  Py_VISIT(Py_TYPE(self));
  return 0;
}

int event_clear(PyObject* self) {
  Py_CLEAR(as_event(self)->payload);
  Py_CLEAR(as_event(self)->metadata);
  return 0;
}

void event_dealloc(PyObject* self) {
  PyTypeObject* type = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  event_clear(self);
  as_event(self)->event.~EventPtr();
  type->tp_free(self);
  Py_DECREF(type);  // heap type
}

// Runs `body` (which returns a new reference) and turns any C++ exception into the Python
// exception herald raises for it.
template <typename Body>
PyObject* guarded(Body&& body) noexcept {
  try {
    return body();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (...) {
    try {
      py::object exc = python_exception(std::current_exception());
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    } catch (...) {
      PyErr_SetString(PyExc_RuntimeError, "herald: error while reporting an error");
    }
  }
  return nullptr;
}

PyObject* str_of(const std::string& s) {
  return PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
}

PyObject* get_event_id(PyObject* self, void*) { return str_of(as_event(self)->event->event_id()); }
PyObject* get_event_name(PyObject* self, void*) { return str_of(as_event(self)->event->event_name()); }
PyObject* get_correlation_id(PyObject* self, void*) {
  return str_of(as_event(self)->event->metadata().correlation_id);
}
PyObject* get_payload(PyObject* self, void*) {
  return guarded([&] {
    auto* e = as_event(self);
    if (e->payload == nullptr) e->payload = to_python(e->event->payload()).release().ptr();
    Py_INCREF(e->payload);
    return e->payload;
  });
}
PyObject* get_metadata(PyObject* self, void*) {
  return guarded([&] {
    auto* e = as_event(self);
    if (e->metadata == nullptr) e->metadata = to_python(e->event->metadata().to_json()).release().ptr();
    Py_INCREF(e->metadata);
    return e->metadata;
  });
}
PyObject* get_execution_result(PyObject* self, void*) {
  return guarded([&] { return to_python(as_event(self)->event->execution_result().to_json()).release().ptr(); });
}

PyObject* event_to_dict(PyObject* self, PyObject*) {
  return guarded([&] { return to_python(as_event(self)->event->to_json()).release().ptr(); });
}
PyObject* event_to_json(PyObject* self, PyObject*) {
  return guarded([&] { return str_of(as_event(self)->event->json_text()); });
}

PyObject* event_richcompare(PyObject* self, PyObject* other, int op) {
  if ((op != Py_EQ && op != Py_NE) || Py_TYPE(other) != g_event_type) Py_RETURN_NOTIMPLEMENTED;
  const bool same = as_event(self)->event->event_id() == as_event(other)->event->event_id();
  return PyBool_FromLong((op == Py_EQ) == same ? 1 : 0);
}

Py_hash_t event_hash(PyObject* self) {
  PyObject* id = get_event_id(self, nullptr);
  if (id == nullptr) return -1;
  const Py_hash_t h = PyObject_Hash(id);
  Py_DECREF(id);
  return h;
}

PyObject* event_repr(PyObject* self) {
  const auto& e = *as_event(self)->event;
  return str_of("DomainEvent(event_name='" + e.event_name() + "', event_id='" + e.event_id() + "')");
}

PyGetSetDef event_getset[] = {
    {"event_id", get_event_id, nullptr, "UUID v7 text.", nullptr},
    {"event_name", get_event_name, nullptr, "e.g. 'payment.processed'.", nullptr},
    {"payload", get_payload, nullptr, "The payload dict (converted once, on first read).", nullptr},
    {"metadata", get_metadata, nullptr, "The metadata dict (converted once, on first read).", nullptr},
    {"execution_result", get_execution_result, nullptr, "The step's outcome as a dict.", nullptr},
    {"correlation_id", get_correlation_id, nullptr, "metadata['correlation_id'].", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef event_methods[] = {
    {"to_dict", event_to_dict, METH_NOARGS, "The event as a dict (its JSON form)."},
    {"to_json", event_to_json, METH_NOARGS, "Compact JSON text."},
    {nullptr, nullptr, 0, nullptr},
};

// ------------------------------------------------------------------------------------------------
// bus.publish(event_name, payload=None, *, metadata=None) as a vectorcall function whose `self`
// is a capsule holding the bus.

// Unnamed: the capsule is only ever the `self` of bus_publish_def, and an unnamed capsule
// skips a strcmp per call in PyCapsule_GetPointer.
constexpr const char* kBusCapsule = nullptr;

void bus_capsule_destructor(PyObject* capsule) {
  delete static_cast<std::shared_ptr<EventBus>*>(PyCapsule_GetPointer(capsule, kBusCapsule));
}

bool parse_publish_args(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, PyObject** name,
                        PyObject** payload, PyObject** metadata) {
  *name = nargs > 0 ? args[0] : nullptr;
  *payload = nargs > 1 ? args[1] : Py_None;
  *metadata = Py_None;
  if (nargs > 2) {
    PyErr_Format(PyExc_TypeError,
                 "publish() takes 2 positional arguments (event_name, payload) but %zd were given; "
                 "metadata is keyword-only", nargs);
    return false;
  }
  const Py_ssize_t nkw = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
  for (Py_ssize_t i = 0; i < nkw; ++i) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, i);
    PyObject* value = args[nargs + i];
    if (PyUnicode_CompareWithASCIIString(key, "metadata") == 0) {
      *metadata = value;
    } else if (PyUnicode_CompareWithASCIIString(key, "payload") == 0 && nargs < 2) {
      *payload = value;
    } else if (PyUnicode_CompareWithASCIIString(key, "event_name") == 0 && nargs < 1) {
      *name = value;
    } else {
      PyErr_Format(PyExc_TypeError, "publish() got an unexpected or repeated keyword argument '%U'", key);
      return false;
    }
  }
  if (*name == nullptr) {
    PyErr_SetString(PyExc_TypeError, "publish() missing required argument 'event_name'");
    return false;
  }
  if (!PyUnicode_Check(*name)) {
    PyErr_Format(PyExc_TypeError, "publish(): event_name must be str, not %s", Py_TYPE(*name)->tp_name);
    return false;
  }
  return true;
}

PyObject* bus_publish(PyObject* capsule, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* name_obj = nullptr;
  PyObject* payload = nullptr;
  PyObject* metadata = nullptr;
  if (!parse_publish_args(args, PyVectorcall_NARGS(nargs), kwnames, &name_obj, &payload, &metadata)) return nullptr;
  auto* bus = static_cast<std::shared_ptr<EventBus>*>(PyCapsule_GetPointer(capsule, kBusCapsule));
  if (bus == nullptr) return nullptr;
  return guarded([&]() -> PyObject* {
    Py_ssize_t size = 0;
    const char* text = PyUnicode_AsUTF8AndSize(name_obj, &size);
    if (text == nullptr) throw py::error_already_set();
    EventPtr event = event_from_python(std::string(text, static_cast<std::size_t>(size)), payload, metadata);
    auto wrapper = py::reinterpret_steal<py::object>(new_event_object(event));
    if (publish_from_python(**bus, event, wrapper, loop_aware_wait()).rejected) {
      throw StateError("publish: the bus is closed (event '" + event->event_name() + "')");
    }
    return wrapper.release().ptr();
  });
}

PyMethodDef bus_publish_def = {
    "publish", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&bus_publish)),
    METH_FASTCALL | METH_KEYWORDS,
    "publish(event_name, payload=None, *, metadata=None) -> DomainEvent\n\n"
    "Builds the event (EventNameError for a bad name, TypeError naming the key path of a value "
    "that is not JSON serialisable) and routes it; returns it."};

}  // namespace

EventPtr event_from_python(std::string name, const py::handle& payload, const py::handle& metadata) {
  nlohmann::json p = payload.is_none() ? nlohmann::json::object() : to_json(payload, "payload");
  EventMetadata meta;
  if (!metadata.is_none()) meta = EventMetadata::from_json(to_json(metadata, "metadata"));
  return DomainEvent::create(std::move(name), std::move(p), std::move(meta));
}

PublishReport publish_from_python(EventBus& bus, const EventPtr& event, const py::handle& wrapper,
                                  PublishWait wait) {
  if (bus.is_inline()) {
    // Handlers run right here, on this Python thread, like a synchronous emitter: keeping the
    // GIL saves a release and a re-acquire per Python handler, and they all get `wrapper`. A
    // gate held by another thread is tried first and waited for with the GIL dropped.
    InlineWrapperScope same_wrapper(event.get(), wrapper.ptr());
    return bus.publish(event, wait);
  }
  py::gil_scoped_release nogil;
  return bus.publish(event, wait);
}

PublishWait loop_aware_wait() {
  // asyncio's C accelerator answers "is a loop running on this thread" from a thread-local
  // cache: one call, no lookup. Module lifetime: leaked on purpose.
  static PyObject* get_running_loop = [] {
    PyObject* module = PyImport_ImportModule("asyncio");
    if (module == nullptr) throw py::error_already_set();
    PyObject* fn = PyObject_GetAttrString(module, "_get_running_loop");
    Py_DECREF(module);
    if (fn == nullptr) throw py::error_already_set();
    return fn;
  }();
  PyObject* loop = PyObject_CallNoArgs(get_running_loop);
  if (loop == nullptr) throw py::error_already_set();
  const bool on_loop = loop != Py_None;
  Py_DECREF(loop);
  return on_loop ? PublishWait::overcommit : PublishWait::allowed;
}

namespace {
void* release_gil() noexcept {
  if (!python_alive() || PyGILState_Check() == 0) return nullptr;
  return PyEval_SaveThread();
}
void reacquire_gil(void* state) noexcept {
  if (state != nullptr) PyEval_RestoreThread(static_cast<PyThreadState*>(state));
}
}  // namespace

void install_blocking_hooks() { set_blocking_hooks({&release_gil, &reacquire_gil}); }

py::object new_event_wrapper(EventPtr event) { return py::reinterpret_steal<py::object>(new_event_object(std::move(event))); }

bool is_event(const py::handle& obj) { return g_event_type != nullptr && Py_TYPE(obj.ptr()) == g_event_type; }

EventPtr event_of(const py::handle& obj, const char* what) {
  if (!is_event(obj)) {
    throw py::type_error(std::string(what) + ": expected a herald.DomainEvent, got " + Py_TYPE(obj.ptr())->tp_name);
  }
  return as_event(obj.ptr())->event;
}

py::object bus_publish_function(std::shared_ptr<EventBus> bus) {
  auto* holder = new std::shared_ptr<EventBus>(std::move(bus));
  PyObject* capsule = PyCapsule_New(holder, kBusCapsule, bus_capsule_destructor);
  if (capsule == nullptr) {
    delete holder;
    throw py::error_already_set();
  }
  auto self = py::reinterpret_steal<py::object>(capsule);
  PyObject* fn = PyCFunction_NewEx(&bus_publish_def, self.ptr(), nullptr);
  if (fn == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(fn);
}

void bind_event_type(py::module_& m) {
  PyType_Slot slots[] = {
      {Py_tp_doc, const_cast<char*>("An immutable domain event (shared, never copied).")},
      {Py_tp_dealloc, reinterpret_cast<void*>(&event_dealloc)},
      {Py_tp_traverse, reinterpret_cast<void*>(&event_traverse)},
      {Py_tp_clear, reinterpret_cast<void*>(&event_clear)},
      {Py_tp_richcompare, reinterpret_cast<void*>(&event_richcompare)},
      {Py_tp_hash, reinterpret_cast<void*>(&event_hash)},
      {Py_tp_repr, reinterpret_cast<void*>(&event_repr)},
      {Py_tp_getset, event_getset},
      {Py_tp_methods, event_methods},
      {0, nullptr},
  };
  PyType_Spec spec = {"herald.DomainEvent", sizeof(EventObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
                      slots};
  PyObject* type = PyType_FromSpec(&spec);
  if (type == nullptr) throw py::error_already_set();
  g_event_type = reinterpret_cast<PyTypeObject*>(type);  // the module keeps it alive
  m.add_object("DomainEvent", py::reinterpret_steal<py::object>(type));
}

}  // namespace herald::py_bindings
