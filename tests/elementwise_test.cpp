// Elementwise family tests (curvkit/elementwise.hpp): every compiled backend, float and double,
// on fresh random inputs in padded (NaN-poisoned) layouts, against the header's formulas
// evaluated here in double; grouped calls of different shapes (one empty group) with the
// per-matrix arrays indexed across groups; exact in-place aliasing; operands a zero coefficient
// leaves out are not read (NaN there must not leak); the two-level K-FAC ops (add_scalar,
// sum_products, clip_by_quadratic: clipped, unclipped, zero and NaN sums); SMW-NG's ops
// (axpby_scaled with a device scale, lm_damping_update's three branches, the undefined ratio
// and a blown-up step); bad input.
//
// Tolerance: each element is a few roundings in T (Adam: a square root and two divisions), so
// the error per matrix is at most 8 eps(T) relative.
#include <functional>

#include "family_test_util.hpp"

namespace curvkit::test {
namespace {

// Shapes of one grouped call: batch, rows, cols, ld padding, stride padding.
struct Shape {
  index_t batch, rows, cols, ld_pad, stride_pad;
};
const std::vector<Shape> kShapes = {
    {3, 4, 5, 2, 3}, {1, 7, 2, 0, 0}, {0, 3, 3, 1, 0}, {2, 1, 9, 0, 4}};

class ElementwiseTest : public BackendTest {
 protected:
  template <class T>
  std::vector<Operand<T>> random(double scale = 1.0) {
    std::vector<Operand<T>> v;
    for (const Shape& s : kShapes)
      v.push_back(gaussian<T>(s.batch, s.rows, s.cols, rng_, scale, s.ld_pad, s.stride_pad));
    return v;
  }
  template <class T>
  static std::vector<Operand<T>> poisoned() {
    std::vector<Operand<T>> v;
    for (const Shape& s : kShapes) v.emplace_back(s.batch, s.rows, s.cols, s.ld_pad, s.stride_pad);
    return v;
  }

  // Operands on the backend, with their grouped views.
  template <class T>
  struct OnDevice {
    std::vector<std::unique_ptr<OnBackend<T>>> parts;
    std::vector<MatrixBatch<T>> views;
    std::vector<MatrixBatch<const T>> cviews;
    OnDevice(Backend be, const std::vector<Operand<T>>& ops) {
      for (const auto& o : ops) {
        parts.push_back(std::make_unique<OnBackend<T>>(be, o));
        views.push_back(parts.back()->view());
        cviews.push_back(parts.back()->cview());
      }
    }
    std::vector<Operand<T>> get() const {
      std::vector<Operand<T>> v;
      for (const auto& p : parts) v.push_back(p->get());
      return v;
    }
  };

  // Expected values: `f(group, b, i, j)` for every element; compared by relative norm, and the
  // padding of `after` must equal `before`'s.
  template <class T>
  void expect_equal(const std::vector<Operand<T>>& before, const std::vector<Operand<T>>& after,
                    const std::function<double(std::size_t, index_t, index_t, index_t)>& f,
                    const std::string& what) {
    for (std::size_t g = 0; g < kShapes.size(); ++g) {
      Operand<double> want(kShapes[g].batch, kShapes[g].rows, kShapes[g].cols);
      for (index_t b = 0; b < want.l.batch; ++b)
        for (index_t i = 0; i < want.l.rows; ++i)
          for (index_t j = 0; j < want.l.cols; ++j) want(b, i, j) = f(g, b, i, j);
      EXPECT_LE(max_rel_err(after[g], want), 8 * eps<T>())
          << trace() << ", " << what << ", group " << g
          << (sizeof(T) == 4 ? ", float" : ", double");
      expect_untouched_outside(
          before[g], after[g], [](index_t, index_t) { return true; }, what + " padding");
    }
  }

  template <class T>
  index_t flat_count() const {
    index_t n = 0;
    for (const Shape& s : kShapes) n += s.batch;
    return n;
  }
  // Flattened matrix index of matrix b of group g.
  static index_t flat(std::size_t g, index_t b) {
    index_t n = 0;
    for (std::size_t h = 0; h < g; ++h) n += kShapes[h].batch;
    return n + b;
  }

