// C ABI, kernel part: one function per C++ op of the five families (c_api.h).  Each converts
// its C views and options and calls the C++ op: the uniform form for one group, the grouped
// form otherwise; workspaces come from the context (with_workspace).
#include <vector>

#include "c_api_internal.hpp"
#include "curvkit/gemm.hpp"
#include "curvkit/khatri_rao.hpp"
#include "curvkit/kron.hpp"
#include "curvkit/newton_schulz.hpp"
#include "curvkit/quasi_newton.hpp"
#include "curvkit/sherman_morrison.hpp"
#include "curvkit/spd.hpp"

using namespace curvkit;
using capi::Args;
using capi::run;

namespace {

template <class T>
using Views = std::vector<MatrixBatch<T>>;
template <class T>
using ConstViews = std::vector<MatrixBatch<const T>>;

SpdOptions spd_options(const curvkit_spd_options* o) {
  const curvkit_spd_options d = o ? *o : curvkit_spd_default_options();
  return {d.diagonal_shift, static_cast<NonSpdPolicy>(d.policy), d.shift_start, d.shift_growth,
          d.max_shift_retries};
}

NewtonSchulzOptions ns_options(const curvkit_ns_options* o) {
  const curvkit_ns_options d = o ? *o : curvkit_ns_default_options();
  return {static_cast<NsStop>(d.stop), d.iterations, d.tolerance, d.epsilon,
          static_cast<NsCompute>(d.compute)};
}

KhatriRaoOptions kr_options(const curvkit_khatri_rao_options* o) {
  const curvkit_khatri_rao_options d = o ? *o : curvkit_khatri_rao_default_options();
  return {d.bias != 0, d.alpha, d.beta, static_cast<Fill>(d.fill), static_cast<GramPath>(d.path)};
}

template <class T>
std::span<const MatrixBatch<T>> span_of(const std::vector<MatrixBatch<T>>& v) {
  return {v.data(), v.size()};
}

}  // namespace

