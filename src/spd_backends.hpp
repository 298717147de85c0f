// Internal: the SPD entry points every backend defines, in curvkit::<backend>.  The public
// functions in src/spd.cpp validate arguments once and call these with a grouped batch (a
// uniform batch is a group of one).  Backends may assume validated arguments.
#pragma once

#include "curvkit/spd.hpp"

#define CURVKIT_DECLARE_SPD_BACKEND(ns)                                                     \
  namespace curvkit::ns {                                                                   \
  template <class T>                                                                        \
  Status potrf(const Context& ctx, GroupedBatch<T> a, int* info, const SpdOptions& options, \
               T* shift_used);                                                              \
  template <class T>                                                                        \
  Status potrs(const Context& ctx, GroupedBatch<const T> l, GroupedBatch<T> b, int* info);  \
  template <class T>                                                                        \
  Status posv(const Context& ctx, GroupedBatch<T> a, GroupedBatch<T> b, int* info,          \
              const SpdOptions& options, T* shift_used);                                    \
  template <class T>                                                                        \
  Status potri(const Context& ctx, GroupedBatch<T> a, int* info, const SpdOptions& options, \
               T* shift_used);                                                              \
  }

CURVKIT_DECLARE_SPD_BACKEND(reference)
CURVKIT_DECLARE_SPD_BACKEND(kokkos)
CURVKIT_DECLARE_SPD_BACKEND(cuda)

// Explicit instantiation of one backend's four ops for one scalar; used at the end of each
// backend's spd source.
#define CURVKIT_INSTANTIATE_SPD_BACKEND(ns, T)                                            \
  namespace curvkit::ns {                                                                 \
  template Status potrf<T>(const Context&, GroupedBatch<T>, int*, const SpdOptions&, T*); \
  template Status potrs<T>(const Context&, GroupedBatch<const T>, GroupedBatch<T>, int*); \
  template Status posv<T>(const Context&, GroupedBatch<T>, GroupedBatch<T>, int*,         \
                          const SpdOptions&, T*);                                         \
  template Status potri<T>(const Context&, GroupedBatch<T>, int*, const SpdOptions&, T*); \
  }

// Definitions for a backend that was not compiled: every op answers not_compiled.
#define CURVKIT_DEFINE_SPD_STUBS(ns)                                                           \
  namespace curvkit::ns {                                                                      \
  template <class T>                                                                           \
  Status potrf(const Context&, GroupedBatch<T>, int*, const SpdOptions&, T*) {                 \
    return Status::not_compiled("potrf", #ns);                                                 \
  }                                                                                            \
  template <class T>                                                                           \
  Status potrs(const Context&, GroupedBatch<const T>, GroupedBatch<T>, int*) {                 \
    return Status::not_compiled("potrs", #ns);                                                 \
  }                                                                                            \
  template <class T>                                                                           \
  Status posv(const Context&, GroupedBatch<T>, GroupedBatch<T>, int*, const SpdOptions&, T*) { \
    return Status::not_compiled("posv", #ns);                                                  \
  }                                                                                            \
  template <class T>                                                                           \
  Status potri(const Context&, GroupedBatch<T>, int*, const SpdOptions&, T*) {                 \
    return Status::not_compiled("potri", #ns);                                                 \
  }                                                                                            \
  }                                                                                            \
  CURVKIT_INSTANTIATE_SPD_BACKEND(ns, float)                                                   \
  CURVKIT_INSTANTIATE_SPD_BACKEND(ns, double)
