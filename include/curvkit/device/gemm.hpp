// Embedded building blocks of the Kronecker family: one matrix product per call, callable from
// anyone's kernel (host and device), no allocation, no exceptions.
//
// gemm_block   C = alpha op(A) op(B) + beta C for one m x n block of C, A and B given as
//              strided operands (any transpose is a choice of strides).  On the host it is a
//              packed, register-tiled product: B is packed into panels of kGemmNr columns
//              (zero padded), each row tile of A is packed too, and a kGemmMr x kGemmNr
//              micro-kernel keeps its accumulators in vector registers (GCC/Clang vector
//              extensions, 64 bytes with AVX-512, else 32).  On a device (nvcc device pass) the
//              same loops run scalar, one thread per call.  The caller passes the packing
//              scratch for B (gemm_pack_elements); A's row tile lives on the stack.
// gemm_small   the same for n, k <= 32 and any m: a row kernel, no packing of A.
//              Optionally only the elements with i + diag >= j are written (SYRK's lower
//              triangle of a block whose top-left corner is diag rows below the diagonal).
// gemm_fixed   C = alpha A B + beta C for compile-time sizes (fully unrolled; for the tiny
//              per-thread products inside other kernels).
#pragma once

#include "curvkit/core/types.hpp"

#if defined(__GNUC__) && !defined(__CUDA_ARCH__) && !defined(__HIP_DEVICE_COMPILE__)
#define CURVKIT_GEMM_VECTOR 1
#include <cstring>
#else
#define CURVKIT_GEMM_VECTOR 0
#endif

