#pragma once
// The line protocol between mechscope and `mechscope-h5check --serve` (a fork server: it forks a fresh
// child per file, so each file is read by a process that has never seen another). Text, so that a
// stand-in server in a test can be a shell script.
//   request:  "<seconds>\t<path>\n"                       (a path never holds a newline: refused before)
//   response: "<exit|signal> <code> <length> [<manifest length>]\n<message><manifest>"
//             (<message>: the child's stderr; <manifest>: store/isolation/manifest.hpp's JSON, after a pass)
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace mechscope::store::isolation {

/// How one checker child ended.
struct CheckOutcome {
  bool signaled = false;       ///< killed by a signal (code is the signal), else exited (code is the status)
  int code = 0;                ///< exit status or signal number
  std::string message;         ///< what the child wrote to stderr (truncated to a few KiB)
  std::string manifest;        ///< the manifest JSON the child wrote (store/isolation/manifest.hpp), after a pass
  bool killedForTime = false;  ///< the parent gave up waiting and killed the server (set by the parent only)
};

/// The request line for checking `path` within `seconds`.
inline std::string formatRequest(double seconds, const std::string& path) {
  char head[64];
  std::snprintf(head, sizeof head, "%.3f\t", seconds);
  return head + path + "\n";
}

/// Parses a request line (without its newline); false when malformed.
inline bool parseRequest(const std::string& line, double& seconds, std::string& path) {
  const auto tab = line.find('\t');
  if (tab == std::string::npos || tab + 1 >= line.size()) return false;
  char* end = nullptr;
  const std::string number = line.substr(0, tab);
  seconds = std::strtod(number.c_str(), &end);
  if (*end != '\0' || !(seconds > 0)) return false;
  path = line.substr(tab + 1);
  return true;
}

/// The response for `outcome`.
inline std::string formatResponse(const CheckOutcome& outcome) {
  return std::string(outcome.signaled ? "signal " : "exit ") + std::to_string(outcome.code) + " " +
         std::to_string(outcome.message.size()) + " " + std::to_string(outcome.manifest.size()) + "\n" +
         outcome.message + outcome.manifest;
}

/// Parses a response at the start of `buf`: the bytes it takes, 0 while incomplete, npos when malformed.
inline std::size_t parseResponse(const std::string& buf, CheckOutcome& out) {
  const auto nl = buf.find('\n');
  if (nl == std::string::npos) return buf.size() > 64 ? std::string::npos : 0;
  char kind[8] = {0};
  int code = 0;
  unsigned long length = 0, manifestLength = 0;
  const int fields = std::sscanf(buf.substr(0, nl).c_str(), "%7s %d %lu %lu", kind, &code, &length, &manifestLength);
  if (fields != 3 && fields != 4) return std::string::npos;
  const std::string k = kind;
  if ((k != "exit" && k != "signal") || length > (1u << 20) || manifestLength > (1ul << 31)) return std::string::npos;
  if (buf.size() < nl + 1 + length + manifestLength) return 0;
  out.signaled = k == "signal";
  out.code = code;
  out.message = buf.substr(nl + 1, length);
  out.manifest = buf.substr(nl + 1 + length, manifestLength);
  return nl + 1 + length + manifestLength;
}

}  // namespace mechscope::store::isolation
