// herald error hierarchy: every error herald throws derives from herald::Error, and its
// message names the offending input (the event name, the pattern, the field, the key path).
#pragma once

#include <stdexcept>
#include <string>

namespace herald {

/// Base of every exception herald throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An event name that is not dot-separated tokens of [A-Za-z0-9_-].
class EventNameError : public Error {
 public:
  EventNameError(std::string name, std::string reason)
      : Error("invalid event name '" + name + "': " + reason),
        name_(std::move(name)),
        reason_(std::move(reason)) {}
  const std::string& name() const noexcept { return name_; }
  const std::string& reason() const noexcept { return reason_; }

 private:
  std::string name_;
  std::string reason_;
};

/// A glob pattern that cannot be compiled.
class PatternError : public Error {
 public:
  PatternError(std::string pattern, std::string reason)
      : Error("invalid pattern '" + pattern + "': " + reason),
        pattern_(std::move(pattern)),
        reason_(std::move(reason)) {}
  const std::string& pattern() const noexcept { return pattern_; }
  const std::string& reason() const noexcept { return reason_; }

 private:
  std::string pattern_;
  std::string reason_;
};

/// Input data (a step completion, an envelope, a payload) that does not have the expected shape.
/// `field()` is the path of the offending field ("step_name", "error.message", "/amount").
class ValidationError : public Error {
 public:
  ValidationError(std::string field, std::string problem)
      : Error(field.empty() ? problem : field + ": " + problem),
        field_(std::move(field)),
        problem_(std::move(problem)) {}
  const std::string& field() const noexcept { return field_; }
  const std::string& problem() const noexcept { return problem_; }

 private:
  std::string field_;
  std::string problem_;
};

/// Text that is not valid JSON (or MessagePack); the message carries the parser's position.
class ParseError : public Error {
 public:
  using Error::Error;
};

/// Configuration that cannot be used; `key_path()` is the JSON path of the bad key.
class ConfigError : public Error {
 public:
  ConfigError(std::string key_path, std::string problem)
      : Error(key_path.empty() ? problem : key_path + ": " + problem),
        key_path_(std::move(key_path)) {}
  const std::string& key_path() const noexcept { return key_path_; }

 private:
  std::string key_path_;
};

/// Registry misuse: duplicate name, unknown name in a strict lookup, registering while frozen.
class RegistryError : public Error {
 public:
  using Error::Error;
};

/// An operation not allowed in the current lifecycle state (e.g. a hook added after start()).
class StateError : public Error {
 public:
  using Error::Error;
};

/// A transport that cannot do what was asked (bad endpoint, address in use, unreadable key).
class TransportError : public Error {
 public:
  using Error::Error;
};

/// Thrown by subscriber adapters to tell the EventBus "this event failed and the failure has
/// already been reported" (to on_handle_error): the bus counts it as failed without logging again.
class HandlerFailure : public Error {
 public:
  using Error::Error;
};

/// Parsing of a closed set of names (conditions, delivery modes, overflow policies, states).
class UnknownValueError : public Error {
 public:
  UnknownValueError(std::string what, std::string value, std::string allowed)
      : Error("unknown " + what + " '" + value + "' (expected one of: " + allowed + ")") {}
};

}  // namespace herald