  template <class T>
  void linear_combinations() {
    const Context c = ctx();
    const auto x = random<T>(), y = random<T>();
    // z = a x + b y into a fresh output, then in place (z = a x + b z).
    OnDevice<T> xd(backend(), x), yd(backend(), y), zd(backend(), poisoned<T>());
    ASSERT_TRUE(axpby<T>(c, 0.5, xd.cviews, -2.0, yd.cviews, zd.views).ok());
    ASSERT_TRUE(synchronize(c).ok());
    expect_equal(
        poisoned<T>(), zd.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) {
          return 0.5 * double(x[g](b, i, j)) - 2.0 * double(y[g](b, i, j));
        },
        "axpby");
    ASSERT_TRUE(axpby<T>(c, 3.0, xd.cviews, 0.25, yd.cviews, yd.views).ok());
    ASSERT_TRUE(synchronize(c).ok());
    expect_equal(
        y, yd.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) {
          return 3.0 * double(x[g](b, i, j)) + 0.25 * double(y[g](b, i, j));
        },
        "axpby in place");
    // A zero coefficient: its operand is not read (NaN-poisoned here) or may be empty.
    OnDevice<T> nan(backend(), poisoned<T>()), z2(backend(), poisoned<T>());
    ASSERT_TRUE(axpby<T>(c, 0.0, nan.cviews, 1.5, xd.cviews, z2.views).ok());
    ASSERT_TRUE(synchronize(c).ok());
    expect_equal(
        poisoned<T>(), z2.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) { return 1.5 * double(x[g](b, i, j)); },
        "axpby a = 0");
    const std::vector<MatrixBatch<const T>> empty(kShapes.size());
    ASSERT_TRUE(axpby<T>(c, -1.0, xd.cviews, 0.0, empty, z2.views).ok());
    ASSERT_TRUE(synchronize(c).ok());
    expect_equal(
        poisoned<T>(), z2.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) { return -double(x[g](b, i, j)); },
        "axpby b = 0, y empty");
    // fill.
    ASSERT_TRUE(fill<T>(c, -0.75, z2.views).ok());
    ASSERT_TRUE(synchronize(c).ok());
    expect_equal(
        poisoned<T>(), z2.get(), [](std::size_t, index_t, index_t, index_t) { return -0.75; },
        "fill");
  }

  template <class T>
  void diagonal_and_squares() {
    const Context c = ctx();
    const index_t n = flat_count<T>();
    // add_diagonal with and without per-matrix shifts (rectangular groups: i < min(rows, cols)).
    const auto z = random<T>();
    std::vector<T> shift(std::size_t(std::max<index_t>(n, 1)));
    for (auto& s : shift) s = T(std::uniform_real_distribution<double>(0.5, 2)(rng_));
    Buffer<T> sb(backend(), shift);
    OnDevice<T> zd(backend(), z);
    ASSERT_TRUE(add_diagonal<T>(c, 0.125, sb.data(), zd.views).ok());
    ASSERT_TRUE(add_diagonal<T>(c, 1.0, nullptr, zd.views).ok());
    ASSERT_TRUE(synchronize(c).ok());
    expect_equal(
        z, zd.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) {
          return double(z[g](b, i, j)) +
                 (i == j ? 1.125 + double(shift[std::size_t(flat(g, b))]) : 0.0);
        },
        "add_diagonal");
    // square_ema in place, and with beta = 0 (s NaN-poisoned: not read).
    const auto x = random<T>(), s = random<T>();
    OnDevice<T> xd(backend(), x), sd(backend(), s), fresh(backend(), poisoned<T>());
    ASSERT_TRUE(square_ema<T>(c, 0.9, 0.1, xd.cviews, sd.views).ok());
    ASSERT_TRUE(square_ema<T>(c, 0.0, 2.0, xd.cviews, fresh.views).ok());
    ASSERT_TRUE(synchronize(c).ok());
    expect_equal(
        s, sd.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) {
          const double v = x[g](b, i, j);
          return 0.9 * double(s[g](b, i, j)) + 0.1 * v * v;
        },
        "square_ema");
    expect_equal(
        poisoned<T>(), fresh.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) {
          const double v = x[g](b, i, j);
          return 2.0 * v * v;
        },
        "square_ema beta = 0");
    // diag_precondition, both powers, on positive s.
    auto pos = random<T>();
    for (auto& o : pos)
      for (index_t b = 0; b < o.l.batch; ++b)
        for (index_t i = 0; i < o.l.rows; ++i)
          for (index_t j = 0; j < o.l.cols; ++j) o(b, i, j) = T(std::abs(double(o(b, i, j))));
    OnDevice<T> pd(backend(), pos);
    for (DiagPower p : {DiagPower::one, DiagPower::half}) {
      OnDevice<T> out(backend(), poisoned<T>());
      ASSERT_TRUE(diag_precondition<T>(c, xd.cviews, pd.cviews, 1e-3, p, out.views).ok());
      ASSERT_TRUE(synchronize(c).ok());
      expect_equal(
          poisoned<T>(), out.get(),
          [&](std::size_t g, index_t b, index_t i, index_t j) {
            const double sv = pos[g](b, i, j);
            return double(x[g](b, i, j)) / ((p == DiagPower::one ? sv : std::sqrt(sv)) + 1e-3);
          },
          p == DiagPower::one ? "diag_precondition p = 1" : "diag_precondition p = 1/2");
    }
    // sum_squares, then accumulated, flattened across groups.
    Buffer<T> out(backend(), std::vector<T>(std::size_t(std::max<index_t>(n, 1)), T(NAN)));
    ASSERT_TRUE(sum_squares<T>(c, xd.cviews, out.data()).ok());
    ASSERT_TRUE(sum_squares<T>(c, xd.cviews, out.data(), true).ok());
    ASSERT_TRUE(synchronize(c).ok());
    const auto got = out.download();
    for (std::size_t g = 0; g < kShapes.size(); ++g)
      for (index_t b = 0; b < kShapes[g].batch; ++b) {
        double want = 0;
        for (index_t i = 0; i < kShapes[g].rows; ++i)
          for (index_t j = 0; j < kShapes[g].cols; ++j)
            want += double(x[g](b, i, j)) * double(x[g](b, i, j));
        EXPECT_NEAR(double(got[std::size_t(flat(g, b))]), 2 * want, 8 * eps<T>() * 2 * want)
            << trace() << ", sum_squares group " << g << " matrix " << b;
      }
  }

  template <class T>
  void adam_and_per_matrix() {
    const Context c = ctx();
    const index_t n = flat_count<T>();
    // Two Adam steps from zero moments against the recurrence.
    const auto g1 = random<T>(), g2 = random<T>();
    std::vector<Operand<T>> zero = poisoned<T>();
    for (auto& o : zero)
      for (index_t b = 0; b < o.l.batch; ++b)
        for (index_t i = 0; i < o.l.rows; ++i)
          for (index_t j = 0; j < o.l.cols; ++j) o(b, i, j) = T(0);
    OnDevice<T> gd1(backend(), g1), gd2(backend(), g2), md(backend(), zero), vd(backend(), zero),
        dd(backend(), poisoned<T>());
    AdamStep st{0.9, 0.99, 1e-3, 1};
    ASSERT_TRUE(adam_direction<T>(c, gd1.cviews, md.views, vd.views, dd.views, st).ok());
    st.t = 2;
    ASSERT_TRUE(adam_direction<T>(c, gd2.cviews, md.views, vd.views, dd.views, st).ok());
    ASSERT_TRUE(synchronize(c).ok());
    auto moments = [&](std::size_t g, index_t b, index_t i, index_t j, double* m, double* v) {
      const double a = g1[g](b, i, j), e = g2[g](b, i, j);
      *m = 0.9 * (0.1 * a) + 0.1 * e;
      *v = 0.99 * (0.01 * a * a) + 0.01 * e * e;
    };
    expect_equal(
        zero, md.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) {
          double m, v;
          moments(g, b, i, j, &m, &v);
          return m;
        },
        "adam m");
    expect_equal(
        zero, vd.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) {
          double m, v;
          moments(g, b, i, j, &m, &v);
          return v;
        },
        "adam v");
    expect_equal(
        poisoned<T>(), dd.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) {
          double m, v;
          moments(g, b, i, j, &m, &v);
          return (m / (1 - 0.81)) / (std::sqrt(v / (1 - 0.99 * 0.99)) + 1e-3);
        },
        "adam d");
    // scale_by_norm_ratio and copy_if_ok with per-matrix arrays.
    std::vector<T> num(std::size_t(std::max<index_t>(n, 1))), den(num.size());
    for (std::size_t e = 0; e < num.size(); ++e) {
      num[e] = T(std::uniform_real_distribution<double>(0.1, 4)(rng_));
      den[e] = T(std::uniform_real_distribution<double>(0.1, 4)(rng_));
    }
    std::vector<int> info(num.size());
    for (std::size_t e = 0; e < info.size(); ++e) info[e] = int(e % 6) - 2;  // -2 .. 3
    Buffer<T> nb(backend(), num), db(backend(), den);
    Buffer<int> ib(backend(), info);
    const auto z = random<T>(), x = random<T>();
    OnDevice<T> zd(backend(), z), zc(backend(), z), xd(backend(), x);
    ASSERT_TRUE(scale_by_norm_ratio<T>(c, nb.data(), db.data(), 1e-2, zd.views).ok());
    ASSERT_TRUE(copy_if_ok<T>(c, xd.cviews, ib.data(), zc.views).ok());
    ASSERT_TRUE(synchronize(c).ok());
    expect_equal(
        z, zd.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) {
          const std::size_t f = std::size_t(flat(g, b));
          return double(z[g](b, i, j)) * std::sqrt(double(num[f])) /
                 (std::sqrt(double(den[f])) + 1e-2);
        },
        "scale_by_norm_ratio");
    expect_equal(
        z, zc.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) {
          const int code = info[std::size_t(flat(g, b))];
          return code == 0 || code == 1 ? double(x[g](b, i, j)) : double(z[g](b, i, j));
        },
        "copy_if_ok");
  }

  template <class T>
  void coarse_and_clip() {
    const Context c = ctx();
    const index_t n = flat_count<T>();
    const std::size_t cells = std::size_t(std::max<index_t>(n, 1));
    // add_scalar with per-matrix shifts, then with none.
    const auto z = random<T>();
    std::vector<T> shift(cells);
    for (auto& v : shift) v = T(std::uniform_real_distribution<double>(-2, 2)(rng_));
    Buffer<T> sb(backend(), shift);
    OnDevice<T> zd(backend(), z);
    ASSERT_TRUE(add_scalar<T>(c, 0.25, sb.data(), zd.views).ok());
    ASSERT_TRUE(add_scalar<T>(c, -1.0, nullptr, zd.views).ok());
    ASSERT_TRUE(synchronize(c).ok());
    expect_equal(
        z, zd.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) {
          return double(z[g](b, i, j)) - 0.75 + double(shift[std::size_t(flat(g, b))]);
        },
        "add_scalar");
    // sum_products, then accumulated.
    const auto x = random<T>(), y = random<T>();
    OnDevice<T> xd(backend(), x), yd(backend(), y);
    Buffer<T> out(backend(), std::vector<T>(cells, T(NAN)));
    ASSERT_TRUE(sum_products<T>(c, xd.cviews, yd.cviews, out.data()).ok());
    ASSERT_TRUE(sum_products<T>(c, xd.cviews, yd.cviews, out.data(), true).ok());
    ASSERT_TRUE(synchronize(c).ok());
    const auto got = out.download();
    for (std::size_t g = 0; g < kShapes.size(); ++g)
      for (index_t b = 0; b < kShapes[g].batch; ++b) {
        double want = 0, scale = 0;
        for (index_t i = 0; i < kShapes[g].rows; ++i)
          for (index_t j = 0; j < kShapes[g].cols; ++j) {
            want += double(x[g](b, i, j)) * double(y[g](b, i, j));
            scale += std::abs(double(x[g](b, i, j)) * double(y[g](b, i, j)));
          }
        EXPECT_NEAR(double(got[std::size_t(flat(g, b))]), 2 * want, 8 * eps<T>() * 2 * scale)
            << trace() << ", sum_products group " << g << " matrix " << b;
      }
    // clip_by_quadratic: q sums to -4 (|.| is used); a bound of 1 scales by 1/2, a bound of 9
    // leaves z alone; a zero sum leaves z alone; a NaN sum makes z NaN.
    const std::vector<T> q = {T(-1), T(-2.5), T(0.5), T(-1)};
    Buffer<T> qb(backend(), q);
    for (double bound : {1.0, 9.0}) {
      OnDevice<T> zc(backend(), z);
      ASSERT_TRUE(clip_by_quadratic<T>(c, qb.data(), 4, bound, zc.views).ok());
      ASSERT_TRUE(synchronize(c).ok());
      const double nu = bound < 4 ? std::sqrt(bound / 4) : 1.0;
      expect_equal(
          z, zc.get(),
          [&](std::size_t g, index_t b, index_t i, index_t j) {
            return nu * double(z[g](b, i, j));
          },
          "clip_by_quadratic bound " + std::to_string(bound));
    }
    OnDevice<T> zero_sum(backend(), z), bound0(backend(), z);
    ASSERT_TRUE(clip_by_quadratic<T>(c, qb.data(), 0, 0.0, zero_sum.views).ok());    // sum 0
    ASSERT_TRUE(clip_by_quadratic<T>(c, qb.data() + 2, 1, 0.0, bound0.views).ok());  // 0.5
    ASSERT_TRUE(synchronize(c).ok());
    expect_equal(
        z, zero_sum.get(),
        [&](std::size_t g, index_t b, index_t i, index_t j) { return double(z[g](b, i, j)); },
        "clip_by_quadratic zero sum");
    expect_equal(
        z, bound0.get(), [&](std::size_t, index_t, index_t, index_t) { return 0.0; },
        "clip_by_quadratic bound 0");
    Buffer<T> nanq(backend(), std::vector<T>{T(1), T(NAN)});
    OnDevice<T> zn(backend(), z);
    ASSERT_TRUE(clip_by_quadratic<T>(c, nanq.data(), 2, 1.0, zn.views).ok());
    ASSERT_TRUE(synchronize(c).ok());
    for (const auto& o : zn.get())
      for (index_t b = 0; b < o.l.batch; ++b) EXPECT_TRUE(all_nan(o, b)) << trace() << ", NaN q";
  }
};

