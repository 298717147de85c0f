// Khatri–Rao family tests (curvkit/khatri_rao.hpp): every compiled backend on fresh random
// inputs against oracles built here from explicit per-sample gradients P_i = sum_t g_{i,t}
// a~_{i,t}^T (the rows of J), in double:
//   Gram = J J^T (linear and convolution layers, both paths, bias, grouped per layer and summed)
//   J v and J^T u = the explicit matrix products
//   Woodbury with this Gram (woodbury_solve, and matrix-free through jv / potrs / jtu) = the
//   dense damped solve (J^T J / m + lambda I)^{-1} grad
//   coarse Gram = two-level K-FAC's Algorithm 1 (sums of the cross-layer Kronecker blocks)
// and tests of the tests (seeds-2lkfac-tengrad.md Part VII): the literal matrix-product reading
// of TENGraD's eq. 9 and Woodbury without the 1/m must NOT match.
//
// Tolerances are derived: each output is a sum of products with n_eff terms along its longest
// accumulation chain, so |error| <= ~n_eff eps(T) (|J| |J|^T)_ij elementwise; the tests check
// ||out - want||_F <= 4 n_eff eps(T) ||bound||_F with the bound built from |a| and |g|.
#include <memory>

#include "family_test_util.hpp"

namespace curvkit::test {
namespace {

using Dense = std::vector<double>;

// J of one batch entry (m x p, p = d_out (d_in + bias), row i = row-major vec P_i) and |J|'s
// bound (the same products of |g| and |a|).
template <class T>
void explicit_jacobian(const Operand<T>& a, const Operand<T>& g, index_t b, index_t m, bool bias,
                       Dense* j, Dense* jabs) {
  const index_t s = a.l.rows / m, din = a.l.cols + (bias ? 1 : 0), dout = g.l.cols;
  const index_t p = dout * din;
  j->assign(static_cast<std::size_t>(m * p), 0.0);
  jabs->assign(static_cast<std::size_t>(m * p), 0.0);
  for (index_t i = 0; i < m; ++i)
    for (index_t t = 0; t < s; ++t)
      for (index_t q = 0; q < dout; ++q)
        for (index_t c = 0; c < din; ++c) {
          const double av = c == a.l.cols ? 1.0 : double(a(b, i * s + t, c));
          const double gv = double(g(b, i * s + t, q));
          (*j)[i * p + q * din + c] += gv * av;
          (*jabs)[i * p + q * din + c] += std::abs(gv * av);
        }
}

// x (r x n) times y^T (c x n): r x c.
Dense times_transposed(const Dense& x, const Dense& y, index_t r, index_t c, index_t n) {
  Dense z(static_cast<std::size_t>(r * c), 0.0);
  for (index_t i = 0; i < r; ++i)
    for (index_t k = 0; k < c; ++k) {
      double s = 0;
      for (index_t e = 0; e < n; ++e) s += x[i * n + e] * y[k * n + e];
      z[i * c + k] = s;
    }
  return z;
}

// ||out_b - want_b||_F <= 4 n_eff eps ||bound_b||_F over the selected elements of every b.
template <class T>
void expect_within(
    const Operand<T>& out, const std::vector<Dense>& want, const std::vector<Dense>& bound,
    double n_eff, const std::string& what,
    const std::function<bool(index_t, index_t)>& selected = [](index_t, index_t) { return true; }) {
  for (index_t b = 0; b < out.l.batch; ++b) {
    double num = 0, bnd = 0;
    for (index_t i = 0; i < out.l.rows; ++i)
      for (index_t c = 0; c < out.l.cols; ++c) {
        if (!selected(i, c)) continue;
        const double d = double(out(b, i, c)) - want[b][i * out.l.cols + c];
        num += d * d;
        bnd += bound[b][i * out.l.cols + c] * bound[b][i * out.l.cols + c];
      }
    const double err = std::isnan(num) ? std::numeric_limits<double>::infinity() : std::sqrt(num);
    EXPECT_LE(err, 4.0 * n_eff * eps<T>() * std::sqrt(bnd) + 1e-300)
        << what << ": matrix " << b << ", bound " << std::sqrt(bnd);
  }
}

// ||x - y||_F / ||y||_F of two dense arrays.
double rel_diff(const Dense& x, const Dense& y) {
  double num = 0, den = 0;
  for (std::size_t e = 0; e < y.size(); ++e) {
    num += (x[e] - y[e]) * (x[e] - y[e]);
    den += y[e] * y[e];
  }
  return std::sqrt(num / den);
}

// A layer: inputs a ((m S) x d_in) and output gradients g ((m S) x d_out), padded views.
template <class T>
struct Layer {
  Operand<T> a, g;
  index_t s = 1;
};

class KhatriRaoTest : public BackendTest {
 protected:
  template <class T>
  Layer<T> layer(index_t batch, index_t m, index_t s, index_t d_in, index_t d_out) {
    Layer<T> l;
    l.a = gaussian<T>(batch, m * s, d_in, rng_, 1.0, 1, 3);
    l.g = gaussian<T>(batch, m * s, d_out, rng_, 0.5, 2, 1);
    l.s = s;
    return l;
  }

