/* curvkit's C ABI: the kernels of every family and the optimizer layer on plain C types.
 *
 * Only C types cross it (pointers, int64_t sizes and strides, enums, plain structs, opaque
 * handles), so any C or C++ compiler and any language with a C FFI (ctypes, cffi, Julia,
 * Rust, Go) can call the library.  The C++ API (curvkit/curvkit.hpp) stays the reference for
 * the mathematics of each op: every function here is one C++ op, named after it, with the
 * same argument order, and its documentation is in the C++ header named in each section.
 *
 * Errors: every function returns a curvkit_status; on failure curvkit_last_error() returns
 * the message of the calling thread's last failure, naming the op and the argument, e.g.
 *   "invalid_argument: posv: b.rows (3) must equal a.rows (4)".
 * No exception and no C++ type leaves the library.
 *
 * Data: a curvkit_matrices is a batch of row-major matrices, element (b, i, j) at
 * data[b * stride + i * ld + j] (elements of `dtype`); the same layout as the C++ MatrixBatch
 * and what NumPy / PyTorch / CuPy hold for a C-contiguous (batch, rows, cols) array with
 * ld = cols and stride = rows * cols.  All views of one call share one dtype.  Every data
 * pointer (views, info, per-matrix outputs) must be in the memory of the context's backend:
 * host memory for reference and host Kokkos builds, device memory for cuda (and for Kokkos
 * on a GPU).  Ops only launch work; curvkit_synchronize() waits for it.
 *
 * Grouped batches: ops that have a grouped form take `groups` and arrays of `groups` views
 * (group 0 first); groups = 1 is the uniform batch.  Per-matrix outputs (info, shifts,
 * iteration counts) are one flat array over the groups' matrices in order.  Every array has
 * `groups` entries: the C++ forms whose single output group sums over all layers
 * (khatri_rao_gram's one K, khatri_rao_jv / _jtu's one u) are C++ only.
 *
 * Workspace: the context owns a scratch buffer in its backend's memory and grows it when an
 * op needs more (an allocation at the first call of a larger shape, none after), so C callers
 * never size workspaces.
 *
 * Versioning: CURVKIT_C_API_VERSION changes whenever a signature, enum value or struct layout
 * here changes; curvkit_c_api_version() is the value the library was built with, so a caller
 * can refuse a mismatched library at load time.  curvkit_version() is the release string.
 */
#ifndef CURVKIT_C_API_H
#define CURVKIT_C_API_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CURVKIT_C_API_VERSION 1

/* ==== library ============================================================================ */

typedef enum curvkit_status {
  CURVKIT_OK = 0,
  CURVKIT_INVALID_ARGUMENT = 1, /* an argument is wrong; the message names it */
  CURVKIT_NOT_COMPILED = 2,     /* the backend is not in this build */
  CURVKIT_NOT_SUPPORTED = 3,    /* a valid request this backend or build cannot serve */
  CURVKIT_BACKEND_ERROR = 4,    /* CUDA / Kokkos reported an error */
  CURVKIT_WORKSPACE_TOO_SMALL = 5,
  CURVKIT_OUT_OF_MEMORY = 6 /* the C layer could not allocate (context, workspace, handle) */
} curvkit_status;

typedef enum curvkit_dtype { CURVKIT_FLOAT32 = 0, CURVKIT_FLOAT64 = 1 } curvkit_dtype;

typedef enum curvkit_backend {
  CURVKIT_BACKEND_REFERENCE = 0, /* plain CPU loops: the test oracle */
  CURVKIT_BACKEND_KOKKOS = 1,    /* Kokkos::DefaultExecutionSpace */
  CURVKIT_BACKEND_CUDA = 2       /* native CUDA kernels on a stream */
} curvkit_backend;

int curvkit_c_api_version(void);
const char* curvkit_version(void);
/* 1 when the backend was compiled into this library. */
int curvkit_backend_available(curvkit_backend backend);
/* 1 when the backend is compiled and works on host memory (reference; Kokkos on a host
 * execution space), 0 otherwise (cuda; Kokkos on a GPU). */