// The LM rule of lm_damping_update, here in double.
struct LmCase {
  double lm, lambda, f0, f1, gv0, gv1, vv0, vv1;
};
std::vector<double> lm_rule(const LmCase& k, const LmDampingRule& r, int copies) {
  const double q = (k.gv0 + k.gv1) / k.lambda, dd = (k.vv0 + k.vv1) / (k.lambda * k.lambda);
  const double pred = r.lr * q - 0.5 * r.lr * r.lr * (q - k.lambda * dd);
  double lm = k.lm, rho = NAN;
  if (!std::isfinite(k.f1)) {
    lm *= r.boost;
  } else if (pred > 0) {
    rho = (k.f0 - k.f1) / pred;
    lm *= rho < r.epsilon ? r.boost : rho > 1 - r.epsilon ? r.drop : 1.0;
  }
  std::vector<double> s = {lm, lm + r.floor, 1 / (lm + r.floor), rho, pred};
  for (int i = 0; i < copies; ++i) s.push_back(lm + r.floor);
  return s;
}

template <class T>
void smw_ng_ops(const std::string& where, Backend be, std::mt19937_64& rng) {
  const Context c = context_for(be);
  // axpby_scaled: z = a s x + b y with s on the device; b = 0 leaves y out.
  const auto x = gaussian<T>(3, 4, 5, rng, 1.0, 2, 1), y = gaussian<T>(3, 4, 5, rng, 1.0, 0, 3);
  Buffer<T> scale(be, std::vector<T>{T(0.375)});
  OnBackend<T> xb(be, x), yb(be, y), zb(be, Operand<T>(3, 4, 5, 1, 0));
  ASSERT_TRUE(axpby_scaled<T>(c, -2.0, scale.data(), xb.cview(), 0.5, yb.cview(), zb.view()).ok());
  ASSERT_TRUE(axpby_scaled<T>(c, 4.0, scale.data(), xb.cview(), 0.0, {}, yb.view()).ok());
  ASSERT_TRUE(synchronize(c).ok());
  Operand<double> want_z(3, 4, 5), want_y(3, 4, 5);
  for (index_t b = 0; b < 3; ++b)
    for (index_t i = 0; i < 4; ++i)
      for (index_t j = 0; j < 5; ++j) {
        want_z(b, i, j) = -0.75 * double(x(b, i, j)) + 0.5 * double(y(b, i, j));
        want_y(b, i, j) = 1.5 * double(x(b, i, j));
      }
  EXPECT_LE(max_rel_err(zb.get(), want_z), 8 * eps<T>()) << where;
  EXPECT_LE(max_rel_err(yb.get(), want_y), 8 * eps<T>()) << where;
  // lm_damping_update: rho = 0.1 (boost), 0.5 (kept), 0.9 (drop), a NaN f1 (boost), a zero
  // gradient (pred = 0: unchanged, rho NaN).
  LmDampingRule r;
  r.lr = 0.5;
  std::normal_distribution<double> n;
  for (double rho : {0.1, 0.5, 0.9, double(NAN), -1.0}) {
    LmCase k{0.7 + 0.1 * std::abs(n(rng)), 0, 2.5, 0, 0.3 + std::abs(n(rng)), 0.2, 0.4, 0.1};
    k.lambda = k.lm + r.floor;
    if (rho == -1.0) k.gv0 = k.gv1 = k.vv0 = k.vv1 = 0;
    const double q = (k.gv0 + k.gv1) / k.lambda, dd = (k.vv0 + k.vv1) / (k.lambda * k.lambda);
    const double pred = r.lr * q - 0.5 * r.lr * r.lr * (q - k.lambda * dd);
    k.f1 = std::isnan(rho) ? NAN : rho == -1.0 ? 2.0 : k.f0 - rho * pred;
    const int copies = 3;
    Buffer<T> f0(be, std::vector<T>{T(k.f0)}), f1(be, std::vector<T>{T(k.f1)}),
        gv(be, std::vector<T>{T(k.gv0), T(k.gv1)}), vv(be, std::vector<T>{T(k.vv0), T(k.vv1)});
    std::vector<T> init = {T(k.lm), T(k.lambda), T(1 / k.lambda), T(7), T(7)};
    init.resize(5 + copies, T(NAN));
    Buffer<T> state(be, init);
    ASSERT_TRUE(lm_damping_update<T>(c, f0.data(), f1.data(), gv.data(), vv.data(), 2, r,
                                     state.data(), copies)
                    .ok());
    ASSERT_TRUE(synchronize(c).ok());
    const auto got = state.download();
    // The case's own inputs rounded to T: compare with a few eps of slack.
    LmCase kt = k;
    for (double* v : {&kt.lm, &kt.lambda, &kt.f0, &kt.f1, &kt.gv0, &kt.gv1, &kt.vv0, &kt.vv1})
      *v = double(T(*v));
    const auto want = lm_rule(kt, r, copies);
    for (std::size_t i = 0; i < want.size(); ++i) {
      if (std::isnan(want[i])) {
        EXPECT_TRUE(std::isnan(double(got[i]))) << where << ", rho " << rho << ", " << i;
        continue;
      }
      EXPECT_NEAR(double(got[i]), want[i], 64 * eps<T>() * std::abs(want[i]))
          << where << ", rho " << rho << ", state[" << i << "]";
    }
    const double factor = double(got[0]) / double(T(k.lm));
    const double expected = rho == 0.1 || std::isnan(rho) ? r.boost : rho == 0.9 ? r.drop : 1.0;
    EXPECT_NEAR(factor, expected, 4 * eps<T>()) << where << ", rho " << rho;
  }
}

