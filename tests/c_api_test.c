/* The C ABI from a C program (compiled as C11): every family's main ops on every backend this
 * build has (cuda only where a GPU is present), in float64 and float32, checked by identities
 * computed here in double (A X = B, A A^{-1} = I, the secant equation, U^T U = I, ...), plus
 * the optimizer layer and the error reporting.  Inputs are fresh random numbers each run (the
 * seed is printed).  Prints "N passed, N failed". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "curvkit/c_api.h"

static int passed = 0, failed = 0;
static curvkit_context ctx; /* the backend under test */
static curvkit_dtype dt;    /* the dtype under test */
static const char* backend_name = "";

static void check(int ok, const char* what, double value) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    printf("FAILED [%s %s] %s (%g) %s\n", backend_name, dt == CURVKIT_FLOAT64 ? "f64" : "f32", what,
           value, curvkit_last_error());
  }
}

static void expect_ok(curvkit_status s, const char* what) {
  if (s != CURVKIT_OK) check(0, what, (double)s);
}

static double tol(void) {
  return dt == CURVKIT_FLOAT64 ? 1e-10 : 2e-4;
}
static double uniform(void) {
  return 2.0 * rand() / (double)RAND_MAX - 1.0;
}
static size_t esize(void) {
  return dt == CURVKIT_FLOAT64 ? 8 : 4;
}

/* ---- host arrays of doubles <-> backend arrays of dt ---- */
typedef struct {
  double* h; /* host values (double) */
  void* d;   /* backend copy (dt) */
  int64_t n;
} buf;

static buf make(int64_t n) {
  buf b;
  b.n = n;
  b.h = (double*)calloc((size_t)n, sizeof(double));
  b.d = NULL;
  expect_ok(curvkit_malloc(ctx, (uint64_t)n * esize(), &b.d), "malloc");
  return b;
}
static void upload(buf* b) {
  void* tmp = malloc((size_t)b->n * esize());
  for (int64_t i = 0; i < b->n; ++i) {
    if (dt == CURVKIT_FLOAT64)
      ((double*)tmp)[i] = b->h[i];
    else
      ((float*)tmp)[i] = (float)b->h[i];
  }
  expect_ok(curvkit_copy_to_backend(ctx, b->d, tmp, (uint64_t)b->n * esize()), "upload");
  free(tmp);
}
static void download(buf* b) {
  void* tmp = malloc((size_t)b->n * esize());
  expect_ok(curvkit_copy_to_host(ctx, tmp, b->d, (uint64_t)b->n * esize()), "download");
  for (int64_t i = 0; i < b->n; ++i)
    b->h[i] = dt == CURVKIT_FLOAT64 ? ((double*)tmp)[i] : ((float*)tmp)[i];
  free(tmp);
}
static void release(buf* b) {
  curvkit_free(ctx, b->d);
  free(b->h);
}
static buf random_buf(int64_t n) {
  buf b = make(n);
  for (int64_t i = 0; i < n; ++i) b.h[i] = uniform();
  upload(&b);
  return b;
}
/* batch SPD matrices n x n: M M^T / n + I (full symmetric). */
static buf spd_buf(int64_t batch, int64_t n) {
  buf b = make(batch * n * n);
  for (int64_t k = 0; k < batch; ++k) {
    double* m = (double*)malloc((size_t)(n * n) * sizeof(double));
    for (int64_t i = 0; i < n * n; ++i) m[i] = uniform();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = i == j ? 1.0 : 0.0;
        for (int64_t l = 0; l < n; ++l) s += m[i * n + l] * m[j * n + l] / n;
        b.h[k * n * n + i * n + j] = s;
      }
    free(m);
  }
  upload(&b);
  return b;
}
static curvkit_matrices view(buf* b, int64_t batch, int64_t rows, int64_t cols) {
  return curvkit_make_matrices(b->d, dt, batch, rows, cols);
}
static int32_t* info_buf(int64_t n) {
  void* p = NULL;
  expect_ok(curvkit_malloc(ctx, (uint64_t)n * sizeof(int32_t), &p), "malloc info");
  return (int32_t*)p;
}
static int all_info_zero(int32_t* info, int64_t n) {
  int32_t h[64];
  expect_ok(curvkit_copy_to_host(ctx, h, info, (uint64_t)n * sizeof(int32_t)), "info");
  for (int64_t i = 0; i < n; ++i)
    if (h[i] != 0) return 0;
  return 1;
}
/* max_ij |(op(X) op(Y))_ij - Z_ij| / max(1, max |Z|) for one matrix; x is r x k, y k x c. */
static double product_error(const double* x, const double* y, const double* z, int64_t r, int64_t k,
                            int64_t c) {
  double err = 0, scale = 1;
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j) {
      double s = 0;
      for (int64_t l = 0; l < k; ++l) s += x[i * k + l] * y[l * c + j];
      err = fmax(err, fabs(s - z[i * c + j]));
      scale = fmax(scale, fabs(z[i * c + j]));
    }
  return err / scale;
}
static double identity_error(const double* x, const double* y, int64_t n) {
  double* eye = (double*)calloc((size_t)(n * n), sizeof(double));
  for (int64_t i = 0; i < n; ++i) eye[i * n + i] = 1;
  const double e = product_error(x, y, eye, n, n, n);
  free(eye);
  return e;
}

