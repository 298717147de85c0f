// Kronecker family tests (curvkit/kron.hpp): every compiled backend against the reference on
// fresh random inputs, plus the identities of seeds-ren-thesis.md §5 and §13.3:
//   mode products = the Kronecker matvec (U_0 (x) ... (x) U_{K-1}) vec(X) (Proposition 1), for
//   orders 1-4, rectangular factors and any subset of modes; chains in every order agree
//   K-FAC apply = the dense solve with (A + lambda I) (x) (G + lambda I), from explicit inverses
//   (spd potri) and from Cholesky factors (spd potrf)
//   TNT normalisation: S_i = U_i prod_{j != i} tr(U_j) and tr(U_i)/d_i equal for every i
//   K-FAC pi damping: the formula in long double, zero / negative / non-finite traces, and
//   pi <-> 1/pi when the factors swap (shift_a shift_g = lambda throughout)
// and bad input (shapes, mode out of range, aliasing, workspace).
//
// Tolerances are derived: a chain of products of total depth D carries ~D eps(T) relative
// error in the Frobenius norm for Gaussian inputs (c = 8 below); solves add the condition
// numbers of the factors.
#include <memory>

#include "family_test_util.hpp"

namespace curvkit::test {
namespace {

// A batch of tensors on the host; padding between tensors is NaN.
template <class T>
struct Tensors {
  index_t batch = 0, stride = 0;
  std::vector<index_t> dims;
  std::vector<T> v;
  index_t size() const {
    index_t s = 1;
    for (index_t d : dims) s *= d;
    return s;
  }
  TensorBatch<T> view(T* data) const {
    TensorBatch<T> t;
    t.data = data;
    t.batch = batch;
    t.order = int(dims.size());
    for (std::size_t k = 0; k < dims.size(); ++k) t.dims[k] = dims[k];
    t.stride = stride;
    return t;
  }
  double at(index_t b, index_t e) const { return double(v[static_cast<std::size_t>(b * stride + e)]); }
};

template <class T>
Tensors<T> random_tensors(index_t batch, std::vector<index_t> dims, std::mt19937_64& rng,
                          index_t pad = 0, bool poison_all = false) {
  Tensors<T> t;
  t.batch = batch;
  t.dims = std::move(dims);
  t.stride = t.size() + pad;
  t.v.assign(static_cast<std::size_t>(std::max<index_t>(batch * t.stride, 1)),
             std::numeric_limits<T>::quiet_NaN());
  std::normal_distribution<double> g;
  if (!poison_all)
    for (index_t b = 0; b < batch; ++b)
      for (index_t e = 0; e < t.size(); ++e) t.v[static_cast<std::size_t>(b * t.stride + e)] = T(g(rng));
  return t;
}

// Tensors on a backend.
template <class T>
struct TensorsOn {
  Tensors<T> host;
  Buffer<T> buf;
  TensorsOn(Backend be, const Tensors<T>& t) : host(t), buf(be, t.v) {}
  TensorBatch<T> view() { return host.view(buf.data()); }
  TensorBatch<const T> cview() { return TensorBatch<const T>(view()); }
  Tensors<T> get() const {
    Tensors<T> t = host;
    t.v = buf.download();
    return t;
  }
};

template <class T>
double tensor_rel_err(const Tensors<T>& x, const std::vector<std::vector<double>>& ref) {
  double worst = 0;
  for (index_t b = 0; b < x.batch; ++b) {
    double num = 0, den = 0;
    for (index_t e = 0; e < x.size(); ++e) {
      const double d = x.at(b, e) - ref[b][e];
      num += d * d;
      den += ref[b][e] * ref[b][e];
    }
    if (std::isnan(num)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, den > 0 ? std::sqrt(num / den) : std::sqrt(num));
  }
  return worst;
}

template <class T>
std::vector<std::vector<double>> as_double(const Tensors<T>& x) {
  std::vector<std::vector<double>> r(static_cast<std::size_t>(x.batch));
  for (index_t b = 0; b < x.batch; ++b)
    for (index_t e = 0; e < x.size(); ++e) r[b].push_back(x.at(b, e));
  return r;
}

template <class T>
void expect_padding_untouched(const Tensors<T>& before, const Tensors<T>& after) {
  for (index_t b = 0; b < before.batch; ++b)
    for (index_t e = before.size(); e < before.stride; ++e)
      ASSERT_TRUE(std::isnan(after.at(b, e))) << "padding of tensor " << b << " written";
}

// op(U) as a dense double matrix for tensor b.
template <class T>
std::vector<double> op_dense(const Operand<T>& u, index_t b, Op op, index_t* rows, index_t* cols) {
  const index_t bb = u.l.batch == 1 ? 0 : b;
  *rows = op == Op::none ? u.l.rows : u.l.cols;
  *cols = op == Op::none ? u.l.cols : u.l.rows;
  std::vector<double> m(static_cast<std::size_t>(*rows * *cols));
  for (index_t i = 0; i < *rows; ++i)
    for (index_t j = 0; j < *cols; ++j)
      m[i * *cols + j] = double(op == Op::none ? u(bb, i, j) : u(bb, j, i));
  return m;
}

// (M_0 (x) M_1 (x) ... ) vec(X), row-major vec, with an identity for every skipped mode: the
// explicit Kronecker matrix, built densely (the test side of Proposition 1).
template <class T>
std::vector<std::vector<double>> kronecker_matvec(const Tensors<T>& x,
                                                  const std::vector<const Operand<T>*>& u, Op op) {
  std::vector<std::vector<double>> out;
  for (index_t b = 0; b < x.batch; ++b) {
    std::vector<double> kron(1, 1.0);
    index_t kr = 1, kc = 1;
    for (std::size_t k = 0; k < x.dims.size(); ++k) {
      index_t r = x.dims[k], c = x.dims[k];
      std::vector<double> m;
      if (u[k]) {
        m = op_dense(*u[k], b, op, &r, &c);
      } else {
        m.assign(static_cast<std::size_t>(r * c), 0.0);
        for (index_t i = 0; i < r; ++i) m[i * c + i] = 1;
      }
      std::vector<double> next(static_cast<std::size_t>(kr * r * kc * c));
      for (index_t i1 = 0; i1 < kr; ++i1)
        for (index_t j1 = 0; j1 < kc; ++j1)
          for (index_t i2 = 0; i2 < r; ++i2)
            for (index_t j2 = 0; j2 < c; ++j2)
              next[(i1 * r + i2) * (kc * c) + j1 * c + j2] = kron[i1 * kc + j1] * m[i2 * c + j2];
      kron = std::move(next);
      kr *= r;
      kc *= c;
    }
    std::vector<double> y(static_cast<std::size_t>(kr), 0.0);
    for (index_t i = 0; i < kr; ++i)
      for (index_t j = 0; j < kc; ++j) y[i] += kron[i * kc + j] * x.at(b, j);
    out.push_back(std::move(y));
  }
  return out;
}

class KronTest : public BackendTest {
 protected:
  // Random dims in [1, 7] for an order-K tensor.
  std::vector<index_t> random_dims(int order) {
    std::uniform_int_distribution<index_t> d(1, 7);
    std::vector<index_t> dims;
    for (int k = 0; k < order; ++k) dims.push_back(d(rng_));
    return dims;
  }

