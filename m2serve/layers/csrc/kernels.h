// Building blocks of m2serve's CPU decode kernels, shared by the single ops (cpu_gemv.cpp) and the fused decoder
// layer (decode_layer.cpp). Activations and accumulation are fp32; weights and KV caches are fp32 or bf16
// (widened to fp32 in registers).
//
// Why: a decode step multiplies a handful of rows by every weight matrix, so it is bound by reading the weights
// once. MKL's sgemm reaches about half the memory bandwidth at 1-4 rows and costs a dispatch per expert, and on
// CPUs without AVX-512-BF16 / AMX a bf16 matmul is slower than fp32. Here each weight row is read from memory
// once for all rows of its group.
//
// The per-element result does not depend on how many rows are in the call (each dot runs the same code over the
// same K), so outputs are batch invariant.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define M2_AVX2 1
#endif

namespace m2 {

constexpr int kRows = 4;        // rows of x sharing one pass over a weight row
constexpr int64_t kBlock = 16;  // weight rows per parallel work item
constexpr int64_t kPrefetchTokens = 16;  // decode attention: how far ahead the cache rows are prefetched

#ifdef M2_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const c10::BFloat16* p) {
  // bf16 -> fp32: the 16 bits become the high half of the fp32 word.
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
// dst[0:n] = src[0:n] widened to fp32 (exact), 8 at a time on both threads.
inline void widen_bf16(const c10::BFloat16* src, float* dst, int64_t n) {
  at::parallel_for(0, n, 1 << 14, [&](int64_t a, int64_t b) {
    int64_t i = a;
#ifdef M2_AVX2
    for (; i + 8 <= b; i += 8) _mm256_storeu_ps(dst + i, load8(src + i));
#endif
    for (; i < b; ++i) dst[i] = static_cast<float>(src[i]);
  });
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

// out[r * ldo + i] = dot(x[r * ldx, :K], w[i * K, :K]) for r < NR, i < NW: a register block of NR x rows by NW
// weight rows, with two accumulator sets (k and k+8 alternate) so each output has two short FMA chains. Each x
// load serves NW weight rows and each weight load NR x rows. The chains of an output element are the same whatever
// NR and NW are (bitwise: the same two chains, the same final adds), so a row's result does not depend on the rows
// beside it nor on which block shape computed it. Each weight row is prefetched PF bytes ahead (PF 0: no hint).
template <int NR, int NW, int PF, typename W>
inline void block_dot(const float* x, int64_t ldx, const W* w, int64_t K, float* out, int64_t ldo) {
  float sum[NR][NW];
  for (int r = 0; r < NR; ++r)
    for (int i = 0; i < NW; ++i) sum[r][i] = 0.f;
  int64_t k = 0;
#ifdef M2_AVX2
  __m256 acc0[NR][NW], acc1[NR][NW];
  for (int r = 0; r < NR; ++r)
    for (int i = 0; i < NW; ++i) acc0[r][i] = acc1[r][i] = _mm256_setzero_ps();
  for (; k + 16 <= K; k += 16) {
    if (PF > 0)
      for (int i = 0; i < NW; ++i) _mm_prefetch(reinterpret_cast<const char*>(w + i * K + k) + PF, _MM_HINT_T0);
    __m256 x0[NR], x1[NR];
    for (int r = 0; r < NR; ++r) {
      x0[r] = _mm256_loadu_ps(x + r * ldx + k);
      x1[r] = _mm256_loadu_ps(x + r * ldx + k + 8);
    }
    for (int i = 0; i < NW; ++i) {
      const __m256 w0 = load8(w + i * K + k), w1 = load8(w + i * K + k + 8);
      for (int r = 0; r < NR; ++r) {
        acc0[r][i] = _mm256_fmadd_ps(x0[r], w0, acc0[r][i]);
        acc1[r][i] = _mm256_fmadd_ps(x1[r], w1, acc1[r][i]);
      }
    }
  }
  if (k + 8 <= K) {
    for (int i = 0; i < NW; ++i) {
      const __m256 w0 = load8(w + i * K + k);
      for (int r = 0; r < NR; ++r) acc0[r][i] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + k), w0, acc0[r][i]);
    }
    k += 8;
  }
  for (int r = 0; r < NR; ++r)
    for (int i = 0; i < NW; ++i) sum[r][i] = hsum(_mm256_add_ps(acc0[r][i], acc1[r][i]));
#endif
  for (; k < K; ++k)
    for (int i = 0; i < NW; ++i) {
      const float wk = static_cast<float>(w[i * K + k]);
      for (int r = 0; r < NR; ++r) sum[r][i] += x[r * ldx + k] * wk;
    }
  for (int r = 0; r < NR; ++r)
    for (int i = 0; i < NW; ++i) out[r * ldo + i] = sum[r][i];
}