  // Workspace for a khatri_rao_gram call on this backend.
  template <class T>
  std::unique_ptr<Buffer<char>> gram_workspace(Context& c, GroupedBatch<const T> a,
                                               GroupedBatch<const T> g, GroupedBatch<T> k,
                                               const KhatriRaoOptions& o) {
    const std::size_t ws = khatri_rao_gram_workspace_size<T>(c, a, g, k, o);
    auto buf = std::make_unique<Buffer<char>>(backend(), std::max<std::size_t>(ws, 1));
    c.set_workspace(buf->data(), ws);
    return buf;
  }

  // Per-layer and summed Grams of `layers` against J_l J_l^T.
  template <class T>
  void check_gram(const std::vector<Layer<T>>& layers, index_t batch, index_t m,
                  KhatriRaoOptions o) {
    SCOPED_TRACE(trace() + ", m " + std::to_string(m) + ", layers " +
                 std::to_string(layers.size()) + ", S0 " + std::to_string(layers[0].s) + ", bias " +
                 std::to_string(o.bias) + ", path " + std::to_string(int(o.path)) + ", fill " +
                 std::to_string(int(o.fill)) + ", beta " + std::to_string(o.beta) +
                 (sizeof(T) == 4 ? ", float" : ", double"));
    const std::size_t nl = layers.size();
    // Oracle: per layer and per batch entry, J J^T and its bound.
    std::vector<std::vector<Dense>> kl(nl), kabs(nl);
    double n_eff = 0;
    for (std::size_t l = 0; l < nl; ++l) {
      const index_t p = layers[l].g.l.cols * (layers[l].a.l.cols + (o.bias ? 1 : 0));
      for (index_t b = 0; b < batch; ++b) {
        Dense j, ja;
        explicit_jacobian(layers[l].a, layers[l].g, b, m, o.bias, &j, &ja);
        kl[l].push_back(times_transposed(j, j, m, m, p));
        kabs[l].push_back(times_transposed(ja, ja, m, m, p));
      }
      const index_t s = layers[l].s;
      n_eff += double(s + p + layers[l].a.l.cols + layers[l].g.l.cols + s * s);
    }
    auto lower = [&](index_t i, index_t j) { return o.fill == Fill::full || i >= j; };
    std::vector<std::unique_ptr<OnBackend<T>>> aon, gon;
    std::vector<MatrixBatch<const T>> av, gv;
    for (const auto& l : layers) {
      aon.push_back(std::make_unique<OnBackend<T>>(backend(), l.a));
      gon.push_back(std::make_unique<OnBackend<T>>(backend(), l.g));
      av.push_back(aon.back()->cview());
      gv.push_back(gon.back()->cview());
    }
    // K0: NaN when beta == 0 (must not be read), random otherwise; 1 padding each way.
    auto k0 = [&] {
      Operand<T> k(batch, m, m, 1, 2);
      if (o.beta != 0) k = gaussian<T>(batch, m, m, rng_, 1.0, 1, 2);
      return k;
    };
    auto expected = [&](const Operand<T>& k_in, std::size_t first, std::size_t last,
                        std::vector<Dense>* want, std::vector<Dense>* bound) {
      for (index_t b = 0; b < batch; ++b) {
        Dense w(static_cast<std::size_t>(m * m)), bd(static_cast<std::size_t>(m * m));
        for (index_t i = 0; i < m; ++i)
          for (index_t j = 0; j < m; ++j) {
            double s = 0, sb = 0;
            for (std::size_t l = first; l < last; ++l) {
              s += kl[l][b][i * m + j];
              sb += kabs[l][b][i * m + j];
            }
            // K is symmetric: its lower triangle is the one read.
            const double k_old =
                o.beta != 0 ? double(k_in(b, std::max(i, j), std::min(i, j))) : 0.0;
            w[i * m + j] = o.alpha * s + o.beta * k_old;
            bd[i * m + j] = std::abs(o.alpha) * sb + std::abs(o.beta * k_old);
          }
        want->push_back(std::move(w));
        bound->push_back(std::move(bd));
      }
    };
    Context c = ctx();
    // One K per layer.
    {
      std::vector<Operand<T>> k_in;
      std::vector<std::unique_ptr<OnBackend<T>>> kon;
      std::vector<MatrixBatch<T>> kv;
      for (std::size_t l = 0; l < nl; ++l) {
        k_in.push_back(k0());
        kon.push_back(std::make_unique<OnBackend<T>>(backend(), k_in.back()));
        kv.push_back(kon.back()->view());
      }
      auto ws = gram_workspace<T>(c, av, gv, kv, o);
      const Status st = khatri_rao_gram<T>(c, av, gv, kv, o);
      ASSERT_TRUE(st.ok()) << st.to_string();
      ASSERT_TRUE(synchronize(c).ok());
      for (std::size_t l = 0; l < nl; ++l) {
        const auto k = kon[l]->get();
        std::vector<Dense> want, bound;
        expected(k_in[l], l, l + 1, &want, &bound);
        expect_within(k, want, bound, n_eff, "K of layer " + std::to_string(l), lower);
        expect_untouched_outside(k_in[l], k, lower, "K of layer " + std::to_string(l));
      }
    }
    // One K, the sum over the layers.
    if (nl > 1) {
      const auto k_in = k0();
      OnBackend<T> kon(backend(), k_in);
      MatrixBatch<T> kv = kon.view();
      auto ws = gram_workspace<T>(c, av, gv, GroupedBatch<T>(&kv, 1), o);
      const Status st = khatri_rao_gram<T>(c, av, gv, GroupedBatch<T>(&kv, 1), o);
      ASSERT_TRUE(st.ok()) << st.to_string();
      ASSERT_TRUE(synchronize(c).ok());
      const auto k = kon.get();
      std::vector<Dense> want, bound;
      expected(k_in, 0, nl, &want, &bound);
      expect_within(k, want, bound, n_eff, "summed K", lower);
      expect_untouched_outside(k_in, k, lower, "summed K");
    }
  }