int curvkit_backend_host_memory(curvkit_backend backend);
/* The calling thread's last error message ("" if none); valid until its next failing call. */
const char* curvkit_last_error(void);
const char* curvkit_status_name(curvkit_status status);
/* Initialises the runtimes the compiled backends need (Kokkos, unless the program did) and
 * curvkit_finalize() finalises what it initialised.  Needed before a kokkos context. */
curvkit_status curvkit_initialize(void);
void curvkit_finalize(void);

/* ==== views and contexts ================================================================= */

typedef struct curvkit_matrices {
  void* data; /* NULL with batch 0 (or any batch) marks an absent optional view */
  curvkit_dtype dtype;
  int64_t batch, rows, cols, ld, stride;
} curvkit_matrices;

/* A batch of dense row-major tensors of order 1..4 (curvkit/core/tensor.hpp). */
typedef struct curvkit_tensors {
  void* data;
  curvkit_dtype dtype;
  int64_t batch;
  int32_t order;
  int64_t dims[4];
  int64_t stride;
} curvkit_tensors;

/* Contiguous views: ld = cols, stride = rows * cols; dims[k] for k < order, stride = product. */
curvkit_matrices curvkit_make_matrices(void* data, curvkit_dtype dtype, int64_t batch, int64_t rows,
                                       int64_t cols);
curvkit_tensors curvkit_make_tensors(void* data, curvkit_dtype dtype, int64_t batch, int32_t order,
                                     const int64_t* dims);

/* Opaque: a backend, its stream and the workspace the C layer manages for it. */
typedef struct curvkit_context_s* curvkit_context;

/* stream: a cudaStream_t for CURVKIT_BACKEND_CUDA (NULL: the legacy default stream), ignored
 * otherwise.  A kokkos context runs on the default execution-space instance. */
curvkit_status curvkit_context_create(curvkit_backend backend, void* stream, curvkit_context* out);
/* Waits for the context's work, then frees its workspace and the handle (NULL: no-op). */
void curvkit_context_destroy(curvkit_context ctx);
curvkit_status curvkit_synchronize(curvkit_context ctx);
curvkit_backend curvkit_context_backend(curvkit_context ctx);
/* Memory of the context's backend (host, Kokkos memory space or cudaMalloc), for callers that
 * have none of their own; copies wait for the context's work. */
curvkit_status curvkit_malloc(curvkit_context ctx, uint64_t bytes, void** out);
void curvkit_free(curvkit_context ctx, void* p);
curvkit_status curvkit_copy_to_backend(curvkit_context ctx, void* dst, const void* host_src,
                                       uint64_t bytes);
curvkit_status curvkit_copy_to_host(curvkit_context ctx, void* host_dst, const void* src,
                                    uint64_t bytes);

/* ==== batched SPD (curvkit/spd.hpp) ====================================================== */

typedef enum curvkit_nonspd_policy {
  CURVKIT_NONSPD_REPORT = 0,
  CURVKIT_NONSPD_SHIFT = 1
} curvkit_nonspd_policy;

typedef struct curvkit_spd_options {
  double diagonal_shift; /* lambda: A + lambda I is factored */
  curvkit_nonspd_policy policy;
  double shift_start; /* <= 0: 16 n eps */
  double shift_growth;
  int32_t max_shift_retries;
} curvkit_spd_options;
curvkit_spd_options curvkit_spd_default_options(void);

/* options may be NULL (defaults), shift_used may be NULL; info and shift_used have one entry
 * per matrix (shift_used of the views' dtype). */
curvkit_status curvkit_potrf(curvkit_context ctx, int64_t groups, const curvkit_matrices* a,
                             int32_t* info, const curvkit_spd_options* options, void* shift_used);
curvkit_status curvkit_potrs(curvkit_context ctx, int64_t groups, const curvkit_matrices* l,
                             const curvkit_matrices* b, int32_t* info);
curvkit_status curvkit_posv(curvkit_context ctx, int64_t groups, const curvkit_matrices* a,
                            const curvkit_matrices* b, int32_t* info,
                            const curvkit_spd_options* options, void* shift_used);