/* ---- SPD ---- */
static void test_spd(void) {
  const int64_t batch = 3, n = 6, r = 2;
  buf a = spd_buf(batch, n), a0 = make(batch * n * n), b = random_buf(batch * n * r);
  memcpy(a0.h, a.h, sizeof(double) * (size_t)(batch * n * n));
  double* b0 = (double*)malloc(sizeof(double) * (size_t)(batch * n * r));
  memcpy(b0, b.h, sizeof(double) * (size_t)(batch * n * r));
  int32_t* info = info_buf(batch);
  curvkit_matrices av = view(&a, batch, n, n), bv = view(&b, batch, n, r);
  expect_ok(curvkit_posv(ctx, 1, &av, &bv, info, NULL, NULL), "posv");
  expect_ok(curvkit_synchronize(ctx), "synchronize");
  download(&b);
  double err = 0;
  for (int64_t k = 0; k < batch; ++k)
    err = fmax(err, product_error(a0.h + k * n * n, b.h + k * n * r, b0 + k * n * r, n, n, r));
  check(err < tol() && all_info_zero(info, batch), "posv: A X = B", err);

  /* potri, as two groups (2 + 1 matrices): A A^{-1} = I */
  memcpy(a.h, a0.h, sizeof(double) * (size_t)(batch * n * n));
  upload(&a);
  curvkit_matrices groups[2] = {view(&a, 2, n, n), view(&a, 1, n, n)};
  groups[1].data = (char*)a.d + 2 * n * n * esize();
  expect_ok(curvkit_potri(ctx, 2, groups, info, NULL, NULL), "potri");
  download(&a);
  err = 0;
  for (int64_t k = 0; k < batch; ++k)
    err = fmax(err, identity_error(a0.h + k * n * n, a.h + k * n * n, n));
  check(err < tol() && all_info_zero(info, batch), "potri (grouped): A A^-1 = I", err);

  /* report policy: an indefinite matrix gets info > 0 */
  for (int64_t i = 0; i < n * n; ++i) a.h[i] = -a0.h[i];
  upload(&a);
  expect_ok(curvkit_potrf(ctx, 1, &av, info, NULL, NULL), "potrf");
  int32_t h[3];
  expect_ok(curvkit_copy_to_host(ctx, h, info, sizeof h), "info");
  check(h[0] == 1 && h[1] == 0 && h[2] == 0, "potrf: info of a negative definite matrix", h[0]);
  release(&a);
  release(&a0);
  release(&b);
  free(b0);
  curvkit_free(ctx, info);
}

