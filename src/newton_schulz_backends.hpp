// Internal: the Newton–Schulz family's entry points (newton_schulz.hpp) that every backend
// defines in curvkit::<backend>, templated on the scalar and instantiated for float and double.
// The public functions in src/newton_schulz.cpp validate arguments once and call these; uniform
// calls arrive as a group of one.  Empty sqrt / inv_sqrt outputs arrive as views with
// data == nullptr.
#pragma once

#include <cstddef>

#include "curvkit/newton_schulz.hpp"

#define CURVKIT_NS_ENTRY_POINTS(TEMPLATE, T, ARGS)                                                 \
  TEMPLATE std::size_t newton_schulz_workspace_size ARGS(const Context&, GroupedBatch<const T>);   \
  TEMPLATE Status newton_schulz_inverse ARGS(const Context&, GroupedBatch<const T>,                \
                                             GroupedBatch<T>, NsReport<T>,                         \
                                             const NewtonSchulzOptions&);                          \
  TEMPLATE Status newton_schulz_sqrt ARGS(const Context&, GroupedBatch<const T>, GroupedBatch<T>,  \
                                          GroupedBatch<T>, NsReport<T>,                            \
                                          const NewtonSchulzOptions&);                             \
  TEMPLATE Status newton_schulz_inverse_root ARGS(const Context&, GroupedBatch<const T>, int,      \
                                                  GroupedBatch<T>, NsReport<T>,                    \
                                                  const NewtonSchulzOptions&);                     \
  TEMPLATE Status newton_schulz_polar ARGS(const Context&, GroupedBatch<const T>, GroupedBatch<T>, \
                                           NsReport<T>, const NewtonSchulzOptions&,                \
                                           const PolarOptions&);

#define CURVKIT_NS_NOTHING
#define CURVKIT_DECLARE_NS_BACKEND(ns)                               \
  namespace curvkit::ns {                                            \
  CURVKIT_NS_ENTRY_POINTS(template <class T>, T, CURVKIT_NS_NOTHING) \
  }

CURVKIT_DECLARE_NS_BACKEND(reference)
CURVKIT_DECLARE_NS_BACKEND(kokkos)
CURVKIT_DECLARE_NS_BACKEND(cuda)

#define CURVKIT_INSTANTIATE_NS_BACKEND(ns)            \
  namespace curvkit::ns {                             \
  CURVKIT_NS_ENTRY_POINTS(template, float, <float>)   \
  CURVKIT_NS_ENTRY_POINTS(template, double, <double>) \
  }

// Definitions for a backend that was not compiled: every op answers not_compiled.
#define CURVKIT_DEFINE_NS_STUBS(ns)                                                               \
  namespace curvkit::ns {                                                                         \
  template <class T>                                                                              \
  std::size_t newton_schulz_workspace_size(const Context&, GroupedBatch<const T>) {               \
    return 0;                                                                                     \
  }                                                                                               \
  template <class T>                                                                              \
  Status newton_schulz_inverse(const Context&, GroupedBatch<const T>, GroupedBatch<T>,            \
                               NsReport<T>, const NewtonSchulzOptions&) {                         \
    return Status::not_compiled("newton_schulz_inverse", #ns);                                    \
  }                                                                                               \
  template <class T>                                                                              \
  Status newton_schulz_sqrt(const Context&, GroupedBatch<const T>, GroupedBatch<T>,               \
                            GroupedBatch<T>, NsReport<T>, const NewtonSchulzOptions&) {           \
    return Status::not_compiled("newton_schulz_sqrt", #ns);                                       \
  }                                                                                               \
  template <class T>                                                                              \
  Status newton_schulz_inverse_root(const Context&, GroupedBatch<const T>, int, GroupedBatch<T>,  \
                                    NsReport<T>, const NewtonSchulzOptions&) {                    \
    return Status::not_compiled("newton_schulz_inverse_root", #ns);                               \
  }                                                                                               \
  template <class T>                                                                              \
  Status newton_schulz_polar(const Context&, GroupedBatch<const T>, GroupedBatch<T>, NsReport<T>, \
                             const NewtonSchulzOptions&, const PolarOptions&) {                   \
    return Status::not_compiled("newton_schulz_polar", #ns);                                      \
  }                                                                                               \
  }                                                                                               \
  CURVKIT_INSTANTIATE_NS_BACKEND(ns)
