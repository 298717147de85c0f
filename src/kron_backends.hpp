// Internal: the Kronecker family's entry points (gemm.hpp and kron.hpp) that every backend
// defines in curvkit::<backend>, templated on the scalar and instantiated for float and double.
// The public functions in src/kron.cpp validate arguments once and call these; uniform GEMM,
// SYRK and kron_apply calls arrive as a group of one.  mode_product_chain is planned in
// src/kron.cpp on top of each backend's mode_product; only the reference backend computes a
// chain on its own (the oracle must not share the plan it checks).
#pragma once

#include <cstddef>
#include <span>

#include "curvkit/gemm.hpp"
#include "curvkit/kron.hpp"

#define CURVKIT_KRON_ENTRY_POINTS(TEMPLATE, T, ARGS)                                            \
  TEMPLATE Status gemm ARGS(const Context&, Op, Op, T, GroupedBatch<const T>,                   \
                            GroupedBatch<const T>, T, GroupedBatch<T>);                         \
  TEMPLATE Status syrk ARGS(const Context&, Op, T, GroupedBatch<const T>, T, GroupedBatch<T>,   \
                            Fill);                                                              \
  TEMPLATE Status mode_product ARGS(const Context&, TensorBatch<const T>, int,                  \
                                    MatrixBatch<const T>, TensorBatch<T>, Op);                  \
  TEMPLATE Status mode_gram ARGS(const Context&, TensorBatch<const T>,                          \
                                 std::span<const MatrixBatch<T>>, const ModeGramOptions&);      \
  TEMPLATE Status tnt_normalize ARGS(const Context&, std::span<const MatrixBatch<T>>, int*);    \
  TEMPLATE Status kfac_pi_damping ARGS(const Context&, GroupedBatch<const T>,                   \
                                       GroupedBatch<const T>, double, T*, T*, int*);            \
  TEMPLATE Status kron_apply ARGS(const Context&, GroupedBatch<const T>, GroupedBatch<const T>, \
                                  GroupedBatch<const T>, GroupedBatch<T>,                       \
                                  const KronApplyOptions&);

#define CURVKIT_KRON_NOTHING
#define CURVKIT_DECLARE_KRON_BACKEND(ns)                                 \
  namespace curvkit::ns {                                                \
  CURVKIT_KRON_ENTRY_POINTS(template <class T>, T, CURVKIT_KRON_NOTHING) \
  }

CURVKIT_DECLARE_KRON_BACKEND(reference)
CURVKIT_DECLARE_KRON_BACKEND(kokkos)
CURVKIT_DECLARE_KRON_BACKEND(cuda)

namespace curvkit::reference {
template <class T>
Status mode_product_chain(const Context&, TensorBatch<const T>, std::span<const MatrixBatch<const T>>,
                          TensorBatch<T>, Op);
}

// Only the CUDA backend needs Context workspace for kron_apply (the intermediate product of
// large layers that go through cuBLAS).
namespace curvkit::cuda {
template <class T>
std::size_t kron_apply_workspace_size(const Context& ctx, GroupedBatch<const T> grad,
                                      const KronApplyOptions& options);
}

#define CURVKIT_INSTANTIATE_KRON_BACKEND(ns)            \
  namespace curvkit::ns {                               \
  CURVKIT_KRON_ENTRY_POINTS(template, float, <float>)   \
  CURVKIT_KRON_ENTRY_POINTS(template, double, <double>) \
  }

// Definitions for a backend that was not compiled: every op answers not_compiled.
#define CURVKIT_DEFINE_KRON_STUBS(ns)                                                              \
  namespace curvkit::ns {                                                                          \
  template <class T>                                                                               \
  Status gemm(const Context&, Op, Op, T, GroupedBatch<const T>, GroupedBatch<const T>, T,          \
              GroupedBatch<T>) {                                                                   \
    return Status::not_compiled("gemm", #ns);                                                      \
  }                                                                                                \
  template <class T>                                                                               \
  Status syrk(const Context&, Op, T, GroupedBatch<const T>, T, GroupedBatch<T>, Fill) {            \
    return Status::not_compiled("syrk", #ns);                                                      \
  }                                                                                                \
  template <class T>                                                                               \
  Status mode_product(const Context&, TensorBatch<const T>, int, MatrixBatch<const T>,             \
                      TensorBatch<T>, Op) {                                                        \
    return Status::not_compiled("mode_product", #ns);                                              \
  }                                                                                                \
  template <class T>                                                                               \
  Status mode_gram(const Context&, TensorBatch<const T>, std::span<const MatrixBatch<T>>,          \
                   const ModeGramOptions&) {                                                       \
    return Status::not_compiled("mode_gram", #ns);                                                 \
  }                                                                                                \
  template <class T>                                                                               \
  Status tnt_normalize(const Context&, std::span<const MatrixBatch<T>>, int*) {                    \
    return Status::not_compiled("tnt_normalize", #ns);                                             \
  }                                                                                                \
  template <class T>                                                                               \
  Status kfac_pi_damping(const Context&, GroupedBatch<const T>, GroupedBatch<const T>, double, T*, \
                         T*, int*) {                                                               \
    return Status::not_compiled("kfac_pi_damping", #ns);                                           \
  }                                                                                                \
  template <class T>                                                                               \
  Status kron_apply(const Context&, GroupedBatch<const T>, GroupedBatch<const T>,                  \
                    GroupedBatch<const T>, GroupedBatch<T>, const KronApplyOptions&) {             \
    return Status::not_compiled("kron_apply", #ns);                                                \
  }                                                                                                \
  }                                                                                                \
  CURVKIT_INSTANTIATE_KRON_BACKEND(ns)