/* ---- Sherman-Morrison / quasi-Newton ---- */
static void test_sherman_morrison(void) {
  const int64_t n = 5, k = 3, p = 3;
  int32_t* info = info_buf(1);
  /* rank1_update: H = G^{-1} -> (G + sum u u^T)^{-1} */
  buf g = spd_buf(1, n), h = make(n * n), u = random_buf(k * n);
  memcpy(h.h, g.h, sizeof(double) * (size_t)(n * n));
  upload(&h);
  curvkit_matrices hv = view(&h, 1, n, n), uv = view(&u, 1, k, n);
  expect_ok(curvkit_potri(ctx, 1, &hv, info, NULL, NULL), "potri");
  expect_ok(curvkit_rank1_update(ctx, &hv, &uv, info, NULL), "rank1_update");
  download(&h);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t l = 0; l < k; ++l) g.h[i * n + j] += u.h[l * n + i] * u.h[l * n + j];
  double err = identity_error(g.h, h.h, n);
  check(err < tol() * 10 && all_info_zero(info, 1), "rank1_update: (G + U^T U) H = I", err);

  /* woodbury_solve: (lambda I + U^T U) x = b */
  buf b = random_buf(n), b0 = make(n);
  memcpy(b0.h, b.h, sizeof(double) * (size_t)n);
  curvkit_woodbury_options wo = curvkit_woodbury_default_options();
  wo.lambda = 0.5;
  curvkit_matrices bv = view(&b, 1, n, 1);
  expect_ok(curvkit_woodbury_solve(ctx, &uv, &bv, info, &wo, NULL, NULL), "woodbury_solve");
  download(&b);
  double* m = (double*)calloc((size_t)(n * n), sizeof(double));
  for (int64_t i = 0; i < n; ++i) {
    m[i * n + i] = wo.lambda;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t l = 0; l < k; ++l) m[i * n + j] += u.h[l * n + i] * u.h[l * n + j];
  }
  err = product_error(m, b.h, b0.h, n, n, 1);
  check(err < tol() * 10 && all_info_zero(info, 1), "woodbury_solve: residual", err);
  free(m);

  /* bfgs_update: the secant equation H+ y = s */
  buf s = random_buf(n), y = make(n), hb = spd_buf(1, n);
  for (int64_t i = 0; i < n; ++i) y.h[i] = s.h[i] + 0.1 * uniform();
  upload(&y);
  curvkit_matrices sv = view(&s, 1, 1, n), yv = view(&y, 1, 1, n), hbv = view(&hb, 1, n, n);
  expect_ok(curvkit_bfgs_update(ctx, &hbv, &sv, &yv, info, NULL, NULL, NULL), "bfgs_update");
  download(&hb);
  err = product_error(hb.h, y.h, s.h, n, n, 1);
  check(err < tol() * 10 && all_info_zero(info, 1), "bfgs_update: H+ y = s", err);

  /* lbfgs_apply (compact form) equals lbfgs_two_loop */
  buf ss = random_buf(p * n), yy = make(p * n), x1 = random_buf(n * 2), x2 = make(n * 2);
  for (int64_t i = 0; i < p * n; ++i) yy.h[i] = ss.h[i] + 0.2 * uniform();
  upload(&yy);
  memcpy(x2.h, x1.h, sizeof(double) * (size_t)(n * 2));
  upload(&x2);
  curvkit_matrices ssv = view(&ss, 1, p, n), yyv = view(&yy, 1, p, n);
  curvkit_matrices x1v = view(&x1, 1, n, 2), x2v = view(&x2, 1, n, 2);
  curvkit_lbfgs_options lo = curvkit_lbfgs_default_options();
  lo.gamma = 0; /* automatic */
  expect_ok(curvkit_lbfgs_apply(ctx, &ssv, &yyv, &x1v, info, &lo, NULL, NULL), "lbfgs_apply");
  expect_ok(curvkit_lbfgs_two_loop(ctx, &ssv, &yyv, &x2v, info, &lo), "lbfgs_two_loop");
  download(&x1);
  download(&x2);
  err = 0;
  for (int64_t i = 0; i < n * 2; ++i) err = fmax(err, fabs(x1.h[i] - x2.h[i]));
  check(err < tol() * 100 && all_info_zero(info, 1), "lbfgs_apply == lbfgs_two_loop", err);
  release(&g);
  release(&h);
  release(&u);
  release(&b);
  release(&b0);
  release(&s);
  release(&y);
  release(&hb);
  release(&ss);
  release(&yy);
  release(&x1);
  release(&x2);
  curvkit_free(ctx, info);
}

