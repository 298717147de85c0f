// Kokkos backend of the Khatri–Rao family (khatri_rao.hpp).
//
// khatri_rao_gram
//   tiled (linear layers; convolutions on the fused path with S <= kMaxTiledPositions)
//                          rows of A and G are (sample, position) pairs; one work item per
//                          tile of whole samples on or below the diagonal (gram_tile): both
//                          products through device::gemm_block into scratch tiles, then each
//                          K_ij gets the sum of (t1 + bias) o t2 over its S x S block.  The
//                          layers of a summed call that share S run in one launch (up to
//                          kMaxFusedLayers).
//   pairs (fused, S > kMaxTiledPositions)  one work item per sample pair (i, j <= i): the
//                          S x S position blocks in kPositionTile tiles, summed on the fly in
//                          double; nothing of size S x S per pair is kept.
//   direct                 per batch entry and slice of output channels: the per-sample
//                          gradients by this backend's batched GEMM into the Context workspace
//                          (bias column by a small kernel), then K += alpha W W^T by its SYRK.
//   Every contribution writes K's lower triangle (the first with the caller's beta, later ones
//   with beta = 1); Fill::full mirrors it at the end.
// khatri_rao_jv   one work item per block of samples: P = A~ V^T in chunks of rows and output
//                 channels (gemm_block into scratch), u_i += sum P o G over sample i's rows.
// khatri_rao_jtu  one work item per block of V: G^T diag(u) staged (scaled, transposed) per
//                 depth chunk of kGemmKc rows into scratch, times A's rows by gemm_block.
// Layer sums and the coarse Gram are plain loops (m x L and L x L).
// Per-item scratch is Kokkos team scratch (for_each_with_scratch).  On a GPU execution space
// each work item is one thread: correct, but the native CUDA backend is the fast path there.
#include <algorithm>

#include "checks.hpp"
#include "compat.hpp"
#include "curvkit/device/gemm.hpp"
#include "khatri_rao_backends.hpp"
#include "kron_backends.hpp"

namespace curvkit::kokkos {
namespace {

using device::Strided;

// Rows of a position / sample tile (fused convolution Gram, J v, J^T u): a multiple of kGemmMr
// and of kGemmNr.
constexpr index_t kTile = 96;
// Linear Gram tiles: kTile times a power of two up to this, the largest that still gives every
// thread two tiles (one tile on one thread: each packed row tile of A then serves all of K's
// columns, and packing is a third of the time at 96 x 96 tiles).
constexpr index_t kMaxGramTile = 8 * kTile;
// Convolutions with more positions than this take the per-pair fused kernel (PairGram), with
// position tiles of kPositionTile.
constexpr index_t kMaxTiledPositions = kMaxGramTile / 2;
constexpr index_t kPositionTile = 4 * kTile;
// J v and J^T u: rows of A (and of V) per block, and output channels per J v chunk.  Large
// blocks, because each block packs its share of V (or of A) once.
constexpr index_t kJacobianRows = 4 * kTile;
constexpr index_t kJvChunk = 512;
constexpr int kMaxFusedLayers = 16;

KOKKOS_INLINE_FUNCTION index_t imin(index_t a, index_t b) {
  return a < b ? a : b;
}
index_t blocks(index_t n, index_t b) {
  return (n + b - 1) / b;
}

// Rows r0.. of x as the left operand, and rows c0.. of y transposed as the right operand.
template <class T>
KOKKOS_INLINE_FUNCTION Strided<const T> rows_of(const MatrixBatch<const T>& x, index_t b,
                                                index_t r0) {
  return {x.matrix(b) + r0 * x.ld, x.ld, 1};
}
template <class T>
KOKKOS_INLINE_FUNCTION Strided<const T> rows_transposed(const MatrixBatch<const T>& x, index_t b,
                                                        index_t r0) {
  return {x.matrix(b) + r0 * x.ld, 1, x.ld};
}

// The output element: alpha sum + beta out (beta == 0: out not read).
template <class T, class S>
KOKKOS_INLINE_FUNCTION void store(T& out, T alpha, S sum, T beta) {
  out = beta == T(0) ? T(alpha * sum) : T(alpha * sum + beta * out);
}

// Side (in rows of A and G) of the tiled Gram's tiles for m samples of S rows each, `batch`
// Grams, on `threads` threads: the largest of kMaxGramTile / 2^i that still gives every thread
// two tiles (one tile on one thread: each packed row tile of A then serves all of K's
// columns), at least one sample, no larger than the m S rows.
index_t gram_tile(index_t m, index_t s, index_t batch, index_t threads) {
  const index_t want = threads > 1 ? 2 * threads : 1;
  index_t tile = kMaxGramTile;
  while (tile > kTile) {
    const index_t t = blocks(m, std::max<index_t>(1, tile / s));
    if (batch * t * (t + 1) / 2 >= want) break;
    tile /= 2;
  }
  return std::min(std::max(tile / s, index_t(1)) * s, blocks(m * s, kTile) * kTile);
}

// ---- Gram: tiled (linear layers, and convolutions with S <= kMaxTiledPositions) -------------
//
// Rows of A and G are (sample, position) pairs.  A work item owns the samples I x J (J <= I)
// of K: t1 = A(rows of I) A(rows of J)^T and t2 the same for G in scratch, then each K_ij
// gets the sum of (t1 + bias) o t2 over its S x S block.  Layers of one launch share S.
template <class T>
struct TiledGram {
  MatrixBatch<const T> a[kMaxFusedLayers], g[kMaxFusedLayers];
  int layers = 0;
  MatrixBatch<T> k;
  T alpha = 1, beta = 0, bias = 0;
  index_t s = 1, per_tile = 1, tiles = 0, pack_elems = 0;  // per_tile samples per tile