namespace curvkit::device {

/// op(X)(i, j) = p[i * rs + j * cs]: X as stored (rs = ld, cs = 1) or transposed (rs = 1,
/// cs = ld), or any other strided view (a slab of a tensor unfolding).
template <class T>
struct Strided {
  T* p;
  index_t rs;
  index_t cs;
  CURVKIT_HD_INLINE T& operator()(index_t i, index_t j) const { return p[i * rs + j * cs]; }
  CURVKIT_HD_INLINE Strided at(index_t i, index_t j) const { return {p + i * rs + j * cs, rs, cs}; }
};

// Register tile and cache blocks of the host micro-kernel.  The vector width follows the
// compile target (every translation unit of the library is built with the same flags): 64
// bytes with AVX-512, whose 32 vector registers hold a 12 x 2-vector accumulator tile; 32 bytes
// otherwise (AVX2: 16 registers, a 6 x 2-vector tile; NEON: two registers per vector).  A
// device pass always sees the 32-byte values, whose packing needs are never larger, so a pack
// size computed on the host is always enough on the device.
#if CURVKIT_GEMM_VECTOR && defined(__AVX512F__)
inline constexpr int kGemmVectorBytes = 64;
inline constexpr int kGemmMr = 12;
inline constexpr index_t kGemmPackBytes = index_t(1) << 20;  // L2 of 2 MiB
#else
inline constexpr int kGemmVectorBytes = 32;
inline constexpr int kGemmMr = 6;
inline constexpr index_t kGemmPackBytes = index_t(1) << 18;
#endif
template <class T>
inline constexpr int kGemmNr = 2 * kGemmVectorBytes / int(sizeof(T));
inline constexpr index_t kGemmKc = 256;  ///< depth of one packed panel
/// Columns of B packed at once: the kGemmKc x kGemmNc block (kGemmPackBytes) stays in L2 while
/// row tiles of A stream past it, and each packed row tile of A is reused across all of it.
template <class T>
inline constexpr index_t kGemmNc = kGemmPackBytes / (kGemmKc * index_t(sizeof(T)));

/// Elements of packing scratch gemm_block needs for an n-column block of depth k.
template <class T>
CURVKIT_HD_INLINE index_t gemm_pack_elements(index_t n, index_t k) {
  const index_t nc = n < kGemmNc<T> ? n : kGemmNc<T>;
  const index_t kc = k < kGemmKc ? k : kGemmKc;
  const index_t nr = kGemmNr<T>;
  return kc * ((nc + nr - 1) / nr) * nr;
}

namespace gemm_detail {

// Packs op(B)(0:kc, 0:nc) into panels of NR columns: panel p holds kc rows of NR values, columns
// past nc are zero.
template <class T>
CURVKIT_HD void pack_b(index_t kc, index_t nc, Strided<const T> b, T* pack) {
  constexpr index_t nr = kGemmNr<T>;
  for (index_t j0 = 0; j0 < nc; j0 += nr) {
    T* panel = pack + j0 * kc;
    const index_t w = nc - j0 < nr ? nc - j0 : nr;
    for (index_t q = 0; q < kc; ++q) {
      const T* src = b.p + q * b.rs + j0 * b.cs;
      T* dst = panel + q * nr;
      if (b.cs == 1) {
        for (index_t j = 0; j < w; ++j) dst[j] = src[j];
      } else {
        for (index_t j = 0; j < w; ++j) dst[j] = src[j * b.cs];
      }
      for (index_t j = w; j < nr; ++j) dst[j] = T(0);
    }
  }
}

// Writes alpha * acc (+ beta * C) into an mr x nr corner of the tile at c, only where
// i + diag >= j when `lower`.
template <class T>
CURVKIT_HD_INLINE void store_tile(const T* acc, index_t mr, index_t nr, T alpha, T beta,
                                  Strided<T> c, bool lower, index_t diag) {
  constexpr index_t NR = kGemmNr<T>;
  for (index_t i = 0; i < mr; ++i) {
    const index_t jmax = lower ? (i + diag + 1 < nr ? i + diag + 1 : nr) : nr;
    for (index_t j = 0; j < jmax; ++j) {
      const T v = alpha * acc[i * NR + j];
      c(i, j) = beta == T(0) ? v : v + beta * c(i, j);
    }
  }
}

#if CURVKIT_GEMM_VECTOR
// Packs op(A)(0:mr, 0:kc) as kc columns of kGemmMr values (rows past mr are zero), so the
// micro-kernel reads A through one sequential pointer whatever its strides.
template <class T>
inline void pack_a(index_t kc, index_t mr, Strided<const T> a, T* pack) {
  constexpr index_t MR = kGemmMr;
  if (a.rs == 1) {  // op(A) columns are contiguous
    for (index_t q = 0; q < kc; ++q) {
      const T* src = a.p + q * a.cs;
      for (index_t i = 0; i < mr; ++i) pack[q * MR + i] = src[i];
      for (index_t i = mr; i < MR; ++i) pack[q * MR + i] = T(0);
    }
    return;
  }
  for (index_t i = 0; i < mr; ++i) {
    const T* src = a.p + i * a.rs;
    if (a.cs == 1) {
      for (index_t q = 0; q < kc; ++q) pack[q * MR + i] = src[q];
    } else {
      for (index_t q = 0; q < kc; ++q) pack[q * MR + i] = src[q * a.cs];
    }
  }
  for (index_t i = mr; i < MR; ++i)
    for (index_t q = 0; q < kc; ++q) pack[q * MR + i] = T(0);
}

// The host micro-kernel: the kGemmMr x NR tile sum_q apack(q, i) panel(q, j) in 2 * kGemmMr
// vector registers.  A full tile outside any mask is written straight from the registers
// (C = alpha acc + beta C); edge and diagonal tiles go through store_tile.  Not inlined: inside
// gemm_block the register allocator spilled accumulators (measured: a B vector on the stack).
template <class T>
__attribute__((noinline)) void micro_tile(index_t kc, const T* apack, const T* panel, T alpha,
                                          T beta, Strided<T> c, index_t mr, index_t nr, bool lower,
                                          index_t diag) {
  typedef T vec __attribute__((vector_size(kGemmVectorBytes)));
  constexpr int W = kGemmVectorBytes / int(sizeof(T));
  constexpr int MR = kGemmMr;
  vec acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = vec{};
  for (index_t q = 0; q < kc; ++q) {
    vec b0, b1;
    std::memcpy(&b0, panel + q * 2 * W, sizeof(vec));
    std::memcpy(&b1, panel + q * 2 * W + W, sizeof(vec));
    const T* aq = apack + q * MR;
    CURVKIT_HOST_UNROLL16
    for (int i = 0; i < MR; ++i) {
      acc[i][0] += aq[i] * b0;
      acc[i][1] += aq[i] * b1;
    }
  }
  if (mr == MR && nr == 2 * W && c.cs == 1 && (!lower || diag >= nr - 1)) {
    CURVKIT_HOST_UNROLL16
    for (int i = 0; i < MR; ++i) {
      T* ci = c.p + i * c.rs;
      vec r0 = alpha * acc[i][0], r1 = alpha * acc[i][1];
      if (beta != T(0)) {
        vec c0, c1;
        std::memcpy(&c0, ci, sizeof(vec));
        std::memcpy(&c1, ci + W, sizeof(vec));
        r0 += beta * c0;
        r1 += beta * c1;
      }
      std::memcpy(ci, &r0, sizeof(vec));
      std::memcpy(ci + W, &r1, sizeof(vec));
    }
    return;
  }
  alignas(64) T tile[MR * 2 * W];
  for (int i = 0; i < MR; ++i) {
    std::memcpy(tile + i * 2 * W, &acc[i][0], sizeof(vec));
    std::memcpy(tile + i * 2 * W + W, &acc[i][1], sizeof(vec));
  }
  store_tile(tile, mr, nr, alpha, beta, c, lower, diag);
}
#else
// Device pass: one thread per call, A read in place.
template <class T>
CURVKIT_HD void micro_tile(index_t kc, Strided<const T> a, const T* panel, T alpha, T beta,
                           Strided<T> c, index_t mr, index_t nr, bool lower, index_t diag) {
  constexpr index_t NR = kGemmNr<T>;
  T acc[kGemmMr * NR];
  for (index_t i = 0; i < kGemmMr * NR; ++i) acc[i] = T(0);
  for (index_t i = 0; i < mr; ++i)
    for (index_t q = 0; q < kc; ++q) {
      const T ai = a.p[i * a.rs + q * a.cs];
      for (index_t j = 0; j < NR; ++j) acc[i * NR + j] += ai * panel[q * NR + j];
    }
  store_tile(acc, mr, nr, alpha, beta, c, lower, diag);
}
#endif

}  // namespace gemm_detail

/// C(0:m, 0:n) = alpha op(A)(0:m, 0:k) op(B)(0:k, 0:n) + beta C, with beta == 0 not reading C.
/// C is strided too; full tiles of a C with unit column stride are stored from registers.
/// `pack` holds gemm_pack_elements<T>(n, k) elements.  With `lower`, only elements with
/// i + diag >= j are written (and tiles entirely above that line are skipped).
template <class T>
CURVKIT_HD void gemm_block(index_t m, index_t n, index_t k, T alpha, Strided<const T> a,
                           Strided<const T> b, T beta, Strided<T> c, T* pack, bool lower = false,
                           index_t diag = 0) {
  constexpr index_t MR = kGemmMr, NR = kGemmNr<T>;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // C = beta C
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j)
        if (!lower || i + diag >= j) c(i, j) = beta == T(0) ? T(0) : beta * c(i, j);
    return;
  }