// out[r * ldo] = dot(x[r * ldx, :K], w[:K]) for r < n <= 4: one weight row against all rows at once
template <int PF, typename W>
inline void rows_dot_n(const float* x, int64_t ldx, int n, const W* w, int64_t K, float* out, int64_t ldo) {
  switch (n) {
    case 1: block_dot<1, 1, PF>(x, ldx, w, K, out, ldo); break;
    case 2: block_dot<2, 1, PF>(x, ldx, w, K, out, ldo); break;
    case 3: block_dot<3, 1, PF>(x, ldx, w, K, out, ldo); break;
    default: block_dot<4, 1, PF>(x, ldx, w, K, out, ldo); break;
  }
}

// Two block shapes, chosen by the row count (their results are bitwise equal):
//  * up to 4 rows (decode experts, small batches; bound by streaming weights from DRAM): one weight row at a time
//    with all rows, prefetching 4 KB ahead. Measured streaming 8 layers of bf16 experts (2 rows each, 2 threads):
//    19-20 GB/s, against 15-17 for 2-row weight blocks and 10-13 without the hint (torch.sum: 23-25 GB/s).
//  * more rows (a 16-row linear; bound by the FMA and load ports): 2 x rows by 2 weight rows, each load serving
//    two FMAs, prefetching 2 KB ahead: a 16-row lm_head 1.3-1.5 ms against 2.1 one weight row at a time.
// y[0:n, j0:j1] = x[0:n] @ w[j0:j1]^T, x [n, K] (row stride ldx), w [M, K] contiguous, y row stride ldy
template <typename W>
void gemv_block(const float* x, int64_t ldx, int64_t n, const W* w, int64_t K, int64_t j0, int64_t j1, float* y,
                int64_t ldy) {
  if (n <= 4) {
    if (n > 0)
      for (int64_t j = j0; j < j1; ++j) rows_dot_n<4096>(x, ldx, static_cast<int>(n), w + j * K, K, y + j, ldy);
    return;
  }
  int64_t j = j0;
  for (; j + 2 <= j1; j += 2) {
    int64_t r = 0;
    for (; r + 2 <= n; r += 2) block_dot<2, 2, 2048>(x + r * ldx, ldx, w + j * K, K, y + r * ldy + j, ldy);
    if (r < n) block_dot<1, 2, 2048>(x + r * ldx, ldx, w + j * K, K, y + r * ldy + j, ldy);
  }
  if (j < j1) {
    int64_t r = 0;
    for (; r + 2 <= n; r += 2) block_dot<2, 1, 2048>(x + r * ldx, ldx, w + j * K, K, y + r * ldy + j, ldy);
    if (r < n) block_dot<1, 1, 2048>(x + r * ldx, ldx, w + j * K, K, y + r * ldy + j, ldy);
  }
}

// y [n, M] (row stride ldy) = x [n, K] @ w [M, K]^T, blocks of kBlock weight rows over the threads
template <typename W>
void gemv(const float* x, int64_t n, const W* w, int64_t M, int64_t K, float* y, int64_t ldy) {
  at::parallel_for(0, (M + kBlock - 1) / kBlock, 1, [&](int64_t b0, int64_t b1) {
    gemv_block(x, K, n, w, K, b0 * kBlock, std::min(M, b1 * kBlock), y, ldy);
  });
}

#ifdef M2_AVX2
// e^x for 8 lanes: x = n ln2 + r, e^r by a degree-6 polynomial (Cephes expf's coefficients), 2^n in the
// exponent bits; about 2 ulp over the clamped range. The scalar std::exp in the softmax and SwiGLU loops was a
// tenth of the decode step.
inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

inline float silu(float g) { return g / (1.f + std::exp(-g)); }

// row[i] = silu(row[i]) * row[I + i] for i < I (SwiGLU over a [gate | up] row, written over the gate half)
inline void swiglu_row(float* row, int64_t I) {
  int64_t i = 0;
#ifdef M2_AVX2
  const __m256 one = _mm256_set1_ps(1.f);
  for (; i + 8 <= I; i += 8) {
    const __m256 g = _mm256_loadu_ps(row + i);
    const __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_mul_ps(g, sig), _mm256_loadu_ps(row + I + i)));
  }
#endif
  for (; i < I; ++i) row[i] = silu(row[i]) * row[I + i];
}