  KOKKOS_INLINE_FUNCTION void operator()(index_t w, void* scratch) const {
    const index_t per = tiles * tiles, b = w / per, ti = (w % per) / tiles, tj = w % tiles;
    if (tj > ti) return;
    const index_t m = k.rows, i0 = ti * per_tile, j0 = tj * per_tile;
    const index_t mb = imin(per_tile, m - i0), nb = imin(per_tile, m - j0), ld = per_tile * s;
    const bool diag = ti == tj;
    T* pack = static_cast<T*>(scratch);
    T* t1 = pack + pack_elems;
    T* t2 = t1 + ld * ld;
    for (int l = 0; l < layers; ++l) {
      // On a diagonal tile, rows of sample i meet every row of samples j <= i: diag offset s-1.
      device::gemm_block(mb * s, nb * s, a[l].cols, T(1), rows_of(a[l], b, i0 * s),
                         rows_transposed(a[l], b, j0 * s), T(0), Strided<T>{t1, ld, 1}, pack, diag,
                         s - 1);
      device::gemm_block(mb * s, nb * s, g[l].cols, T(1), rows_of(g[l], b, i0 * s),
                         rows_transposed(g[l], b, j0 * s), T(0), Strided<T>{t2, ld, 1}, pack, diag,
                         s - 1);
      // K = alpha sum + beta K for the first layer, K += alpha sum after it.
      const T beta_l = l == 0 ? beta : T(1);
      for (index_t i = 0; i < mb; ++i) {
        const index_t jn = diag ? i + 1 : nb;
        T* ki = &k(b, i0 + i, j0);
        if (s == 1) {
          const T* p1 = t1 + i * ld;
          const T* p2 = t2 + i * ld;
          if (beta_l == T(0)) {
            CURVKIT_SIMD
            for (index_t j = 0; j < jn; ++j) ki[j] = alpha * ((p1[j] + bias) * p2[j]);
          } else {
            CURVKIT_SIMD
            for (index_t j = 0; j < jn; ++j)
              ki[j] = alpha * ((p1[j] + bias) * p2[j]) + beta_l * ki[j];
          }
          continue;
        }
        for (index_t j = 0; j < jn; ++j) {
          T sum = 0;
          for (index_t t = 0; t < s; ++t) {
            const T* p1 = t1 + (i * s + t) * ld + j * s;
            const T* p2 = t2 + (i * s + t) * ld + j * s;
            CURVKIT_SIMD_REDUCTION(sum)
            for (index_t u = 0; u < s; ++u) sum += (p1[u] + bias) * p2[u];
          }
          store(ki[j], alpha, sum, beta_l);
        }
      }
    }
  }
};

// ---- Gram: convolution with many positions, fused -----------------------------------------

// One work item per sample pair (i, j <= i): the S x S position blocks in tiles of
// kPositionTile, the Hadamard product summed on the fly in double; nothing of size S x S kept.
template <class T>
struct PairGram {
  MatrixBatch<const T> a, g;
  MatrixBatch<T> k;
  index_t s = 1, pack_elems = 0;
  T alpha, beta, bias;

