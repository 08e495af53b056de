#pragma once
// The engine's small exception hierarchy. Messages name the file/tensor, what was expected and
// what was found, in one line, so the CLI can print them as they are and the GUI can show them.
#include <stdexcept>
#include <string>

namespace mechscope {

/// Base of every error mechscope raises on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Bad user input: a file that is missing or malformed, an option out of range, a prompt too long.
/// The CLI maps it to exit code 2.
class InputError : public Error {
 public:
  using Error::Error;
};

/// A feature asked for that this build or this device does not support (e.g. fp16 on CPU).
class UnsupportedError : public InputError {
 public:
  using InputError::InputError;
};

/// The run was cancelled through its RunContext (Ctrl-C, the GUI's Cancel button).
class Cancelled : public Error {
 public:
  Cancelled() : Error("cancelled") {}
};

}  // namespace mechscope