// s[t] = exp(s[t] * scale - max) / sum over t < L: one query row's softmax, in place
inline void softmax_row(float* s, int64_t L, float scale) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < L; ++t) mx = std::max(mx, s[t] * scale);
  float sum = 0.f;
  int64_t t = 0;
#ifdef M2_AVX2
  const __m256 sc = _mm256_set1_ps(scale), m = _mm256_set1_ps(mx);
  __m256 acc = _mm256_setzero_ps();
  for (; t + 8 <= L; t += 8) {
    const __m256 e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(s + t), sc, m));
    _mm256_storeu_ps(s + t, e);
    acc = _mm256_add_ps(acc, e);
  }
  sum = hsum(acc);
#endif
  for (; t < L; ++t) sum += (s[t] = std::exp(s[t] * scale - mx));
  const float inv = 1.f / sum;
  for (int64_t u = 0; u < L; ++u) s[u] *= inv;
}

// Rows [off[e], off[e+1]) of y = the same rows of x @ w[e]^T for every expert e, w [E, M, K] contiguous. The work
// items are (expert, block of kBlock weight rows), so both threads stream weights the whole time.
template <typename W>
void experts_gemv(const float* x, int64_t ldx, const W* w, int64_t M, int64_t K, const std::vector<int64_t>& off,
                  float* y, int64_t ldy) {
  std::vector<std::pair<int64_t, int64_t>> items;  // (expert, first weight row)
  for (size_t e = 0; e + 1 < off.size(); ++e)
    if (off[e + 1] > off[e])
      for (int64_t j = 0; j < M; j += kBlock) items.emplace_back(static_cast<int64_t>(e), j);
  at::parallel_for(0, static_cast<int64_t>(items.size()), 1, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      auto [e, j] = items[i];
      gemv_block(x + off[e] * ldx, ldx, off[e + 1] - off[e], w + e * M * K, K, j, std::min(M, j + kBlock),
                 y + off[e] * ldy, ldy);
    }
  });
}

// SwiGLU experts over rows of x [off.back(), K] sorted by expert: rows [off[e], off[e+1]) belong to expert e.
// w13 [E, 2I, K] (gate rows then up rows), w2 [E, K, I]; y [off.back(), K]. Each expert's slice is computed with
// one pass over its weights; gu is scratch [off.back(), 2I].
// With at least two routed experts per thread, each thread takes whole experts (w13, SwiGLU, w2 back to back, a
// contiguous run of the stacked weights, no barrier between the passes); with fewer, both passes split every
// expert's rows over the threads. Both orders compute every output with the same code, so they agree bitwise.
template <typename W>
void swiglu_experts(const float* x, const std::vector<int64_t>& off, const W* w13, const W* w2, int64_t I, int64_t K,
                    float* gu, float* y) {
  const int64_t I2 = 2 * I, N = off.back();
  std::vector<int64_t> routed;
  for (size_t e = 0; e + 1 < off.size(); ++e)
    if (off[e + 1] > off[e]) routed.push_back(static_cast<int64_t>(e));
  const int64_t n_routed = static_cast<int64_t>(routed.size());
  if (n_routed >= 2 * at::get_num_threads()) {
    at::parallel_for(0, n_routed, 1, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) {
        const int64_t e = routed[i], r0 = off[e], n = off[e + 1] - off[e];
        gemv_block(x + r0 * K, K, n, w13 + e * I2 * K, K, 0, I2, gu + r0 * I2, I2);
        for (int64_t r = r0; r < r0 + n; ++r) swiglu_row(gu + r * I2, I);
        gemv_block(gu + r0 * I2, I2, n, w2 + e * K * I, I, 0, K, y + r0 * K, K);
      }
    });
    return;
  }
  experts_gemv(x, K, w13, I2, K, off, gu, I2);        // [gate | up] = x @ w13[e]^T
  // act = silu(gate) * up, written over the gate half: [rows, I] with row stride 2I
  at::parallel_for(0, N, 1, [&](int64_t a, int64_t b) {
    for (int64_t r = a; r < b; ++r) swiglu_row(gu + r * I2, I);
  });
  experts_gemv(gu, I2, w2, K, I, off, y, K);          // y = act @ w2[e]^T
}

// A request's cache rows in token order: offset() is the current token's row (elements from the cache base),
// next() steps one token. Walking block by block this way avoids a division per token (t / bs, t % bs).
struct RowWalker {
  const int64_t* table;
  int64_t bs, block_stride, row_stride, blk = 0, in_blk = 0;
  int64_t offset() const { return table[blk] * block_stride + in_blk * row_stride; }
  void next() {
    if (++in_blk == bs) in_blk = 0, ++blk;
  }
};

