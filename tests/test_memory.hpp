// Test helpers: memory where a backend runs, and whether a backend can run here.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "curvkit/core/context.hpp"

namespace curvkit::test {

/// Compiled, and (for cuda) a device is present.  `why` receives the reason if not.
bool backend_usable(Backend backend, std::string* why);

/// A Context for the backend (default stream / instance).
Context context_for(Backend backend);

/// A buffer of `count` T in the memory `backend` runs on, filled from / read back to host.
template <class T>
class Buffer {
 public:
  Buffer(Backend backend, const std::vector<T>& host);
  Buffer(Backend backend, std::size_t count);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  T* data() { return ptr_; }
  std::size_t size() const { return count_; }
  void upload(const std::vector<T>& host);
  std::vector<T> download() const;

 private:
  Backend backend_;
  std::size_t count_ = 0;
  T* ptr_ = nullptr;
};

}  // namespace curvkit::test