TEST_P(ElementwiseTest, SmwNgScaleAndDampingRule) {
  smw_ng_ops<float>(trace(), backend(), rng_);
  smw_ng_ops<double>(trace(), backend(), rng_);
}

TEST_P(ElementwiseTest, CoarseTermAndKlClip) {
  coarse_and_clip<float>();
  coarse_and_clip<double>();
}

TEST_P(ElementwiseTest, LinearCombinationsAndFill) {
  linear_combinations<float>();
  linear_combinations<double>();
}

TEST_P(ElementwiseTest, DiagonalSquaresAndDiagonalPreconditioner) {
  diagonal_and_squares<float>();
  diagonal_and_squares<double>();
}

TEST_P(ElementwiseTest, AdamAndPerMatrixOps) {
  adam_and_per_matrix<float>();
  adam_and_per_matrix<double>();
}

TEST_P(ElementwiseTest, BadInputIsReported) {
  using T = double;
  const Context c = ctx();
  Operand<T> x = gaussian<T>(2, 3, 4, rng_), y = gaussian<T>(2, 3, 4, rng_);
  OnBackend<T> xb(backend(), x), yb(backend(), y), zb(backend(), Operand<T>(2, 3, 4)),
      wrong(backend(), Operand<T>(2, 4, 3));
  auto invalid = [&](const Status& s, const std::string& names) {
    EXPECT_EQ(s.code(), StatusCode::invalid_argument) << trace() << ": " << s.to_string();
    EXPECT_NE(s.to_string().find(names), std::string::npos) << s.to_string();
  };
  invalid(axpby<T>(c, 1.0, xb.cview(), 1.0, wrong.cview(), zb.view()), "y");
  invalid(axpby<T>(c, NAN, xb.cview(), 1.0, yb.cview(), zb.view()), "finite");
  // Partial overlap: z starts one element into x.
  MatrixBatch<T> shifted = xb.view();
  shifted.data += 1;
  shifted.cols = 3;
  MatrixBatch<const T> x3 = xb.cview();
  x3.cols = 3;
  invalid(axpby<T>(c, 1.0, x3, 0.0, {}, shifted), "overlaps");
  // Adam's outputs must be apart from each other.
  AdamStep st;
  invalid(adam_direction<T>(c, xb.cview(), yb.view(), yb.view(), zb.view(), st), "overlaps");
  st.t = 0;
  invalid(adam_direction<T>(c, xb.cview(), yb.view(), zb.view(), wrong.view(), st), "step.t");
  st = {};
  st.beta1 = 1.0;
  invalid(adam_direction<T>(c, xb.cview(), yb.view(), zb.view(), zb.view(), st), "beta");
  invalid(diag_precondition<T>(c, xb.cview(), yb.cview(), -1.0, DiagPower::one, zb.view()),
          "lambda");
  invalid(sum_squares<T>(c, xb.cview(), nullptr), "out");
  invalid(sum_products<T>(c, xb.cview(), wrong.cview(), zb.view().data), "y");
  invalid(clip_by_quadratic<T>(c, nullptr, 2, 1.0, zb.view()), "q");
  invalid(clip_by_quadratic<T>(c, yb.view().data, 2, -1.0, zb.view()), "bound");
  invalid(add_scalar<T>(c, INFINITY, nullptr, zb.view()), "finite");
  invalid(axpby_scaled<T>(c, 1.0, nullptr, xb.cview(), 0.0, {}, zb.view()), "scale");
  invalid(axpby_scaled<T>(c, 1.0, yb.view().data, xb.cview(), 1.0, wrong.cview(), zb.view()), "y");
  LmDampingRule rule;
  rule.epsilon = 0.5;
  const T* p = xb.cview().data;
  invalid(lm_damping_update<T>(c, p, p, p, p, 1, rule, zb.view().data), "epsilon");
  rule = {};
  rule.boost = 0.5;
  invalid(lm_damping_update<T>(c, p, p, p, p, 1, rule, zb.view().data), "boost");
  invalid(lm_damping_update<T>(c, p, p, nullptr, p, 1, {}, zb.view().data), "gv");
  invalid(lm_damping_update<T>(c, p, p, p, p, 1, {}, nullptr), "state");
  invalid(copy_if_ok<T>(c, xb.cview(), nullptr, zb.view()), "info");
  invalid(scale_by_norm_ratio<T>(c, nullptr, nullptr, 0.0, zb.view()), "num_sq");
  // Group counts must agree.
  const std::vector<MatrixBatch<const T>> two = {xb.cview(), xb.cview()};
  const std::vector<MatrixBatch<T>> one = {zb.view()};
  invalid(axpby<T>(c, 1.0, two, 0.0, {}, one), "groups");
  // Empty inputs and zero-sized matrices are fine.
  const Operand<T> none(0, 3, 3);
  OnBackend<T> nb(backend(), none);
  EXPECT_TRUE(fill<T>(c, 1.0, nb.view()).ok());
  EXPECT_TRUE(synchronize(c).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, ElementwiseTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