#ifdef M2_AVX2
// Asks for every cache line of [p, p + bytes).
inline void prefetch_lines(const void* p, int64_t bytes) {
  for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(static_cast<const char*>(p) + b, _MM_HINT_T0);
}
#endif

// Paged decode attention for one (request, KV head): the group's g query heads against L cached tokens, read
// in place from their blocks (no gather). Two passes over the cache: scores (K), then the weighted sum (V).
// Blocks sit anywhere in the pool, so the hardware prefetcher loses the stream at every block edge: both passes
// prefetch the rows kPrefetchTokens ahead of the one they read.
template <typename C>
void decode_one(const float* q, int64_t g, int64_t d, const C* k_cache, const C* v_cache, const int64_t* table,
                int64_t L, int64_t bs, int64_t row_stride, int64_t block_stride, float scale, float* scores,
                float* out) {
  // q [g, d] contiguous; scores [g, L] scratch; out [g, d]
  auto row_of = [&](int64_t t) { return table[t / bs] * block_stride + (t % bs) * row_stride; };  // random access
  const RowWalker start{table, bs, block_stride, row_stride};
  int64_t t = 0;
#ifdef M2_AVX2
  // Scores of 8 tokens at a time (d a multiple of 8): one accumulator per token, reduced together by a tree of
  // horizontal adds instead of one full horizontal sum per (token, head).
  if (d % 8 == 0) {
    RowWalker row = start, ahead = start;                             // ahead: token `prefetched`
    int64_t prefetched = 0;
    for (; t + 8 <= L; t += 8) {
      const C* key[8];
      for (int u = 0; u < 8; ++u, row.next()) key[u] = k_cache + row.offset();
      for (; prefetched < std::min(L, t + 8 + kPrefetchTokens); ++prefetched, ahead.next())
        prefetch_lines(k_cache + ahead.offset(), d * static_cast<int64_t>(sizeof(C)));
      for (int64_t j = 0; j < g; ++j) {
        __m256 a[8];
        for (int u = 0; u < 8; ++u) a[u] = _mm256_setzero_ps();
        for (int64_t c = 0; c < d; c += 8) {
          const __m256 qc = _mm256_loadu_ps(q + j * d + c);
          for (int u = 0; u < 8; ++u) a[u] = _mm256_fmadd_ps(qc, load8(key[u] + c), a[u]);
        }
        const __m256 h0123 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
        const __m256 h4567 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
        const __m256 sums = _mm256_add_ps(_mm256_permute2f128_ps(h0123, h4567, 0x20),
                                          _mm256_permute2f128_ps(h0123, h4567, 0x31));
        _mm256_storeu_ps(scores + j * L + t, sums);                  // tokens t..t+7 of head j
      }
    }
  }
#endif
  for (; t < L; ++t) {
    const C* key = k_cache + row_of(t);
    for (int64_t j = 0; j < g; j += kRows)
      rows_dot_n<0>(q + j * d, d, static_cast<int>(std::min<int64_t>(kRows, g - j)), key, d, scores + j * L + t, L);
  }
  for (int64_t j = 0; j < g; ++j) softmax_row(scores + j * L, L, scale);
  // out[j] = sum_t p[j, t] * V[t]: two query heads and up to 32 dims at a time with the sums in registers, so each
  // V load serves both heads (the same FMA sequence over t per output as accumulating in memory).
  int64_t i0 = 0;
#ifdef M2_AVX2
  for (; i0 + 8 <= d;) {
    const int nv = static_cast<int>(std::min<int64_t>(4, (d - i0) / 8));
    for (int64_t j = 0; j < g; j += 2) {
      const bool two = j + 1 < g;
      const float* p0 = scores + j * L;
      const float* p1 = two ? scores + (j + 1) * L : p0;
      __m256 s0[4], s1[4];
      for (int v = 0; v < 4; ++v) s0[v] = s1[v] = _mm256_setzero_ps();
      RowWalker row = start, ahead = start;
      for (int64_t u = 0; u < std::min(L, kPrefetchTokens); ++u) ahead.next();
      for (int64_t u = 0; u < L; ++u, row.next()) {
        const C* val = v_cache + row.offset() + i0;
        if (u + kPrefetchTokens < L) {
          prefetch_lines(v_cache + ahead.offset() + i0, 8 * nv * static_cast<int64_t>(sizeof(C)));
          ahead.next();
        }
        const __m256 pv0 = _mm256_set1_ps(p0[u]), pv1 = _mm256_set1_ps(p1[u]);
        for (int v = 0; v < 4; ++v)
          if (v < nv) {
            const __m256 x = load8(val + 8 * v);
            s0[v] = _mm256_fmadd_ps(pv0, x, s0[v]);
            s1[v] = _mm256_fmadd_ps(pv1, x, s1[v]);
          }
      }
      for (int v = 0; v < nv; ++v) {
        _mm256_storeu_ps(out + j * d + i0 + 8 * v, s0[v]);
        if (two) _mm256_storeu_ps(out + (j + 1) * d + i0 + 8 * v, s1[v]);
      }
    }
    i0 += 8 * nv;
  }
#endif
  for (int64_t j = 0; j < g; ++j) {
    const float* p = scores + j * L;
    for (int64_t i = i0; i < d; ++i) {
      float sum = 0.f;
      for (int64_t u = 0; u < L; ++u) sum += p[u] * static_cast<float>(v_cache[row_of(u) + i]);
      out[j * d + i] = sum;
    }
  }
}