  template <class T>
  void check_mode_product(std::vector<index_t> dims, int mode, index_t dp, index_t batch, Op op,
                          bool shared) {
    SCOPED_TRACE(trace() + ", order " + std::to_string(dims.size()) + ", mode " +
                 std::to_string(mode) + ", d' " + std::to_string(dp) + ", batch " +
                 std::to_string(batch) + ", op " + std::to_string(int(op)) +
                 (shared ? ", shared U" : "") + (sizeof(T) == 4 ? ", float" : ", double"));
    const index_t d = dims[static_cast<std::size_t>(mode)];
    const auto x = random_tensors<T>(batch, dims, rng_, 3);
    const auto u = op == Op::none ? gaussian<T>(shared ? 1 : batch, dp, d, rng_, 1.0, 1, 2)
                                  : gaussian<T>(shared ? 1 : batch, d, dp, rng_, 1.0, 1, 2);
    auto ydims = dims;
    ydims[static_cast<std::size_t>(mode)] = dp;
    const auto y0 = random_tensors<T>(batch, ydims, rng_, 2, true);
    TensorsOn<T> xx(backend(), x), yy(backend(), y0);
    OnBackend<T> uu(backend(), u);
    const Context c = ctx();
    const Status st = mode_product<T>(c, xx.cview(), mode, uu.cview(), yy.view(), op);
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_TRUE(synchronize(c).ok());
    const auto y = yy.get();
    expect_padding_untouched(y0, y);
    std::vector<const Operand<T>*> us(dims.size(), nullptr);
    us[static_cast<std::size_t>(mode)] = &u;
    EXPECT_LE(tensor_rel_err(y, kronecker_matvec(x, us, op)), 8.0 * double(d + 2) * eps<T>());
  }