extern "C" {

/* ---- SPD ---- */

curvkit_spd_options curvkit_spd_default_options(void) {
  const SpdOptions d;
  return {d.diagonal_shift, static_cast<curvkit_nonspd_policy>(d.policy), d.shift_start,
          d.shift_growth, d.max_shift_retries};
}

curvkit_status curvkit_potrf(curvkit_context ctx, int64_t groups, const curvkit_matrices* a,
                             int32_t* info, const curvkit_spd_options* options, void* shift_used) {
  return run("potrf", ctx, "a", a, [&]<class T>(const Args<T>& x) -> Status {
    const auto av = x.many("a", groups, a);
    const SpdOptions o = spd_options(options);
    T* shift = static_cast<T*>(shift_used);
    if (groups == 1) return potrf<T>(x.context(), av[0], info, o, shift);
    return potrf<T>(x.context(), span_of(av), info, o, shift);
  });
}

curvkit_status curvkit_potrs(curvkit_context ctx, int64_t groups, const curvkit_matrices* l,
                             const curvkit_matrices* b, int32_t* info) {
  return run("potrs", ctx, "l", l, [&]<class T>(const Args<T>& x) -> Status {
    const auto lv = x.template many<const T>("l", groups, l);
    const auto bv = x.many("b", groups, b);
    if (groups == 1) return potrs<T>(x.context(), lv[0], bv[0], info);
    return potrs<T>(x.context(), span_of(lv), span_of(bv), info);
  });
}

curvkit_status curvkit_posv(curvkit_context ctx, int64_t groups, const curvkit_matrices* a,
                            const curvkit_matrices* b, int32_t* info,
                            const curvkit_spd_options* options, void* shift_used) {
  return run("posv", ctx, "a", a, [&]<class T>(const Args<T>& x) -> Status {
    const auto av = x.many("a", groups, a);
    const auto bv = x.many("b", groups, b);
    const SpdOptions o = spd_options(options);
    T* shift = static_cast<T*>(shift_used);
    if (groups == 1) return posv<T>(x.context(), av[0], bv[0], info, o, shift);
    return posv<T>(x.context(), span_of(av), span_of(bv), info, o, shift);
  });
}

curvkit_status curvkit_potri(curvkit_context ctx, int64_t groups, const curvkit_matrices* a,
                             int32_t* info, const curvkit_spd_options* options, void* shift_used) {
  return run("potri", ctx, "a", a, [&]<class T>(const Args<T>& x) -> Status {
    const auto av = x.many("a", groups, a);
    const SpdOptions o = spd_options(options);
    T* shift = static_cast<T*>(shift_used);
    if (groups == 1) return potri<T>(x.context(), av[0], info, o, shift);
    return potri<T>(x.context(), span_of(av), info, o, shift);
  });
}

/* ---- Sherman-Morrison / Woodbury ---- */

curvkit_rank1_options curvkit_rank1_default_options(void) {
  const Rank1Options d;
  return {d.decay, d.weight, d.mirror_upper ? 1 : 0};
}

curvkit_status curvkit_rank1_update(curvkit_context ctx, const curvkit_matrices* h,
                                    const curvkit_matrices* u, int32_t* info,
                                    const curvkit_rank1_options* options) {
  return run("rank1_update", ctx, "h", h, [&]<class T>(const Args<T>& x) {
    const curvkit_rank1_options d = options ? *options : curvkit_rank1_default_options();
    return rank1_update<T>(x.context(), x.one("h", h), x.template one<const T>("u", u), info,
                           {d.decay, d.weight, d.mirror_upper != 0});
  });
}

curvkit_woodbury_options curvkit_woodbury_default_options(void) {
  const WoodburyOptions d;
  return {d.lambda, d.c_scale, static_cast<curvkit_woodbury_c>(d.c_form)};
}

curvkit_status curvkit_woodbury_solve(curvkit_context ctx, const curvkit_matrices* ut,
                                      const curvkit_matrices* b, int32_t* info,
                                      const curvkit_woodbury_options* options,
                                      const curvkit_matrices* c, const curvkit_matrices* gram) {
  return run("woodbury_solve", ctx, "ut", ut, [&]<class T>(const Args<T>& x) {
    const curvkit_woodbury_options d = options ? *options : curvkit_woodbury_default_options();
    const auto utv = x.template one<const T>("ut", ut);
    const auto bv = x.one("b", b);
    const Context cx = x.context(woodbury_solve_workspace_size<T>(x.context(), utv, bv));
    return woodbury_solve<T>(
        cx, utv, bv, info, {d.lambda, d.c_scale, static_cast<WoodburyC>(d.c_form)},
        x.template optional<const T>("c", c), x.template optional<const T>("gram", gram));
  });
}

curvkit_bfgs_options curvkit_bfgs_default_options(void) {
  const BfgsOptions d;
  return {d.min_curvature, d.skip_rejected ? 1 : 0, d.mirror_upper ? 1 : 0};
}

curvkit_status curvkit_bfgs_update(curvkit_context ctx, const curvkit_matrices* h,
                                   const curvkit_matrices* s, const curvkit_matrices* y,
                                   int32_t* info, const curvkit_bfgs_options* options,
                                   const int32_t* skip_mask, int32_t* skipped) {
  return run("bfgs_update", ctx, "h", h, [&]<class T>(const Args<T>& x) {
    const curvkit_bfgs_options d = options ? *options : curvkit_bfgs_default_options();
    return bfgs_update<T>(x.context(), x.one("h", h), x.template one<const T>("s", s),
                          x.template one<const T>("y", y), info,
                          {d.min_curvature, d.skip_rejected != 0, d.mirror_upper != 0}, skip_mask,
                          skipped);
  });
}

curvkit_damping_options curvkit_damping_default_options(void) {
  const DampingOptions d;
  return {static_cast<curvkit_damping_scheme>(d.scheme), d.mu1, d.mu2, d.skip_test ? 1 : 0};
}

curvkit_status curvkit_bfgs_damping(curvkit_context ctx, const curvkit_matrices* h,
                                    const curvkit_matrices* s, const curvkit_matrices* y,
                                    int32_t* info, const curvkit_damping_options* options,
                                    void* theta, int32_t* skip) {
  return run("bfgs_damping", ctx, "s", s, [&]<class T>(const Args<T>& x) {
    const curvkit_damping_options d = options ? *options : curvkit_damping_default_options();
    return bfgs_damping<T>(x.context(), x.template optional<const T>("h", h), x.one("s", s),
                           x.one("y", y), info,
                           {static_cast<DampingScheme>(d.scheme), d.mu1, d.mu2, d.skip_test != 0},
                           static_cast<T*>(theta), skip);
  });
}

curvkit_status curvkit_hessian_action_pair(curvkit_context ctx, const curvkit_matrices* h,
                                           const curvkit_matrices* abar, const curvkit_matrices* x,
                                           const curvkit_matrices* s, const curvkit_matrices* y,
                                           int32_t* info,
                                           const curvkit_hessian_action_options* options) {
  return run("hessian_action_pair", ctx, "h", h, [&]<class T>(const Args<T>& c) {
    HessianActionOptions o;
    if (options) o = {options->lambda, options->scale};
    return hessian_action_pair<T>(
        c.context(), c.template one<const T>("h", h), c.template one<const T>("abar", abar),
        c.template one<const T>("x", x), c.one("s", s), c.one("y", y), info, o);
  });
}

curvkit_lbfgs_options curvkit_lbfgs_default_options(void) {
  const LbfgsOptions d;
  return {d.gamma, d.skip_zero_pairs ? 1 : 0};
}

curvkit_status curvkit_lbfgs_apply(curvkit_context ctx, const curvkit_matrices* s,
                                   const curvkit_matrices* y, const curvkit_matrices* x,
                                   int32_t* info, const curvkit_lbfgs_options* options,
                                   const curvkit_matrices* sty, const curvkit_matrices* yty) {
  return run("lbfgs_apply", ctx, "s", s, [&]<class T>(const Args<T>& c) {
    const curvkit_lbfgs_options d = options ? *options : curvkit_lbfgs_default_options();
    const auto sv = c.template one<const T>("s", s);
    const auto xv = c.one("x", x);
    const Context cx = c.context(lbfgs_apply_workspace_size<T>(c.context(), sv, xv));
    return lbfgs_apply<T>(
        cx, sv, c.template one<const T>("y", y), xv, info, {d.gamma, d.skip_zero_pairs != 0},
        c.template optional<const T>("sty", sty), c.template optional<const T>("yty", yty));
  });
}

curvkit_status curvkit_lbfgs_two_loop(curvkit_context ctx, const curvkit_matrices* s,
                                      const curvkit_matrices* y, const curvkit_matrices* x,
                                      int32_t* info, const curvkit_lbfgs_options* options) {
  return run("lbfgs_two_loop", ctx, "s", s, [&]<class T>(const Args<T>& c) {
    const curvkit_lbfgs_options d = options ? *options : curvkit_lbfgs_default_options();
    const auto sv = c.template one<const T>("s", s);
    const auto xv = c.one("x", x);
    const Context cx = c.context(lbfgs_two_loop_workspace_size<T>(c.context(), sv, xv));
    return lbfgs_two_loop<T>(cx, sv, c.template one<const T>("y", y), xv, info,
                             {d.gamma, d.skip_zero_pairs != 0});
  });
}

/* ---- batched products ---- */

curvkit_status curvkit_gemm(curvkit_context ctx, int64_t groups, curvkit_op op_a, curvkit_op op_b,
                            double alpha, const curvkit_matrices* a, const curvkit_matrices* b,
                            double beta, const curvkit_matrices* c) {
  return run("gemm", ctx, "a", a, [&]<class T>(const Args<T>& x) -> Status {
    const auto av = x.template many<const T>("a", groups, a);
    const auto bv = x.template many<const T>("b", groups, b);
    const auto cv = x.many("c", groups, c);
    const Op oa = static_cast<Op>(op_a), ob = static_cast<Op>(op_b);
    if (groups == 1) return gemm<T>(x.context(), oa, ob, T(alpha), av[0], bv[0], T(beta), cv[0]);
    return gemm<T>(x.context(), oa, ob, T(alpha), span_of(av), span_of(bv), T(beta), span_of(cv));
  });
}

curvkit_status curvkit_syrk(curvkit_context ctx, int64_t groups, curvkit_op op_a, double alpha,
                            const curvkit_matrices* a, double beta, const curvkit_matrices* c,
                            curvkit_fill fill) {
  return run("syrk", ctx, "a", a, [&]<class T>(const Args<T>& x) -> Status {
    const auto av = x.template many<const T>("a", groups, a);
    const auto cv = x.many("c", groups, c);
    const Op oa = static_cast<Op>(op_a);
    const Fill f = static_cast<Fill>(fill);
    if (groups == 1) return syrk<T>(x.context(), oa, T(alpha), av[0], T(beta), cv[0], f);
    return syrk<T>(x.context(), oa, T(alpha), span_of(av), T(beta), span_of(cv), f);
  });
}

/* ---- Kronecker ---- */

curvkit_status curvkit_mode_product(curvkit_context ctx, const curvkit_tensors* x, int32_t mode,
                                    const curvkit_matrices* u, const curvkit_tensors* y,
                                    curvkit_op op_u) {
  return run("mode_product", ctx, "x", x, [&]<class T>(const Args<T>& c) {
    return mode_product<T>(c.context(), c.template tensor<const T>("x", x), mode,
                           c.template one<const T>("u", u), c.tensor("y", y),
                           static_cast<Op>(op_u));
  });
}

curvkit_status curvkit_mode_product_chain(curvkit_context ctx, const curvkit_tensors* x,
                                          const curvkit_matrices* u, const curvkit_tensors* y,
                                          curvkit_op op_u) {
  return run("mode_product_chain", ctx, "x", x, [&]<class T>(const Args<T>& c) {
    const auto xv = c.template tensor<const T>("x", x);
    const auto uv = c.template many<const T>("u", xv.order, u, true);
    const Op op = static_cast<Op>(op_u);
    const Context cx =
        c.context(mode_product_chain_workspace_size<T>(c.context(), xv, span_of(uv), op));
    return mode_product_chain<T>(cx, xv, span_of(uv), c.tensor("y", y), op);
  });
}

curvkit_kron_apply_options curvkit_kron_apply_default_options(void) {
  const KronApplyOptions d;
  return {static_cast<curvkit_kron_factor>(d.form), d.alpha};
}

curvkit_status curvkit_kron_apply(curvkit_context ctx, int64_t groups,
                                  const curvkit_matrices* g_factor,
                                  const curvkit_matrices* a_factor, const curvkit_matrices* grad,
                                  const curvkit_matrices* out,
                                  const curvkit_kron_apply_options* options) {
  return run("kron_apply", ctx, "grad", grad, [&]<class T>(const Args<T>& x) -> Status {
    const curvkit_kron_apply_options d = options ? *options : curvkit_kron_apply_default_options();
    const KronApplyOptions o{static_cast<KronFactor>(d.form), d.alpha};
    const auto gv = x.template many<const T>("g_factor", groups, g_factor);
    const auto av = x.template many<const T>("a_factor", groups, a_factor);
    const auto dv = x.template many<const T>("grad", groups, grad);
    const auto ov = x.many("out", groups, out);
    const Context cx = x.context(kron_apply_workspace_size<T>(x.context(), span_of(dv), o));
    if (groups == 1) return kron_apply<T>(cx, gv[0], av[0], dv[0], ov[0], o);
    return kron_apply<T>(cx, span_of(gv), span_of(av), span_of(dv), span_of(ov), o);
  });
}

curvkit_mode_gram_options curvkit_mode_gram_default_options(void) {
  const ModeGramOptions d;
  return {d.beta, d.scale, static_cast<curvkit_fill>(d.fill)};
}

curvkit_status curvkit_mode_gram(curvkit_context ctx, const curvkit_tensors* x,
                                 const curvkit_matrices* grams,
                                 const curvkit_mode_gram_options* options) {
  return run("mode_gram", ctx, "x", x, [&]<class T>(const Args<T>& c) {
    const curvkit_mode_gram_options d = options ? *options : curvkit_mode_gram_default_options();
    const auto xv = c.template tensor<const T>("x", x);
    const auto gv = c.many("grams", xv.order, grams, true);
    return mode_gram<T>(c.context(), xv, span_of(gv), {d.beta, d.scale, static_cast<Fill>(d.fill)});
  });
}

curvkit_status curvkit_tnt_normalize(curvkit_context ctx, int64_t count,
                                     const curvkit_matrices* grams, int32_t* info) {
  return run("tnt_normalize", ctx, "grams", grams, [&]<class T>(const Args<T>& x) {
    const auto gv = x.many("grams", count, grams);
    return tnt_normalize<T>(x.context(), span_of(gv), info);
  });
}

curvkit_status curvkit_kfac_pi_damping(curvkit_context ctx, int64_t groups,
                                       const curvkit_matrices* a_factors,
                                       const curvkit_matrices* g_factors, double lambda,
                                       void* shift_a, void* shift_g, int32_t* info) {
  return run("kfac_pi_damping", ctx, "a_factors", a_factors, [&]<class T>(const Args<T>& x) {
    const auto av = x.template many<const T>("a_factors", groups, a_factors);
    const auto gv = x.template many<const T>("g_factors", groups, g_factors);
    return kfac_pi_damping<T>(x.context(), span_of(av), span_of(gv), lambda,
                              static_cast<T*>(shift_a), static_cast<T*>(shift_g), info);
  });
}

/* ---- Khatri-Rao ---- */

curvkit_khatri_rao_options curvkit_khatri_rao_default_options(void) {
  const KhatriRaoOptions d;
  return {d.bias ? 1 : 0, d.alpha, d.beta, static_cast<curvkit_fill>(d.fill),
          static_cast<curvkit_gram_path>(d.path)};
}

curvkit_status curvkit_khatri_rao_gram(curvkit_context ctx, int64_t groups,
                                       const curvkit_matrices* a, const curvkit_matrices* g,
                                       const curvkit_matrices* k,
                                       const curvkit_khatri_rao_options* options) {
  return run("khatri_rao_gram", ctx, "a", a, [&]<class T>(const Args<T>& x) -> Status {
    const KhatriRaoOptions o = kr_options(options);
    const auto av = x.template many<const T>("a", groups, a);
    const auto gv = x.template many<const T>("g", groups, g);
    const auto kv = x.many("k", groups, k);
    const Context cx = x.context(
        khatri_rao_gram_workspace_size<T>(x.context(), span_of(av), span_of(gv), span_of(kv), o));
    if (groups == 1) return khatri_rao_gram<T>(cx, av[0], gv[0], kv[0], o);
    return khatri_rao_gram<T>(cx, span_of(av), span_of(gv), span_of(kv), o);
  });
}

curvkit_status curvkit_khatri_rao_jv(curvkit_context ctx, int64_t groups, const curvkit_matrices* a,
                                     const curvkit_matrices* g, const curvkit_matrices* v,
                                     const curvkit_matrices* u,
                                     const curvkit_khatri_rao_options* options) {
  return run("khatri_rao_jv", ctx, "a", a, [&]<class T>(const Args<T>& x) -> Status {
    const KhatriRaoOptions o = kr_options(options);
    const auto av = x.template many<const T>("a", groups, a);
    const auto gv = x.template many<const T>("g", groups, g);
    const auto vv = x.template many<const T>("v", groups, v);
    const auto uv = x.many("u", groups, u);
    if (groups == 1) return khatri_rao_jv<T>(x.context(), av[0], gv[0], vv[0], uv[0], o);
    return khatri_rao_jv<T>(x.context(), span_of(av), span_of(gv), span_of(vv), span_of(uv), o);
  });
}

curvkit_status curvkit_khatri_rao_jtu(curvkit_context ctx, int64_t groups,
                                      const curvkit_matrices* a, const curvkit_matrices* g,
                                      const curvkit_matrices* u, const curvkit_matrices* v,
                                      const curvkit_khatri_rao_options* options) {
  return run("khatri_rao_jtu", ctx, "a", a, [&]<class T>(const Args<T>& x) -> Status {
    const KhatriRaoOptions o = kr_options(options);
    const auto av = x.template many<const T>("a", groups, a);
    const auto gv = x.template many<const T>("g", groups, g);
    const auto uv = x.template many<const T>("u", groups, u);
    const auto vv = x.many("v", groups, v);
    if (groups == 1) return khatri_rao_jtu<T>(x.context(), av[0], gv[0], uv[0], vv[0], o);
    return khatri_rao_jtu<T>(x.context(), span_of(av), span_of(gv), span_of(uv), span_of(vv), o);
  });
}

curvkit_status curvkit_khatri_rao_layer_sums(curvkit_context ctx, int64_t groups,
                                             const curvkit_matrices* x,
                                             const curvkit_matrices* sums, int32_t bias) {
  return run("khatri_rao_layer_sums", ctx, "x", x, [&]<class T>(const Args<T>& c) {
    const auto xv = c.template many<const T>("x", groups, x);
    return khatri_rao_layer_sums<T>(c.context(), span_of(xv), c.one("sums", sums), bias != 0);
  });
}

curvkit_status curvkit_coarse_gram(curvkit_context ctx, const curvkit_matrices* sums_a,
                                   const curvkit_matrices* sums_g, const curvkit_matrices* s_a,
                                   const curvkit_matrices* s_g, const curvkit_matrices* f,
                                   double beta) {
  return run("coarse_gram", ctx, "sums_a", sums_a, [&]<class T>(const Args<T>& x) {
    return coarse_gram<T>(x.context(), x.template one<const T>("sums_a", sums_a),
                          x.template one<const T>("sums_g", sums_g), x.one("s_a", s_a),
                          x.one("s_g", s_g), x.one("f", f), CoarseGramOptions{beta});
  });
}

/* ---- Newton-Schulz ---- */

curvkit_ns_options curvkit_ns_default_options(void) {
  const NewtonSchulzOptions d;
  return {static_cast<curvkit_ns_stop>(d.stop), d.iterations, d.tolerance, d.epsilon,
          static_cast<curvkit_ns_compute>(d.compute)};
}

curvkit_polar_options curvkit_polar_default_options(void) {
  const PolarOptions d;
  return {static_cast<curvkit_polar_schedule>(d.schedule), d.a, d.b, d.c, d.cubic_iterations};
}

}  // extern "C"