#if CURVKIT_GEMM_VECTOR
  alignas(64) T apack[MR * kGemmKc];  // one row tile of A, packed per depth block
#endif
  for (index_t jc = 0; jc < n; jc += kGemmNc<T>) {
    const index_t nc = n - jc < kGemmNc<T> ? n - jc : kGemmNc<T>;
    // Rows above the first one that reaches column jc are not written at all when `lower`.
    const index_t i_first = lower && jc - diag > 0 ? (jc - diag) / MR * MR : 0;
    if (i_first >= m) break;
    for (index_t pc = 0; pc < k; pc += kGemmKc) {
      const index_t kc = k - pc < kGemmKc ? k - pc : kGemmKc;
      const T beta_pc = pc == 0 ? beta : T(1);
      gemm_detail::pack_b(kc, nc, b.at(pc, jc), pack);
      for (index_t i0 = i_first; i0 < m; i0 += MR) {
        const index_t mr = m - i0 < MR ? m - i0 : MR;
#if CURVKIT_GEMM_VECTOR
        gemm_detail::pack_a(kc, mr, a.at(i0, pc), apack);
#endif
        for (index_t j0 = 0; j0 < nc; j0 += NR) {
          const index_t col = jc + j0;
          if (lower && i0 + mr - 1 + diag < col) break;  // this tile and the rest: above
          const index_t nr = nc - j0 < NR ? nc - j0 : NR;
#if CURVKIT_GEMM_VECTOR
          gemm_detail::micro_tile(kc, apack, pack + j0 * kc, alpha, beta_pc, c.at(i0, col), mr, nr,
                                  lower, i0 + diag - col);
#else
          gemm_detail::micro_tile(kc, a.at(i0, pc), pack + j0 * kc, alpha, beta_pc, c.at(i0, col),
                                  mr, nr, lower, i0 + diag - col);
#endif
        }
      }
    }
  }
}

