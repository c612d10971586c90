// Python values <-> nlohmann::json, written against the CPython API.
//
// Why not pybind11_json (DESIGN.md decision 9 chose it; this deviates, measured): every Python
// publish converts its payload, and pybind11_json checks each value with isinstance chains,
// casts integers twice (building a second int to compare) and reports a failure as a C++
// exception without a location, which took a second walk to find. It also has no depth bound.
// This converter walks once, takes the exact built-in types first, and names the key path of
// the first value it cannot convert. It also bounds nesting (a list that contains itself would
// otherwise recurse until the C stack overflows): see to_json's max_depth in common.hpp.
//
// Measured (issue 17 section 5; docs/architecture.md "Python <-> JSON" has the table, command
// and machine): on bench/python_bench.py, Release, 5 repetitions x 4 interleaved rounds, with
// pybind11_json 0.2.13 in these two functions (plus a depth walk and this walk for the error
// message, so that tests/python passed for it too: 202/202), publish() alone cost 1.33x this
// converter's time for {"n": 1} and 1.54x for a 1.2 KB nested payload; Python -> Python
// handler 1.17-1.37x; JSON -> Python (a handler reading the payload) was even (1.02x).
//
// Conversions (unchanged from the pybind11_json behaviour users already rely on): None -> null,
// bool, int (int64, else uint64, else TypeError), float, str (UTF-8), bytes -> base64 text,
// list and tuple -> array, dict -> object with str() of non-string keys. Subclasses of these
// types convert as their base type.
#include "common.hpp"

#include <herald/events/json_fields.hpp>

#include <algorithm>
#include <array>
#include <string>

namespace herald::py_bindings {

bool utf8_of(PyObject* str, std::string& out) {
  Py_ssize_t size = 0;
  const char* text = PyUnicode_AsUTF8AndSize(str, &size);
  if (text == nullptr) {
    PyErr_Clear();
    return false;
  }
  out.assign(text, static_cast<std::size_t>(size));
  return true;
}

namespace {

using nlohmann::json;


std::string type_name(PyObject* v) { return Py_TYPE(v)->tp_name; }

std::string repr_of(PyObject* v) {
  PyObject* r = PyObject_Repr(v);
  if (r == nullptr) {
    PyErr_Clear();
    return "<" + type_name(v) + ">";
  }
  Py_ssize_t size = 0;
  const char* text = PyUnicode_AsUTF8AndSize(r, &size);
  std::string out = text != nullptr ? std::string(text, static_cast<std::size_t>(size)) : "?";
  if (text == nullptr) PyErr_Clear();
  Py_DECREF(r);
  return out;
}

// Where the walk is: the root's name and one step per level (a dict key, held by the walk, or a
// list index). Rendered only when a value cannot be converted.
struct KeyPath {
  std::string_view root;
  std::size_t max_depth;
  struct Step {
    PyObject* key;  // nullptr for a list index
    Py_ssize_t index;
  };
  std::array<Step, json_fields::kMaxDepth + 1> steps;  // on the stack: no allocation per walk
  std::size_t depth = 0;

  void push(PyObject* key, Py_ssize_t index) noexcept { steps[depth++] = {key, index}; }
  void pop() noexcept { --depth; }