curvkit_status curvkit_potri(curvkit_context ctx, int64_t groups, const curvkit_matrices* a,
                             int32_t* info, const curvkit_spd_options* options, void* shift_used);

/* ==== Sherman-Morrison / Woodbury (curvkit/sherman_morrison.hpp, quasi_newton.hpp) ======= */

typedef struct curvkit_rank1_options {
  double decay, weight; /* G <- decay G + weight u u^T */
  int32_t mirror_upper;
} curvkit_rank1_options;
curvkit_rank1_options curvkit_rank1_default_options(void); /* 1, 1, 1 */
curvkit_status curvkit_rank1_update(curvkit_context ctx, const curvkit_matrices* h,
                                    const curvkit_matrices* u, int32_t* info,
                                    const curvkit_rank1_options* options);

typedef enum curvkit_woodbury_c {
  CURVKIT_WOODBURY_C_SCALAR = 0,
  CURVKIT_WOODBURY_C_DIAGONAL = 1,
  CURVKIT_WOODBURY_C_MATRIX = 2
} curvkit_woodbury_c;
typedef struct curvkit_woodbury_options {
  double lambda, c_scale;
  curvkit_woodbury_c c_form;
} curvkit_woodbury_options;
curvkit_woodbury_options curvkit_woodbury_default_options(void); /* 1, 1, scalar */
/* c and gram may be NULL (scalar C; Gram computed). */
curvkit_status curvkit_woodbury_solve(curvkit_context ctx, const curvkit_matrices* ut,
                                      const curvkit_matrices* b, int32_t* info,
                                      const curvkit_woodbury_options* options,
                                      const curvkit_matrices* c, const curvkit_matrices* gram);

typedef struct curvkit_bfgs_options {
  double min_curvature;
  int32_t skip_rejected, mirror_upper;
} curvkit_bfgs_options;
curvkit_bfgs_options curvkit_bfgs_default_options(void); /* 0, 0, 1 */
curvkit_status curvkit_bfgs_update(curvkit_context ctx, const curvkit_matrices* h,
                                   const curvkit_matrices* s, const curvkit_matrices* y,
                                   int32_t* info, const curvkit_bfgs_options* options,
                                   const int32_t* skip_mask, int32_t* skipped);

typedef enum curvkit_damping_scheme {
  CURVKIT_DAMPING_POWELL_LM = 0,
  CURVKIT_DAMPING_DOUBLE = 1,
  CURVKIT_DAMPING_POWELL_IDENTITY_LM = 2,
  CURVKIT_DAMPING_POWELL_LM_HY = 3
} curvkit_damping_scheme;
typedef struct curvkit_damping_options {
  curvkit_damping_scheme scheme;
  double mu1, mu2;
  int32_t skip_test;
} curvkit_damping_options;
curvkit_damping_options curvkit_damping_default_options(void); /* powell_lm, 0.2, 1, 0 */
/* theta and skip may be NULL. */
curvkit_status curvkit_bfgs_damping(curvkit_context ctx, const curvkit_matrices* h,
                                    const curvkit_matrices* s, const curvkit_matrices* y,
                                    int32_t* info, const curvkit_damping_options* options,
                                    void* theta, int32_t* skip);

typedef struct curvkit_hessian_action_options {
  double lambda, scale; /* scale <= 0: 1 / x.rows */
} curvkit_hessian_action_options;
curvkit_status curvkit_hessian_action_pair(curvkit_context ctx, const curvkit_matrices* h,
                                           const curvkit_matrices* abar, const curvkit_matrices* x,
                                           const curvkit_matrices* s, const curvkit_matrices* y,
                                           int32_t* info,
                                           const curvkit_hessian_action_options* options);

typedef struct curvkit_lbfgs_options {
  double gamma; /* <= 0: s_p^T y_p / y_p^T y_p */
  int32_t skip_zero_pairs;
} curvkit_lbfgs_options;
curvkit_lbfgs_options curvkit_lbfgs_default_options(void); /* 1, 0 */
/* sty and yty may be NULL (computed). */
curvkit_status curvkit_lbfgs_apply(curvkit_context ctx, const curvkit_matrices* s,
                                   const curvkit_matrices* y, const curvkit_matrices* x,
                                   int32_t* info, const curvkit_lbfgs_options* options,
                                   const curvkit_matrices* sty, const curvkit_matrices* yty);
