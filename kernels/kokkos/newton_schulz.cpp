// Kokkos backend of the Newton–Schulz family (newton_schulz.hpp): one work item per matrix runs
// every iteration of it (the embedded routines of curvkit/device/newton_schulz.hpp) in Kokkos
// team scratch, so a whole batch is one launch per group and needs no Context workspace; on
// the host its products go through the packed micro-kernel.  A single large matrix is one work
// item, i.e. one thread (on Kokkos Serial, the only host backend measured, that is no loss).
#include "curvkit/device/newton_schulz.hpp"
#include "compat.hpp"
#include "newton_schulz_backends.hpp"

namespace curvkit::kokkos {
namespace {

enum class Op4 { inverse, sqrt, root, polar };

template <class T>
struct NsItem {
  Op4 op;
  MatrixBatch<const T> a;
  MatrixBatch<T> x, x2;  // x2: sqrt's inverse square root
  NsReport<T> report;
  index_t first = 0;  // index of this group's first matrix in the report arrays
  NewtonSchulzOptions o;
  PolarOptions po;
  int p = 1;

  KOKKOS_INLINE_FUNCTION void operator()(index_t b, void* scratch) const {
    T* s = static_cast<T*>(scratch);
    const index_t n = a.rows;
    T* out = x.data ? x.matrix(b) : nullptr;
    int steps = 0, code = 0;
    double r = 0;
    switch (op) {
      case Op4::inverse:
        code = device::ns_inverse(n, a.matrix(b), a.ld, out, x.ld, o, s, &steps, &r);
        break;
      case Op4::sqrt:
        code = device::ns_sqrt(n, a.matrix(b), a.ld, out, x.ld, x2.data ? x2.matrix(b) : nullptr,
                               x2.ld, o, s, &steps, &r);
        break;
      case Op4::root:
        code = device::ns_inverse_root(n, a.matrix(b), a.ld, p, out, x.ld, o, s, &steps, &r);
        break;
      case Op4::polar:
        code = device::ns_polar(a.rows, a.cols, a.matrix(b), a.ld, out, x.ld, o, po, s, &steps, &r);
        break;
    }
    report.info[first + b] = code;
    if (report.iterations) report.iterations[first + b] = steps;
    if (report.residual) report.residual[first + b] = T(r);
  }
};

template <class T>
Status run(const Context& ctx, Op4 op, GroupedBatch<const T> a, GroupedBatch<T> x,
           GroupedBatch<T> x2, NsReport<T> report, const NewtonSchulzOptions& o,
           const PolarOptions& po, int p) {
  index_t first = 0;
  for (std::size_t g = 0; g < a.size(); ++g) {
    NsItem<T> f{op,
                a[g],
                x.empty() ? MatrixBatch<T>{} : x[g],
                x2.empty() ? MatrixBatch<T>{} : x2[g],
                report,
                first,
                o,
                po,
                p};
    const index_t elems = op == Op4::polar ? device::ns_polar_scratch<T>(a[g].rows, a[g].cols)
                                           : device::ns_square_scratch<T>(a[g].rows);
    for_each_with_scratch(exec_space(ctx), "curvkit::newton_schulz", a[g].batch,
                          sizeof(T) * std::size_t(elems), f);
    first += a[g].batch;
  }
  return Status::success();
}

}  // namespace

template <class T>
std::size_t newton_schulz_workspace_size(const Context&, GroupedBatch<const T>) {
  return 0;
}

template <class T>
Status newton_schulz_inverse(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> x,
                             NsReport<T> r, const NewtonSchulzOptions& o) {
  return run<T>(ctx, Op4::inverse, a, x, {}, r, o, {}, 1);
}

template <class T>
Status newton_schulz_sqrt(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> sq,
                          GroupedBatch<T> inv, NsReport<T> r, const NewtonSchulzOptions& o) {
  return run<T>(ctx, Op4::sqrt, a, sq, inv, r, o, {}, 1);
}

template <class T>
Status newton_schulz_inverse_root(const Context& ctx, GroupedBatch<const T> a, int p,
                                  GroupedBatch<T> x, NsReport<T> r, const NewtonSchulzOptions& o) {
  return run<T>(ctx, Op4::root, a, x, {}, r, o, {}, p);
}

template <class T>
Status newton_schulz_polar(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> u,
                           NsReport<T> r, const NewtonSchulzOptions& o, const PolarOptions& po) {
  return run<T>(ctx, Op4::polar, a, u, {}, r, o, po, 1);
}

}  // namespace curvkit::kokkos

CURVKIT_INSTANTIATE_NS_BACKEND(kokkos)