/// The mirror of a SYRK: c(j, i) = c(i, j) for the lower-triangle elements (j < i) of rows
/// [i0, i1) and columns [j0, j1).  In 32 x 32 tiles, so that the transposed writes land in a few
/// cache lines at a time (a row-by-row mirror wrote down whole columns: 16% of a 1024^2 SYRK).
template <class T>
CURVKIT_HD void mirror_lower_block(Strided<T> c, index_t i0, index_t i1, index_t j0, index_t j1) {
  constexpr index_t kTile = 32;
  for (index_t jt = j0; jt < j1; jt += kTile)
    for (index_t it = (i0 > jt ? i0 : jt); it < i1; it += kTile) {
      const index_t ie = it + kTile < i1 ? it + kTile : i1;
      for (index_t i = it; i < ie; ++i) {
        const index_t je = jt + kTile < j1 ? jt + kTile : j1;
        for (index_t j = jt; j < (je < i ? je : i); ++j) c(j, i) = c(i, j);
      }
    }
}

/// Largest n and k gemm_small takes (m is unbounded).
inline constexpr index_t kGemmSmall = 32;

namespace gemm_detail {
// C rows = alpha A rows B (+ beta C) with B read as k rows of PW columns (row stride ldb; n <= PW
// of them are real, the rest zero), rows in groups of R so that R * PW accumulators stay in
// registers (host: vectorised by the fixed-width inner loops).
template <class T, int PW, int R>
CURVKIT_HD void small_rows(index_t m, index_t n, index_t k, T alpha, Strided<const T> a,
                           const T* bp, index_t ldb, T beta, Strided<T> c, bool lower,
                           index_t diag) {
  for (index_t i0 = 0; i0 < m; i0 += R) {
    T acc[R][PW];
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < PW; ++j) acc[r][j] = T(0);
    const index_t rows = m - i0 < R ? m - i0 : R;
    for (index_t q = 0; q < k; ++q) {
      const T* bq = bp + q * ldb;
      for (int r = 0; r < R; ++r) {
        const T ar = a.p[(i0 + (r < rows ? r : 0)) * a.rs + q * a.cs];
        CURVKIT_SIMD
        for (int j = 0; j < PW; ++j) acc[r][j] += ar * bq[j];
      }
    }
    if (rows == R && n == PW && c.cs == 1 && (!lower || i0 + diag >= n - 1)) {  // whole rows
      for (int r = 0; r < R; ++r) {
        T* cr = c.p + (i0 + r) * c.rs;
        if (beta == T(0)) {
          CURVKIT_SIMD
          for (int j = 0; j < PW; ++j) cr[j] = alpha * acc[r][j];
        } else {
          CURVKIT_SIMD
          for (int j = 0; j < PW; ++j) cr[j] = alpha * acc[r][j] + beta * cr[j];
        }
      }
      continue;
    }
    for (index_t r = 0; r < rows; ++r) {
      T* cr = c.p + (i0 + r) * c.rs;
      const index_t last = i0 + r + diag + 1;  // lower: columns below `last` only
      const index_t nj = lower && last < n ? (last > 0 ? last : 0) : n;
      if (beta == T(0)) {
        for (index_t j = 0; j < nj; ++j) cr[j * c.cs] = alpha * acc[r][j];
      } else {
        for (index_t j = 0; j < nj; ++j) cr[j * c.cs] = alpha * acc[r][j] + beta * cr[j * c.cs];
      }
    }
  }
}