  KOKKOS_INLINE_FUNCTION void operator()(index_t w, void* scratch) const {
    const index_t m = k.rows, b = w / (m * m), i = (w / m) % m, j = w % m;
    if (j > i) return;
    T* pack = static_cast<T*>(scratch);
    T* t1 = pack + pack_elems;
    T* t2 = t1 + kPositionTile * kPositionTile;
    double sum = 0;
    for (index_t r0 = 0; r0 < s; r0 += kPositionTile)
      for (index_t c0 = 0; c0 < s; c0 += kPositionTile) {
        const index_t rb = imin(kPositionTile, s - r0), cb = imin(kPositionTile, s - c0);
        const Strided<T> c1{t1, kPositionTile, 1}, c2{t2, kPositionTile, 1};
        device::gemm_block(rb, cb, a.cols, T(1), rows_of(a, b, i * s + r0),
                           rows_transposed(a, b, j * s + c0), T(0), c1, pack);
        device::gemm_block(rb, cb, g.cols, T(1), rows_of(g, b, i * s + r0),
                           rows_transposed(g, b, j * s + c0), T(0), c2, pack);
        for (index_t r = 0; r < rb; ++r) {
          T part = 0;
          const T* p1 = t1 + r * kPositionTile;
          const T* p2 = t2 + r * kPositionTile;
          CURVKIT_SIMD_REDUCTION(part)
          for (index_t c = 0; c < cb; ++c) part += (p1[c] + bias) * p2[c];
          sum += double(part);
        }
      }
    store(k(b, i, j), alpha, sum, beta);
  }
};

// ---- Gram: convolution, direct -------------------------------------------------------------

// W(i, q, d_in) = sum_t g(i S + t, c0 + q): the bias column of the per-sample gradients.
template <class T>
struct BiasColumn {
  MatrixBatch<const T> g;
  index_t b, s, c0, channels, ldw;
  T* w;
  KOKKOS_INLINE_FUNCTION void operator()(index_t idx) const {
    const index_t i = idx / channels, q = idx % channels;
    T sum = 0;
    for (index_t t = 0; t < s; ++t) sum += g(b, i * s + t, c0 + q);
    w[i * channels * ldw + q * ldw + (ldw - 1)] = sum;
  }
};

template <class T>
Status direct_conv_gram(const Context& ctx, const MatrixBatch<const T>& a,
                        const MatrixBatch<const T>& g, const MatrixBatch<T>& k, T alpha, T beta,
                        bool bias) {
  const index_t m = k.rows, s = detail::positions(a.rows, m), d_in = a.cols, d_out = g.cols;
  const index_t ldw = d_in + (bias ? 1 : 0);
  const index_t chunk = detail::direct_gram_channels(m, d_in, d_out, bias);
  T* w = static_cast<T*>(ctx.workspace().data);
  for (index_t b = 0; b < k.batch; ++b)
    for (index_t c0 = 0; c0 < d_out; c0 += chunk) {
      const index_t c = imin(chunk, d_out - c0);
      // W_i = G_i(:, c0:c0+c)^T A_i for every sample i: m products c x S x d_in.
      const MatrixBatch<const T> gi{g.matrix(b) + c0, m, s, c, g.ld, s * g.ld};
      const MatrixBatch<const T> ai{a.matrix(b), m, s, d_in, a.ld, s * a.ld};
      const MatrixBatch<T> wi{w, m, c, d_in, ldw, c * ldw};
      CURVKIT_RETURN_IF_ERROR(
          kokkos::gemm<T>(ctx, Op::trans, Op::none, T(1), GroupedBatch<const T>(&gi, 1),
                          GroupedBatch<const T>(&ai, 1), T(0), GroupedBatch<T>(&wi, 1)));
      if (bias)
        for_each_index(exec_space(ctx), "curvkit::khatri_rao_gram bias column", m * c,
                       BiasColumn<T>{g, b, s, c0, c, ldw, w});
      // K_b += alpha W W^T, W = the m x c (d_in + bias) matrix of the slices.
      const MatrixBatch<const T> rows{w, 1, m, c * ldw, c * ldw, 0};
      const MatrixBatch<T> kb{k.matrix(b), 1, m, m, k.ld, 0};
      CURVKIT_RETURN_IF_ERROR(kokkos::syrk<T>(ctx, Op::none, alpha, GroupedBatch<const T>(&rows, 1),
                                              c0 == 0 ? beta : T(1), GroupedBatch<T>(&kb, 1),
                                              Fill::lower));
    }
  return Status::success();
}

template <class T>
struct ScaleLower {
  MatrixBatch<T> k;
  T beta;
  KOKKOS_INLINE_FUNCTION void operator()(index_t w) const {
    const index_t b = w / k.rows, i = w % k.rows;
    for (index_t j = 0; j <= i; ++j) k(b, i, j) = beta == T(0) ? T(0) : beta * k(b, i, j);
  }
};

template <class T>
struct MirrorLower {
  MatrixBatch<T> k;
  KOKKOS_INLINE_FUNCTION void operator()(index_t w) const {
    const index_t b = w / k.rows, i = w % k.rows;
    for (index_t j = 0; j < i; ++j) k(b, j, i) = k(b, i, j);
  }
};

// K <- alpha sum_l (layer l's Gram) + beta K over all the layers of a and g.
template <class T>
Status gram_into(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<const T> g,
                 const MatrixBatch<T>& k, const KhatriRaoOptions& o) {
  const ExecSpace space = exec_space(ctx);
  const index_t m = k.rows;
  const T alpha = T(o.alpha), bias = o.bias ? T(1) : T(0);
  T beta = T(o.beta);
  if (m == 0 || k.batch == 0) return Status::success();
  // Tiled launches first: the linear layers (all in one launch, or as few as
  // kMaxFusedLayers allows), then each convolution on the fused path with few positions.
  // The rest one layer at a time.  The first contribution applies beta, later ones add.
  std::vector<std::size_t> tiled, other;
  for (std::size_t l = 0; l < a.size(); ++l) {
    const index_t s = detail::positions(a[l].rows, m);
    if (s == 0) continue;  // no rows: contributes 0
    const bool fused =
        detail::gram_path(m, s, a[l].cols, g[l].cols, o.bias, o.path) == GramPath::fused;
    (fused && s <= kMaxTiledPositions ? tiled : other).push_back(l);
  }
  std::stable_sort(tiled.begin(), tiled.end(), [&](std::size_t x, std::size_t y) {
    return a[x].rows < a[y].rows;  // layers with the same S next to each other
  });
  for (std::size_t first = 0; first < tiled.size();) {
    TiledGram<T> f{};
    f.k = k;
    f.alpha = alpha;
    f.beta = beta;
    f.bias = bias;
    f.s = detail::positions(a[tiled[first]].rows, m);
    const index_t tile = gram_tile(m, f.s, k.batch, index_t(space.concurrency()));
    f.per_tile = tile / f.s;
    f.tiles = blocks(m, f.per_tile);
    index_t depth = 0;
    for (; first < tiled.size() && f.layers < kMaxFusedLayers &&
           detail::positions(a[tiled[first]].rows, m) == f.s;
         ++first) {
      f.a[f.layers] = a[tiled[first]];
      f.g[f.layers] = g[tiled[first]];
      depth = std::max({depth, a[tiled[first]].cols, g[tiled[first]].cols});
      ++f.layers;
    }
    f.pack_elems = device::gemm_pack_elements<T>(tile, depth);
    const std::size_t bytes = sizeof(T) * std::size_t(f.pack_elems + 2 * tile * tile);
    for_each_with_scratch(space, "curvkit::khatri_rao_gram tiled", k.batch * f.tiles * f.tiles,
                          bytes, f);
    beta = T(1);
  }
  for (std::size_t l : other) {
    const index_t s = detail::positions(a[l].rows, m);
    if (detail::gram_path(m, s, a[l].cols, g[l].cols, o.bias, o.path) == GramPath::direct) {
      CURVKIT_RETURN_IF_ERROR(direct_conv_gram(ctx, a[l], g[l], k, alpha, beta, o.bias));
    } else {
      PairGram<T> f{a[l], g[l], k, s, 0, alpha, beta, bias};
      f.pack_elems =
          device::gemm_pack_elements<T>(imin(kPositionTile, s), std::max(a[l].cols, g[l].cols));
      const std::size_t bytes =
          sizeof(T) * std::size_t(f.pack_elems + 2 * kPositionTile * kPositionTile);
      for_each_with_scratch(space, "curvkit::khatri_rao_gram pairs", k.batch * m * m, bytes, f);
    }
    beta = T(1);
  }
  if (tiled.empty() && other.empty())  // nothing contributed: K = beta K
    for_each_index(space, "curvkit::khatri_rao_gram scale", k.batch * m,
                   ScaleLower<T>{k, T(o.beta)});
  if (o.fill == Fill::full)
    for_each_index(space, "curvkit::khatri_rao_gram mirror", k.batch * m, MirrorLower<T>{k});
  return Status::success();
}

// ---- J v ---------------------------------------------------------------------------------

template <class T>
struct JacobianVector {
  MatrixBatch<const T> a, g, v;
  MatrixBatch<T> u;
  index_t s = 1, samples_per_item = 1, items_per_batch = 1, pack_elems = 0, chunk_cols = 0;
  T alpha = 1, beta = 0;
  bool bias = false;

