// Parity of the C ABI (curvkit/c_api.h) with the C++ ops it wraps: each entry point here is
// called on one copy of fresh random operands and the C++ op (curvkit::xxx<T>) on an identical
// copy with the same options, and every buffer (outputs, untouched inputs, padding, info and
// the other per-matrix outputs) must come out bitwise the same (NaN equals NaN).  Both backends
// are deterministic on the host (reference loops, Kokkos Serial), so no tolerance is needed.
// tests/c_api_test.c checks the rest of the C ABI by mathematical identities; this file covers
// potrs, syrk, mode_product_chain, mode_gram, tnt_normalize, kfac_pi_damping, khatri_rao_jv /
// jtu / layer_sums, coarse_gram, newton_schulz_sqrt, bfgs_damping, hessian_action_pair, grouped
// gemm / kron_apply / khatri_rao_gram / newton_schulz_inverse, woodbury_solve with a diagonal
// or matrix C and a given Gram, and errors only the C layer can report.
//
// Buffers are host std::vectors (reference, and Kokkos Serial runs in host memory), aligned to
// 64 bytes so both copies have the same alignment (SIMD loops then split their work the same
// way).  The C++ op gets its workspace from curvkit::allocate, as the C layer does.
#include <array>
#include <cstdlib>
#include <map>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "curvkit/c_api.h"
#include "curvkit/core/memory.hpp"
#include "family_test_util.hpp"

namespace curvkit::test {
namespace {

template <class T>
struct AlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, kAlign); }
  bool operator==(const AlignedAllocator&) const { return true; }
};
template <class T>
using Vec = std::vector<T, AlignedAllocator<T>>;

template <class T>
constexpr curvkit_dtype kDtype = std::is_same_v<T, float> ? CURVKIT_FLOAT32 : CURVKIT_FLOAT64;

template <class T>
const char* dtype_name() {
  return std::is_same_v<T, float> ? "float" : "double";
}

std::string key(const std::string& prefix, index_t g) {
  return prefix + std::to_string(g);
}
/// {prefix0, prefix1, ...}: the names of a grouped operand.
std::vector<std::string> keys(const std::string& prefix, index_t groups) {
  std::vector<std::string> k;
  for (index_t g = 0; g < groups; ++g) k.push_back(key(prefix, g));
  return k;
}

/// One batch of matrices (or of tensors: then rows = 1 and cols = the tensor size), with one
/// element of padding after each row and each matrix (NaN, so a stray read shows).
template <class T>
struct Block {
  index_t batch = 0, rows = 0, cols = 0, ld = 0, stride = 0;
  int order = 0;  // > 0: a batch of tensors with these dims
  std::array<std::int64_t, 4> dims{};
  Vec<T> v;
  curvkit_matrices c_view{};  // rebuilt by each accessor: valid for the copy it was taken from
  curvkit_tensors c_tensor{};

  T& at(index_t b, index_t i, index_t j) { return v[b * stride + i * ld + j]; }
};