  // Chain over the modes in `mask` against Proposition 1, and against single mode products
  // applied in a random order.
  template <class T>
  void check_chain(std::vector<index_t> dims, unsigned mask, index_t batch, Op op) {
    const int order = int(dims.size());
    SCOPED_TRACE(trace() + ", order " + std::to_string(order) + ", mask " + std::to_string(mask) +
                 ", batch " + std::to_string(batch) + (sizeof(T) == 4 ? ", float" : ", double"));
    std::uniform_int_distribution<index_t> dd(1, 6);
    const auto x = random_tensors<T>(batch, dims, rng_, 1);
    std::vector<Operand<T>> u(static_cast<std::size_t>(order));
    std::vector<const Operand<T>*> up(static_cast<std::size_t>(order), nullptr);
    auto ydims = dims;
    index_t depth = 0;
    for (int k = 0; k < order; ++k) {
      if (!(mask >> k & 1u)) continue;
      const index_t dp = dd(rng_), d = dims[static_cast<std::size_t>(k)];
      u[k] = op == Op::none ? gaussian<T>(k % 2 ? 1 : batch, dp, d, rng_)
                            : gaussian<T>(k % 2 ? 1 : batch, d, dp, rng_);
      up[k] = &u[k];
      ydims[static_cast<std::size_t>(k)] = dp;
      depth += d;
    }
    const auto want = kronecker_matvec(x, up, op);
    const double tol = 8.0 * double(depth + 2) * eps<T>();

    const auto y0 = random_tensors<T>(batch, ydims, rng_, 2, true);
    TensorsOn<T> xx(backend(), x), yy(backend(), y0);
    std::vector<std::unique_ptr<OnBackend<T>>> uon;
    std::vector<MatrixBatch<const T>> uv(static_cast<std::size_t>(order));
    for (int k = 0; k < order; ++k)
      if (up[k]) {
        uon.push_back(std::make_unique<OnBackend<T>>(backend(), u[k]));
        uv[k] = uon.back()->cview();
      }
    Context c = ctx();
    const std::size_t ws = mode_product_chain_workspace_size<T>(c, xx.cview(), uv, op);
    Buffer<char> wbuf(backend(), std::max<std::size_t>(ws, 1));
    c.set_workspace(wbuf.data(), ws);
    const Status st = mode_product_chain<T>(c, xx.cview(), uv, yy.view(), op);
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_TRUE(synchronize(c).ok());
    const auto y = yy.get();
    expect_padding_untouched(y0, y);
    EXPECT_LE(tensor_rel_err(y, want), tol);

    // The same modes one at a time in a random order, through mode_product.
    std::vector<int> modes;
    for (int k = 0; k < order; ++k)
      if (up[k]) modes.push_back(k);
    std::shuffle(modes.begin(), modes.end(), rng_);
    auto cur = x;
    for (int k : modes) {
      auto nd = cur.dims;
      nd[static_cast<std::size_t>(k)] = op == Op::none ? u[k].l.rows : u[k].l.cols;
      const auto n0 = random_tensors<T>(batch, nd, rng_, 0, true);
      TensorsOn<T> in(backend(), cur), out(backend(), n0);
      const Status s1 = mode_product<T>(c, in.cview(), k, uv[k], out.view(), op);
      ASSERT_TRUE(s1.ok()) << s1.to_string();
      ASSERT_TRUE(synchronize(c).ok());
      cur = out.get();
    }
    EXPECT_LE(tensor_rel_err(cur, want), tol);
  }
};

TEST_P(KronTest, ModeProductEqualsKroneckerMatvec) {
  for (int order = 1; order <= 4; ++order)
    for (int mode = 0; mode < order; ++mode)
      for (Op op : {Op::none, Op::trans}) {
        const auto dims = random_dims(order);
        check_mode_product<double>(dims, mode, 3, 4, op, false);
        check_mode_product<float>(dims, mode, 8, 3, op, true);
        check_mode_product<float>(dims, mode, 1, 1, op, false);
      }
  // Sizes past the GEMM blocks, a mode-0 product of a wide tensor, an empty batch.
  check_mode_product<float>({40, 3, 50}, 2, 45, 2, Op::none, true);
  check_mode_product<double>({20, 130}, 0, 100, 1, Op::trans, false);
  check_mode_product<float>({4, 5}, 1, 3, 0, Op::none, false);
}

TEST_P(KronTest, ChainEqualsKroneckerMatvecInAnyOrder) {
  for (int order = 1; order <= 4; ++order)
    for (unsigned mask = 1; mask < (1u << order); ++mask) {
      check_chain<double>(random_dims(order), mask, 3, Op::none);
      check_chain<float>(random_dims(order), mask, 2, Op::trans);
    }
}

TEST_P(KronTest, ChainWorkspaceFollowsThePlan) {
  // Shrinking mode 1 (d 9 -> 2) first is cheapest; intermediates are the 2-mode results.
  std::vector<index_t> dims = {5, 9, 4};
  auto x = random_tensors<float>(2, dims, rng_);
  auto u0 = gaussian<float>(1, 5, 5, rng_), u1 = gaussian<float>(1, 2, 9, rng_),
       u2 = gaussian<float>(1, 4, 4, rng_);
  std::vector<MatrixBatch<const float>> uv = {u0.l.view<const float>(u0.v.data()),
                                              u1.l.view<const float>(u1.v.data()),
                                              u2.l.view<const float>(u2.v.data())};
  const Context c = ctx();
  const std::size_t ws = mode_product_chain_workspace_size<float>(c, x.view(x.v.data()), uv);
  if (backend() == Backend::reference) {
    EXPECT_EQ(ws, 0u);
  } else {
    // Largest intermediate: after modes 1 and 0 (or 1 and 2): 2 tensors of 5*2*4 floats, two
    // buffers rounded to 256 bytes.
    EXPECT_EQ(ws, 2u * 512u);
  }
}

TEST_P(KronTest, KfacApplyEqualsDenseKroneckerSolve) {
  // Layers of different shapes in one grouped call; factors A (d_in) and G (d_out) SPD with
  // condition number 20, damping lambda.
  const std::vector<std::pair<index_t, index_t>> layers = {{3, 4}, {7, 5}, {1, 6}, {12, 9}};
  const double cond = 20, lambda = 0.1;
  for (KronFactor form : {KronFactor::inverse, KronFactor::cholesky}) {
    SCOPED_TRACE(trace() + (form == KronFactor::inverse ? ", inverse" : ", cholesky"));
    std::vector<Operand<double>> g, a, x, o0;
    for (auto [d_out, d_in] : layers) {
      g.push_back(spd<double>(2, d_out, cond, rng_, false));
      a.push_back(spd<double>(2, d_in, cond, rng_, false));
      x.push_back(gaussian<double>(2, d_out, d_in, rng_, 1.0, 1, 0));
      o0.push_back(Operand<double>(2, d_out, d_in, 2, 1));
    }
    const Context c = ctx();
    std::vector<std::unique_ptr<OnBackend<double>>> on;
    std::vector<MatrixBatch<const double>> gv, av, xv;
    std::vector<MatrixBatch<double>> ov, fg, fa;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      on.push_back(std::make_unique<OnBackend<double>>(backend(), g[l]));
      fg.push_back(on.back()->view());
      on.push_back(std::make_unique<OnBackend<double>>(backend(), a[l]));
      fa.push_back(on.back()->view());
      on.push_back(std::make_unique<OnBackend<double>>(backend(), x[l]));
      xv.push_back(on.back()->cview());
      on.push_back(std::make_unique<OnBackend<double>>(backend(), o0[l]));
      ov.push_back(on.back()->view());
    }
    // Damped factors through the SPD family: potri gives (F + lambda I)^{-1}, potrf its L.
    SpdOptions so;
    so.diagonal_shift = lambda;
    IntsOnBackend info(backend(), 2 * index_t(layers.size()));
    for (auto* f : {&fg, &fa}) {
      const Status st = form == KronFactor::inverse
                            ? potri<double>(c, GroupedBatch<double>(*f), info.data(), so)
                            : potrf<double>(c, GroupedBatch<double>(*f), info.data(), so);
      ASSERT_TRUE(st.ok()) << st.to_string();
    }
    for (auto& v : fg) gv.push_back(v);
    for (auto& v : fa) av.push_back(v);
    KronApplyOptions ko;
    ko.form = form;
    ko.alpha = -0.5;
    Context cw = c;
    const std::size_t ws = kron_apply_workspace_size<double>(c, xv, ko);
    Buffer<char> wbuf(backend(), std::max<std::size_t>(ws, 1));
    cw.set_workspace(wbuf.data(), ws);
    const Status st = kron_apply<double>(cw, gv, av, xv, ov, ko);
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_TRUE(synchronize(c).ok());
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const auto [d_out, d_in] = layers[l];
      const auto out = on[4 * l + 3]->get();
      expect_untouched_outside(o0[l], out, [](index_t, index_t) { return true; }, "kron_apply");
      // Dense: solve ((A + lambda I) (x) (G + lambda I)) vec(Y) = vec(X), column-major vec,
      // by Gaussian elimination in long double on the (d_in d_out)^2 system.
      const index_t n = d_out * d_in;
      for (index_t b = 0; b < 2; ++b) {
        std::vector<long double> m(static_cast<std::size_t>(n * (n + 1)));
        for (index_t j = 0; j < d_in; ++j)
          for (index_t i = 0; i < d_out; ++i)
            for (index_t q = 0; q < d_in; ++q)
              for (index_t p = 0; p < d_out; ++p)
                m[(i + j * d_out) * (n + 1) + (p + q * d_out)] =
                    (a[l](b, j, q) + (j == q ? lambda : 0)) * (g[l](b, i, p) + (i == p ? lambda : 0));
        for (index_t j = 0; j < d_in; ++j)
          for (index_t i = 0; i < d_out; ++i) m[(i + j * d_out) * (n + 1) + n] = x[l](b, i, j);
        for (index_t col = 0; col < n; ++col)  // SPD: no pivoting needed
          for (index_t r = col + 1; r < n; ++r) {
            const long double f = m[r * (n + 1) + col] / m[col * (n + 1) + col];
            for (index_t e = col; e <= n; ++e) m[r * (n + 1) + e] -= f * m[col * (n + 1) + e];
          }
        std::vector<long double> v(static_cast<std::size_t>(n));
        for (index_t r = n - 1; r >= 0; --r) {
          long double s = m[r * (n + 1) + n];
          for (index_t e = r + 1; e < n; ++e) s -= m[r * (n + 1) + e] * v[e];
          v[r] = s / m[r * (n + 1) + r];
        }
        double num = 0, den = 0;
        for (index_t j = 0; j < d_in; ++j)
          for (index_t i = 0; i < d_out; ++i) {
            const double want = double(-0.5L * v[i + j * d_out]);
            num += (out(b, i, j) - want) * (out(b, i, j) - want);
            den += want * want;
          }
        // kappa(G + lambda I) kappa(A + lambda I) <= cond^2, depth d_out + d_in.
        EXPECT_LE(std::sqrt(num / den), 8.0 * double(d_out + d_in) * cond * cond * eps<double>())
            << "layer " << l << " matrix " << b;
      }
    }
  }
}