/* ---- products, Kronecker, Khatri-Rao ---- */
static void test_products(void) {
  const int64_t batch = 2, r = 4, k = 5, c = 3;
  buf a = random_buf(batch * r * k), b = random_buf(batch * k * c), z = random_buf(batch * r * c);
  curvkit_matrices av = view(&a, batch, r, k), bv = view(&b, batch, k, c),
                   zv = view(&z, batch, r, c);
  expect_ok(curvkit_gemm(ctx, 1, CURVKIT_OP_NONE, CURVKIT_OP_NONE, 1.0, &av, &bv, 0.0, &zv),
            "gemm");
  download(&z);
  double err = 0;
  for (int64_t q = 0; q < batch; ++q)
    err = fmax(err, product_error(a.h + q * r * k, b.h + q * k * c, z.h + q * r * c, r, k, c));
  check(err < tol(), "gemm: C = A B", err);

  /* kron_apply, inverse form: out = Ginv grad Ainv */
  buf gi = random_buf(r * r), ai = random_buf(c * c), grad = random_buf(r * c), out = make(r * c);
  curvkit_matrices giv = view(&gi, 1, r, r), aiv = view(&ai, 1, c, c), gv = view(&grad, 1, r, c);
  curvkit_matrices ov = view(&out, 1, r, c);
  expect_ok(curvkit_kron_apply(ctx, 1, &giv, &aiv, &gv, &ov, NULL), "kron_apply");
  download(&out);
  double* t = (double*)calloc((size_t)(r * c), sizeof(double));
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j)
      for (int64_t l = 0; l < r; ++l) t[i * c + j] += gi.h[i * r + l] * grad.h[l * c + j];
  err = product_error(t, ai.h, out.h, r, c, c);
  check(err < tol(), "kron_apply: out = G^-1 grad A^-1", err);
  free(t);

  /* khatri_rao_gram (S = 1): K_ij = alpha (a_i . a_j)(g_i . g_j), lower triangle */
  const int64_t m = 4, din = 3, dout = 2;
  buf ka = random_buf(m * din), kg = random_buf(m * dout), kk = make(m * m);
  curvkit_matrices kav = view(&ka, 1, m, din), kgv = view(&kg, 1, m, dout),
                   kkv = view(&kk, 1, m, m);
  curvkit_khatri_rao_options ko = curvkit_khatri_rao_default_options();
  ko.alpha = 0.25;
  ko.fill = CURVKIT_FILL_FULL;
  expect_ok(curvkit_khatri_rao_gram(ctx, 1, &kav, &kgv, &kkv, &ko), "khatri_rao_gram");
  download(&kk);
  err = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j) {
      double sa = 0, sg = 0;
      for (int64_t l = 0; l < din; ++l) sa += ka.h[i * din + l] * ka.h[j * din + l];
      for (int64_t l = 0; l < dout; ++l) sg += kg.h[i * dout + l] * kg.h[j * dout + l];
      err = fmax(err, fabs(ko.alpha * sa * sg - kk.h[i * m + j]));
    }
  check(err < tol(), "khatri_rao_gram: K = alpha (A A^T) o (G G^T)", err);

  /* mode_product on a 3-tensor, mode 1: Y[i, :, l] = U X[i, :, l] */
  const int64_t dims[3] = {2, 3, 4}, ydims[3] = {2, 5, 4};
  buf x = random_buf(24), u = random_buf(15), y = make(40);
  curvkit_tensors xv = curvkit_make_tensors(x.d, dt, 1, 3, dims);
  curvkit_tensors yv = curvkit_make_tensors(y.d, dt, 1, 3, ydims);
  curvkit_matrices uv = view(&u, 1, 5, 3);
  expect_ok(curvkit_mode_product(ctx, &xv, 1, &uv, &yv, CURVKIT_OP_NONE), "mode_product");
  download(&y);
  err = 0;
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 5; ++j)
      for (int64_t l = 0; l < 4; ++l) {
        double s = 0;
        for (int64_t q = 0; q < 3; ++q) s += u.h[j * 3 + q] * x.h[i * 12 + q * 4 + l];
        err = fmax(err, fabs(s - y.h[i * 20 + j * 4 + l]));
      }
  check(err < tol(), "mode_product: Y = X x_1 U", err);
  release(&a);
  release(&b);
  release(&z);
  release(&gi);
  release(&ai);
  release(&grad);
  release(&out);
  release(&ka);
  release(&kg);
  release(&kk);
  release(&x);
  release(&u);
  release(&y);
}

