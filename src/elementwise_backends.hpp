// Internal: the elementwise family's entry points (elementwise.hpp) that every backend defines in
// curvkit::<backend>, templated on the scalar and instantiated for float and double.  The public
// functions in src/elementwise.cpp validate their arguments and describe every op except
// sum_squares / sum_products as one map (curvkit/device/elementwise.hpp): up to four operand
// slots per group of equal shape, scalars, per-matrix arrays, and a shared array whose sum every
// matrix sees.  Unused slots have data == nullptr.
#pragma once

#include <span>

#include "curvkit/device/elementwise.hpp"
#include "curvkit/elementwise.hpp"

namespace curvkit {

/// One operand slot of a map group (inputs are passed as T*; only the map's outputs are written).
template <class T>
struct MapSlot {
  T* data = nullptr;
  index_t ld = 0, stride = 0;
  CURVKIT_HD_INLINE T* at(index_t b, index_t i, index_t j) const {
    return data == nullptr ? nullptr : data + b * stride + i * ld + j;
  }
};

/// A group of matrices of one shape with its slots; `first` is the flattened index of its first
/// matrix (the per-matrix arrays are indexed by it).
template <class T>
struct MapGroup {
  index_t batch = 0, rows = 0, cols = 0, first = 0;
  MapSlot<T> slot[4];
};

template <class T>
struct MapCall {
  device::MapKind kind = device::MapKind::axpby;
  device::MapScalars k;
  const T* pm0 = nullptr;  // per-matrix values: add_diagonal's shift, or num_sq
  const T* pm1 = nullptr;  // den_sq
  const int* info = nullptr;
  const T* shared = nullptr;  // clip_by_quadratic's q / axpby_scaled's scale: pm0 = their sum
  index_t shared_count = 0;
  std::span<const MapGroup<T>> groups;

  /// The per-matrix values of flattened matrix `b`.
  CURVKIT_HD_INLINE device::MapPerMatrix<T> per_matrix(index_t b) const {
    device::MapPerMatrix<T> pm;
    if (shared != nullptr) {
      double s = 0;
      for (index_t i = 0; i < shared_count; ++i) s += double(shared[i]);
      pm.pm0 = T(s);
    }
    if (pm0 != nullptr) pm.pm0 = pm0[b];
    if (pm1 != nullptr) pm.pm1 = pm1[b];
    if (info != nullptr) pm.ok = info[b] == 0 || info[b] == 1;
    return pm;
  }
};

}  // namespace curvkit

#define CURVKIT_EW_ENTRY_POINTS(TEMPLATE, T, ARGS)                                                \
  TEMPLATE Status elementwise_map ARGS(const Context&, const MapCall<T>&);                        \
  TEMPLATE Status sum_products ARGS(const Context&, GroupedBatch<const T>, GroupedBatch<const T>, \
                                    T*, bool);                                                    \
  TEMPLATE Status lm_damping_update ARGS(const Context&, const T*, const T*, const T*, const T*,  \
                                         index_t, const LmDampingRule&, T*, index_t);

#define CURVKIT_EW_NOTHING
#define CURVKIT_DECLARE_EW_BACKEND(ns)                               \
  namespace curvkit::ns {                                            \
  CURVKIT_EW_ENTRY_POINTS(template <class T>, T, CURVKIT_EW_NOTHING) \
  }

CURVKIT_DECLARE_EW_BACKEND(reference)
CURVKIT_DECLARE_EW_BACKEND(kokkos)
CURVKIT_DECLARE_EW_BACKEND(cuda)

#define CURVKIT_INSTANTIATE_EW_BACKEND(ns)            \
  namespace curvkit::ns {                             \
  CURVKIT_EW_ENTRY_POINTS(template, float, <float>)   \
  CURVKIT_EW_ENTRY_POINTS(template, double, <double>) \
  }

// Definitions for a backend that was not compiled: every op answers not_compiled.
#define CURVKIT_DEFINE_EW_STUBS(ns)                                                             \
  namespace curvkit::ns {                                                                       \
  template <class T>                                                                            \
  Status elementwise_map(const Context&, const MapCall<T>&) {                                   \
    return Status::not_compiled("elementwise", #ns);                                            \
  }                                                                                             \
  template <class T>                                                                            \
  Status sum_products(const Context&, GroupedBatch<const T>, GroupedBatch<const T>, T*, bool) { \
    return Status::not_compiled("sum_products", #ns);                                           \
  }                                                                                             \
  template <class T>                                                                            \
  Status lm_damping_update(const Context&, const T*, const T*, const T*, const T*, index_t,     \
                           const LmDampingRule&, T*, index_t) {                                 \
    return Status::not_compiled("lm_damping_update", #ns);                                      \
  }                                                                                             \
  }                                                                                             \
  CURVKIT_INSTANTIATE_EW_BACKEND(ns)