// Decode attention of B requests (one query row each) over a paged cache, parallel over (request, KV head).
// q, out [B, nh, d]; caches [NB, bs, nkv, d] with the given strides; tables [B, tstride]; lens [B].
template <typename C>
void decode_attention_all(const float* q, int64_t B, int64_t nh, int64_t nkv, int64_t d, const C* k_cache,
                          const C* v_cache, int64_t bs, int64_t row_stride, int64_t block_stride, const int64_t* tables,
                          int64_t tstride, const int64_t* lens, float scale, float* out) {
  const int64_t g = nh / nkv;
  int64_t max_len = 0;
  for (int64_t b = 0; b < B; ++b) max_len = std::max(max_len, lens[b]);
  at::parallel_for(0, B * nkv, 1, [&](int64_t a, int64_t b_end) {
    std::vector<float> scores(g * max_len);
    for (int64_t item = a; item < b_end; ++item) {
      const int64_t b = item / nkv, h = item % nkv;
      const int64_t qoff = (b * nh + h * g) * d;
      decode_one(q + qoff, g, d, k_cache + h * d, v_cache + h * d, tables + b * tstride, lens[b], bs, row_stride,
                 block_stride, scale, scores.data(), out + qoff);
    }
  });
}

inline void check_weight(const at::Tensor& w, int64_t dim) {
  TORCH_CHECK(w.dim() == dim && w.is_contiguous() && w.device().is_cpu(), "weight must be a contiguous CPU tensor of ",
              dim, " dims");
  TORCH_CHECK(w.scalar_type() == at::kFloat || w.scalar_type() == at::kBFloat16, "weight dtype must be fp32 or bf16");
}

// Checks a layer's paged cache view [NB, bs, nkv, d] (k or v) for the layouts the kernels read.
inline void check_cache(const at::Tensor& k_cache, const at::Tensor& v_cache) {
  TORCH_CHECK(k_cache.dim() == 4 && k_cache.sizes() == v_cache.sizes() && k_cache.strides() == v_cache.strides(),
              "k_cache and v_cache must be [NB, bs, nkv, d] views of one layout");
  TORCH_CHECK(k_cache.stride(3) == 1 && k_cache.stride(2) == k_cache.size(3), "cache rows must be contiguous");
  TORCH_CHECK(k_cache.scalar_type() == v_cache.scalar_type() &&
              (k_cache.scalar_type() == at::kFloat || k_cache.scalar_type() == at::kBFloat16),
              "cache dtype must be fp32 or bf16");
}

// Every request's context fits its block-table row; returns nothing, throws naming the bad length.
inline void check_lens(const int64_t* lens, int64_t B, int64_t bs, int64_t table_width) {
  for (int64_t b = 0; b < B; ++b)
    TORCH_CHECK(lens[b] > 0 && (lens[b] + bs - 1) / bs <= table_width, "seq_len ", lens[b], " out of range");
}

}  // namespace m2

// The fused decoder layer (decode_layer.cpp).
at::Tensor decode_layer(const at::Tensor& h, const std::vector<at::Tensor>& weights, const at::Tensor& cos,
                        const at::Tensor& sin, const at::Tensor& kv_cache, const at::Tensor& slots,
                        const at::Tensor& block_tables, const at::Tensor& seq_lens, int64_t num_heads,
                        int64_t rotary_dim, int64_t top_k, double eps, double scale,
                        const c10::optional<at::Tensor>& routed);