namespace {

// The four Newton-Schulz ops: views of A, the outputs, the report; `call` runs the uniform
// (groups == 1) or grouped C++ op with the workspace the family's query asks for.
template <class T, class Call>
Status ns_call(const Args<T>& x, int64_t groups, const curvkit_matrices* a, int32_t* info,
               int32_t* iterations, void* residual, Call&& call) {
  const auto av = x.template many<const T>("a", groups, a);
  const Context cx = x.context(newton_schulz_workspace_size<T>(x.context(), span_of(av)));
  const NsReport<T> report{info, iterations, static_cast<T*>(residual)};
  return call(cx, av, report);
}

}  // namespace

extern "C" {

curvkit_status curvkit_newton_schulz_inverse(curvkit_context ctx, int64_t groups,
                                             const curvkit_matrices* a, const curvkit_matrices* x,
                                             int32_t* info, int32_t* iterations, void* residual,
                                             const curvkit_ns_options* options) {
  return run("newton_schulz_inverse", ctx, "a", a, [&]<class T>(const Args<T>& c) {
    const auto xv = c.many("x", groups, x);
    const NewtonSchulzOptions o = ns_options(options);
    return ns_call<T>(c, groups, a, info, iterations, residual,
                      [&](const Context& cx, const ConstViews<T>& av, NsReport<T> r) {
                        if (groups == 1) return newton_schulz_inverse<T>(cx, av[0], xv[0], r, o);
                        return newton_schulz_inverse<T>(cx, span_of(av), span_of(xv), r, o);
                      });
  });
}

curvkit_status curvkit_newton_schulz_sqrt(curvkit_context ctx, int64_t groups,
                                          const curvkit_matrices* a, const curvkit_matrices* sqrt,
                                          const curvkit_matrices* inv_sqrt, int32_t* info,
                                          int32_t* iterations, void* residual,
                                          const curvkit_ns_options* options) {
  return run("newton_schulz_sqrt", ctx, "a", a, [&]<class T>(const Args<T>& c) {
    // An absent output is one view with data == NULL per group.
    const auto outputs = [&](const char* name, const curvkit_matrices* m) {
      return m == nullptr ? Views<T>(static_cast<std::size_t>(groups < 1 ? 1 : groups))
                          : c.many(name, groups, m, true);
    };
    const auto sv = outputs("sqrt", sqrt);
    const auto iv = outputs("inv_sqrt", inv_sqrt);
    const NewtonSchulzOptions o = ns_options(options);
    return ns_call<T>(c, groups, a, info, iterations, residual,
                      [&](const Context& cx, const ConstViews<T>& av, NsReport<T> r) {
                        if (groups == 1)
                          return newton_schulz_sqrt<T>(cx, av[0], sv[0], iv[0], r, o);
                        return newton_schulz_sqrt<T>(cx, span_of(av), span_of(sv), span_of(iv), r,
                                                     o);
                      });
  });
}

curvkit_status curvkit_newton_schulz_inverse_root(curvkit_context ctx, int64_t groups,
                                                  const curvkit_matrices* a, int32_t p,
                                                  const curvkit_matrices* x, int32_t* info,
                                                  int32_t* iterations, void* residual,
                                                  const curvkit_ns_options* options) {
  return run("newton_schulz_inverse_root", ctx, "a", a, [&]<class T>(const Args<T>& c) {
    const auto xv = c.many("x", groups, x);
    const NewtonSchulzOptions o = ns_options(options);
    return ns_call<T>(c, groups, a, info, iterations, residual,
                      [&](const Context& cx, const ConstViews<T>& av, NsReport<T> r) {
                        if (groups == 1)
                          return newton_schulz_inverse_root<T>(cx, av[0], p, xv[0], r, o);
                        return newton_schulz_inverse_root<T>(cx, span_of(av), p, span_of(xv), r, o);
                      });
  });
}

curvkit_status curvkit_newton_schulz_polar(curvkit_context ctx, int64_t groups,
                                           const curvkit_matrices* a, const curvkit_matrices* u,
                                           int32_t* info, int32_t* iterations, void* residual,
                                           const curvkit_ns_options* options,
                                           const curvkit_polar_options* polar) {
  return run("newton_schulz_polar", ctx, "a", a, [&]<class T>(const Args<T>& c) {
    const auto uv = c.many("u", groups, u);
    const NewtonSchulzOptions o = ns_options(options);
    const curvkit_polar_options d = polar ? *polar : curvkit_polar_default_options();
    const PolarOptions po{static_cast<PolarSchedule>(d.schedule), d.a, d.b, d.c,
                          d.cubic_iterations};
    return ns_call<T>(c, groups, a, info, iterations, residual,
                      [&](const Context& cx, const ConstViews<T>& av, NsReport<T> r) {
                        if (groups == 1) return newton_schulz_polar<T>(cx, av[0], uv[0], r, o, po);
                        return newton_schulz_polar<T>(cx, span_of(av), span_of(uv), r, o, po);
                      });
  });
}

}  // extern "C"