  KOKKOS_INLINE_FUNCTION void operator()(index_t w, void* scratch) const {
    const index_t m = u.rows, b = w / items_per_batch;
    const index_t i0 = (w % items_per_batch) * samples_per_item;
    const index_t ib = imin(samples_per_item, m - i0), d_in = a.cols, d_out = g.cols;
    T* pack = static_cast<T*>(scratch);
    T* p = pack + pack_elems;
    double* sums = reinterpret_cast<double*>(p + kJacobianRows * chunk_cols);
    for (index_t i = 0; i < ib; ++i) sums[i] = 0;
    const index_t r_first = i0 * s, r_end = (i0 + ib) * s;
    for (index_t r0 = r_first; r0 < r_end; r0 += kJacobianRows) {
      const index_t rb = imin(kJacobianRows, r_end - r0);
      for (index_t q0 = 0; q0 < d_out; q0 += chunk_cols) {
        const index_t qb = imin(chunk_cols, d_out - q0);
        // P = A(rows) V(q0:q0+qb, 0:d_in)^T
        device::gemm_block(rb, qb, d_in, T(1), rows_of(a, b, r0),
                           Strided<const T>{v.matrix(b) + q0 * v.ld, 1, v.ld}, T(0),
                           Strided<T>{p, chunk_cols, 1}, pack);
        for (index_t r = 0; r < rb; ++r) {
          const T* pr = p + r * chunk_cols;
          const T* gr = &g(b, r0 + r, q0);
          T part = 0;
          if (bias) {
            const T* vb = v.matrix(b) + q0 * v.ld + d_in;
            CURVKIT_SIMD_REDUCTION(part)
            for (index_t q = 0; q < qb; ++q) part += (pr[q] + vb[q * v.ld]) * gr[q];
          } else {
            CURVKIT_SIMD_REDUCTION(part)
            for (index_t q = 0; q < qb; ++q) part += pr[q] * gr[q];
          }
          sums[(r0 + r) / s - i0] += double(part);
        }
      }
    }
    for (index_t i = 0; i < ib; ++i) store(u(b, i0 + i, 0), alpha, sums[i], beta);
  }
};

template <class T>
void jv_layer(const Context& ctx, const MatrixBatch<const T>& a, const MatrixBatch<const T>& g,
              const MatrixBatch<const T>& v, const MatrixBatch<T>& u, T alpha, T beta, bool bias) {
  const index_t m = u.rows;
  if (m == 0 || u.batch == 0) return;
  JacobianVector<T> f{a, g, v, u};
  f.s = detail::positions(a.rows, m);
  f.samples_per_item = std::min(m, std::max<index_t>(1, kJacobianRows / std::max<index_t>(f.s, 1)));
  f.items_per_batch = blocks(m, f.samples_per_item);
  f.chunk_cols = std::min<index_t>(std::max<index_t>(g.cols, 1), kJvChunk);
  f.pack_elems = device::gemm_pack_elements<T>(f.chunk_cols, a.cols);
  f.alpha = alpha;
  f.beta = beta;
  f.bias = bias;
  const std::size_t bytes = sizeof(T) * std::size_t(f.pack_elems + kJacobianRows * f.chunk_cols) +
                            sizeof(double) * std::size_t(f.samples_per_item) + sizeof(double);
  for_each_with_scratch(exec_space(ctx), "curvkit::khatri_rao_jv", u.batch * f.items_per_batch,
                        bytes, f);
}

// ---- J^T u -------------------------------------------------------------------------------

template <class T>
struct JacobianTransposeVector {
  MatrixBatch<const T> a, g, u;
  MatrixBatch<T> v;
  index_t s = 1, row_blocks = 0, col_blocks = 0, block_cols = 0, pack_elems = 0;
  T alpha = 1, beta = 0;
  bool bias = false;