  std::string render() const {
    std::string out(root);
    for (std::size_t i = 0; i < depth; ++i) {
      const Step& step = steps[i];
      out += '[';
      out += step.key != nullptr ? repr_of(step.key) : std::to_string(step.index);
      out += ']';
    }
    return out;
  }
};

[[noreturn]] void fail(const KeyPath& path, const std::string& reason) {
  // A real Python TypeError (not a C++ exception), so that adapters carry it like any other
  // exception raised by user code.
  PyErr_SetString(PyExc_TypeError, (path.render() + ": " + reason).c_str());
  throw py::error_already_set();
}

json convert(PyObject* v, KeyPath& path);

json convert_int(PyObject* v, const KeyPath& path) {
  int overflow = 0;
  const long long s = PyLong_AsLongLongAndOverflow(v, &overflow);
  if (overflow == 0) {
    if (s == -1 && PyErr_Occurred()) throw py::error_already_set();  // a broken __index__
    return static_cast<json::number_integer_t>(s);
  }
  if (overflow > 0) {
    const unsigned long long u = PyLong_AsUnsignedLongLong(v);
    if (!(u == static_cast<unsigned long long>(-1) && PyErr_Occurred())) {
      return static_cast<json::number_unsigned_t>(u);
    }
    PyErr_Clear();
  }
  fail(path, "integer " + repr_of(v) + " does not fit in 64 bits");
}

json convert_bytes(PyObject* v) {
  // base64 of the bytes, as text (what json-minded Python code expects from bytes).
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* data = reinterpret_cast<const unsigned char*>(PyBytes_AS_STRING(v));
  const auto size = static_cast<std::size_t>(PyBytes_GET_SIZE(v));
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= size; i += 3) {
    const unsigned n = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += alphabet[n & 63];
  }
  if (const std::size_t rest = size - i; rest > 0) {
    const unsigned n = (data[i] << 16) | (rest == 2 ? data[i + 1] << 8 : 0);
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += rest == 2 ? alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

void check_depth(const KeyPath& path) {
  if (path.depth >= path.max_depth) {
    fail(path, "lists and dicts nested more than " + std::to_string(path.max_depth) +
                   " levels deep (or containing themselves)");
  }
}

json convert_sequence(PyObject* v, KeyPath& path) {
  check_depth(path);
  json out = json::array();
  // Items are read by index each time and held while converted: a key's __str__ deeper down
  // could change the list under us.
  for (Py_ssize_t i = 0; i < (PyList_Check(v) ? PyList_GET_SIZE(v) : PyTuple_GET_SIZE(v)); ++i) {
    PyObject* item = PyList_Check(v) ? PyList_GET_ITEM(v, i) : PyTuple_GET_ITEM(v, i);
    Py_INCREF(item);
    path.push(nullptr, i);
    try {
      out.push_back(convert(item, path));
    } catch (...) {
      Py_DECREF(item);
      throw;
    }
    Py_DECREF(item);
    path.pop();
  }
  return out;
}

json convert_dict(PyObject* v, KeyPath& path) {
  check_depth(path);
  json out = json::object();
  Py_ssize_t pos = 0;
  PyObject* key = nullptr;
  PyObject* value = nullptr;
  std::string key_text;
  while (PyDict_Next(v, &pos, &key, &value)) {
    Py_INCREF(key);
    Py_INCREF(value);
    try {
      if (PyUnicode_Check(key)) {
        if (!utf8_of(key, key_text)) fail(path, "key " + repr_of(key) + " is not valid UTF-8 text");
      } else {
        PyObject* text = PyObject_Str(key);  // what the key prints as, e.g. 1 -> "1"
        if (text == nullptr) throw py::error_already_set();
        const bool ok = utf8_of(text, key_text);
        Py_DECREF(text);
        if (!ok) fail(path, "key " + repr_of(key) + " is not valid UTF-8 text");
      }
      path.push(key, 0);
      out[key_text] = convert(value, path);
      path.pop();
    } catch (...) {
      Py_DECREF(key);
      Py_DECREF(value);
      throw;
    }
    Py_DECREF(key);
    Py_DECREF(value);
  }
  return out;
}

json convert(PyObject* v, KeyPath& path) {
  if (v == Py_None) return nullptr;
  if (PyBool_Check(v)) return v == Py_True;
  if (PyLong_Check(v)) return convert_int(v, path);
  if (PyFloat_Check(v)) return PyFloat_AsDouble(v);
  if (PyUnicode_Check(v)) {
    std::string text;
    if (!utf8_of(v, text)) fail(path, "str " + repr_of(v) + " is not valid UTF-8 text");
    return text;
  }
  if (PyDict_Check(v)) return convert_dict(v, path);
  if (PyList_Check(v) || PyTuple_Check(v)) return convert_sequence(v, path);
  if (PyBytes_Check(v)) return convert_bytes(v);
  fail(path, "object of type " + type_name(v) + " is not JSON serialisable");
}

py::object from(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
    case json::value_t::discarded:
      return py::none();
    case json::value_t::boolean:
      return py::bool_(value.get<bool>());
    case json::value_t::number_integer:
      return py::reinterpret_steal<py::object>(PyLong_FromLongLong(value.get<json::number_integer_t>()));
    case json::value_t::number_unsigned:
      return py::reinterpret_steal<py::object>(PyLong_FromUnsignedLongLong(value.get<json::number_unsigned_t>()));
    case json::value_t::number_float:
      return py::reinterpret_steal<py::object>(PyFloat_FromDouble(value.get<double>()));
    case json::value_t::string: {
      const auto& s = value.get_ref<const std::string&>();
      PyObject* str = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
      if (str == nullptr) throw py::error_already_set();
      return py::reinterpret_steal<py::object>(str);
    }
    case json::value_t::binary: {
      const auto& b = value.get_binary();
      return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
    }
    case json::value_t::array: {
      py::list out(value.size());
      Py_ssize_t i = 0;
      for (const auto& item : value) PyList_SET_ITEM(out.ptr(), i++, from(item).release().ptr());
      return out;
    }
    case json::value_t::object: {
      py::dict out;
      for (auto it = value.begin(); it != value.end(); ++it) {
        const auto& k = it.key();
        py::object key = py::reinterpret_steal<py::object>(
            PyUnicode_DecodeUTF8(k.data(), static_cast<Py_ssize_t>(k.size()), "replace"));
        if (!key) throw py::error_already_set();
        py::object item = from(it.value());
        if (PyDict_SetItem(out.ptr(), key.ptr(), item.ptr()) != 0) throw py::error_already_set();
      }
      return out;
    }
  }
  return py::none();
}

}  // namespace

nlohmann::json to_json(const py::handle& value, std::string_view root, std::size_t max_depth) {
  KeyPath path;
  path.root = root;
  path.max_depth = std::min(max_depth, json_fields::kMaxDepth);
  return convert(value.ptr(), path);
}

py::object to_python(const nlohmann::json& value) { return from(value); }

}  // namespace herald::py_bindings