/* ---- Newton-Schulz ---- */
static void test_newton_schulz(void) {
  const int64_t batch = 2, n = 4;
  buf a = spd_buf(batch, n), x = make(batch * n * n), w = random_buf(n * 6), q = make(n * 6);
  int32_t* info = info_buf(batch);
  curvkit_ns_options o = curvkit_ns_default_options();
  o.stop = CURVKIT_NS_RESIDUAL;
  o.iterations = 100;
  o.tolerance = dt == CURVKIT_FLOAT64 ? 1e-12 : 1e-5;
  curvkit_matrices av = view(&a, batch, n, n), xv = view(&x, batch, n, n);
  expect_ok(curvkit_newton_schulz_inverse(ctx, 1, &av, &xv, info, NULL, NULL, &o),
            "newton_schulz_inverse");
  download(&x);
  double err = 0;
  for (int64_t k = 0; k < batch; ++k)
    err = fmax(err, identity_error(a.h + k * n * n, x.h + k * n * n, n));
  check(err < tol() * 100 && all_info_zero(info, batch), "newton_schulz_inverse: A X = I", err);

  /* inverse square root (p = 2): X A X = I */
  expect_ok(curvkit_newton_schulz_inverse_root(ctx, 1, &av, 2, &xv, info, NULL, NULL, &o),
            "newton_schulz_inverse_root");
  download(&x);
  err = 0;
  for (int64_t k = 0; k < batch; ++k) {
    double t[16];
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t l = 0; l < n; ++l) s += x.h[k * 16 + i * n + l] * a.h[k * 16 + l * n + j];
        t[i * n + j] = s;
      }
    err = fmax(err, identity_error(t, x.h + k * 16, n));
  }
  check(err < tol() * 100 && all_info_zero(info, batch), "newton_schulz_inverse_root: X A X = I",
        err);

  /* polar factor of a wide 4 x 6 matrix, convergent schedule: Q Q^T = I */
  curvkit_polar_options po = curvkit_polar_default_options();
  po.schedule = CURVKIT_POLAR_CONVERGENT;
  po.cubic_iterations = 100;
  curvkit_matrices wv = view(&w, 1, n, 6), qv = view(&q, 1, n, 6);
  o.iterations = 5;
  expect_ok(curvkit_newton_schulz_polar(ctx, 1, &wv, &qv, info, NULL, NULL, &o, &po),
            "newton_schulz_polar");
  download(&q);
  double qt[24], eye[16] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < 6; ++j) qt[j * n + i] = q.h[i * 6 + j];
  err = product_error(q.h, qt, eye, n, 6, n);
  check(err < tol() * 100 && all_info_zero(info, 1), "newton_schulz_polar: Q Q^T = I", err);
  release(&a);
  release(&x);
  release(&w);
  release(&q);
  curvkit_free(ctx, info);
}

/* ---- optimizers: K-FAC on one linear layer y = W x + b ---- */
static void test_optimizer(void) {
  const int64_t m = 8, din = 3, dout = 2;
  curvkit_optimizer opt = NULL;
  expect_ok(curvkit_optimizer_create("kfac", "autoencoder", 0.1, dt, &opt), "optimizer_create");
  buf w = random_buf(dout * din), bias = random_buf(dout), dw = random_buf(dout * din);
  buf db = random_buf(dout), a = random_buf(m * (din + 1)), g = random_buf(m * dout);
  for (int64_t i = 0; i < m; ++i) a.h[i * (din + 1) + din] = 1; /* the bias column */
  upload(&a);
  double w0 = w.h[0];
  curvkit_layer layer = curvkit_layer_empty();
  layer.kind = CURVKIT_LAYER_LINEAR;
  layer.output_layer = 1;
  layer.w = view(&w, 1, dout, din);
  layer.b = view(&bias, 1, 1, dout);
  layer.dw = view(&dw, 1, dout, din);
  layer.db = view(&db, 1, 1, dout);
  layer.m = m;
  expect_ok(curvkit_optimizer_init(ctx, opt, &layer, 1), "optimizer_init");
  curvkit_needs needs;
  expect_ok(curvkit_optimizer_needs(opt, &needs), "optimizer_needs");
  check(needs.a && needs.g_sampled, "kfac needs a and sampled g", 0);
  layer.a = view(&a, 1, m, din + 1);
  layer.g = layer.g_sampled = view(&g, 1, m, dout);
  layer.dw_sampled = layer.dw;
  layer.db_sampled = layer.db;
  expect_ok(curvkit_optimizer_step(ctx, opt, &layer, 1), "optimizer_step");
  int64_t bad = -1;
  expect_ok(curvkit_optimizer_unhealthy(ctx, opt, &bad), "optimizer_unhealthy");
  download(&w);
  check(bad == 0 && curvkit_optimizer_iteration(opt) == 1 && w.h[0] != w0 && isfinite(w.h[0]),
        "kfac step: moved the weights, healthy", (double)bad);
  curvkit_optimizer_destroy(opt);
  release(&w);
  release(&bias);
  release(&dw);
  release(&db);
  release(&a);
  release(&g);
}