  KOKKOS_INLINE_FUNCTION void operator()(index_t w, void* scratch) const {
    const index_t per = row_blocks * col_blocks, b = w / per;
    const index_t p0 = ((w % per) / col_blocks) * kJacobianRows, c0 = (w % col_blocks) * block_cols;
    const index_t d_in = a.cols, pb = imin(kJacobianRows, v.rows - p0),
                  cb = imin(block_cols, d_in - c0);
    const index_t rows = a.rows;
    T* pack = static_cast<T*>(scratch);
    T* gt = pack + pack_elems;  // pb x kGemmKc: (G^T diag(u)) of one depth chunk
    constexpr index_t kc_max = device::kGemmKc;
    const bool bias_col = bias && c0 == 0;  // this item also owns the bias column
    if (rows == 0) {                        // J^T u = 0
      for (index_t p = p0; p < p0 + pb; ++p) {
        for (index_t c = c0; c < c0 + cb; ++c) store(v(b, p, c), alpha, T(0), beta);
        if (bias_col) store(v(b, p, d_in), alpha, T(0), beta);
      }
      return;
    }
    for (index_t r0 = 0; r0 < rows; r0 += kc_max) {
      const index_t kc = imin(kc_max, rows - r0);
      for (index_t r = 0; r < kc; ++r) {
        const T ur = u(b, (r0 + r) / s, 0);
        const T* gr = &g(b, r0 + r, p0);
        for (index_t p = 0; p < pb; ++p) gt[p * kc_max + r] = gr[p] * ur;
      }
      if (cb > 0)
        device::gemm_block(pb, cb, kc, alpha, Strided<const T>{gt, kc_max, 1},
                           Strided<const T>{a.matrix(b) + r0 * a.ld + c0, a.ld, 1},
                           r0 == 0 ? beta : T(1), Strided<T>{&v(b, p0, c0), v.ld, 1}, pack);
      if (bias_col)  // the bias column: alpha sum_r g(r, p) u(r / S) (+ beta v)
        for (index_t p = 0; p < pb; ++p) {
          T part = 0;
          const T* gp = gt + p * kc_max;
          CURVKIT_SIMD_REDUCTION(part)
          for (index_t r = 0; r < kc; ++r) part += gp[r];
          store(v(b, p0 + p, d_in), alpha, part, r0 == 0 ? beta : T(1));
        }
    }
  }
};

template <class T>
void jtu_layer(const Context& ctx, const MatrixBatch<const T>& a, const MatrixBatch<const T>& g,
               const MatrixBatch<const T>& u, const MatrixBatch<T>& v, T alpha, T beta, bool bias) {
  if (v.batch == 0 || v.rows == 0 || v.cols == 0) return;
  JacobianTransposeVector<T> f{a, g, u, v};
  f.s = detail::positions(a.rows, u.rows);
  f.block_cols = std::max<index_t>(1, std::min(a.cols, device::kGemmNc<T>));
  f.row_blocks = blocks(v.rows, kJacobianRows);
  f.col_blocks = std::max<index_t>(1, blocks(a.cols, f.block_cols));
  f.pack_elems = device::gemm_pack_elements<T>(f.block_cols, device::kGemmKc);
  f.alpha = alpha;
  f.beta = beta;
  f.bias = bias;
  const std::size_t bytes = sizeof(T) * std::size_t(f.pack_elems + kJacobianRows * device::kGemmKc);
  for_each_with_scratch(exec_space(ctx), "curvkit::khatri_rao_jtu",
                        v.batch * f.row_blocks * f.col_blocks, bytes, f);
}

// ---- layer sums and the coarse Gram --------------------------------------------------------

template <class T>
struct LayerSum {
  MatrixBatch<const T> x;
  MatrixBatch<T> sums;
  index_t layer, s;
  T extra;
  KOKKOS_INLINE_FUNCTION void operator()(index_t w) const {
    const index_t b = w / sums.rows, i = w % sums.rows;
    double sum = double(extra);
    for (index_t t = 0; t < s; ++t) {
      const T* row = &x(b, i * s + t, 0);
      T part = 0;
      CURVKIT_SIMD_REDUCTION(part)
      for (index_t c = 0; c < x.cols; ++c) part += row[c];
      sum += double(part);
    }
    sums(b, i, layer) = T(sum);
  }
};

template <class T>
struct CoarseGram {
  MatrixBatch<const T> sa, sg;
  MatrixBatch<T> s_a, s_g, f;
  double beta;
  KOKKOS_INLINE_FUNCTION void operator()(index_t w) const {
    const index_t n = f.rows, b = w / (n * n), i = (w / n) % n, j = w % n, m = sa.rows;
    double xa = 0, xg = 0;
    for (index_t r = 0; r < m; ++r) {
      xa += double(sa(b, r, i)) * double(sa(b, r, j));
      xg += double(sg(b, r, i)) * double(sg(b, r, j));
    }
    const double wgt = (1 - beta) / double(m);
    const T na = T(beta == 0 ? wgt * xa : wgt * xa + beta * double(s_a(b, i, j)));
    const T ng = T(beta == 0 ? wgt * xg : wgt * xg + beta * double(s_g(b, i, j)));
    s_a(b, i, j) = na;
    s_g(b, i, j) = ng;
    f(b, i, j) = na * ng;
  }
};

}  // namespace

template <class T>
Status khatri_rao_gram(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<const T> g,
                       GroupedBatch<T> k, const KhatriRaoOptions& o) {
  if (k.size() == 1) return gram_into<T>(ctx, a, g, k[0], o);  // summed over the layers
  for (std::size_t l = 0; l < a.size(); ++l)
    CURVKIT_RETURN_IF_ERROR(gram_into<T>(ctx, a.subspan(l, 1), g.subspan(l, 1), k[l], o));
  return Status::success();
}

template <class T>
Status khatri_rao_jv(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<const T> g,
                     GroupedBatch<const T> v, GroupedBatch<T> u, const KhatriRaoOptions& o) {
  for (std::size_t l = 0; l < a.size(); ++l) {
    const bool summed = u.size() == 1;
    const T beta = summed && l > 0 ? T(1) : T(o.beta);
    jv_layer(ctx, a[l], g[l], v[l], u[summed ? 0 : l], T(o.alpha), beta, o.bias);
  }
  return Status::success();
}

template <class T>
Status khatri_rao_jtu(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<const T> g,
                      GroupedBatch<const T> u, GroupedBatch<T> v, const KhatriRaoOptions& o) {
  for (std::size_t l = 0; l < a.size(); ++l)
    jtu_layer(ctx, a[l], g[l], u[u.size() == 1 ? 0 : l], v[l], T(o.alpha), T(o.beta), o.bias);
  return Status::success();
}

template <class T>
Status khatri_rao_layer_sums(const Context& ctx, GroupedBatch<const T> x, MatrixBatch<T> sums,
                             bool bias) {
  for (std::size_t l = 0; l < x.size(); ++l) {
    const index_t s = detail::positions(x[l].rows, sums.rows);
    for_each_index(exec_space(ctx), "curvkit::khatri_rao_layer_sums", sums.batch * sums.rows,
                   LayerSum<T>{x[l], sums, index_t(l), s, bias ? T(s) : T(0)});
  }
  return Status::success();
}

template <class T>
Status coarse_gram(const Context& ctx, MatrixBatch<const T> sums_a, MatrixBatch<const T> sums_g,
                   MatrixBatch<T> s_a, MatrixBatch<T> s_g, MatrixBatch<T> f,
                   const CoarseGramOptions& o) {
  for_each_index(exec_space(ctx), "curvkit::coarse_gram", f.batch * f.rows * f.rows,
                 CoarseGram<T>{sums_a, sums_g, s_a, s_g, f, o.beta});
  return Status::success();
}

}  // namespace curvkit::kokkos

CURVKIT_INSTANTIATE_KHATRI_RAO_BACKEND(kokkos)