  // J v and J^T u of `layers` against the explicit products, per layer and summed / shared.
  template <class T>
  void check_jacobian_products(const std::vector<Layer<T>>& layers, index_t batch, index_t m,
                               bool bias, double alpha, double beta) {
    SCOPED_TRACE(trace() + ", m " + std::to_string(m) + ", layers " +
                 std::to_string(layers.size()) + ", bias " + std::to_string(bias) + ", beta " +
                 std::to_string(beta) + (sizeof(T) == 4 ? ", float" : ", double"));
    const std::size_t nl = layers.size();
    KhatriRaoOptions o;
    o.bias = bias;
    o.alpha = alpha;
    o.beta = beta;
    std::vector<std::vector<Dense>> js(nl), jas(nl);
    std::vector<index_t> ps(nl);
    std::vector<Operand<T>> vs, vs0, us0;
    double n_eff = 0;
    for (std::size_t l = 0; l < nl; ++l) {
      const index_t din = layers[l].a.l.cols + (bias ? 1 : 0), dout = layers[l].g.l.cols;
      ps[l] = din * dout;
      for (index_t b = 0; b < batch; ++b) {
        Dense j, ja;
        explicit_jacobian(layers[l].a, layers[l].g, b, m, bias, &j, &ja);
        js[l].push_back(std::move(j));
        jas[l].push_back(std::move(ja));
      }
      vs.push_back(gaussian<T>(batch, dout, din, rng_, 1.0, 1, 1));
      vs0.push_back(beta != 0 ? gaussian<T>(batch, dout, din, rng_, 1.0, 2, 0)
                              : Operand<T>(batch, dout, din, 2, 0));
      us0.push_back(beta != 0 ? gaussian<T>(batch, m, 1, rng_, 1.0, 1, 1)
                              : Operand<T>(batch, m, 1, 1, 1));
      n_eff += double(layers[l].s + din + dout);
    }
    std::vector<std::unique_ptr<OnBackend<T>>> keep;
    std::vector<MatrixBatch<const T>> av, gv, vv;
    for (std::size_t l = 0; l < nl; ++l) {
      keep.push_back(std::make_unique<OnBackend<T>>(backend(), layers[l].a));
      av.push_back(keep.back()->cview());
      keep.push_back(std::make_unique<OnBackend<T>>(backend(), layers[l].g));
      gv.push_back(keep.back()->cview());
      keep.push_back(std::make_unique<OnBackend<T>>(backend(), vs[l]));
      vv.push_back(keep.back()->cview());
    }
    const Context c = ctx();
    // u = alpha J v + beta u0, per layer (outputs 0..nl-1) and summed (output nl).
    for (bool summed : {false, true}) {
      if (summed && nl == 1) continue;
      const std::size_t outs = summed ? 1 : nl;
      std::vector<std::unique_ptr<OnBackend<T>>> uon;
      std::vector<MatrixBatch<T>> uv;
      for (std::size_t q = 0; q < outs; ++q) {
        uon.push_back(std::make_unique<OnBackend<T>>(backend(), us0[q]));
        uv.push_back(uon.back()->view());
      }
      const Status st = khatri_rao_jv<T>(c, av, gv, vv, uv, o);
      ASSERT_TRUE(st.ok()) << st.to_string();
      ASSERT_TRUE(synchronize(c).ok());
      for (std::size_t q = 0; q < outs; ++q) {
        std::vector<Dense> want, bound;
        for (index_t b = 0; b < batch; ++b) {
          Dense w(static_cast<std::size_t>(m)), bd(static_cast<std::size_t>(m));
          for (index_t i = 0; i < m; ++i) {
            double s = 0, sb = 0;
            for (std::size_t l = summed ? 0 : q; l < (summed ? nl : q + 1); ++l) {
              const auto vd = vs[l].dense(b);
              for (index_t e = 0; e < ps[l]; ++e) {
                s += js[l][b][i * ps[l] + e] * vd[e];
                sb += jas[l][b][i * ps[l] + e] * std::abs(vd[e]);
              }
            }
            const double old = beta != 0 ? double(us0[q](b, i, 0)) : 0.0;
            w[i] = alpha * s + beta * old;
            bd[i] = std::abs(alpha) * sb + std::abs(beta * old);
          }
          want.push_back(std::move(w));
          bound.push_back(std::move(bd));
        }
        const auto u = uon[q]->get();
        expect_within(u, want, bound, n_eff, summed ? "J v summed" : "J v");
        expect_untouched_outside(
            us0[q], u, [](index_t, index_t) { return true; }, "u");
      }
    }
    // V = alpha J^T u + beta V0, u per layer and shared.
    for (bool shared : {false, true}) {
      if (shared && nl == 1) continue;
      std::vector<Operand<T>> us;
      std::vector<std::unique_ptr<OnBackend<T>>> uon, von;
      std::vector<MatrixBatch<const T>> uv;
      std::vector<MatrixBatch<T>> outv;
      for (std::size_t q = 0; q < (shared ? 1 : nl); ++q) {
        us.push_back(gaussian<T>(batch, m, 1, rng_, 1.0, 2, 0));
        uon.push_back(std::make_unique<OnBackend<T>>(backend(), us.back()));
        uv.push_back(uon.back()->cview());
      }
      for (std::size_t l = 0; l < nl; ++l) {
        von.push_back(std::make_unique<OnBackend<T>>(backend(), vs0[l]));
        outv.push_back(von.back()->view());
      }
      const Status st = khatri_rao_jtu<T>(c, av, gv, uv, outv, o);
      ASSERT_TRUE(st.ok()) << st.to_string();
      ASSERT_TRUE(synchronize(c).ok());
      for (std::size_t l = 0; l < nl; ++l) {
        const auto& uu = us[shared ? 0 : l];
        std::vector<Dense> want, bound;
        for (index_t b = 0; b < batch; ++b) {
          Dense w(static_cast<std::size_t>(ps[l])), bd(static_cast<std::size_t>(ps[l]));
          for (index_t e = 0; e < ps[l]; ++e) {
            double s = 0, sb = 0;
            for (index_t i = 0; i < m; ++i) {
              s += js[l][b][i * ps[l] + e] * double(uu(b, i, 0));
              sb += jas[l][b][i * ps[l] + e] * std::abs(double(uu(b, i, 0)));
            }
            const index_t q = e / vs0[l].l.cols, cc = e % vs0[l].l.cols;
            const double old = beta != 0 ? double(vs0[l](b, q, cc)) : 0.0;
            w[e] = alpha * s + beta * old;
            bd[e] = std::abs(alpha) * sb + std::abs(beta * old);
          }
          want.push_back(std::move(w));
          bound.push_back(std::move(bd));
        }
        const auto v = von[l]->get();
        expect_within(v, want, bound, n_eff, shared ? "J^T u shared" : "J^T u");
        expect_untouched_outside(
            vs0[l], v, [](index_t, index_t) { return true; }, "v");
      }
    }
  }

