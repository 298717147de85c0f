#include "test_memory.hpp"

#include <cstring>
#include <stdexcept>

#if CURVKIT_HAVE_KOKKOS
#include <Kokkos_Core.hpp>
#endif
#if CURVKIT_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace curvkit::test {

bool backend_usable(Backend backend, std::string* why) {
  if (!backend_available(backend)) {
    *why = std::string(to_string(backend)) + " backend not compiled";
    return false;
  }
#if CURVKIT_HAVE_CUDA
  if (backend == Backend::cuda) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      cudaGetLastError();
      *why = "no CUDA device";
      return false;
    }
  }
#endif
  return true;
}

Context context_for(Backend backend) {
  return Context(backend);
}

namespace {
void* allocate(Backend backend, std::size_t bytes) {
  if (bytes == 0) bytes = 1;
  switch (backend) {
    case Backend::reference:
      return ::operator new(bytes);
    case Backend::kokkos:
#if CURVKIT_HAVE_KOKKOS
      return Kokkos::kokkos_malloc<Kokkos::DefaultExecutionSpace::memory_space>("curvkit_test",
                                                                                bytes);
#else
      break;
#endif
    case Backend::cuda: {
#if CURVKIT_HAVE_CUDA
      void* p = nullptr;
      if (cudaMalloc(&p, bytes) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
      return p;
#else
      break;
#endif
    }
  }
  throw std::runtime_error("test buffer: backend not compiled");
}

void release(Backend backend, void* p) {
  switch (backend) {
    case Backend::reference:
      ::operator delete(p);
      return;
    case Backend::kokkos:
#if CURVKIT_HAVE_KOKKOS
      Kokkos::kokkos_free<Kokkos::DefaultExecutionSpace::memory_space>(p);
#endif
      return;
    case Backend::cuda:
#if CURVKIT_HAVE_CUDA
      cudaFree(p);
#endif
      return;
  }
}

void copy(Backend backend, void* dst, const void* src, std::size_t bytes, bool to_backend) {
  if (bytes == 0) return;
  switch (backend) {
    case Backend::reference:
      std::memcpy(dst, src, bytes);
      return;
    case Backend::kokkos: {
#if CURVKIT_HAVE_KOKKOS
      using Mem = Kokkos::DefaultExecutionSpace::memory_space;
      using Unmanaged = Kokkos::MemoryTraits<Kokkos::Unmanaged>;
      Kokkos::fence();
      if (to_backend) {
        Kokkos::View<char*, Mem, Unmanaged> d(static_cast<char*>(dst), bytes);
        Kokkos::View<const char*, Kokkos::HostSpace, Unmanaged> s(static_cast<const char*>(src),
                                                                  bytes);
        Kokkos::deep_copy(d, s);
      } else {
        Kokkos::View<char*, Kokkos::HostSpace, Unmanaged> d(static_cast<char*>(dst), bytes);
        Kokkos::View<const char*, Mem, Unmanaged> s(static_cast<const char*>(src), bytes);
        Kokkos::deep_copy(d, s);
      }
      Kokkos::fence();
#endif
      return;
    }
    case Backend::cuda:
#if CURVKIT_HAVE_CUDA
      cudaDeviceSynchronize();
      if (cudaMemcpy(dst, src, bytes,
                     to_backend ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost) != cudaSuccess)
        throw std::runtime_error("cudaMemcpy failed");
#endif
      return;
  }
}
}  // namespace

template <class T>
Buffer<T>::Buffer(Backend backend, std::size_t count)
    : backend_(backend),
      count_(count),
      ptr_(static_cast<T*>(allocate(backend, count * sizeof(T)))) {}

template <class T>
Buffer<T>::Buffer(Backend backend, const std::vector<T>& host) : Buffer(backend, host.size()) {
  upload(host);
}

template <class T>
Buffer<T>::~Buffer() {
  release(backend_, ptr_);
}

template <class T>
void Buffer<T>::upload(const std::vector<T>& host) {
  if (host.size() != count_) throw std::runtime_error("test buffer: size mismatch");
  copy(backend_, ptr_, host.data(), count_ * sizeof(T), true);
}

template <class T>
std::vector<T> Buffer<T>::download() const {
  std::vector<T> host(count_);
  copy(backend_, host.data(), ptr_, count_ * sizeof(T), false);
  return host;
}

template class Buffer<float>;
template class Buffer<double>;
template class Buffer<int>;
template class Buffer<char>;  // workspaces

}  // namespace curvkit::test