/* ---- errors name the argument ---- */
static void test_errors(void) {
  buf a = spd_buf(1, 3), b = random_buf(4);
  int32_t* info = info_buf(1);
  curvkit_matrices av = view(&a, 1, 3, 3), bv = view(&b, 1, 4, 1);
  curvkit_status s = curvkit_posv(ctx, 1, &av, &bv, info, NULL, NULL);
  check(s == CURVKIT_INVALID_ARGUMENT && strstr(curvkit_last_error(), "b.rows") != NULL,
        "posv: wrong b.rows is invalid_argument naming b.rows", s);
  bv = view(&b, 1, 3, 1);
  bv.dtype = dt == CURVKIT_FLOAT64 ? CURVKIT_FLOAT32 : CURVKIT_FLOAT64;
  s = curvkit_posv(ctx, 1, &av, &bv, info, NULL, NULL);
  check(s == CURVKIT_INVALID_ARGUMENT && strstr(curvkit_last_error(), "b[0].dtype") != NULL,
        "posv: mixed dtypes name the argument", s);
  s = curvkit_posv(NULL, 1, &av, &bv, info, NULL, NULL);
  check(s == CURVKIT_INVALID_ARGUMENT && strstr(curvkit_last_error(), "ctx") != NULL,
        "posv: NULL context", s);
  s = curvkit_gemm(ctx, 1, CURVKIT_OP_NONE, CURVKIT_OP_NONE, 1, &av, NULL, 0, &av);
  check(s == CURVKIT_INVALID_ARGUMENT && strstr(curvkit_last_error(), "b is NULL") != NULL,
        "gemm: NULL b", s);
  curvkit_optimizer opt = NULL;
  s = curvkit_optimizer_create("no-such-method", NULL, 0, dt, &opt);
  check(s == CURVKIT_INVALID_ARGUMENT && opt == NULL &&
            strstr(curvkit_last_error(), "no-such-method") != NULL,
        "optimizer_create: unknown name", s);
  release(&a);
  release(&b);
  curvkit_free(ctx, info);
}

int main(void) {
  const unsigned seed = (unsigned)time(NULL);
  srand(seed);
  printf("curvkit %s, C API %d (header %d), seed %u\n", curvkit_version(), curvkit_c_api_version(),
         CURVKIT_C_API_VERSION, seed);
  check(curvkit_c_api_version() == CURVKIT_C_API_VERSION, "library and header versions match", 0);
  check(curvkit_initialize() == CURVKIT_OK, "initialize", 0);
  int optimizers = 0;
  while (curvkit_optimizer_name(optimizers) != NULL) ++optimizers;
  check(optimizers >= 15, "the registry lists the optimizers", optimizers);

  const curvkit_backend backends[3] = {CURVKIT_BACKEND_REFERENCE, CURVKIT_BACKEND_KOKKOS,
                                       CURVKIT_BACKEND_CUDA};
  const char* names[3] = {"reference", "kokkos", "cuda"};
  for (int i = 0; i < 3; ++i) {
    if (!curvkit_backend_available(backends[i])) {
      printf("skip %s: not compiled into this build\n", names[i]);
      continue;
    }
    if (curvkit_context_create(backends[i], NULL, &ctx) != CURVKIT_OK) {
      /* cuda compiled but no GPU here: say so, and fail only if the error is another one */
      printf("skip %s: %s\n", names[i], curvkit_last_error());
      check(backends[i] == CURVKIT_BACKEND_CUDA, "context_create", 0);
      continue;
    }
    void* probe = NULL;
    if (backends[i] == CURVKIT_BACKEND_CUDA && curvkit_malloc(ctx, 8, &probe) != CURVKIT_OK) {
      printf("skip cuda: no usable GPU (%s)\n", curvkit_last_error());
      curvkit_context_destroy(ctx);
      continue;
    }
    curvkit_free(ctx, probe);
    backend_name = names[i];
    for (int d = 0; d < 2; ++d) {
      dt = d == 0 ? CURVKIT_FLOAT64 : CURVKIT_FLOAT32;
      test_spd();
      test_sherman_morrison();
      test_products();
      test_newton_schulz();
      test_optimizer();
      test_errors();
    }
    curvkit_context_destroy(ctx);
  }
  curvkit_finalize();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