  template <class T>
  void gram_cases() {
    std::uniform_int_distribution<index_t> d(1, 24);
    const double beta = 0.75;
    for (bool bias : {false, true})
      for (Fill fill : {Fill::lower, Fill::full}) {
        KhatriRaoOptions o;
        o.bias = bias;
        o.fill = fill;
        o.alpha = 0.5;
        // Linear: sizes around the 96-wide tiles, a depth past one 256-deep panel.
        for (index_t m : {1, 7, 97, 150}) {
          o.beta = m == 97 ? beta : 0.0;
          check_gram<T>({layer<T>(2, m, 1, d(rng_), d(rng_))}, 2, m, o);
        }
        o.beta = 0;
        check_gram<T>({layer<T>(1, 20, 1, 300, 270)}, 1, 20, o);
        // Convolution, both paths, several samples per tile and one sample over several.
        for (GramPath path : {GramPath::fused, GramPath::direct, GramPath::automatic}) {
          o.path = path;
          o.beta = path == GramPath::direct ? beta : 0.0;
          check_gram<T>({layer<T>(2, 9, 5, d(rng_), d(rng_))}, 2, 9, o);
          check_gram<T>({layer<T>(1, 3, 100, 6, 5)}, 1, 3, o);
        }
        // More positions than one tile holds: the per-pair kernel, position tiles crossed.
        o.path = GramPath::fused;
        o.beta = beta;
        check_gram<T>({layer<T>(1, 2, 400, 3, 2)}, 1, 2, o);
        // A network: linear and convolution layers of different shapes, per layer and summed.
        o.path = GramPath::automatic;
        o.beta = beta;
        check_gram<T>({layer<T>(2, 11, 1, d(rng_), d(rng_)), layer<T>(2, 11, 4, d(rng_), d(rng_)),
                       layer<T>(2, 11, 1, d(rng_), d(rng_)), layer<T>(2, 11, 2, d(rng_), d(rng_))},
                      2, 11, o);
      }
    // Empty layers: no positions (K = beta K), no output channels, no input features.
    for (GramPath path : {GramPath::automatic, GramPath::direct}) {
      KhatriRaoOptions e;
      e.path = path;
      e.beta = 0.5;
      check_gram<T>({layer<T>(1, 5, 0, 4, 3)}, 1, 5, e);
      check_gram<T>({layer<T>(1, 5, 2, 4, 0)}, 1, 5, e);
      e.beta = 0;
      check_gram<T>({layer<T>(1, 5, 3, 0, 2)}, 1, 5, e);
    }
    // More linear layers than one fused launch takes.
    std::vector<Layer<T>> many;
    for (int l = 0; l < 18; ++l) many.push_back(layer<T>(1, 13, 1, d(rng_), d(rng_)));
    KhatriRaoOptions o;
    o.bias = true;
    o.beta = -0.5;
    check_gram<T>(many, 1, 13, o);
  }