curvkit_status curvkit_lbfgs_two_loop(curvkit_context ctx, const curvkit_matrices* s,
                                      const curvkit_matrices* y, const curvkit_matrices* x,
                                      int32_t* info, const curvkit_lbfgs_options* options);

/* ==== batched products (curvkit/gemm.hpp) ================================================ */

typedef enum curvkit_op { CURVKIT_OP_NONE = 0, CURVKIT_OP_TRANS = 1 } curvkit_op;
typedef enum curvkit_fill { CURVKIT_FILL_LOWER = 0, CURVKIT_FILL_FULL = 1 } curvkit_fill;

/* c = alpha op(a) op(b) + beta c */
curvkit_status curvkit_gemm(curvkit_context ctx, int64_t groups, curvkit_op op_a, curvkit_op op_b,
                            double alpha, const curvkit_matrices* a, const curvkit_matrices* b,
                            double beta, const curvkit_matrices* c);
/* c = alpha op(a) op(a)^T + beta c */
curvkit_status curvkit_syrk(curvkit_context ctx, int64_t groups, curvkit_op op_a, double alpha,
                            const curvkit_matrices* a, double beta, const curvkit_matrices* c,
                            curvkit_fill fill);

/* ==== Kronecker products (curvkit/kron.hpp) ============================================== */

curvkit_status curvkit_mode_product(curvkit_context ctx, const curvkit_tensors* x, int32_t mode,
                                    const curvkit_matrices* u, const curvkit_tensors* y,
                                    curvkit_op op_u);
/* u has x->order entries; u[k].data == NULL leaves mode k alone. */
curvkit_status curvkit_mode_product_chain(curvkit_context ctx, const curvkit_tensors* x,
                                          const curvkit_matrices* u, const curvkit_tensors* y,
                                          curvkit_op op_u);

typedef enum curvkit_kron_factor {
  CURVKIT_KRON_INVERSE = 0,
  CURVKIT_KRON_CHOLESKY = 1
} curvkit_kron_factor;
typedef struct curvkit_kron_apply_options {
  curvkit_kron_factor form;
  double alpha;
} curvkit_kron_apply_options;
curvkit_kron_apply_options curvkit_kron_apply_default_options(void); /* inverse, 1 */
/* out = alpha G^{-1} grad A^{-1} per matrix. */
curvkit_status curvkit_kron_apply(curvkit_context ctx, int64_t groups,
                                  const curvkit_matrices* g_factor,
                                  const curvkit_matrices* a_factor, const curvkit_matrices* grad,
                                  const curvkit_matrices* out,
                                  const curvkit_kron_apply_options* options);

typedef struct curvkit_mode_gram_options {
  double beta, scale;
  curvkit_fill fill;
} curvkit_mode_gram_options;
curvkit_mode_gram_options curvkit_mode_gram_default_options(void); /* 0, 1, full */
/* grams has x->order entries; grams[k].data == NULL skips mode k. */
curvkit_status curvkit_mode_gram(curvkit_context ctx, const curvkit_tensors* x,
                                 const curvkit_matrices* grams,
                                 const curvkit_mode_gram_options* options);
curvkit_status curvkit_tnt_normalize(curvkit_context ctx, int64_t count,
                                     const curvkit_matrices* grams, int32_t* info);
curvkit_status curvkit_kfac_pi_damping(curvkit_context ctx, int64_t groups,
                                       const curvkit_matrices* a_factors,
                                       const curvkit_matrices* g_factors, double lambda,
                                       void* shift_a, void* shift_g, int32_t* info);

/* ==== Khatri-Rao products (curvkit/khatri_rao.hpp) ======================================= */