/// The named operands of one call.  Copying it copies every buffer: the C call runs on one
/// copy and the C++ op on another.  An empty name is an absent view.
template <class T>
class Operands {
 public:
  Block<T>& zeros(const std::string& name, index_t batch, index_t rows, index_t cols) {
    Block<T>& b = blocks_[name];
    b = Block<T>{};
    b.batch = batch;
    b.rows = rows;
    b.cols = cols;
    b.ld = cols + 1;
    b.stride = rows * b.ld + 1;
    b.v.assign(static_cast<std::size_t>(std::max<index_t>(batch * b.stride, 1)),
               std::numeric_limits<T>::quiet_NaN());
    for_each(b, [](index_t, index_t, index_t) { return 0.0; });
    return b;
  }
  /// Gaussian entries times `scale`.
  void random(std::mt19937_64& rng, const std::string& name, index_t batch, index_t rows,
              index_t cols, double scale = 1.0) {
    std::normal_distribution<double> n;
    for_each(zeros(name, batch, rows, cols),
             [&](index_t, index_t, index_t) { return scale * n(rng); });
  }
  /// Uniform entries in [0.5, 2].
  void positive(std::mt19937_64& rng, const std::string& name, index_t batch, index_t rows,
                index_t cols) {
    std::uniform_real_distribution<double> u(0.5, 2.0);
    for_each(zeros(name, batch, rows, cols), [&](index_t, index_t, index_t) { return u(rng); });
  }
  /// SPD matrices of condition number 10 (both triangles).
  void spd(std::mt19937_64& rng, const std::string& name, index_t batch, index_t n) {
    Block<T>& b = zeros(name, batch, n, n);
    for (index_t m = 0; m < batch; ++m) {
      const auto a = random_spd(n, 10.0, rng);
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < n; ++j) b.at(m, i, j) = T(a[i * n + j]);
    }
  }
  /// Cholesky-like factors: diagonal in [1, 2], the rest Gaussian / n (the strict upper
  /// triangle too: the ops must not read it, and both sides see the same values anyway).
  void lower_factor(std::mt19937_64& rng, const std::string& name, index_t batch, index_t n) {
    random(rng, name, batch, n, n, 1.0 / double(n));
    std::uniform_real_distribution<double> u(1.0, 2.0);
    Block<T>& b = blocks_.at(name);
    for (index_t m = 0; m < batch; ++m)
      for (index_t i = 0; i < n; ++i) b.at(m, i, i) = T(u(rng));
  }
  /// A batch of Gaussian tensors with the given dims.
  void tensor(std::mt19937_64& rng, const std::string& name, index_t batch,
              std::vector<std::int64_t> dims, bool fill_random = true) {
    index_t size = 1;
    for (auto d : dims) size *= d;
    if (fill_random)
      random(rng, name, batch, 1, size);
    else
      zeros(name, batch, 1, size);
    Block<T>& b = blocks_.at(name);
    b.order = static_cast<int>(dims.size());
    std::copy(dims.begin(), dims.end(), b.dims.begin());
  }
  /// Per-matrix int outputs, poisoned with -777.
  void ints(const std::string& name, index_t count) {
    ints_[name].assign(static_cast<std::size_t>(count), -777);
  }

  // ---- views of this copy ----
  MatrixBatch<T> m(const std::string& name) {
    if (name.empty()) return {};
    Block<T>& b = blocks_.at(name);
    return {b.v.data(), b.batch, b.rows, b.cols, b.ld, b.stride};
  }
  MatrixBatch<const T> cm(const std::string& name) { return m(name); }
  std::vector<MatrixBatch<T>> ms(const std::vector<std::string>& names) {
    std::vector<MatrixBatch<T>> out;
    for (const auto& n : names) out.push_back(m(n));
    return out;
  }
  std::vector<MatrixBatch<const T>> cms(const std::vector<std::string>& names) {
    std::vector<MatrixBatch<const T>> out;
    for (const auto& n : names) out.push_back(cm(n));
    return out;
  }
  /// The C view (nullptr for an empty name).
  const curvkit_matrices* c(const std::string& name) {
    if (name.empty()) return nullptr;
    Block<T>& b = blocks_.at(name);
    b.c_view = {b.v.data(), kDtype<T>, b.batch, b.rows, b.cols, b.ld, b.stride};
    return &b.c_view;
  }
  /// C views of a grouped operand (absent entries: data == NULL).
  std::vector<curvkit_matrices> cs(const std::vector<std::string>& names) {
    std::vector<curvkit_matrices> out;
    for (const auto& n : names) out.push_back(n.empty() ? curvkit_matrices{} : *c(n));
    return out;
  }
  TensorBatch<T> t(const std::string& name) {
    Block<T>& b = blocks_.at(name);
    TensorBatch<T> out{b.v.data(), b.batch, b.order, {}, b.stride};
    std::copy(b.dims.begin(), b.dims.end(), out.dims.begin());
    return out;
  }
  const curvkit_tensors* ct(const std::string& name) {
    Block<T>& b = blocks_.at(name);
    b.c_tensor = curvkit_make_tensors(b.v.data(), kDtype<T>, b.batch, b.order, b.dims.data());
    b.c_tensor.stride = b.stride;
    return &b.c_tensor;
  }
  T* p(const std::string& name) { return blocks_.at(name).v.data(); }
  int* i(const std::string& name) { return ints_.at(name).data(); }

  /// Every buffer of `other` equals this one's, elementwise (NaN == NaN).
  void expect_identical(const Operands& other) const {
    for (const auto& [name, b] : blocks_) {
      const Vec<T>& w = other.blocks_.at(name).v;
      ASSERT_EQ(b.v.size(), w.size()) << name;
      std::size_t first = 0;
      const std::size_t differing = count_differences(b.v, w, &first);
      EXPECT_EQ(differing, 0u) << name << ": " << differing << " elements differ, the first at "
                               << first << " (C " << b.v[first] << ", C++ " << w[first] << ")";
    }
    for (const auto& [name, v] : ints_) EXPECT_EQ(v, other.ints_.at(name)) << name;
  }

  /// The call did something: some element differs from `before`, and every int output was
  /// written (none still holds the poison).
  void expect_written(const Operands& before) const {
    std::size_t changed = 0, first = 0;
    for (const auto& [name, b] : blocks_)
      changed += count_differences(b.v, before.blocks_.at(name).v, &first);
    EXPECT_GT(changed, 0u) << "the call changed no element";
    for (const auto& [name, v] : ints_)
      EXPECT_EQ(std::count(v.begin(), v.end(), -777), 0) << name << " not written";
  }

 private:
  /// Elements that differ (NaN equals NaN); *first is the index of the first.
  static std::size_t count_differences(const Vec<T>& x, const Vec<T>& y, std::size_t* first) {
    std::size_t n = 0;
    for (std::size_t e = 0; e < x.size(); ++e) {
      if ((std::isnan(x[e]) && std::isnan(y[e])) || x[e] == y[e]) continue;
      if (n++ == 0) *first = e;
    }
    return n;
  }
  template <class F>
  static void for_each(Block<T>& b, F&& f) {
    for (index_t m = 0; m < b.batch; ++m)
      for (index_t i = 0; i < b.rows; ++i)
        for (index_t j = 0; j < b.cols; ++j) b.at(m, i, j) = T(f(m, i, j));
  }
  std::map<std::string, Block<T>> blocks_;
  std::map<std::string, std::vector<int>> ints_;
};

/// op(X) is rows x cols: the stored matrix is that or its transpose.
std::pair<index_t, index_t> stored(Op op, index_t rows, index_t cols) {
  return op == Op::none ? std::pair{rows, cols} : std::pair{cols, rows};
}

curvkit_op c_op(Op op) {
  return static_cast<curvkit_op>(op);
}

// Newton-Schulz stops: a fixed count, and the residual stop with damping.
constexpr curvkit_ns_options kNsFixed{CURVKIT_NS_FIXED, 6, 1e-6, 0.0, CURVKIT_NS_NATIVE},
    kNsResidual{CURVKIT_NS_RESIDUAL, 12, 1e-5, 0.01, CURVKIT_NS_NATIVE};

class CApiParityTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped()) return;
    const bool kokkos = backend() == Backend::kokkos;
    ASSERT_EQ(curvkit_context_create(kokkos ? CURVKIT_BACKEND_KOKKOS : CURVKIT_BACKEND_REFERENCE,
                                     nullptr, &handle_),
              CURVKIT_OK)
        << curvkit_last_error();
    cpp_ = kokkos ? Context::kokkos() : Context::reference();
  }
  void TearDown() override {
    curvkit_context_destroy(handle_);
    handle_ = nullptr;
  }

  /// The C++ context with at least `bytes` of workspace (grown like the C layer's).
  Context with_workspace(std::size_t bytes) {
    if (bytes > workspace_.size()) {
      workspace_ = BackendArray<unsigned char>(cpp_, bytes);
      EXPECT_TRUE(workspace_.status().ok()) << workspace_.status().to_string();
    }
    Context c = cpp_;
    c.set_workspace(workspace_.data(), workspace_.size());
    return c;
  }

  template <class T>
  std::string where(const std::string& what) const {
    return trace() + ", " + dtype_name<T>() + ", " + what;
  }

  /// Runs c_call on one copy of `inputs` and cpp_call on another; both must succeed and leave
  /// identical buffers.
  template <class T, class CCall, class CppCall>
  void expect_parity(const Operands<T>& inputs, CCall&& c_call, CppCall&& cpp_call) {
    Operands<T> via_c = inputs, via_cpp = inputs;
    ASSERT_EQ(c_call(via_c), CURVKIT_OK) << curvkit_last_error();
    ASSERT_EQ(curvkit_synchronize(handle_), CURVKIT_OK) << curvkit_last_error();
    const Status st = cpp_call(via_cpp);
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_TRUE(synchronize(cpp_).ok());
    via_c.expect_written(inputs);
    via_c.expect_identical(via_cpp);
  }

  /// The C call must fail with `code` and a message containing `text`.
  void expect_error(curvkit_status got, curvkit_status code, const std::string& text) {
    EXPECT_EQ(got, code) << curvkit_last_error();
    EXPECT_NE(std::string(curvkit_last_error()).find(text), std::string::npos)
        << "message \"" << curvkit_last_error() << "\" lacks \"" << text << "\"";
  }

  // ---- SPD ----

  template <class T>
  void check_potrs(index_t groups) {
    SCOPED_TRACE(where<T>("potrs, groups " + std::to_string(groups)));
    const index_t batch[] = {2, 1}, n[] = {4, 6}, nrhs[] = {3, 2};
    Operands<T> in;
    for (index_t g = 0; g < groups; ++g) {
      in.lower_factor(rng_, key("l", g), batch[g], n[g]);
      in.random(rng_, key("b", g), batch[g], n[g], nrhs[g]);
    }
    in.ints("info", groups == 1 ? 2 : 3);
    const auto l = keys("l", groups), b = keys("b", groups);
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_potrs(handle_, groups, o.cs(l).data(), o.cs(b).data(), o.i("info"));
        },
        [&](Operands<T>& o) {
          const auto lv = o.cms(l);
          const auto bv = o.ms(b);
          if (groups == 1) return potrs<T>(cpp_, lv[0], bv[0], o.i("info"));
          return potrs<T>(cpp_, GroupedBatch<const T>(lv), GroupedBatch<T>(bv), o.i("info"));
        });
  }

  // ---- products ----

  template <class T>
  void check_gemm(index_t groups, Op op_a, Op op_b) {
    SCOPED_TRACE(where<T>("gemm, groups " + std::to_string(groups) + ", op_a " +
                          std::to_string(int(op_a)) + ", op_b " + std::to_string(int(op_b))));
    // Group 1 broadcasts its a (batch 1) over three matrices.
    const index_t batch[] = {2, 3}, a_batch[] = {2, 1}, m[] = {3, 6}, n[] = {4, 2}, k[] = {5, 3};
    Operands<T> in;
    for (index_t g = 0; g < groups; ++g) {
      const auto [ar, ac] = stored(op_a, m[g], k[g]);
      const auto [br, bc] = stored(op_b, k[g], n[g]);
      in.random(rng_, key("a", g), a_batch[g], ar, ac);
      in.random(rng_, key("b", g), batch[g], br, bc);
      in.random(rng_, key("c", g), batch[g], m[g], n[g]);
    }
    const auto a = keys("a", groups), b = keys("b", groups), c = keys("c", groups);
    const double alpha = 0.7, beta = 0.4;
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_gemm(handle_, groups, c_op(op_a), c_op(op_b), alpha, o.cs(a).data(),
                              o.cs(b).data(), beta, o.cs(c).data());
        },
        [&](Operands<T>& o) {
          const auto av = o.cms(a), bv = o.cms(b);
          const auto cv = o.ms(c);
          return gemm<T>(cpp_, op_a, op_b, T(alpha), GroupedBatch<const T>(av),
                         GroupedBatch<const T>(bv), T(beta), GroupedBatch<T>(cv));
        });
  }

  template <class T>
  void check_syrk(index_t groups, Op op_a, Fill fill) {
    SCOPED_TRACE(where<T>("syrk, groups " + std::to_string(groups) + ", op " +
                          std::to_string(int(op_a)) + ", fill " + std::to_string(int(fill))));
    const index_t batch[] = {2, 1}, n[] = {3, 5}, k[] = {4, 2};
    Operands<T> in;
    for (index_t g = 0; g < groups; ++g) {
      const auto [ar, ac] = stored(op_a, n[g], k[g]);
      in.random(rng_, key("a", g), batch[g], ar, ac);
      in.random(rng_, key("c", g), batch[g], n[g], n[g]);
    }
    const auto a = keys("a", groups), c = keys("c", groups);
    const double alpha = -0.6, beta = 0.3;
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_syrk(handle_, groups, c_op(op_a), alpha, o.cs(a).data(), beta,
                              o.cs(c).data(), static_cast<curvkit_fill>(fill));
        },
        [&](Operands<T>& o) {
          const auto av = o.cms(a);
          const auto cv = o.ms(c);
          if (groups == 1) return syrk<T>(cpp_, op_a, T(alpha), av[0], T(beta), cv[0], fill);
          return syrk<T>(cpp_, op_a, T(alpha), GroupedBatch<const T>(av), T(beta),
                         GroupedBatch<T>(cv), fill);
        });
  }

  // ---- Kronecker ----

  /// y = x x_0 op(u0) x_2 op(u2) (mode 1 absent unless all_modes); u2 is shared (batch 1).
  template <class T>
  void check_mode_product_chain(Op op, bool all_modes) {
    SCOPED_TRACE(where<T>("mode_product_chain, op " + std::to_string(int(op)) + ", all modes " +
                          std::to_string(all_modes)));
    const index_t batch = 2;
    const std::int64_t d[] = {3, 4, 5}, out[] = {6, 3, 2};
    Operands<T> in;
    in.tensor(rng_, "x", batch, {d[0], d[1], d[2]});
    in.tensor(rng_, "y", batch, {out[0], all_modes ? out[1] : d[1], out[2]}, false);
    std::vector<std::string> u = {"u0", all_modes ? "u1" : "", "u2"};
    for (int k = 0; k < 3; ++k) {
      if (u[k].empty()) continue;
      const auto [r, c] = stored(op, out[k], d[k]);
      in.random(rng_, u[k], k == 2 ? 1 : batch, r, c);
    }
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_mode_product_chain(handle_, o.ct("x"), o.cs(u).data(), o.ct("y"),
                                            c_op(op));
        },
        [&](Operands<T>& o) {
          const auto uv = o.cms(u);
          const TensorBatch<const T> x = o.t("x");
          const Context cx = with_workspace(mode_product_chain_workspace_size<T>(
              cpp_, x, std::span<const MatrixBatch<const T>>(uv), op));
          return mode_product_chain<T>(cx, x, uv, o.t("y"), op);
        });
  }

  /// Grams of modes 0 and 2 of an order-3 tensor (mode 1 absent); options NULL: the defaults.
  template <class T>
  void check_mode_gram(const curvkit_mode_gram_options* options) {
    SCOPED_TRACE(where<T>(options ? "mode_gram, beta " + std::to_string(options->beta) + ", fill " +
                                        std::to_string(int(options->fill))
                                  : "mode_gram, default options"));
    const index_t batch = 2;
    Operands<T> in;
    in.tensor(rng_, "x", batch, {3, 4, 2});
    in.random(rng_, "s0", batch, 3, 3);
    in.random(rng_, "s2", batch, 2, 2);
    const std::vector<std::string> s = {"s0", "", "s2"};
    const ModeGramOptions o =
        options ? ModeGramOptions{options->beta, options->scale, static_cast<Fill>(options->fill)}
                : ModeGramOptions{};
    expect_parity(
        in,
        [&](Operands<T>& v) {
          return curvkit_mode_gram(handle_, v.ct("x"), v.cs(s).data(), options);
        },
        [&](Operands<T>& v) { return mode_gram<T>(cpp_, v.t("x"), v.ms(s), o); });
  }

  /// Three SPD statistics per tensor; tensor 1's are zero (info 1: left unchanged).
  template <class T>
  void check_tnt_normalize() {
    SCOPED_TRACE(where<T>("tnt_normalize"));
    const index_t batch = 3, d[] = {3, 4, 2};
    Operands<T> in;
    for (index_t k = 0; k < 3; ++k) {
      in.spd(rng_, key("s", k), batch, d[k]);
      for (index_t i = 0; i < d[k]; ++i)
        for (index_t j = 0; j < d[k]; ++j) in.m(key("s", k))(1, i, j) = T(0);
    }
    in.ints("info", batch);
    const auto s = keys("s", 3);
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_tnt_normalize(handle_, 3, o.cs(s).data(), o.i("info"));
        },
        [&](Operands<T>& o) { return tnt_normalize<T>(cpp_, o.ms(s), o.i("info")); });
  }

  template <class T>
  void check_kfac_pi_damping(index_t groups) {
    SCOPED_TRACE(where<T>("kfac_pi_damping, groups " + std::to_string(groups)));
    const index_t batch[] = {2, 1}, da[] = {3, 5}, dg[] = {4, 2};
    Operands<T> in;
    for (index_t g = 0; g < groups; ++g) {
      in.spd(rng_, key("a", g), batch[g], da[g]);
      in.spd(rng_, key("g", g), batch[g], dg[g]);
    }
    const index_t pairs = groups == 1 ? 2 : 3;
    in.zeros("shift_a", 1, 1, pairs);
    in.zeros("shift_g", 1, 1, pairs);
    in.ints("info", pairs);
    const auto a = keys("a", groups), g = keys("g", groups);
    const double lambda = 0.03;
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_kfac_pi_damping(handle_, groups, o.cs(a).data(), o.cs(g).data(), lambda,
                                         o.p("shift_a"), o.p("shift_g"), o.i("info"));
        },
        [&](Operands<T>& o) {
          const auto av = o.cms(a), gv = o.cms(g);
          return kfac_pi_damping<T>(cpp_, av, gv, lambda, o.p("shift_a"), o.p("shift_g"),
                                    o.i("info"));
        });
  }

  /// Grouped kron_apply: G^{-1}, A^{-1} given as SPD inverses or as Cholesky factors.
  template <class T>
  void check_kron_apply(index_t groups, KronFactor form) {
    SCOPED_TRACE(where<T>("kron_apply, groups " + std::to_string(groups) + ", form " +
                          std::to_string(int(form))));
    const index_t batch[] = {2, 1}, d_out[] = {3, 5}, d_in[] = {4, 2};
    Operands<T> in;
    for (index_t g = 0; g < groups; ++g) {
      if (form == KronFactor::inverse) {
        in.spd(rng_, key("gf", g), batch[g], d_out[g]);
        in.spd(rng_, key("af", g), batch[g], d_in[g]);
      } else {
        in.lower_factor(rng_, key("gf", g), batch[g], d_out[g]);
        in.lower_factor(rng_, key("af", g), batch[g], d_in[g]);
      }
      in.random(rng_, key("grad", g), batch[g], d_out[g], d_in[g]);
      in.zeros(key("out", g), batch[g], d_out[g], d_in[g]);
    }
    const auto gf = keys("gf", groups), af = keys("af", groups), grad = keys("grad", groups),
               out = keys("out", groups);
    const curvkit_kron_apply_options c_options{static_cast<curvkit_kron_factor>(form), 0.5};
    const KronApplyOptions options{form, 0.5};
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_kron_apply(handle_, groups, o.cs(gf).data(), o.cs(af).data(),
                                    o.cs(grad).data(), o.cs(out).data(), &c_options);
        },
        [&](Operands<T>& o) {
          const auto gv = o.cms(gf), av = o.cms(af), dv = o.cms(grad);
          const auto ov = o.ms(out);
          const Context cx = with_workspace(kron_apply_workspace_size<T>(cpp_, dv, options));
          if (groups == 1) return kron_apply<T>(cx, gv[0], av[0], dv[0], ov[0], options);
          return kron_apply<T>(cx, gv, av, dv, GroupedBatch<T>(ov), options);
        });
  }

  // ---- Khatri-Rao ----

  // Layer shapes: group 0 has S = 2 positions per sample, group 1 is linear (S = 1).
  static constexpr index_t kr_batch[] = {2, 1}, kr_m[] = {3, 2}, kr_s[] = {2, 1}, kr_in[] = {4, 2},
                           kr_out[] = {3, 5};

  /// a and g of each layer, plus `extra(g)` for the op's other operands.
  template <class T, class Extra>
  Operands<T> kr_layers(index_t groups, Extra&& extra) {
    Operands<T> in;
    for (index_t g = 0; g < groups; ++g) {
      in.random(rng_, key("a", g), kr_batch[g], kr_m[g] * kr_s[g], kr_in[g]);
      in.random(rng_, key("g", g), kr_batch[g], kr_m[g] * kr_s[g], kr_out[g]);
      extra(in, g);
    }
    return in;
  }

  template <class T>
  void check_khatri_rao_jv_jtu(index_t groups, const curvkit_khatri_rao_options* options) {
    SCOPED_TRACE(where<T>("khatri_rao_jv / jtu, groups " + std::to_string(groups) +
                          (options ? ", bias, beta != 0" : ", default options")));
    const bool bias = options && options->bias;
    auto in = kr_layers<T>(groups, [&](Operands<T>& o, index_t g) {
      o.random(rng_, key("v", g), kr_batch[g], kr_out[g], kr_in[g] + (bias ? 1 : 0));
      o.random(rng_, key("u", g), kr_batch[g], kr_m[g], 1);
    });
    const KhatriRaoOptions o =
        options ? KhatriRaoOptions{options->bias != 0, options->alpha, options->beta,
                                   static_cast<Fill>(options->fill),
                                   static_cast<GramPath>(options->path)}
                : KhatriRaoOptions{};
    const auto a = keys("a", groups), g = keys("g", groups), v = keys("v", groups),
               u = keys("u", groups);
    expect_parity(  // u = alpha J v + beta u
        in,
        [&](Operands<T>& x) {
          return curvkit_khatri_rao_jv(handle_, groups, x.cs(a).data(), x.cs(g).data(),
                                       x.cs(v).data(), x.cs(u).data(), options);
        },
        [&](Operands<T>& x) {
          const auto av = x.cms(a), gv = x.cms(g), vv = x.cms(v);
          const auto uv = x.ms(u);
          if (groups == 1) return khatri_rao_jv<T>(cpp_, av[0], gv[0], vv[0], uv[0], o);
          return khatri_rao_jv<T>(cpp_, av, gv, vv, GroupedBatch<T>(uv), o);
        });
    expect_parity(  // v = alpha J^T u + beta v
        in,
        [&](Operands<T>& x) {
          return curvkit_khatri_rao_jtu(handle_, groups, x.cs(a).data(), x.cs(g).data(),
                                        x.cs(u).data(), x.cs(v).data(), options);
        },
        [&](Operands<T>& x) {
          const auto av = x.cms(a), gv = x.cms(g), uv = x.cms(u);
          const auto vv = x.ms(v);
          if (groups == 1) return khatri_rao_jtu<T>(cpp_, av[0], gv[0], uv[0], vv[0], o);
          return khatri_rao_jtu<T>(cpp_, av, gv, uv, GroupedBatch<T>(vv), o);
        });
  }

  template <class T>
  void check_khatri_rao_gram(index_t groups, GramPath path, Fill fill) {
    SCOPED_TRACE(where<T>("khatri_rao_gram, groups " + std::to_string(groups) + ", path " +
                          std::to_string(int(path)) + ", fill " + std::to_string(int(fill))));
    auto in = kr_layers<T>(groups, [&](Operands<T>& o, index_t g) {
      o.random(rng_, key("k", g), kr_batch[g], kr_m[g], kr_m[g]);
    });
    const curvkit_khatri_rao_options c_options{1, 0.25, 0.5, static_cast<curvkit_fill>(fill),
                                               static_cast<curvkit_gram_path>(path)};
    const KhatriRaoOptions options{true, 0.25, 0.5, fill, path};
    const auto a = keys("a", groups), g = keys("g", groups), k = keys("k", groups);
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_khatri_rao_gram(handle_, groups, o.cs(a).data(), o.cs(g).data(),
                                         o.cs(k).data(), &c_options);
        },
        [&](Operands<T>& o) {
          const auto av = o.cms(a), gv = o.cms(g);
          const auto kv = o.ms(k);
          const Context cx =
              with_workspace(khatri_rao_gram_workspace_size<T>(cpp_, av, gv, kv, options));
          if (groups == 1) return khatri_rao_gram<T>(cx, av[0], gv[0], kv[0], options);
          return khatri_rao_gram<T>(cx, av, gv, GroupedBatch<T>(kv), options);
        });
  }

  template <class T>
  void check_layer_sums(bool bias) {
    SCOPED_TRACE(where<T>("khatri_rao_layer_sums, bias " + std::to_string(bias)));
    const index_t batch = 2, m = 3, s[] = {2, 1}, d[] = {4, 5};
    Operands<T> in;
    for (index_t l = 0; l < 2; ++l) in.random(rng_, key("x", l), batch, m * s[l], d[l]);
    in.zeros("sums", batch, m, 2);
    const auto x = keys("x", 2);
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_khatri_rao_layer_sums(handle_, 2, o.cs(x).data(), o.c("sums"), bias);
        },
        [&](Operands<T>& o) {
          return khatri_rao_layer_sums<T>(cpp_, o.cms(x), o.m("sums"), bias);
        });
  }

  template <class T>
  void check_coarse_gram(double beta) {
    SCOPED_TRACE(where<T>("coarse_gram, beta " + std::to_string(beta)));
    const index_t batch = 2, m = 5, layers = 3;
    Operands<T> in;
    in.random(rng_, "sums_a", batch, m, layers);
    in.random(rng_, "sums_g", batch, m, layers);
    for (const char* name : {"s_a", "s_g"}) in.spd(rng_, name, batch, layers);
    in.zeros("f", batch, layers, layers);
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_coarse_gram(handle_, o.c("sums_a"), o.c("sums_g"), o.c("s_a"), o.c("s_g"),
                                     o.c("f"), beta);
        },
        [&](Operands<T>& o) {
          return coarse_gram<T>(cpp_, o.cm("sums_a"), o.cm("sums_g"), o.m("s_a"), o.m("s_g"),
                                o.m("f"), CoarseGramOptions{beta});
        });
  }

  // ---- Newton-Schulz ----

  /// SPD a{g} and zeroed outputs named by `outputs`, with info, iterations and residual.
  template <class T>
  Operands<T> ns_operands(index_t groups, const std::vector<std::string>& outputs) {
    const index_t batch[] = {2, 1}, n[] = {4, 6};
    Operands<T> in;
    for (index_t g = 0; g < groups; ++g) {
      in.spd(rng_, key("a", g), batch[g], n[g]);
      for (const auto& out : outputs) in.zeros(key(out, g), batch[g], n[g], n[g]);
    }
    const index_t total = groups == 1 ? 2 : 3;
    in.ints("info", total);
    in.ints("iterations", total);
    in.zeros("residual", 1, 1, total);
    return in;
  }

  template <class T>
  static NsReport<T> ns_report(Operands<T>& o) {
    return {o.i("info"), o.i("iterations"), o.p("residual")};
  }

  static NewtonSchulzOptions ns_options(const curvkit_ns_options& c) {
    return {static_cast<NsStop>(c.stop), c.iterations, c.tolerance, c.epsilon,
            static_cast<NsCompute>(c.compute)};
  }

  template <class T>
  void check_ns_inverse(index_t groups, const curvkit_ns_options& c_options) {
    SCOPED_TRACE(where<T>("newton_schulz_inverse, groups " + std::to_string(groups) + ", stop " +
                          std::to_string(int(c_options.stop))));
    const auto in = ns_operands<T>(groups, {"x"});
    const auto a = keys("a", groups), x = keys("x", groups);
    const NewtonSchulzOptions options = ns_options(c_options);
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_newton_schulz_inverse(handle_, groups, o.cs(a).data(), o.cs(x).data(),
                                               o.i("info"), o.i("iterations"), o.p("residual"),
                                               &c_options);
        },
        [&](Operands<T>& o) {
          const auto av = o.cms(a);
          const auto xv = o.ms(x);
          const Context cx = with_workspace(newton_schulz_workspace_size<T>(cpp_, av));
          if (groups == 1) return newton_schulz_inverse<T>(cx, av[0], xv[0], ns_report(o), options);
          return newton_schulz_inverse<T>(cx, av, GroupedBatch<T>(xv), ns_report(o), options);
        });
  }

  /// How newton_schulz_sqrt's outputs are passed.
  enum class SqrtOutputs { both, sqrt_null, inv_sqrt_null, inv_sqrt_data_null };

  template <class T>
  void check_ns_sqrt(index_t groups, SqrtOutputs outputs, const curvkit_ns_options& c_options) {
    SCOPED_TRACE(where<T>("newton_schulz_sqrt, groups " + std::to_string(groups) + ", outputs " +
                          std::to_string(int(outputs)) + ", stop " +
                          std::to_string(int(c_options.stop))));
    const bool want_sqrt = outputs != SqrtOutputs::sqrt_null,
               want_inv = outputs == SqrtOutputs::both || outputs == SqrtOutputs::sqrt_null;
    const std::vector<std::string> none(static_cast<std::size_t>(groups));
    const auto a = keys("a", groups), s = want_sqrt ? keys("s", groups) : none,
               v = want_inv ? keys("v", groups) : none;
    const auto in = ns_operands<T>(groups, {"s", "v"});  // unused outputs must stay zero
    const NewtonSchulzOptions options = ns_options(c_options);
    // NULL for an absent output, except that inv_sqrt_data_null passes views with data NULL.
    const bool v_array = outputs != SqrtOutputs::inv_sqrt_null;
    expect_parity(
        in,
        [&](Operands<T>& o) {
          const auto sv = o.cs(s), vv = o.cs(v);
          return curvkit_newton_schulz_sqrt(handle_, groups, o.cs(a).data(),
                                            want_sqrt ? sv.data() : nullptr,
                                            v_array ? vv.data() : nullptr, o.i("info"),
                                            o.i("iterations"), o.p("residual"), &c_options);
        },
        [&](Operands<T>& o) {
          const auto av = o.cms(a);
          const auto sv = o.ms(s), vv = o.ms(v);
          const Context cx = with_workspace(newton_schulz_workspace_size<T>(cpp_, av));
          if (groups == 1)
            return newton_schulz_sqrt<T>(cx, av[0], sv[0], vv[0], ns_report(o), options);
          return newton_schulz_sqrt<T>(cx, av, GroupedBatch<T>(sv), GroupedBatch<T>(vv),
                                       ns_report(o), options);
        });
  }

  // ---- Sherman-Morrison / Woodbury and quasi-Newton ----

  template <class T>
  void check_woodbury(curvkit_woodbury_c c_form, bool given_gram) {
    SCOPED_TRACE(where<T>("woodbury_solve, c_form " + std::to_string(int(c_form)) +
                          ", given gram " + std::to_string(given_gram)));
    const index_t batch = 2, k = 3, n = 5, nrhs = 2;
    Operands<T> in;
    in.random(rng_, "ut", batch, k, n);
    in.random(rng_, "b", batch, n, nrhs);
    if (c_form == CURVKIT_WOODBURY_C_DIAGONAL) in.positive(rng_, "c", batch, 1, k);
    if (c_form == CURVKIT_WOODBURY_C_MATRIX) in.spd(rng_, "c", batch, k);
    if (given_gram) in.spd(rng_, "gram", batch, k);
    in.ints("info", batch);
    const std::string c = c_form == CURVKIT_WOODBURY_C_SCALAR ? "" : "c",
                      gram = given_gram ? "gram" : "";
    const curvkit_woodbury_options c_options{0.3, 1.5, c_form};
    const WoodburyOptions options{0.3, 1.5, static_cast<WoodburyC>(c_form)};
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_woodbury_solve(handle_, o.c("ut"), o.c("b"), o.i("info"), &c_options,
                                        o.c(c), o.c(gram));
        },
        [&](Operands<T>& o) {
          const Context cx =
              with_workspace(woodbury_solve_workspace_size<T>(cpp_, o.cm("ut"), o.cm("b")));
          return woodbury_solve<T>(cx, o.cm("ut"), o.m("b"), o.i("info"), options, o.cm(c),
                                   o.cm(gram));
        });
  }

  template <class T>
  void check_bfgs_damping(const curvkit_damping_options& c_options) {
    SCOPED_TRACE(where<T>("bfgs_damping, scheme " + std::to_string(int(c_options.scheme))));
    const index_t batch = 4, n = 5;
    Operands<T> in;
    // h: H (SPD), the products H y (powell_lm_hy), or absent (powell_identity_lm).
    std::string h = "h";
    if (c_options.scheme == CURVKIT_DAMPING_POWELL_LM_HY)
      in.random(rng_, h, batch, 1, n);
    else if (c_options.scheme == CURVKIT_DAMPING_POWELL_IDENTITY_LM)
      h.clear();
    else
      in.spd(rng_, h, batch, n);
    in.random(rng_, "s", batch, 1, n);
    in.random(rng_, "y", batch, 1, n);   // random signs: some pairs need damping
    in.zeros("theta", 1, 1, 2 * batch);  // flat: theta1, theta2 per matrix
    in.ints("info", batch);
    in.ints("skip", batch);
    const DampingOptions options{static_cast<DampingScheme>(c_options.scheme), c_options.mu1,
                                 c_options.mu2, c_options.skip_test != 0};
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_bfgs_damping(handle_, o.c(h), o.c("s"), o.c("y"), o.i("info"), &c_options,
                                      o.p("theta"), o.i("skip"));
        },
        [&](Operands<T>& o) {
          return bfgs_damping<T>(cpp_, o.cm(h), o.m("s"), o.m("y"), o.i("info"), options,
                                 o.p("theta"), o.i("skip"));
        });
  }

  template <class T>
  void check_hessian_action_pair(const curvkit_hessian_action_options* c_options) {
    SCOPED_TRACE(where<T>(c_options
                              ? "hessian_action_pair, lambda " + std::to_string(c_options->lambda) +
                                    ", scale " + std::to_string(c_options->scale)
                              : "hessian_action_pair, default options"));
    const index_t batch = 2, n = 4, m = 6;
    Operands<T> in;
    in.spd(rng_, "h", batch, n);
    in.random(rng_, "abar", batch, 1, n);
    in.random(rng_, "x", batch, m, n);
    in.zeros("s", batch, 1, n);
    in.zeros("y", batch, 1, n);
    in.ints("info", batch);
    const HessianActionOptions options =
        c_options ? HessianActionOptions{c_options->lambda, c_options->scale}
                  : HessianActionOptions{};
    expect_parity(
        in,
        [&](Operands<T>& o) {
          return curvkit_hessian_action_pair(handle_, o.c("h"), o.c("abar"), o.c("x"), o.c("s"),
                                             o.c("y"), o.i("info"), c_options);
        },
        [&](Operands<T>& o) {
          return hessian_action_pair<T>(cpp_, o.cm("h"), o.cm("abar"), o.cm("x"), o.m("s"),
                                        o.m("y"), o.i("info"), options);
        });
  }

  curvkit_context handle_ = nullptr;
  Context cpp_;
  BackendArray<unsigned char> workspace_;
};