TEST_P(KronTest, KfacApplyMatchesReferenceOnAutoencoderShapes) {
  // Grouped over four layer shapes of the Fashion-MNIST autoencoder family (scaled down),
  // float, explicit-inverse and Cholesky forms, shared (batch 1) factors for a batch of 2.
  const std::vector<std::pair<index_t, index_t>> layers = {{100, 79}, {50, 101}, {3, 26}, {130, 50}};
  for (KronFactor form : {KronFactor::inverse, KronFactor::cholesky}) {
    SCOPED_TRACE(trace() + (form == KronFactor::inverse ? ", inverse" : ", cholesky"));
    std::vector<Operand<float>> g, a, x, o0;
    for (auto [d_out, d_in] : layers) {
      // Well-conditioned lower-triangular factors (diagonal >= 1) or inverse-like SPD factors.
      g.push_back(spd<float>(1, d_out, 10, rng_, false));
      a.push_back(spd<float>(1, d_in, 10, rng_, false));
      x.push_back(gaussian<float>(2, d_out, d_in, rng_));
      o0.push_back(Operand<float>(2, d_out, d_in));
    }
    auto run = [&](Backend be) {
      std::vector<std::unique_ptr<OnBackend<float>>> on;
      std::vector<MatrixBatch<const float>> gv, av, xv;
      std::vector<MatrixBatch<float>> ov, fg;
      const Context c = context_for(be);
      for (std::size_t l = 0; l < layers.size(); ++l) {
        on.push_back(std::make_unique<OnBackend<float>>(be, g[l]));
        gv.push_back(on.back()->cview());
        on.push_back(std::make_unique<OnBackend<float>>(be, a[l]));
        av.push_back(on.back()->cview());
        on.push_back(std::make_unique<OnBackend<float>>(be, x[l]));
        xv.push_back(on.back()->cview());
        on.push_back(std::make_unique<OnBackend<float>>(be, o0[l]));
        ov.push_back(on.back()->view());
      }
      if (form == KronFactor::cholesky) {  // factor in place: the lower triangles become L
        IntsOnBackend info(be, 1);
        for (std::size_t l = 0; l < layers.size(); ++l) {
          EXPECT_TRUE(potrf<float>(c, on[4 * l]->view(), info.data()).ok());
          EXPECT_TRUE(potrf<float>(c, on[4 * l + 1]->view(), info.data()).ok());
        }
      }
      KronApplyOptions ko;
      ko.form = form;
      Context cw = c;
      const std::size_t ws = kron_apply_workspace_size<float>(c, xv, ko);
      Buffer<char> wbuf(be, std::max<std::size_t>(ws, 1));
      cw.set_workspace(wbuf.data(), ws);
      const Status st = kron_apply<float>(cw, gv, av, xv, ov, ko);
      EXPECT_TRUE(st.ok()) << st.to_string();
      EXPECT_TRUE(synchronize(c).ok());
      std::vector<Operand<float>> out;
      for (std::size_t l = 0; l < layers.size(); ++l) out.push_back(on[4 * l + 3]->get());
      return out;
    };
    const auto out = run(backend()), ref = run(Backend::reference);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const double depth = double(layers[l].first + layers[l].second);
      // Inverse form: products only; Cholesky form: kappa(G) kappa(A) <= 100.
      const double kappa = form == KronFactor::inverse ? 1.0 : 100.0;
      EXPECT_LE(max_rel_err(out[l], ref[l]), 8.0 * depth * kappa * eps<float>()) << "layer " << l;
    }
  }
}