typedef enum curvkit_gram_path {
  CURVKIT_GRAM_AUTOMATIC = 0,
  CURVKIT_GRAM_FUSED = 1,
  CURVKIT_GRAM_DIRECT = 2
} curvkit_gram_path;
typedef struct curvkit_khatri_rao_options {
  int32_t bias;
  double alpha, beta;
  curvkit_fill fill;
  curvkit_gram_path path;
} curvkit_khatri_rao_options;
curvkit_khatri_rao_options curvkit_khatri_rao_default_options(void); /* 0, 1, 0, lower, auto */
curvkit_status curvkit_khatri_rao_gram(curvkit_context ctx, int64_t groups,
                                       const curvkit_matrices* a, const curvkit_matrices* g,
                                       const curvkit_matrices* k,
                                       const curvkit_khatri_rao_options* options);
curvkit_status curvkit_khatri_rao_jv(curvkit_context ctx, int64_t groups, const curvkit_matrices* a,
                                     const curvkit_matrices* g, const curvkit_matrices* v,
                                     const curvkit_matrices* u,
                                     const curvkit_khatri_rao_options* options);
curvkit_status curvkit_khatri_rao_jtu(curvkit_context ctx, int64_t groups,
                                      const curvkit_matrices* a, const curvkit_matrices* g,
                                      const curvkit_matrices* u, const curvkit_matrices* v,
                                      const curvkit_khatri_rao_options* options);
curvkit_status curvkit_khatri_rao_layer_sums(curvkit_context ctx, int64_t groups,
                                             const curvkit_matrices* x,
                                             const curvkit_matrices* sums, int32_t bias);
curvkit_status curvkit_coarse_gram(curvkit_context ctx, const curvkit_matrices* sums_a,
                                   const curvkit_matrices* sums_g, const curvkit_matrices* s_a,
                                   const curvkit_matrices* s_g, const curvkit_matrices* f,
                                   double beta);

/* ==== Newton-Schulz iterations (curvkit/newton_schulz.hpp) =============================== */

typedef enum curvkit_ns_stop { CURVKIT_NS_FIXED = 0, CURVKIT_NS_RESIDUAL = 1 } curvkit_ns_stop;
typedef enum curvkit_ns_compute {
  CURVKIT_NS_NATIVE = 0,
  CURVKIT_NS_TF32 = 1,
  CURVKIT_NS_BF16 = 2
} curvkit_ns_compute;
typedef struct curvkit_ns_options {
  curvkit_ns_stop stop;
  int32_t iterations;
  double tolerance, epsilon;
  curvkit_ns_compute compute;
} curvkit_ns_options;
curvkit_ns_options curvkit_ns_default_options(void); /* fixed, 5, 1e-6, 0, native */

typedef enum curvkit_polar_schedule {
  CURVKIT_POLAR_CUBIC = 0,
  CURVKIT_POLAR_QUINTIC = 1,
  CURVKIT_POLAR_CONVERGENT = 2
} curvkit_polar_schedule;
typedef struct curvkit_polar_options {
  curvkit_polar_schedule schedule;
  double a, b, c;
  int32_t cubic_iterations;
} curvkit_polar_options;
curvkit_polar_options curvkit_polar_default_options(void); /* quintic, Muon's a b c, 20 */

/* info is required (one per matrix); iterations and residual (views' dtype) may be NULL. */
curvkit_status curvkit_newton_schulz_inverse(curvkit_context ctx, int64_t groups,
                                             const curvkit_matrices* a, const curvkit_matrices* x,
                                             int32_t* info, int32_t* iterations, void* residual,
                                             const curvkit_ns_options* options);
/* sqrt or inv_sqrt may be NULL (not both). */
curvkit_status curvkit_newton_schulz_sqrt(curvkit_context ctx, int64_t groups,
                                          const curvkit_matrices* a, const curvkit_matrices* sqrt,
                                          const curvkit_matrices* inv_sqrt, int32_t* info,
                                          int32_t* iterations, void* residual,
                                          const curvkit_ns_options* options);
curvkit_status curvkit_newton_schulz_inverse_root(curvkit_context ctx, int64_t groups,
                                                  const curvkit_matrices* a, int32_t p,
                                                  const curvkit_matrices* x, int32_t* info,
                                                  int32_t* iterations, void* residual,
                                                  const curvkit_ns_options* options);