// ---- SPD and products ----

TEST_P(CApiParityTest, Potrs) {
  for (index_t groups : {1, 2}) {
    check_potrs<float>(groups);
    check_potrs<double>(groups);
  }
}

TEST_P(CApiParityTest, SyrkBothFills) {
  for (index_t groups : {1, 2})
    for (Op op : {Op::none, Op::trans})
      for (Fill fill : {Fill::lower, Fill::full}) {
        check_syrk<float>(groups, op, fill);
        check_syrk<double>(groups, op, fill);
      }
}

TEST_P(CApiParityTest, GroupedGemm) {
  for (Op op_a : {Op::none, Op::trans})
    for (Op op_b : {Op::none, Op::trans}) {
      check_gemm<float>(2, op_a, op_b);
      check_gemm<double>(2, op_a, op_b);
    }
}

// ---- Kronecker ----

TEST_P(CApiParityTest, ModeProductChain) {
  for (Op op : {Op::none, Op::trans})
    for (bool all_modes : {false, true}) {
      check_mode_product_chain<float>(op, all_modes);
      check_mode_product_chain<double>(op, all_modes);
    }
}

TEST_P(CApiParityTest, ModeGram) {
  const curvkit_mode_gram_options lower{0.5, 0.3, CURVKIT_FILL_LOWER},
      full{0.25, 2.0, CURVKIT_FILL_FULL};
  const curvkit_mode_gram_options* all[] = {&lower, &full, nullptr};
  for (const auto* options : all) {
    check_mode_gram<float>(options);
    check_mode_gram<double>(options);
  }
}