TEST_P(KronTest, ModeGramMatchesReference) {
  for (int order = 1; order <= 4; ++order)
    for (double beta : {0.0, 0.9})
      for (Fill fill : {Fill::full, Fill::lower}) {
        SCOPED_TRACE(trace() + ", order " + std::to_string(order) + ", beta " +
                     std::to_string(beta));
        auto dims = random_dims(order);
        if (order == 3) dims = {2, 3, 40};  // slab form (inner >= outer) and column form
        const index_t batch = 3;
        const auto x = random_tensors<double>(batch, dims, rng_, 2);
        std::vector<Operand<double>> s0;
        for (int k = 0; k < order; ++k) {
          const index_t d = dims[static_cast<std::size_t>(k)];
          // beta = 0: all NaN (must not be read); the last mode is skipped when order > 1.
          s0.push_back(beta == 0 ? Operand<double>(batch, d, d, 1, 1)
                                 : spd<double>(batch, d, 5, rng_, false, 1.0, 1, 1));
        }
        ModeGramOptions o;
        o.beta = beta;
        o.scale = 0.25;
        o.fill = fill;
        auto run = [&](Backend be) {
          TensorsOn<double> xx(be, x);
          std::vector<std::unique_ptr<OnBackend<double>>> on;
          std::vector<MatrixBatch<double>> sv;
          for (int k = 0; k < order; ++k) {
            on.push_back(std::make_unique<OnBackend<double>>(be, s0[k]));
            sv.push_back(order > 1 && k == order - 1 ? MatrixBatch<double>{} : on.back()->view());
          }
          const Context c = context_for(be);
          const Status st = mode_gram<double>(c, xx.cview(), sv, o);
          EXPECT_TRUE(st.ok()) << st.to_string();
          EXPECT_TRUE(synchronize(c).ok());
          std::vector<Operand<double>> out;
          for (auto& p : on) out.push_back(p->get());
          return out;
        };
        const auto s = run(backend()), ref = run(Backend::reference);
        index_t size = 1;
        for (index_t d : dims) size *= d;
        for (int k = 0; k < order; ++k) {
          const bool skipped = order > 1 && k == order - 1;
          const auto written = [&](index_t i, index_t j) {
            return !skipped && (fill == Fill::full || j <= i);
          };
          expect_untouched_outside(s0[k], s[k], written, "mode_gram");
          if (skipped) continue;
          EXPECT_LE(max_rel_err(s[k], ref[k], written),
                    8.0 * double(size / dims[static_cast<std::size_t>(k)] + 2) * eps<double>())
              << "mode " << k;
        }
      }
}

TEST_P(KronTest, TntNormalizationIdentity) {
  // Mode statistics of a random order-3 tensor (an EMA of two Grams), normalised.
  const std::vector<index_t> dims = {4, 6, 3};
  const index_t batch = 3;
  auto x1 = random_tensors<double>(batch, dims, rng_), x2 = random_tensors<double>(batch, dims, rng_);
  std::vector<Operand<double>> s0;
  for (index_t d : dims) s0.push_back(Operand<double>(batch, d, d));
  TensorsOn<double> xx1(backend(), x1), xx2(backend(), x2);
  std::vector<std::unique_ptr<OnBackend<double>>> on;
  std::vector<MatrixBatch<double>> sv;
  for (auto& s : s0) {
    on.push_back(std::make_unique<OnBackend<double>>(backend(), s));
    sv.push_back(on.back()->view());
  }
  const Context c = ctx();
  ModeGramOptions o;
  ASSERT_TRUE(mode_gram<double>(c, xx1.cview(), sv, o).ok());
  o.beta = 0.9;
  ASSERT_TRUE(mode_gram<double>(c, xx2.cview(), sv, o).ok());
  ASSERT_TRUE(synchronize(c).ok());
  std::vector<Operand<double>> stats;
  for (auto& p : on) stats.push_back(p->get());
  IntsOnBackend info(backend(), batch);
  ASSERT_TRUE(tnt_normalize<double>(c, sv, info.data()).ok());
  ASSERT_TRUE(synchronize(c).ok());
  EXPECT_EQ(info.get(), std::vector<int>(batch, 0));
  std::vector<Operand<double>> u;
  for (auto& p : on) u.push_back(p->get());
  for (index_t b = 0; b < batch; ++b) {
    std::vector<double> tr;
    for (std::size_t i = 0; i < dims.size(); ++i) {
      double t = 0;
      for (index_t d = 0; d < dims[i]; ++d) t += u[i](b, d, d);
      tr.push_back(t);
    }
    for (std::size_t i = 0; i < dims.size(); ++i) {
      EXPECT_NEAR(tr[i] / dims[i], tr[0] / dims[0], 1e-13 * tr[0] / dims[0]);
      double prod = 1;
      for (std::size_t j = 0; j < dims.size(); ++j)
        if (j != i) prod *= tr[j];
      for (index_t p = 0; p < dims[i]; ++p)
        for (index_t q = 0; q < dims[i]; ++q)
          EXPECT_NEAR(u[i](b, p, q) * prod, stats[i](b, p, q), 1e-12 * std::fabs(tr[0] * prod));
    }
  }
}

TEST_P(KronTest, TntNormalizationZeroAndNonFinite) {
  // Tensor 0 all zero (info 1, left unchanged), tensor 1 with a NaN (info -1, all NaN),
  // tensor 2 fine; float.
  std::vector<Operand<float>> s0 = {gaussian<float>(3, 2, 2, rng_), gaussian<float>(3, 5, 5, rng_)};
  for (auto& s : s0) {
    for (index_t i = 0; i < s.l.rows; ++i)
      for (index_t j = 0; j < s.l.cols; ++j) {
        s(0, i, j) = 0;
        s(2, i, j) = float(i == j ? 1.0 + i : 0.1);
      }
  }
  s0[1](1, 3, 3) = std::numeric_limits<float>::quiet_NaN();
  std::vector<std::unique_ptr<OnBackend<float>>> on;
  std::vector<MatrixBatch<float>> sv;
  for (auto& s : s0) {
    on.push_back(std::make_unique<OnBackend<float>>(backend(), s));
    sv.push_back(on.back()->view());
  }
  IntsOnBackend info(backend(), 3);
  const Context c = ctx();
  ASSERT_TRUE(tnt_normalize<float>(c, sv, info.data()).ok());
  ASSERT_TRUE(synchronize(c).ok());
  EXPECT_EQ(info.get(), (std::vector<int>{1, -1, 0}));
  for (std::size_t i = 0; i < s0.size(); ++i) {
    const auto s = on[i]->get();
    for (index_t p = 0; p < s.l.rows; ++p)
      for (index_t q = 0; q < s.l.cols; ++q) {
        EXPECT_EQ(s(0, p, q), 0.0f);
        EXPECT_TRUE(std::isnan(s(1, p, q)));
        EXPECT_TRUE(std::isfinite(s(2, p, q)));
      }
  }
}