curvkit_status curvkit_newton_schulz_polar(curvkit_context ctx, int64_t groups,
                                           const curvkit_matrices* a, const curvkit_matrices* u,
                                           int32_t* info, int32_t* iterations, void* residual,
                                           const curvkit_ns_options* options,
                                           const curvkit_polar_options* polar);

/* ==== optimizers (curvkit/optim/optimizer.hpp, registry.hpp, docs/optimizer-spec.md) ===== */

typedef enum curvkit_layer_kind {
  CURVKIT_LAYER_LINEAR = 0, /* w: d_out x d_in */
  CURVKIT_LAYER_CONV2D = 1, /* w: c_out x (c_in kh kw) */
  CURVKIT_LAYER_VECTOR = 2  /* w: 1 x n (batch-norm parameters) */
} curvkit_layer_kind;

/* One layer at one step: views into the caller's tensors (one matrix each; absent views have
 * data == NULL).  The statistics are read only when curvkit_optimizer_needs asks for them. */
typedef struct curvkit_layer {
  curvkit_layer_kind kind;
  curvkit_matrices w, b, dw, db;
  int64_t c_in, kh, kw;
  int32_t output_layer;
  int64_t m;
  curvkit_matrices a, g, g_sampled, dw_sampled, db_sampled, z, losses, q;
} curvkit_layer;
/* A layer with every view absent, kind linear, kh = kw = 1. */
curvkit_layer curvkit_layer_empty(void);

typedef enum curvkit_second_pass {
  CURVKIT_SECOND_PASS_NONE = 0,
  CURVKIT_SECOND_PASS_FORWARD = 1,
  CURVKIT_SECOND_PASS_FORWARD_BACKWARD = 2
} curvkit_second_pass;
typedef struct curvkit_needs {
  int32_t a, g, g_sampled, grad_sampled, z, losses;
  int64_t cotangents;
  curvkit_second_pass second_pass;
} curvkit_needs;

typedef struct curvkit_optimizer_s* curvkit_optimizer;

/* The optimizer `name` (curvkit_optimizer_name(i) lists them) with the settings of `preset`
 * ("autoencoder" or "cnn") and learning rate lr (<= 0: the preset's). */
curvkit_status curvkit_optimizer_create(const char* name, const char* preset, double lr,
                                        curvkit_dtype dtype, curvkit_optimizer* out);
void curvkit_optimizer_destroy(curvkit_optimizer opt);
/* The i-th registered name, or NULL past the last. */
const char* curvkit_optimizer_name(int32_t i);
/* Fixes the layer shapes and allocates the state in ctx's backend memory (once). */
curvkit_status curvkit_optimizer_init(curvkit_context ctx, curvkit_optimizer opt,
                                      const curvkit_layer* layers, int64_t count);
curvkit_status curvkit_optimizer_needs(curvkit_optimizer opt, curvkit_needs* out);
/* One step (launches only).  When the step's needs had a second pass, the caller runs it and
 * then calls curvkit_optimizer_finish_step with the layers holding what it computed. */
curvkit_status curvkit_optimizer_step(curvkit_context ctx, curvkit_optimizer opt,
                                      const curvkit_layer* layers, int64_t count);
curvkit_status curvkit_optimizer_finish_step(curvkit_context ctx, curvkit_optimizer opt,
                                             const curvkit_layer* layers, int64_t count);
curvkit_status curvkit_optimizer_set_learning_rate(curvkit_optimizer opt, double lr);
double curvkit_optimizer_learning_rate(curvkit_optimizer opt);
int64_t curvkit_optimizer_iteration(curvkit_optimizer opt);
/* Waits for ctx and counts the matrices whose last statistics/refresh op reported a nonzero
 * info code (0: every preconditioner is healthy). */
curvkit_status curvkit_optimizer_unhealthy(curvkit_context ctx, curvkit_optimizer opt,
                                           int64_t* out);

#ifdef __cplusplus
}
#endif

#endif /* CURVKIT_C_API_H */