TEST_P(CApiParityTest, TntNormalize) {
  check_tnt_normalize<float>();
  check_tnt_normalize<double>();
}

TEST_P(CApiParityTest, KfacPiDamping) {
  for (index_t groups : {1, 2}) {
    check_kfac_pi_damping<float>(groups);
    check_kfac_pi_damping<double>(groups);
  }
}

TEST_P(CApiParityTest, GroupedKronApply) {
  for (KronFactor form : {KronFactor::inverse, KronFactor::cholesky}) {
    check_kron_apply<float>(2, form);
    check_kron_apply<double>(2, form);
  }
}

// ---- Khatri-Rao ----

TEST_P(CApiParityTest, KhatriRaoJvJtu) {
  const curvkit_khatri_rao_options bias{1, 0.5, 0.25, CURVKIT_FILL_LOWER, CURVKIT_GRAM_AUTOMATIC};
  for (index_t groups : {1, 2})
    for (const auto* options : {&bias, static_cast<const curvkit_khatri_rao_options*>(nullptr)}) {
      check_khatri_rao_jv_jtu<float>(groups, options);
      check_khatri_rao_jv_jtu<double>(groups, options);
    }
}

TEST_P(CApiParityTest, GroupedKhatriRaoGram) {
  for (GramPath path : {GramPath::automatic, GramPath::fused, GramPath::direct})
    for (Fill fill : {Fill::lower, Fill::full}) {
      check_khatri_rao_gram<float>(2, path, fill);
      check_khatri_rao_gram<double>(2, path, fill);
    }
}

