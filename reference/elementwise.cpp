// Reference backend of the elementwise family (elementwise.hpp): plain loops in long double,
// written from the header's contract and not from curvkit/device/elementwise.hpp (the oracle
// shares no code with the backends it checks).
#include <cmath>
#include <limits>

#include "elementwise_backends.hpp"

namespace curvkit::reference {

using device::MapKind;
using real = long double;

template <class T>
Status elementwise_map(const Context&, const MapCall<T>& call) {
  const auto& c = call.k.c;
  for (const MapGroup<T>& g : call.groups)
    for (index_t b = 0; b < g.batch; ++b) {
      const index_t flat = g.first + b;
      for (index_t i = 0; i < g.rows; ++i)
        for (index_t j = 0; j < g.cols; ++j) {
          T* s[4];
          for (int q = 0; q < 4; ++q) s[q] = g.slot[q].at(b, i, j);
          T* z = s[2];
          switch (call.kind) {
            case MapKind::axpby: {
              real v = 0;
              if (s[0]) v += real(c[0]) * real(*s[0]);
              if (s[1]) v += real(c[1]) * real(*s[1]);
              *z = T(v);
              break;
            }
            case MapKind::fill:
              *z = T(c[0]);
              break;
            case MapKind::add_scalar:
              *z = T(real(*z) + real(c[0]) + (call.pm0 ? real(call.pm0[flat]) : real(0)));
              break;
            case MapKind::add_diagonal:
              if (i == j)
                *z = T(real(*z) + real(c[0]) + (call.pm0 ? real(call.pm0[flat]) : real(0)));
              break;
            case MapKind::square_ema: {
              const real x = *s[0];
              *z = T((c[0] == 0 ? real(0) : real(c[0]) * real(*z)) + real(c[1]) * x * x);
              break;
            }
            case MapKind::diag_precondition: {
              const real sv = *s[1];
              *z = T(real(*s[0]) / ((c[1] == 0 ? sv : std::sqrt(sv)) + real(c[0])));
              break;
            }
            case MapKind::adam: {
              const real gv = *s[0];
              const real m = real(c[0]) * real(*s[1]) + (1 - real(c[0])) * gv;
              const real v = real(c[1]) * real(*s[3]) + (1 - real(c[1])) * gv * gv;
              *s[1] = T(m);
              *s[3] = T(v);
              *z = T((m * real(c[3])) / (std::sqrt(v * real(c[4])) + real(c[2])));
              break;
            }
            case MapKind::scale_by_ratio:
              *z = T(real(*z) * std::sqrt(real(call.pm0[flat])) /
                     (std::sqrt(real(call.pm1[flat])) + real(c[0])));
              break;
            case MapKind::copy_if_ok:
              if (call.info[flat] == 0 || call.info[flat] == 1) *z = *s[0];
              break;
            case MapKind::axpby_scaled: {
              real v = real(c[0]) * real(call.shared[0]) * real(*s[0]);
              if (s[1]) v += real(c[1]) * real(*s[1]);
              *z = T(v);
              break;
            }
            case MapKind::clip_by_quadratic: {
              real q = 0;
              for (index_t e = 0; e < call.shared_count; ++e) q += real(call.shared[e]);
              const real a = std::abs(q);
              const real nu = std::isnan(q)     ? q
                              : real(c[0]) >= a ? real(1)
                                                : std::sqrt(real(c[0]) / a);
              *z = T(real(*z) * nu);
              break;
            }
          }
        }
    }
  return Status::success();
}

template <class T>
Status sum_products(const Context&, GroupedBatch<const T> x, GroupedBatch<const T> y, T* out,
                    bool accumulate) {
  index_t flat = 0;
  for (std::size_t q = 0; q < x.size(); ++q) {
    const auto &g = x[q], &h = y[q];
    for (index_t b = 0; b < g.batch; ++b, ++flat) {
      real s = accumulate ? real(out[flat]) : real(0);
      for (index_t i = 0; i < g.rows; ++i)
        for (index_t j = 0; j < g.cols; ++j) s += real(g(b, i, j)) * real(h(b, i, j));
      out[flat] = T(s);
    }
  }
  return Status::success();
}

template <class T>
Status lm_damping_update(const Context&, const T* f0, const T* f1, const T* gv, const T* vv,
                         index_t count, const LmDampingRule& r, T* state, index_t copies) {
  const real lambda = state[1];
  real g = 0, v = 0;
  for (index_t i = 0; i < count; ++i) {
    g += real(gv[i]);
    v += real(vv[i]);
  }
  const real d = g / lambda, dd = v / (lambda * lambda), lr = r.lr;
  const real pred = lr * d - lr * lr * (d - lambda * dd) / 2;
  real lm = state[0], rho = std::numeric_limits<real>::quiet_NaN();
  if (!std::isfinite(real(*f1))) {
    lm *= r.boost;
  } else if (pred > 0 && std::isfinite(pred)) {
    rho = (real(*f0) - real(*f1)) / pred;
    if (rho < r.epsilon) lm *= r.boost;
    if (rho > 1 - r.epsilon) lm *= r.drop;
  }
  const real next = lm + r.floor;
  state[0] = T(lm);
  state[1] = T(next);
  state[2] = T(1 / next);
  state[3] = T(rho);
  state[4] = T(pred);
  for (index_t i = 0; i < copies; ++i) state[5 + i] = T(next);
  return Status::success();
}

}  // namespace curvkit::reference

CURVKIT_INSTANTIATE_EW_BACKEND(reference)