// ---- kfac_pi_damping ------------------------------------------------------------------------

// Pairs of K-FAC factors on a backend: one group per entry of `shapes` (batch, d_A, d_G, padding
// of ld and stride), diagonals positive and spread over six orders of magnitude (so pi ranges
// from about 1e-3 to 1e3), off-diagonal entries Gaussian (never read by the op).
template <class T>
struct PiPairs {
  struct Shape {
    index_t batch, da, dg, pad;
  };
  std::vector<Operand<T>> a, g;
  std::vector<std::unique_ptr<OnBackend<T>>> a_on, g_on;
  std::vector<MatrixBatch<const T>> av, gv;
  index_t pairs = 0;

  PiPairs(Backend be, const std::vector<Shape>& shapes, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> magnitude(-3.0, 3.0), u(0.5, 2.0);
    for (const Shape& s : shapes) {
      a.push_back(gaussian<T>(s.batch, s.da, s.da, rng, 1.0, s.pad, 3 * s.pad));
      g.push_back(gaussian<T>(s.batch, s.dg, s.dg, rng, 1.0, s.pad, 3 * s.pad));
      for (index_t b = 0; b < s.batch; ++b) {
        const double scale_a = std::pow(10.0, magnitude(rng)),
                     scale_g = std::pow(10.0, magnitude(rng));
        for (index_t i = 0; i < s.da; ++i) a.back()(b, i, i) = T(scale_a * u(rng));
        for (index_t i = 0; i < s.dg; ++i) g.back()(b, i, i) = T(scale_g * u(rng));
      }
      pairs += s.batch;
    }
    upload(be);
  }
  void upload(Backend be) {
    a_on.clear();
    g_on.clear();
    av.clear();
    gv.clear();
    for (std::size_t l = 0; l < a.size(); ++l) {
      a_on.push_back(std::make_unique<OnBackend<T>>(be, a[l]));
      g_on.push_back(std::make_unique<OnBackend<T>>(be, g[l]));
      av.push_back(a_on.back()->cview());
      gv.push_back(g_on.back()->cview());
    }
  }
  // The formula in long double from the stored values: {shift_a, shift_g, info} per pair.
  struct Expected {
    std::vector<double> shift_a, shift_g;
    std::vector<int> info;
  };
  Expected expected(double lambda) const {
    Expected e;
    for (std::size_t l = 0; l < a.size(); ++l)
      for (index_t b = 0; b < a[l].l.batch; ++b) {
        long double ta = 0, tg = 0;
        for (index_t i = 0; i < a[l].l.rows; ++i) ta += (long double)a[l](b, i, i);
        for (index_t i = 0; i < g[l].l.rows; ++i) tg += (long double)g[l](b, i, i);
        if (a[l].l.rows > 0) ta /= a[l].l.rows;
        if (g[l].l.rows > 0) tg /= g[l].l.rows;
        const long double rl = std::sqrt((long double)lambda);
        if (!std::isfinite(ta) || !std::isfinite(tg)) {
          e.shift_a.push_back(std::numeric_limits<double>::quiet_NaN());
          e.shift_g.push_back(std::numeric_limits<double>::quiet_NaN());
          e.info.push_back(-1);
          continue;
        }
        const bool ok = ta > 0 && tg > 0;
        const long double pi = ok ? std::sqrt(ta / tg) : 1.0L;
        e.shift_a.push_back(double(pi * rl));
        e.shift_g.push_back(double(rl / pi));
        e.info.push_back(ok ? 0 : 1);
      }
    return e;
  }
};

// The op's outputs on a backend: shift_a, shift_g and info, poisoned before the call.
template <class T>
struct PiOutputs {
  Buffer<T> shift_a, shift_g;
  IntsOnBackend info;
  index_t pairs;
  PiOutputs(Backend be, index_t n)
      : shift_a(be, std::vector<T>(std::size_t(std::max<index_t>(n, 1)),
                                   std::numeric_limits<T>::quiet_NaN())),
        shift_g(be, std::vector<T>(std::size_t(std::max<index_t>(n, 1)),
                                   std::numeric_limits<T>::quiet_NaN())),
        info(be, n),
        pairs(n) {}
  std::vector<double> get(const Buffer<T>& b) const {
    std::vector<double> v;
    for (T x : b.download()) v.push_back(double(x));
    v.resize(std::size_t(pairs));
    return v;
  }
};

template <class T>
void expect_shifts(const std::vector<double>& got, const std::vector<double>& want, double tol,
                   const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << what << " pair " << i << ": " << got[i];
      continue;
    }
    EXPECT_LE(std::fabs(got[i] - want[i]), tol * std::fabs(want[i]))
        << what << " pair " << i << ": " << got[i] << " vs " << want[i];
  }
}