TEST_P(CApiParityTest, KhatriRaoLayerSums) {
  for (bool bias : {false, true}) {
    check_layer_sums<float>(bias);
    check_layer_sums<double>(bias);
  }
}

TEST_P(CApiParityTest, CoarseGram) {
  for (double beta : {0.0, 0.5}) {
    check_coarse_gram<float>(beta);
    check_coarse_gram<double>(beta);
  }
}

// ---- Newton-Schulz ----

TEST_P(CApiParityTest, NewtonSchulzSqrt) {
  using enum SqrtOutputs;
  for (index_t groups : {1, 2})
    for (SqrtOutputs outputs : {both, sqrt_null, inv_sqrt_null, inv_sqrt_data_null})
      for (const curvkit_ns_options& options : {kNsFixed, kNsResidual}) {
        check_ns_sqrt<float>(groups, outputs, options);
        check_ns_sqrt<double>(groups, outputs, options);
      }
}

TEST_P(CApiParityTest, GroupedNewtonSchulzInverse) {
  for (const curvkit_ns_options& options : {kNsFixed, kNsResidual}) {
    check_ns_inverse<float>(2, options);
    check_ns_inverse<double>(2, options);
  }
}

// ---- Sherman-Morrison / Woodbury and quasi-Newton ----

TEST_P(CApiParityTest, WoodburyGivenCAndGram) {
  for (curvkit_woodbury_c form : {CURVKIT_WOODBURY_C_DIAGONAL, CURVKIT_WOODBURY_C_MATRIX})
    for (bool gram : {true, false}) {
      check_woodbury<float>(form, gram);
      check_woodbury<double>(form, gram);
    }
  check_woodbury<float>(CURVKIT_WOODBURY_C_SCALAR, true);
  check_woodbury<double>(CURVKIT_WOODBURY_C_SCALAR, true);
}