  template <class T>
  void jacobian_cases() {
    std::uniform_int_distribution<index_t> d(1, 24);
    for (bool bias : {false, true})
      for (double beta : {0.0, 0.5}) {
        for (index_t m : {1, 5, 100})
          check_jacobian_products<T>({layer<T>(2, m, 1, d(rng_), d(rng_))}, 2, m, bias, 0.75, beta);
        check_jacobian_products<T>({layer<T>(1, 4, 1, 300, 270)}, 1, 4, bias, 1.0, beta);
        check_jacobian_products<T>({layer<T>(1, 3, 100, 7, 5)}, 1, 3, bias, 1.0, beta);
        check_jacobian_products<T>(
            {layer<T>(2, 6, 1, d(rng_), d(rng_)), layer<T>(2, 6, 3, d(rng_), d(rng_)),
             layer<T>(2, 6, 1, d(rng_), d(rng_))},
            2, 6, bias, -1.5, beta);
      }
  }
};

TEST_P(KhatriRaoTest, GramEqualsExplicitPerSampleGradients) {
  gram_cases<float>();
  gram_cases<double>();
}

TEST_P(KhatriRaoTest, JacobianProductsEqualExplicitJ) {
  jacobian_cases<float>();
  jacobian_cases<double>();
}

// TENGraD / SMW natural gradient: (J^T J / m + lambda I)^{-1} grad three ways (dense solve;
// woodbury_solve given this family's Gram; matrix-free jv -> potrs -> jtu), and the two
// negative cases.
TEST_P(KhatriRaoTest, WoodburyWithTheGramEqualsDenseDampedSolve) {
  using T = double;
  for (index_t s : {1, 3}) {
    SCOPED_TRACE(trace() + ", S " + std::to_string(s));
    const index_t m = 6, din = 4, dout = 3, p = dout * (din + 1);
    const double lambda = 0.3;
    const Layer<T> l = layer<T>(1, m, s, din, dout);
    Dense j, ja;
    explicit_jacobian(l.a, l.g, 0, m, true, &j, &ja);
    // A gradient like a real one: a mix of the per-sample gradients (J^T w / m) plus a little
    // outside their span.  (A gradient mostly outside the span of J^T would make the solve
    // nearly g / lambda with or without the 1/m, and blind the negative cases.)
    Operand<T> grad = gaussian<T>(1, dout, din + 1, rng_, 0.1);
    {
      std::normal_distribution<double> nd;
      Dense w(static_cast<std::size_t>(m));
      for (auto& e : w) e = nd(rng_);
      for (index_t e = 0; e < p; ++e)
        for (index_t i = 0; i < m; ++i)
          grad(0, e / (din + 1), e % (din + 1)) += T(j[i * p + e] * w[i] / double(m));
    }
    // Dense: (J^T J / m + lambda I) x = vec(grad), by the SPD inverse helper.
    Dense f(static_cast<std::size_t>(p * p));
    for (index_t x = 0; x < p; ++x)
      for (index_t y = 0; y < p; ++y) {
        double sum = 0;
        for (index_t i = 0; i < m; ++i) sum += j[i * p + x] * j[i * p + y];
        f[x * p + y] = sum / double(m) + (x == y ? lambda : 0.0);
      }
    const Dense finv = spd_inverse(f, p);
    const Dense g = grad.dense(0);
    Dense want(static_cast<std::size_t>(p), 0.0);
    for (index_t x = 0; x < p; ++x)
      for (index_t y = 0; y < p; ++y) want[x] += finv[x * p + y] * g[y];

    const Context c = ctx();
    OnBackend<T> a(backend(), l.a), gg(backend(), l.g);
    KhatriRaoOptions ko;
    ko.bias = true;
    ko.fill = Fill::full;
    Operand<T> k0(1, m, m);
    OnBackend<T> k(backend(), k0);
    ASSERT_TRUE(khatri_rao_gram<T>(c, a.cview(), gg.cview(), k.view(), ko).ok());

    // (1) woodbury_solve with ut = J (explicit here), C = (1/m) I and the family's Gram.
    Operand<T> jt(1, m, p), b0(1, p, 1);
    for (index_t i = 0; i < m; ++i)
      for (index_t e = 0; e < p; ++e) jt(0, i, e) = j[i * p + e];
    for (index_t e = 0; e < p; ++e) b0(0, e, 0) = g[e];
    for (double c_scale : {1.0 / double(m), 1.0}) {
      OnBackend<T> ut(backend(), jt), rhs(backend(), b0);
      IntsOnBackend info(backend(), 1);
      WoodburyOptions wo;
      wo.lambda = lambda;
      wo.c_scale = c_scale;
      const Status st =
          woodbury_solve<T>(c, ut.cview(), rhs.view(), info.data(), wo, {}, k.cview());
      ASSERT_TRUE(st.ok()) << st.to_string();
      ASSERT_TRUE(synchronize(c).ok());
      ASSERT_EQ(info.get()[0], 0);
      const Dense x = rhs.get().dense(0);
      if (c_scale != 1.0)
        EXPECT_LE(rel_diff(x, want), 1e-10) << "woodbury_solve with the Khatri-Rao Gram";
      else  // Woodbury without the 1/m (seeds-2lkfac-tengrad.md test 6): must not match
        EXPECT_GT(rel_diff(x, want), 0.05) << "Woodbury without 1/m matched: the test is blind";
    }

    // (2) matrix-free: z = (K/m + lambda I)^{-1} J grad, x = (1/lambda)(grad - (1/m) J^T z).
    Operand<T> u0(1, m, 1);
    OnBackend<T> u(backend(), u0), gv(backend(), grad);
    ASSERT_TRUE(khatri_rao_jv<T>(c, a.cview(), gg.cview(), gv.cview(), u.view(), ko).ok());
    Operand<T> kd = k.get();
    for (index_t i = 0; i < m; ++i)
      for (index_t q = 0; q < m; ++q) kd(0, i, q) = kd(0, i, q) / T(m) + (i == q ? lambda : 0.0);
    OnBackend<T> dmat(backend(), kd);
    IntsOnBackend info(backend(), 1);
    ASSERT_TRUE(posv<T>(c, dmat.view(), u.view(), info.data()).ok());
    for (double inv_m : {1.0 / double(m), 1.0}) {
      OnBackend<T> x(backend(), grad);
      KhatriRaoOptions to = ko;
      to.alpha = -inv_m / lambda;
      to.beta = 1.0 / lambda;
      ASSERT_TRUE(khatri_rao_jtu<T>(c, a.cview(), gg.cview(), u.cview(), x.view(), to).ok());
      ASSERT_TRUE(synchronize(c).ok());
      ASSERT_EQ(info.get()[0], 0);
      const Dense xd = x.get().dense(0);
      if (inv_m != 1.0)
        EXPECT_LE(rel_diff(xd, want), 1e-10) << "matrix-free Woodbury";
      else
        EXPECT_GT(rel_diff(xd, want), 0.05) << "J^T without 1/m matched: the test is blind";
    }
  }
}

// TENGraD eq. 9 as printed, 1^T (I_i I_j^T)(G_i G_j^T) 1 (a matrix product), is not the Gram;
// the Hadamard-sum reading is (seeds-2lkfac-tengrad.md §II.5).  The family must match the
// Hadamard reading and the literal one must be far from it.
TEST_P(KhatriRaoTest, LiteralEq9ReadingDoesNotMatch) {
  using T = double;
  const index_t m = 5, s = 4, din = 6, dout = 3;
  const Layer<T> l = layer<T>(1, m, s, din, dout);
  Dense j, ja;
  explicit_jacobian(l.a, l.g, 0, m, false, &j, &ja);
  const Dense want = times_transposed(j, j, m, m, dout * din);
  Dense literal(static_cast<std::size_t>(m * m), 0.0);
  for (index_t i = 0; i < m; ++i)
    for (index_t q = 0; q < m; ++q) {
      Dense aa(static_cast<std::size_t>(s * s)), gg(static_cast<std::size_t>(s * s));
      for (index_t t = 0; t < s; ++t)
        for (index_t u = 0; u < s; ++u) {
          double x = 0, y = 0;
          for (index_t c = 0; c < din; ++c) x += l.a(0, i * s + t, c) * l.a(0, q * s + u, c);
          for (index_t c = 0; c < dout; ++c) y += l.g(0, i * s + t, c) * l.g(0, q * s + u, c);
          aa[t * s + u] = x;
          gg[t * s + u] = y;
        }
      for (index_t t = 0; t < s; ++t)
        for (index_t u = 0; u < s; ++u)
          for (index_t v = 0; v < s; ++v) literal[i * m + q] += aa[t * s + v] * gg[v * s + u];
    }
  const Context c = ctx();
  for (GramPath path : {GramPath::fused, GramPath::direct}) {
    OnBackend<T> a(backend(), l.a), g(backend(), l.g), k(backend(), Operand<T>(1, m, m));
    KhatriRaoOptions o;
    o.fill = Fill::full;
    o.path = path;
    MatrixBatch<T> kv = k.view();
    MatrixBatch<const T> av = a.cview(), gv = g.cview();
    Context cw = c;
    auto ws = gram_workspace<T>(cw, GroupedBatch<const T>(&av, 1), GroupedBatch<const T>(&gv, 1),
                                GroupedBatch<T>(&kv, 1), o);
    ASSERT_TRUE(khatri_rao_gram<T>(cw, av, gv, kv, o).ok());
    ASSERT_TRUE(synchronize(cw).ok());
    const Dense got = k.get().dense(0);
    EXPECT_LE(rel_diff(got, want), 1e-12) << trace();
    EXPECT_GT(rel_diff(literal, want), 0.1) << "the literal reading matched: the test is blind";
  }
}

// Two-level K-FAC: the coarse matrix from per-sample layer sums equals Algorithm 1's
// [F_c]_ij = sum of all entries of A_ij (x) G_ij with A_ij = (1/m) A~_i^T A~_j (augmented,
// cross-layer) and G_ij = (1/m) G_i^T G_j; EMA of S_A, S_G; F_c is PSD (Schur product).
TEST_P(KhatriRaoTest, CoarseGramEqualsAlgorithm1) {
  auto run = [&](auto zero) {
    using T = decltype(zero);
    SCOPED_TRACE(trace() + (sizeof(T) == 4 ? ", float" : ", double"));
    const index_t m = 9, batch = 2;
    std::vector<Layer<T>> ls = {layer<T>(batch, m, 1, 5, 4), layer<T>(batch, m, 1, 4, 7),
                                layer<T>(batch, m, 1, 7, 3)};
    const index_t nl = index_t(ls.size());
    const double beta = 0.6;
    std::vector<std::unique_ptr<OnBackend<T>>> keep;
    std::vector<MatrixBatch<const T>> av, gv;
    for (auto& l : ls) {
      keep.push_back(std::make_unique<OnBackend<T>>(backend(), l.a));
      av.push_back(keep.back()->cview());
      keep.push_back(std::make_unique<OnBackend<T>>(backend(), l.g));
      gv.push_back(keep.back()->cview());
    }
    const Context c = ctx();
    OnBackend<T> sa(backend(), Operand<T>(batch, m, nl, 1, 1)),
        sg(backend(), Operand<T>(batch, m, nl, 1, 1));
    ASSERT_TRUE(khatri_rao_layer_sums<T>(c, av, sa.view(), true).ok());
    ASSERT_TRUE(khatri_rao_layer_sums<T>(c, gv, sg.view(), false).ok());
    const Operand<T> s_a0 = gaussian<T>(batch, nl, nl, rng_, 1.0, 1, 0),
                     s_g0 = gaussian<T>(batch, nl, nl, rng_, 1.0, 1, 0);
    OnBackend<T> s_a(backend(), s_a0), s_g(backend(), s_g0),
        f(backend(), Operand<T>(batch, nl, nl, 2, 1));
    CoarseGramOptions co;
    co.beta = beta;
    ASSERT_TRUE(
        coarse_gram<T>(c, sa.cview(), sg.cview(), s_a.view(), s_g.view(), f.view(), co).ok());
    ASSERT_TRUE(synchronize(c).ok());
    const auto fo = f.get();
    for (index_t b = 0; b < batch; ++b) {
      Dense want(static_cast<std::size_t>(nl * nl));
      for (index_t i = 0; i < nl; ++i)
        for (index_t q = 0; q < nl; ++q) {
          double suma = 0, sumg = 0;  // sums of the cross-layer factor blocks
          for (index_t x = 0; x <= ls[i].a.l.cols; ++x)
            for (index_t y = 0; y <= ls[q].a.l.cols; ++y)
              for (index_t r = 0; r < m; ++r) {
                const double ax = x == ls[i].a.l.cols ? 1.0 : double(ls[i].a(b, r, x));
                const double ay = y == ls[q].a.l.cols ? 1.0 : double(ls[q].a(b, r, y));
                suma += ax * ay / double(m);
              }
          for (index_t x = 0; x < ls[i].g.l.cols; ++x)
            for (index_t y = 0; y < ls[q].g.l.cols; ++y)
              for (index_t r = 0; r < m; ++r)
                sumg += double(ls[i].g(b, r, x)) * double(ls[q].g(b, r, y)) / double(m);
          const double ema_a = beta * double(s_a0(b, i, q)) + (1 - beta) * suma;
          const double ema_g = beta * double(s_g0(b, i, q)) + (1 - beta) * sumg;
          want[i * nl + q] = ema_a * ema_g;
        }
      double num = 0, den = 0;
      for (index_t e = 0; e < nl * nl; ++e) {
        const double d = double(fo(b, e / nl, e % nl)) - want[e];
        num += d * d;
        den += want[e] * want[e];
      }
      EXPECT_LE(std::sqrt(num / den), 200 * eps<T>()) << "matrix " << b;
    }
    // Without the EMA, F_c = S_A o S_G is PSD: x^T F x >= 0 for random x.
    co.beta = 0;
    ASSERT_TRUE(
        coarse_gram<T>(c, sa.cview(), sg.cview(), s_a.view(), s_g.view(), f.view(), co).ok());
    ASSERT_TRUE(synchronize(c).ok());
    const auto fp = f.get();
    std::normal_distribution<double> nd;
    for (int trial = 0; trial < 20; ++trial) {
      Dense x(static_cast<std::size_t>(nl));
      for (auto& e : x) e = nd(rng_);
      double q = 0, scale = 0;
      for (index_t i = 0; i < nl; ++i)
        for (index_t k = 0; k < nl; ++k) {
          q += x[i] * double(fp(0, i, k)) * x[k];
          scale += std::abs(x[i] * double(fp(0, i, k)) * x[k]);
        }
      EXPECT_GE(q, -100 * eps<T>() * scale);
    }
  };
  run(float{});
  run(double{});
}

// The cost model picks the fused form for small S and the direct form for large S (TENGraD's
// 3C1F conv2/3 shape, seeds-2lkfac-tengrad.md §II.5: crossover near S = 11), and the direct
// form on the CIFAR ResNet layer of the benchmarks.
TEST(KhatriRaoCostModel, PicksTheCheaperPath) {
  EXPECT_EQ(khatri_rao_gram_path(128, 1, 1152, 128), GramPath::fused);
  EXPECT_EQ(khatri_rao_gram_path(128, 4, 1152, 128), GramPath::fused);
  EXPECT_EQ(khatri_rao_gram_path(128, 64, 1152, 128), GramPath::direct);
  EXPECT_EQ(khatri_rao_gram_path(128, 784, 1152, 128), GramPath::direct);
  EXPECT_EQ(khatri_rao_gram_path(128, 1024, 576, 64), GramPath::direct);
}

TEST_P(KhatriRaoTest, BadInputIsRejected) {
  using T = float;
  const Context c = ctx();
  const Layer<T> l = layer<T>(1, 4, 2, 3, 2);
  OnBackend<T> a(backend(), l.a), g(backend(), l.g), k(backend(), Operand<T>(1, 4, 4)),
      g_short(backend(), Operand<T>(1, 7, 2)), k_rect(backend(), Operand<T>(1, 4, 3)),
      k3(backend(), Operand<T>(1, 3, 3)), v(backend(), Operand<T>(1, 2, 3)),
      u(backend(), Operand<T>(1, 4, 1));
  auto bad = [](const Status& s, const char* what) {
    EXPECT_EQ(s.code(), StatusCode::invalid_argument) << what << ": " << s.to_string();
  };
  KhatriRaoOptions o;
  bad(khatri_rao_gram<T>(c, a.cview(), g_short.cview(), k.view(), o), "g rows != a rows");
  bad(khatri_rao_gram<T>(c, a.cview(), g.cview(), k_rect.view(), o), "k not square");
  bad(khatri_rao_gram<T>(c, a.cview(), g.cview(), k3.view(), o), "rows not a multiple of m");
  o.alpha = std::nan("");
  bad(khatri_rao_gram<T>(c, a.cview(), g.cview(), k.view(), o), "alpha NaN");
  o = {};
  o.fill = Fill(7);
  bad(khatri_rao_gram<T>(c, a.cview(), g.cview(), k.view(), o), "fill");
  o = {};
  o.path = GramPath(9);
  bad(khatri_rao_gram<T>(c, a.cview(), g.cview(), k.view(), o), "path");
  o = {};
  // k overlapping a.
  MatrixBatch<T> alias{const_cast<T*>(a.cview().data), 1, 2, 2, 2, 4};
  bad(khatri_rao_gram<T>(c, a.cview(), g.cview(), alias, o), "k overlaps a");
  // Grouped: two layers but two outputs for one ... three groups of k.
  std::vector<MatrixBatch<const T>> av = {a.cview(), a.cview()}, gv = {g.cview(), g.cview()};
  std::vector<MatrixBatch<T>> k_three = {k.view(), k.view(), k.view()};
  bad(khatri_rao_gram<T>(c, av, gv, k_three, o), "k groups");
  // Direct path without workspace (reference needs none).
  if (backend() != Backend::reference) {
    o.path = GramPath::direct;
    const Status s = khatri_rao_gram<T>(c, a.cview(), g.cview(), k.view(), o);
    EXPECT_EQ(s.code(), StatusCode::workspace_too_small) << s.to_string();
    o = {};
  }
  // J v / J^T u: v's shape must follow the bias option; u must be m x 1.
  o.bias = true;
  bad(khatri_rao_jv<T>(c, a.cview(), g.cview(), v.cview(), u.view(), o), "v without bias column");
  bad(khatri_rao_jtu<T>(c, a.cview(), g.cview(), u.cview(), v.view(), o), "v without bias column");
  o.bias = false;
  bad(khatri_rao_jv<T>(c, a.cview(), g.cview(), v.cview(), k.view(), o), "u not a vector");
  // Layer sums / coarse Gram.
  OnBackend<T> sums(backend(), Operand<T>(1, 4, 2)), f(backend(), Operand<T>(1, 2, 2)),
      f2(backend(), Operand<T>(1, 2, 2)), f3(backend(), Operand<T>(1, 2, 2));
  std::vector<MatrixBatch<const T>> one = {a.cview()};
  bad(khatri_rao_layer_sums<T>(c, one, sums.view()), "sums.cols != layers");
  CoarseGramOptions co;
  co.beta = 1.0;
  bad(coarse_gram<T>(c, sums.cview(), sums.cview(), f.view(), f2.view(), f3.view(), co), "beta 1");
  co.beta = 0;
  bad(coarse_gram<T>(c, sums.cview(), sums.cview(), f.view(), f.view(), f3.view(), co),
      "s_a aliases s_g");
  bad(coarse_gram<T>(c, sums.cview(), sums.cview(), k.view(), f2.view(), f3.view(), co),
      "s_a wrong shape");
}

INSTANTIATE_TEST_SUITE_P(Backends, KhatriRaoTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