template <class T>
void check_pi_damping(Backend be, std::mt19937_64& rng, const std::string& trace) {
  SCOPED_TRACE(trace + (sizeof(T) == 4 ? ", float" : ", double"));
  // Batch 1 (a layer), batch 3 with a 1 x 1 factor and padding, an empty group, and factors
  // longer than a warp; 40 groups in all so that the 32-group chunks of the backends split.
  std::vector<typename PiPairs<T>::Shape> shapes = {
      {1, 5, 3, 0}, {3, 1, 7, 2}, {0, 4, 4, 0}, {2, 40, 33, 1}};
  for (int l = 0; l < 36; ++l) shapes.push_back({1, 2 + l % 5, 1 + l % 3, index_t(l % 2)});
  PiPairs<T> p(be, shapes, rng);
  const double lambda = 0.3;
  const Context c = context_for(be);
  PiOutputs<T> out(be, p.pairs);
  ASSERT_TRUE(kfac_pi_damping<T>(c, p.av, p.gv, lambda, out.shift_a.data(), out.shift_g.data(),
                                 out.info.data())
                  .ok());
  ASSERT_TRUE(synchronize(c).ok());
  const auto want = p.expected(lambda);
  // Traces of positive entries in double (relative error <= d eps(double)), then one rounding
  // to T: a few eps(T).
  const double tol = 4 * eps<T>() + 1e-13;
  const auto sa = out.get(out.shift_a), sg = out.get(out.shift_g);
  EXPECT_EQ(out.info.get(), want.info);
  expect_shifts<T>(sa, want.shift_a, tol, "shift_a");
  expect_shifts<T>(sg, want.shift_g, tol, "shift_g");
  for (std::size_t i = 0; i < sa.size(); ++i)
    EXPECT_NEAR(sa[i] * sg[i], lambda, 3 * tol * lambda) << "pair " << i;
  // a and g swapped: pi becomes 1/pi, so the two shifts trade places.
  PiOutputs<T> swapped(be, p.pairs);
  ASSERT_TRUE(kfac_pi_damping<T>(c, p.gv, p.av, lambda, swapped.shift_a.data(),
                                 swapped.shift_g.data(), swapped.info.data())
                  .ok());
  ASSERT_TRUE(synchronize(c).ok());
  EXPECT_EQ(swapped.info.get(), want.info);
  expect_shifts<T>(swapped.get(swapped.shift_a), sg, 2 * tol, "swapped shift_a");
  expect_shifts<T>(swapped.get(swapped.shift_g), sa, 2 * tol, "swapped shift_g");
}

TEST_P(KronTest, KfacPiDampingFollowsItsFormula) {
  check_pi_damping<float>(backend(), rng_, trace());
  check_pi_damping<double>(backend(), rng_, trace());
}

TEST_P(KronTest, KfacPiDampingZeroAndNonFiniteTraces) {
  // Pairs: fine; A with a zero diagonal; G with a negative trace; A with a NaN; G with an Inf;
  // lambda 2.
  using T = float;
  PiPairs<T> p(backend(), {{5, 4, 3, 1}}, rng_);
  for (index_t i = 0; i < 4; ++i) p.a[0](1, i, i) = 0;
  for (index_t i = 0; i < 3; ++i) p.g[0](2, i, i) = -1;
  p.a[0](3, 2, 2) = std::numeric_limits<T>::quiet_NaN();
  p.g[0](4, 0, 0) = std::numeric_limits<T>::infinity();
  p.upload(backend());
  const double lambda = 2.0;
  const Context c = ctx();
  PiOutputs<T> out(backend(), p.pairs);
  ASSERT_TRUE(kfac_pi_damping<T>(c, p.av, p.gv, lambda, out.shift_a.data(), out.shift_g.data(),
                                 out.info.data())
                  .ok());
  ASSERT_TRUE(synchronize(c).ok());
  EXPECT_EQ(out.info.get(), (std::vector<int>{0, 1, 1, -1, -1})) << trace();
  const auto sa = out.get(out.shift_a), sg = out.get(out.shift_g);
  const auto want = p.expected(lambda);
  expect_shifts<T>(sa, want.shift_a, 4 * eps<T>(), "shift_a");
  expect_shifts<T>(sg, want.shift_g, 4 * eps<T>(), "shift_g");
  for (index_t i : {1, 2}) {  // pi = 1: both shifts sqrt(lambda)
    EXPECT_FLOAT_EQ(float(sa[std::size_t(i)]), std::sqrt(2.0f));
    EXPECT_FLOAT_EQ(float(sg[std::size_t(i)]), std::sqrt(2.0f));
  }
  for (index_t i : {3, 4}) {
    EXPECT_TRUE(std::isnan(sa[std::size_t(i)]));
    EXPECT_TRUE(std::isnan(sg[std::size_t(i)]));
  }
  // lambda = 0: shifts 0 (pi still computed, info 0 for the fine pair).
  PiOutputs<T> zero(backend(), p.pairs);
  ASSERT_TRUE(kfac_pi_damping<T>(c, p.av, p.gv, 0.0, zero.shift_a.data(), zero.shift_g.data(),
                                 zero.info.data())
                  .ok());
  ASSERT_TRUE(synchronize(c).ok());
  EXPECT_EQ(zero.get(zero.shift_a)[0], 0.0);
  EXPECT_EQ(zero.get(zero.shift_g)[0], 0.0);
}

TEST_P(KronTest, KfacPiDampingRejectsBadInput) {
  using T = double;
  PiPairs<T> p(backend(), {{2, 3, 4, 0}, {1, 2, 2, 0}}, rng_);
  const Context c = ctx();
  PiOutputs<T> out(backend(), p.pairs);
  T *sa = out.shift_a.data(), *sg = out.shift_g.data();
  int* info = out.info.data();
  auto expect_invalid = [&](Status st, const char* needle) {
    EXPECT_EQ(st.code(), StatusCode::invalid_argument) << st.to_string();
    EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
  };
  expect_invalid(
      kfac_pi_damping<T>(c, p.av, GroupedBatch<const T>(p.gv.data(), 1), 1.0, sa, sg, info),
      "same number of groups");
  auto bad = p.gv;
  bad[1].batch = 2;
  expect_invalid(kfac_pi_damping<T>(c, p.av, bad, 1.0, sa, sg, info), "g_factors[1]");
  bad = p.av;
  bad[0].cols = 2;
  expect_invalid(kfac_pi_damping<T>(c, bad, p.gv, 1.0, sa, sg, info), "a_factors[0]");
  expect_invalid(kfac_pi_damping<T>(c, p.av, p.gv, -1.0, sa, sg, info), "lambda");
  expect_invalid(kfac_pi_damping<T>(c, p.av, p.gv, std::nan(""), sa, sg, info), "lambda");
  expect_invalid(kfac_pi_damping<T>(c, p.av, p.gv, 1.0, nullptr, sg, info), "shift_a");
  expect_invalid(kfac_pi_damping<T>(c, p.av, p.gv, 1.0, sa, sg, nullptr), "info");
  expect_invalid(kfac_pi_damping<T>(c, p.av, p.gv, 1.0, sa, sa + 1, info), "overlaps");
  T* on_factor = const_cast<T*>(p.av[0].data);
  expect_invalid(kfac_pi_damping<T>(c, p.av, p.gv, 1.0, on_factor, sg, info), "overlaps");
  // Nothing was written.
  EXPECT_EQ(out.info.get(), std::vector<int>(std::size_t(p.pairs), -777));
  for (double x : out.get(out.shift_a)) EXPECT_TRUE(std::isnan(x));
  // No pairs at all: nothing to do, null outputs allowed.
  EXPECT_TRUE(kfac_pi_damping<T>(c, {}, {}, 1.0, nullptr, nullptr, nullptr).ok());
}

