// Internal: the Khatri–Rao family's entry points (khatri_rao.hpp) that every backend defines in
// curvkit::<backend>, templated on the scalar and instantiated for float and double.  The
// public functions in src/khatri_rao.cpp validate arguments once and call these; uniform calls
// arrive as a group of one.  The helpers below are shared by the public layer and the
// backends so that the workspace a call is given is the workspace its backend uses.
#pragma once

#include <cstddef>

#include "curvkit/khatri_rao.hpp"

#define CURVKIT_KHATRI_RAO_ENTRY_POINTS(TEMPLATE, T, ARGS)                                         \
  TEMPLATE Status khatri_rao_gram ARGS(const Context&, GroupedBatch<const T>,                      \
                                       GroupedBatch<const T>, GroupedBatch<T>,                     \
                                       const KhatriRaoOptions&);                                   \
  TEMPLATE Status khatri_rao_jv ARGS(const Context&, GroupedBatch<const T>, GroupedBatch<const T>, \
                                     GroupedBatch<const T>, GroupedBatch<T>,                       \
                                     const KhatriRaoOptions&);                                     \
  TEMPLATE Status khatri_rao_jtu ARGS(const Context&, GroupedBatch<const T>,                       \
                                      GroupedBatch<const T>, GroupedBatch<const T>,                \
                                      GroupedBatch<T>, const KhatriRaoOptions&);                   \
  TEMPLATE Status khatri_rao_layer_sums ARGS(const Context&, GroupedBatch<const T>,                \
                                             MatrixBatch<T>, bool);                                \
  TEMPLATE Status coarse_gram ARGS(const Context&, MatrixBatch<const T>, MatrixBatch<const T>,     \
                                   MatrixBatch<T>, MatrixBatch<T>, MatrixBatch<T>,                 \
                                   const CoarseGramOptions&);

#define CURVKIT_KHATRI_RAO_NOTHING
#define CURVKIT_DECLARE_KHATRI_RAO_BACKEND(ns)                                       \
  namespace curvkit::ns {                                                            \
  CURVKIT_KHATRI_RAO_ENTRY_POINTS(template <class T>, T, CURVKIT_KHATRI_RAO_NOTHING) \
  }

CURVKIT_DECLARE_KHATRI_RAO_BACKEND(reference)
CURVKIT_DECLARE_KHATRI_RAO_BACKEND(kokkos)
CURVKIT_DECLARE_KHATRI_RAO_BACKEND(cuda)

#define CURVKIT_INSTANTIATE_KHATRI_RAO_BACKEND(ns)            \
  namespace curvkit::ns {                                     \
  CURVKIT_KHATRI_RAO_ENTRY_POINTS(template, float, <float>)   \
  CURVKIT_KHATRI_RAO_ENTRY_POINTS(template, double, <double>) \
  }

// Definitions for a backend that was not compiled: every op answers not_compiled.
#define CURVKIT_DEFINE_KHATRI_RAO_STUBS(ns)                                                      \
  namespace curvkit::ns {                                                                        \
  template <class T>                                                                             \
  Status khatri_rao_gram(const Context&, GroupedBatch<const T>, GroupedBatch<const T>,           \
                         GroupedBatch<T>, const KhatriRaoOptions&) {                             \
    return Status::not_compiled("khatri_rao_gram", #ns);                                         \
  }                                                                                              \
  template <class T>                                                                             \
  Status khatri_rao_jv(const Context&, GroupedBatch<const T>, GroupedBatch<const T>,             \
                       GroupedBatch<const T>, GroupedBatch<T>, const KhatriRaoOptions&) {        \
    return Status::not_compiled("khatri_rao_jv", #ns);                                           \
  }                                                                                              \
  template <class T>                                                                             \
  Status khatri_rao_jtu(const Context&, GroupedBatch<const T>, GroupedBatch<const T>,            \
                        GroupedBatch<const T>, GroupedBatch<T>, const KhatriRaoOptions&) {       \
    return Status::not_compiled("khatri_rao_jtu", #ns);                                          \
  }                                                                                              \
  template <class T>                                                                             \
  Status khatri_rao_layer_sums(const Context&, GroupedBatch<const T>, MatrixBatch<T>, bool) {    \
    return Status::not_compiled("khatri_rao_layer_sums", #ns);                                   \
  }                                                                                              \
  template <class T>                                                                             \
  Status coarse_gram(const Context&, MatrixBatch<const T>, MatrixBatch<const T>, MatrixBatch<T>, \
                     MatrixBatch<T>, MatrixBatch<T>, const CoarseGramOptions&) {                 \
    return Status::not_compiled("coarse_gram", #ns);                                             \
  }                                                                                              \
  }                                                                                              \
  CURVKIT_INSTANTIATE_KHATRI_RAO_BACKEND(ns)

namespace curvkit::detail {

// Elements of per-sample gradients the direct convolution path keeps at once (one slice of
// output channels for all m samples): 8 Mi elements, 32 MiB in float.
inline constexpr index_t kDirectGramElements = index_t(1) << 23;

// Output channels per slice of the direct path for a layer of m samples.
inline index_t direct_gram_channels(index_t m, index_t d_in, index_t d_out, bool bias) {
  const index_t row = m * (d_in + (bias ? 1 : 0));
  index_t c = row > 0 ? kDirectGramElements / row : d_out;
  if (c < 1) c = 1;
  return c < d_out ? c : d_out;
}

// Positions per sample of a layer whose rows are m x S (the public layer checks divisibility).
inline index_t positions(index_t rows, index_t m) {
  return m > 0 ? rows / m : 0;
}

// The path a layer takes: linear layers always fused; otherwise the option, or the cost model.
inline GramPath gram_path(index_t m, index_t s, index_t d_in, index_t d_out, bool bias,
                          GramPath requested) {
  // Empty per-sample gradients have nothing to build: the fused form (K = 0, or NaN where the
  // inputs are) without workspace.
  if (s <= 1 || d_out == 0 || d_in + (bias ? 1 : 0) == 0) return GramPath::fused;
  if (requested != GramPath::automatic) return requested;
  return khatri_rao_gram_path(m, s, d_in, d_out, bias);
}

// Elements of workspace khatri_rao_gram's direct path needs for the groups (0 if no layer
// takes it): the largest slice.
template <class T>
index_t direct_gram_workspace_elements(GroupedBatch<const T> a, GroupedBatch<const T> g,
                                       GroupedBatch<T> k, const KhatriRaoOptions& o) {
  index_t most = 0;
  for (std::size_t l = 0; l < a.size(); ++l) {
    const index_t m = k[k.size() == 1 ? 0 : l].rows;
    const index_t s = positions(a[l].rows, m);
    if (gram_path(m, s, a[l].cols, g[l].cols, o.bias, o.path) != GramPath::direct) continue;
    const index_t c = direct_gram_channels(m, a[l].cols, g[l].cols, o.bias);
    const index_t e = m * c * (a[l].cols + (o.bias ? 1 : 0));
    most = e > most ? e : most;
  }
  return most;
}

}  // namespace curvkit::detail