TEST_P(CApiParityTest, BfgsDamping) {
  const curvkit_damping_options schemes[] = {
      {CURVKIT_DAMPING_POWELL_LM, 0.2, 1.0, 1},
      {CURVKIT_DAMPING_DOUBLE, 0.2, 0.5, 0},
      {CURVKIT_DAMPING_POWELL_IDENTITY_LM, 0.3, 2.0, 0},
      {CURVKIT_DAMPING_POWELL_LM_HY, 0.2, 1.5, 0},
  };
  for (const auto& options : schemes) {
    check_bfgs_damping<float>(options);
    check_bfgs_damping<double>(options);
  }
}

TEST_P(CApiParityTest, HessianActionPair) {
  const curvkit_hessian_action_options damped{0.1, 0.0}, scaled{0.0, 0.25};
  const curvkit_hessian_action_options* all[] = {&damped, &scaled, nullptr};
  for (const auto* options : all) {
    check_hessian_action_pair<float>(options);
    check_hessian_action_pair<double>(options);
  }
}

// ---- errors only the C layer reports ----

TEST_P(CApiParityTest, GroupedDtypeMismatch) {
  std::vector<double> a0(4), b0(4), c0(4);
  std::vector<float> a1(4);
  const curvkit_matrices a[] = {curvkit_make_matrices(a0.data(), CURVKIT_FLOAT64, 1, 2, 2),
                                curvkit_make_matrices(a1.data(), CURVKIT_FLOAT32, 1, 2, 2)};
  const curvkit_matrices b[] = {curvkit_make_matrices(b0.data(), CURVKIT_FLOAT64, 1, 2, 2), a[0]};
  const curvkit_matrices c[] = {curvkit_make_matrices(c0.data(), CURVKIT_FLOAT64, 1, 2, 2), b[0]};
  expect_error(curvkit_gemm(handle_, 2, CURVKIT_OP_NONE, CURVKIT_OP_NONE, 1.0, a, b, 0.0, c),
               CURVKIT_INVALID_ARGUMENT, "gemm: a[1].dtype is float32");
  int32_t info[2];
  expect_error(curvkit_newton_schulz_inverse(handle_, 2, b, a, info, nullptr, nullptr, nullptr),
               CURVKIT_INVALID_ARGUMENT, "x[1].dtype");
}

