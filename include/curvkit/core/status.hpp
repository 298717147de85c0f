// Status: the result of every host API call.  No exception crosses the library boundary.
#pragma once

#include <string>
#include <utility>

namespace curvkit {

enum class StatusCode : int {
  ok = 0,
  invalid_argument = 1,     ///< an argument is wrong; the message names it
  not_compiled = 2,         ///< the Context names a backend this build does not contain
  not_supported = 3,        ///< a valid request this backend or build cannot serve
  backend_error = 4,        ///< CUDA / Kokkos reported an error (launch, runtime)
  workspace_too_small = 5,  ///< the caller's workspace is smaller than the query said
};

const char* to_string(StatusCode code);

/// The outcome of a call: a code and, on failure, a readable message such as
/// "invalid_argument: potrf: a.ld (3) must be >= a.cols (4)".
class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status success() { return {}; }
  static Status invalid_argument(const std::string& op, const std::string& what) {
    return {StatusCode::invalid_argument, op + ": " + what};
  }
  static Status not_compiled(const std::string& op, const std::string& backend) {
    return {StatusCode::not_compiled,
            op + ": the " + backend + " backend was not compiled into this build of curvkit"};
  }
  static Status backend_error(const std::string& op, const std::string& what) {
    return {StatusCode::backend_error, op + ": " + what};
  }
  static Status not_supported(const std::string& op, const std::string& what) {
    return {StatusCode::not_supported, op + ": " + what};
  }

  bool ok() const { return code_ == StatusCode::ok; }
  StatusCode code() const { return code_; }
  /// The message without the code ("" when ok).
  const std::string& message() const { return message_; }
  /// "ok", or "<code>: <message>".
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::ok;
  std::string message_;
};

}  // namespace curvkit
