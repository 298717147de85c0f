// Internal: the Sherman–Morrison / Woodbury family's entry points (sherman_morrison.hpp and
// quasi_newton.hpp) that every backend defines in curvkit::<backend>, templated on the scalar
// and instantiated for float and double.  The public functions in src/sherman_morrison.cpp
// validate arguments once (the workspace size included) and call these; backends may assume
// validated arguments.
#pragma once

#include "curvkit/quasi_newton.hpp"
#include "curvkit/sherman_morrison.hpp"

// The signatures, with `TEMPLATE` either `template <class T>` (declaration) or `template` and
// `T` a scalar (explicit instantiation), `ARGS` either <T> or empty.
#define CURVKIT_SM_ENTRY_POINTS(TEMPLATE, T, ARGS)                                                \
  TEMPLATE Status rank1_update ARGS(const Context&, MatrixBatch<T>, MatrixBatch<const T>, int*,   \
                                    const Rank1Options&);                                         \
  TEMPLATE Status woodbury_solve ARGS(const Context&, MatrixBatch<const T>, MatrixBatch<T>, int*, \
                                      const WoodburyOptions&, MatrixBatch<const T>,               \
                                      MatrixBatch<const T>);                                      \
  TEMPLATE Status bfgs_update ARGS(const Context&, MatrixBatch<T>, MatrixBatch<const T>,          \
                                   MatrixBatch<const T>, int*, const BfgsOptions&, const int*,    \
                                   int*);                                                         \
  TEMPLATE Status bfgs_damping ARGS(const Context&, MatrixBatch<const T>, MatrixBatch<T>,         \
                                    MatrixBatch<T>, int*, const DampingOptions&, T*, int*);       \
  TEMPLATE Status hessian_action_pair ARGS(                                                       \
      const Context&, MatrixBatch<const T>, MatrixBatch<const T>, MatrixBatch<const T>,           \
      MatrixBatch<T>, MatrixBatch<T>, int*, const HessianActionOptions&);                         \
  TEMPLATE Status lbfgs_apply ARGS(const Context&, MatrixBatch<const T>, MatrixBatch<const T>,    \
                                   MatrixBatch<T>, int*, const LbfgsOptions&,                     \
                                   MatrixBatch<const T>, MatrixBatch<const T>);                   \
  TEMPLATE Status lbfgs_two_loop ARGS(const Context&, MatrixBatch<const T>, MatrixBatch<const T>, \
                                      MatrixBatch<T>, int*, const LbfgsOptions&);

#define CURVKIT_SM_NOTHING
#define CURVKIT_DECLARE_SM_BACKEND(ns)                               \
  namespace curvkit::ns {                                            \
  CURVKIT_SM_ENTRY_POINTS(template <class T>, T, CURVKIT_SM_NOTHING) \
  }

CURVKIT_DECLARE_SM_BACKEND(reference)
CURVKIT_DECLARE_SM_BACKEND(kokkos)
CURVKIT_DECLARE_SM_BACKEND(cuda)

// Explicit instantiation of one backend's entry points for float and double; used at the end
// of each backend's source.
#define CURVKIT_INSTANTIATE_SM_BACKEND(ns)            \
  namespace curvkit::ns {                             \
  CURVKIT_SM_ENTRY_POINTS(template, float, <float>)   \
  CURVKIT_SM_ENTRY_POINTS(template, double, <double>) \
  }

// Only the CUDA backend needs Context workspace (woodbury_solve's Gram and k x k systems for
// large n); reference and Kokkos take their scratch from the heap and Kokkos team scratch, so
// the public queries answer 0 for them without asking the backend.
namespace curvkit::cuda {
template <class T>
std::size_t woodbury_solve_workspace_size(const Context& ctx, MatrixBatch<const T> ut,
                                          MatrixBatch<const T> b);
}

// Definitions for a backend that was not compiled: every op answers not_compiled.
#define CURVKIT_DEFINE_SM_STUBS(ns)                                                               \
  namespace curvkit::ns {                                                                         \
  template <class T>                                                                              \
  Status rank1_update(const Context&, MatrixBatch<T>, MatrixBatch<const T>, int*,                 \
                      const Rank1Options&) {                                                      \
    return Status::not_compiled("rank1_update", #ns);                                             \
  }                                                                                               \
  template <class T>                                                                              \
  Status woodbury_solve(const Context&, MatrixBatch<const T>, MatrixBatch<T>, int*,               \
                        const WoodburyOptions&, MatrixBatch<const T>, MatrixBatch<const T>) {     \
    return Status::not_compiled("woodbury_solve", #ns);                                           \
  }                                                                                               \
  template <class T>                                                                              \
  Status bfgs_update(const Context&, MatrixBatch<T>, MatrixBatch<const T>, MatrixBatch<const T>,  \
                     int*, const BfgsOptions&, const int*, int*) {                                \
    return Status::not_compiled("bfgs_update", #ns);                                              \
  }                                                                                               \
  template <class T>                                                                              \
  Status bfgs_damping(const Context&, MatrixBatch<const T>, MatrixBatch<T>, MatrixBatch<T>, int*, \
                      const DampingOptions&, T*, int*) {                                          \
    return Status::not_compiled("bfgs_damping", #ns);                                             \
  }                                                                                               \
  template <class T>                                                                              \
  Status hessian_action_pair(const Context&, MatrixBatch<const T>, MatrixBatch<const T>,          \
                             MatrixBatch<const T>, MatrixBatch<T>, MatrixBatch<T>, int*,          \
                             const HessianActionOptions&) {                                       \
    return Status::not_compiled("hessian_action_pair", #ns);                                      \
  }                                                                                               \
  template <class T>                                                                              \
  Status lbfgs_apply(const Context&, MatrixBatch<const T>, MatrixBatch<const T>, MatrixBatch<T>,  \
                     int*, const LbfgsOptions&, MatrixBatch<const T>, MatrixBatch<const T>) {     \
    return Status::not_compiled("lbfgs_apply", #ns);                                              \
  }                                                                                               \
  template <class T>                                                                              \
  Status lbfgs_two_loop(const Context&, MatrixBatch<const T>, MatrixBatch<const T>,               \
                        MatrixBatch<T>, int*, const LbfgsOptions&) {                              \
    return Status::not_compiled("lbfgs_two_loop", #ns);                                           \
  }                                                                                               \
  }                                                                                               \
  CURVKIT_INSTANTIATE_SM_BACKEND(ns)