template <class T, int PW, int R>
CURVKIT_HD void small_product(index_t m, index_t n, index_t k, T alpha, Strided<const T> a,
                              Strided<const T> b, T beta, Strided<T> c, T* pack, bool lower,
                              index_t diag) {
  if (n == PW && b.cs == 1) {  // B rows are already PW contiguous values: read in place
    small_rows<T, PW, R>(m, n, k, alpha, a, b.p, b.rs, beta, c, lower, diag);
    return;
  }
  for (index_t q = 0; q < k; ++q)
    for (index_t j = 0; j < PW; ++j) pack[q * PW + j] = j < n ? b(q, j) : T(0);
  small_rows<T, PW, R>(m, n, k, alpha, a, pack, PW, beta, c, lower, diag);
}
}  // namespace gemm_detail

/// gemm_block for n, k <= kGemmSmall and any m (the batched tiny products of K-FAC/TNT factors,
/// thin mode products): B is read in place when its rows are exactly 8, 16 or 32 contiguous
/// values, else copied once into `pack` (kGemmSmall^2 elements) padded to 8, 16 or 32 columns;
/// then each group of rows accumulates in registers.  `lower` and `diag` as in gemm_block (the
/// full rows are computed, the masked part is not written).
template <class T>
CURVKIT_HD void gemm_small(index_t m, index_t n, index_t k, T alpha, Strided<const T> a,
                           Strided<const T> b, T beta, Strided<T> c, T* pack, bool lower = false,
                           index_t diag = 0) {
  if (m <= 0 || n <= 0) return;
  if (n <= 8)
    gemm_detail::small_product<T, 8, 8>(m, n, k, alpha, a, b, beta, c, pack, lower, diag);
  else if (n <= 16)
    gemm_detail::small_product<T, 16, 8>(m, n, k, alpha, a, b, beta, c, pack, lower, diag);
  else
    gemm_detail::small_product<T, 32, 4>(m, n, k, alpha, a, b, beta, c, pack, lower, diag);
}

/// C = alpha A B + beta C for compile-time M x K times K x N (row-major, leading dimensions
/// lda, ldb, ldc); beta == 0 does not read C.
template <int M, int N, int K, class T>
CURVKIT_HD_INLINE void gemm_fixed(T alpha, const T* a, index_t lda, const T* b, index_t ldb, T beta,
                                  T* c, index_t ldc) {
  for (int i = 0; i < M; ++i) {
    T row[N];
    for (int j = 0; j < N; ++j) row[j] = T(0);
    for (int q = 0; q < K; ++q) {
      const T aiq = a[i * lda + q];
      for (int j = 0; j < N; ++j) row[j] += aiq * b[q * ldb + j];
    }
    for (int j = 0; j < N; ++j)
      c[i * ldc + j] = beta == T(0) ? alpha * row[j] : alpha * row[j] + beta * c[i * ldc + j];
  }
}

}  // namespace curvkit::device