TEST_P(CApiParityTest, ZeroGroups) {
  std::vector<double> x(4);
  const curvkit_matrices m = curvkit_make_matrices(x.data(), CURVKIT_FLOAT64, 1, 2, 2);
  int32_t info[1];
  expect_error(curvkit_potrs(handle_, 0, &m, &m, info), CURVKIT_INVALID_ARGUMENT,
               "potrs: the count of l (0) must be >= 1");
  expect_error(curvkit_kron_apply(handle_, 0, &m, &m, &m, &m, nullptr), CURVKIT_INVALID_ARGUMENT,
               "kron_apply");
  expect_error(curvkit_khatri_rao_gram(handle_, 0, &m, &m, &m, nullptr), CURVKIT_INVALID_ARGUMENT,
               "the count of a (0)");
  expect_error(
      curvkit_newton_schulz_sqrt(handle_, 0, &m, &m, nullptr, info, nullptr, nullptr, nullptr),
      CURVKIT_INVALID_ARGUMENT, "the count of");
}

TEST_P(CApiParityTest, NullRequiredView) {
  std::vector<double> x(16);
  const curvkit_matrices m = curvkit_make_matrices(x.data(), CURVKIT_FLOAT64, 1, 2, 2);
  const std::int64_t dims[] = {2, 2};
  const curvkit_tensors t = curvkit_make_tensors(x.data(), CURVKIT_FLOAT64, 1, 2, dims);
  int32_t info[1];
  expect_error(curvkit_potrs(handle_, 1, &m, nullptr, info), CURVKIT_INVALID_ARGUMENT,
               "potrs: b is NULL");
  expect_error(curvkit_potrs(handle_, 1, nullptr, &m, info), CURVKIT_INVALID_ARGUMENT,
               "potrs: l is NULL");
  expect_error(curvkit_hessian_action_pair(handle_, &m, nullptr, &m, &m, &m, info, nullptr),
               CURVKIT_INVALID_ARGUMENT, "hessian_action_pair: abar is NULL");
  expect_error(curvkit_coarse_gram(handle_, &m, &m, &m, &m, nullptr, 0.0), CURVKIT_INVALID_ARGUMENT,
               "coarse_gram: f is NULL");
  expect_error(curvkit_mode_product_chain(handle_, &t, nullptr, &t, CURVKIT_OP_NONE),
               CURVKIT_INVALID_ARGUMENT, "mode_product_chain: u is NULL");
  expect_error(curvkit_khatri_rao_layer_sums(handle_, 1, &m, nullptr, 0), CURVKIT_INVALID_ARGUMENT,
               "khatri_rao_layer_sums: sums is NULL");
  expect_error(curvkit_bfgs_damping(handle_, nullptr, &m, nullptr, info, nullptr, nullptr, nullptr),
               CURVKIT_INVALID_ARGUMENT, "bfgs_damping: y is NULL");
}

INSTANTIATE_TEST_SUITE_P(Backends, CApiParityTest,
                         ::testing::Values(Backend::reference, Backend::kokkos), backend_test_name);

}  // namespace
}  // namespace curvkit::test