TEST_P(KronTest, BadInputIsRejected) {
  const Context c = ctx();
  auto x = random_tensors<float>(2, {3, 4, 5}, rng_);
  auto y0 = random_tensors<float>(2, {3, 6, 5}, rng_);
  auto u = gaussian<float>(1, 6, 4, rng_);
  TensorsOn<float> xx(backend(), x), yy(backend(), y0);
  OnBackend<float> uu(backend(), u);
  auto expect_invalid = [&](Status st, const char* needle) {
    EXPECT_EQ(st.code(), StatusCode::invalid_argument) << st.to_string();
    EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
  };
  expect_invalid(mode_product<float>(c, xx.cview(), 3, uu.cview(), yy.view()), "mode (3)");
  expect_invalid(mode_product<float>(c, xx.cview(), -1, uu.cview(), yy.view()), "mode (-1)");
  expect_invalid(mode_product<float>(c, xx.cview(), 0, uu.cview(), yy.view()), "u is 6 x 4");
  expect_invalid(mode_product<float>(c, xx.cview(), 1, uu.cview(), yy.view(), Op::trans),
                 "transpose of u");
  TensorBatch<float> y_bad = yy.view();
  y_bad.dims[2] = 4;
  expect_invalid(mode_product<float>(c, xx.cview(), 1, uu.cview(), y_bad), "y must be");
  TensorBatch<float> y_on_x = yy.view();
  y_on_x.data = const_cast<float*>(xx.cview().data);
  y_on_x.batch = 1;
  TensorBatch<const float> x1 = xx.cview();
  x1.batch = 1;
  expect_invalid(mode_product<float>(c, x1, 1, uu.cview(), y_on_x), "overlaps");
  TensorBatch<const float> x5 = xx.cview();
  x5.order = 5;
  expect_invalid(mode_product<float>(c, x5, 1, uu.cview(), yy.view()), "order");
  // Chains: wrong number of factors, no mode, too little workspace.
  std::vector<MatrixBatch<const float>> u2 = {{}, uu.cview()};
  expect_invalid(mode_product_chain<float>(c, xx.cview(), u2, yy.view()), "entries");
  std::vector<MatrixBatch<const float>> none = {{}, {}, {}};
  expect_invalid(mode_product_chain<float>(c, xx.cview(), none, yy.view()), "no mode");
  auto sq3 = gaussian<float>(1, 3, 3, rng_), sq5 = gaussian<float>(1, 5, 5, rng_);
  OnBackend<float> s3(backend(), sq3), s5(backend(), sq5);
  std::vector<MatrixBatch<const float>> u3 = {s3.cview(), uu.cview(), s5.cview()};
  if (backend() != Backend::reference) {
    const Status st = mode_product_chain<float>(c, xx.cview(), u3, yy.view());
    EXPECT_EQ(st.code(), StatusCode::workspace_too_small) << st.to_string();
  }
  // Grams: wrong shape, beta out of range; TNT: empty, mismatched batch, null info.
  auto g0 = gaussian<float>(2, 3, 3, rng_);
  OnBackend<float> gg(backend(), g0);
  std::vector<MatrixBatch<float>> grams = {gg.view(), gg.view(), {}};
  expect_invalid(mode_gram<float>(c, xx.cview(), grams), "grams[1]");
  std::vector<MatrixBatch<float>> grams0 = {gg.view(), {}, {}};
  ModeGramOptions mo;
  mo.beta = 1.0;
  expect_invalid(mode_gram<float>(c, xx.cview(), grams0, mo), "beta");
  IntsOnBackend info(backend(), 2);
  expect_invalid(tnt_normalize<float>(c, std::span<const MatrixBatch<float>>(), info.data()), "empty");
  expect_invalid(tnt_normalize<float>(c, std::span<const MatrixBatch<float>>(grams0.data(), 1), nullptr),
                 "info");
  // kron_apply: factor of the wrong size, out aliasing grad, bad alpha.
  auto gr = gaussian<float>(1, 3, 4, rng_), gf = gaussian<float>(1, 3, 3, rng_),
       af = gaussian<float>(1, 4, 4, rng_), out0 = gaussian<float>(1, 3, 4, rng_);
  OnBackend<float> grb(backend(), gr), gfb(backend(), gf), afb(backend(), af), ob(backend(), out0);
  expect_invalid(kron_apply<float>(c, afb.cview(), afb.cview(), grb.cview(), ob.view()), "g_factor");
  MatrixBatch<float> out_on_grad{const_cast<float*>(grb.cview().data), 1, 3, 4, 4, 12};
  expect_invalid(kron_apply<float>(c, gfb.cview(), afb.cview(), grb.cview(), out_on_grad), "overlaps");
  KronApplyOptions ko;
  ko.alpha = std::numeric_limits<double>::infinity();
  expect_invalid(kron_apply<float>(c, gfb.cview(), afb.cview(), grb.cview(), ob.view(), ko), "alpha");
  // Nothing was written.
  EXPECT_EQ(max_rel_err(ob.get(), out0), 0.0);
  EXPECT_EQ(max_rel_err(gg.get(), g0), 0.0);
  EXPECT_EQ(info.get(), std::vector<int>(2, -777));
}

INSTANTIATE_TEST_SUITE_P(Backends, KronTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
