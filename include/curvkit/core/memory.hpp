// Memory in a Context's backend, for the layers above the kernels (the optimizer layer's state,
// the trainer's tensors, bindings): the kernels themselves never allocate.
//   reference  host memory (operator new)
//   kokkos     Kokkos's default memory space (host for Serial / OpenMP, device for CUDA builds)
//   cuda       cudaMalloc'd device memory; copies run on the Context's stream and wait for it
// Allocation happens once per object (optimizer init, model setup), never in a hot path.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "curvkit/core/context.hpp"
#include "curvkit/core/status.hpp"

namespace curvkit {

/// *p = `bytes` of the Context's backend memory (null for 0 bytes).
Status allocate(const Context& ctx, std::size_t bytes, void** p);
/// Frees memory from allocate (null is a no-op).
void deallocate(const Context& ctx, void* p);
/// Copies `bytes` from host memory into backend memory.
Status copy_to_backend(const Context& ctx, void* dst, const void* host_src, std::size_t bytes);
/// Copies `bytes` of backend memory into host memory; returns after the data has arrived.
Status copy_to_host(const Context& ctx, void* host_dst, const void* src, std::size_t bytes);

/// An owning array of `count` T in a Context's backend memory (move-only).
template <class T>
class BackendArray {
 public:
  BackendArray() = default;
  /// Allocates `count` elements (uninitialised); status() says whether it worked.
  BackendArray(const Context& ctx, std::size_t count) : ctx_(ctx), count_(count) {
    void* p = nullptr;
    status_ = allocate(ctx, count * sizeof(T), &p);
    data_ = static_cast<T*>(p);
    if (!status_.ok()) count_ = 0;
  }
  /// Allocates and copies `host` in.
  BackendArray(const Context& ctx, const std::vector<T>& host) : BackendArray(ctx, host.size()) {
    if (status_.ok()) status_ = copy_to_backend(ctx, data_, host.data(), host.size() * sizeof(T));
  }
  ~BackendArray() { deallocate(ctx_, data_); }
  BackendArray(const BackendArray&) = delete;
  BackendArray& operator=(const BackendArray&) = delete;
  BackendArray(BackendArray&& o) noexcept { *this = std::move(o); }
  BackendArray& operator=(BackendArray&& o) noexcept {
    if (this != &o) {
      deallocate(ctx_, data_);
      ctx_ = o.ctx_;
      data_ = std::exchange(o.data_, nullptr);
      count_ = std::exchange(o.count_, 0);
      status_ = o.status_;
    }
    return *this;
  }

  T* data() const { return data_; }
  std::size_t size() const { return count_; }
  const Status& status() const { return status_; }
  /// The elements, copied to the host (waits for the Context's work).
  std::vector<T> to_host() const {
    std::vector<T> h(count_);
    if (count_ > 0) (void)copy_to_host(ctx_, h.data(), data_, count_ * sizeof(T));
    return h;
  }

 private:
  Context ctx_;
  T* data_ = nullptr;
  std::size_t count_ = 0;
  Status status_;
};

}  // namespace curvkit
