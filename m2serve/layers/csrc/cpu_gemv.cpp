// Few-row matmuls for CPU decode: y[r, j] = dot(x[r, :], w[j, :]) with fp32 x and accumulation and weights in
// fp32 or bf16 (widened to fp32 in registers). Built at first use by m2serve/layers/cpu_kernels.py.
//
// Why: a decode step multiplies a handful of rows by every weight matrix, so it is bound by reading the weights
// once. MKL's sgemm reaches about half the memory bandwidth at 1-4 rows and costs a dispatch per expert, and on
// CPUs without AVX-512-BF16 / AMX a bf16 matmul is slower than fp32. Here each weight row is read from memory
// once for all rows of its group, and bf16 weights halve the bytes while the arithmetic stays fp32.
//
// The per-element result does not depend on how many rows are in the call (each dot runs the same code over the
// same K), so outputs are batch invariant.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define M2_AVX2 1
#endif

namespace {

constexpr int kRows = 4;        // rows of x sharing one pass over a weight row
constexpr int64_t kBlock = 16;  // weight rows per parallel work item

#ifdef M2_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const c10::BFloat16* p) {
  // bf16 -> fp32: the 16 bits become the high half of the fp32 word.
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

// out[r * ldo] = dot(x[r * ldx, :K], w[:K]) for r < NR (NR a constant, so the accumulators stay in registers)
template <int NR, typename W>
inline void rows_dot(const float* x, int64_t ldx, const W* w, int64_t K, float* out, int64_t ldo) {
  int64_t k = 0;
  float sum[NR];
  for (int r = 0; r < NR; ++r) sum[r] = 0.f;
#ifdef M2_AVX2
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = _mm256_setzero_ps();
  for (; k + 8 <= K; k += 8) {
    __m256 wv = load8(w + k);
    for (int r = 0; r < NR; ++r) acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + k), wv, acc[r]);
  }
  for (int r = 0; r < NR; ++r) sum[r] = hsum(acc[r]);
#endif
  for (; k < K; ++k) {
    float wk = static_cast<float>(w[k]);
    for (int r = 0; r < NR; ++r) sum[r] += x[r * ldx + k] * wk;
  }
  for (int r = 0; r < NR; ++r) out[r * ldo] = sum[r];
}

template <typename W>
inline void rows_dot_n(const float* x, int64_t ldx, int n, const W* w, int64_t K, float* out, int64_t ldo) {
  switch (n) {
    case 1: rows_dot<1>(x, ldx, w, K, out, ldo); break;
    case 2: rows_dot<2>(x, ldx, w, K, out, ldo); break;
    case 3: rows_dot<3>(x, ldx, w, K, out, ldo); break;
    default: rows_dot<4>(x, ldx, w, K, out, ldo); break;
  }
}

// y[0:n, j0:j1] = x[0:n] @ w[j0:j1]^T, x [n, K] (row stride ldx), w [M, K] contiguous, y row stride ldy
template <typename W>
void gemv_block(const float* x, int64_t ldx, int64_t n, const W* w, int64_t K, int64_t j0, int64_t j1, float* y,
                int64_t ldy) {
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t r = 0; r < n; r += kRows)
      rows_dot_n(x + r * ldx, ldx, static_cast<int>(std::min<int64_t>(kRows, n - r)), w + j * K, K, y + r * ldy + j,
                 ldy);
}

template <typename W>
void linear_impl(const at::Tensor& x, const at::Tensor& w, at::Tensor& y) {
  const int64_t n = x.size(0), K = x.size(1), M = w.size(0);
  const float* xp = x.data_ptr<float>();
  const W* wp = reinterpret_cast<const W*>(w.data_ptr());
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, (M + kBlock - 1) / kBlock, 1, [&](int64_t b0, int64_t b1) {
    gemv_block(xp, K, n, wp, K, b0 * kBlock, std::min(M, b1 * kBlock), yp, M);
  });
}

inline float silu(float g) { return g / (1.f + std::exp(-g)); }

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

// SwiGLU experts over rows sorted by expert: rows [off[e], off[e] + counts[e]) belong to expert e. Rows past the
// last group (pairs routed to another expert-parallel rank) get zeros.
// w13 [E, 2I, K] (gate rows then up rows), w2 [E, K, I]. Every expert's slice is computed with one pass over its
// weights.
template <typename W>
void experts_impl(const at::Tensor& x, const at::Tensor& counts, const at::Tensor& w13, const at::Tensor& w2,
                  at::Tensor& y) {
  const int64_t E = w13.size(0), I2 = w13.size(1), K = w13.size(2), I = I2 / 2, N = x.size(0);
  auto cnt = counts.accessor<int64_t, 1>();
  std::vector<int64_t> off(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) off[e + 1] = off[e] + cnt[e];
  TORCH_CHECK(off[E] <= N, "counts sum to ", off[E], " but x has ", N, " rows");
  if (off[E] < N) y.narrow(0, off[E], N - off[E]).zero_();
  at::Tensor gu = at::empty({off[E], I2}, x.options());   // rows of local experts only
  float* gup = gu.data_ptr<float>();
  const W* w13p = reinterpret_cast<const W*>(w13.data_ptr());
  const W* w2p = reinterpret_cast<const W*>(w2.data_ptr());
  experts_gemv(x.data_ptr<float>(), K, w13p, I2, K, off, gup, I2);        // [gate | up] = x @ w13[e]^T
  // act = silu(gate) * up, written over the gate half: [rows, I] with row stride 2I
  at::parallel_for(0, off[E], 1, [&](int64_t a, int64_t b) {
    for (int64_t r = a; r < b; ++r) {
      float* row = gup + r * I2;
      for (int64_t i = 0; i < I; ++i) row[i] = silu(row[i]) * row[I + i];
    }
  });
  experts_gemv(gup, I2, w2p, K, I, off, y.data_ptr<float>(), K);          // y = act @ w2[e]^T
}

// Paged decode attention for one (request, KV head): the group's g query heads against L cached tokens, read
// in place from their blocks (no gather). Two passes over the cache: scores (K), then the weighted sum (V).
template <typename C>
void decode_one(const float* q, int64_t g, int64_t d, const C* k_cache, const C* v_cache, const int64_t* table,
                int64_t L, int64_t bs, int64_t row_stride, int64_t block_stride, float scale, float* scores,
                float* acc, float* out) {
  // q [g, d] contiguous; scores [g, L]; acc [g, d]; out [g, d]
  for (int64_t t = 0; t < L; ++t) {
    const C* key = k_cache + table[t / bs] * block_stride + (t % bs) * row_stride;
    for (int64_t j = 0; j < g; j += kRows)
      rows_dot_n(q + j * d, d, static_cast<int>(std::min<int64_t>(kRows, g - j)), key, d, scores + j * L + t, L);
  }
  for (int64_t j = 0; j < g; ++j) {
    float* s = scores + j * L;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t t = 0; t < L; ++t) mx = std::max(mx, s[t] * scale);
    float sum = 0.f;
    for (int64_t t = 0; t < L; ++t) sum += (s[t] = std::exp(s[t] * scale - mx));
    const float inv = 1.f / sum;
    for (int64_t t = 0; t < L; ++t) s[t] *= inv;
  }
  std::fill(acc, acc + g * d, 0.f);
  for (int64_t t = 0; t < L; ++t) {
    const C* val = v_cache + table[t / bs] * block_stride + (t % bs) * row_stride;
    for (int64_t j = 0; j < g; ++j) {
      const float p = scores[j * L + t];
      float* a = acc + j * d;
      int64_t i = 0;
#ifdef M2_AVX2
      const __m256 pv = _mm256_set1_ps(p);
      for (; i + 8 <= d; i += 8) _mm256_storeu_ps(a + i, _mm256_fmadd_ps(pv, load8(val + i), _mm256_loadu_ps(a + i)));
#endif
      for (; i < d; ++i) a[i] += p * static_cast<float>(val[i]);
    }
  }
  std::copy(acc, acc + g * d, out);
}

void check_weight(const at::Tensor& w, int64_t dim) {
  TORCH_CHECK(w.dim() == dim && w.is_contiguous() && w.device().is_cpu(), "weight must be a contiguous CPU tensor of ",
              dim, " dims");
  TORCH_CHECK(w.scalar_type() == at::kFloat || w.scalar_type() == at::kBFloat16, "weight dtype must be fp32 or bf16");
}

}  // namespace

// x [n, K] fp32, w [M, K] fp32|bf16 -> [n, M] fp32
at::Tensor linear(const at::Tensor& x_in, const at::Tensor& w) {
  check_weight(w, 2);
  at::Tensor x = x_in.to(at::kFloat).contiguous();
  TORCH_CHECK(x.dim() == 2 && x.size(1) == w.size(1), "x [n, K] must match w [M, K]");
  at::Tensor y = at::empty({x.size(0), w.size(0)}, x.options());
  if (w.scalar_type() == at::kFloat) linear_impl<float>(x, w, y);
  else linear_impl<c10::BFloat16>(x, w, y);
  return y;
}

// x [N, K] rows sorted by expert, counts [E] int64, w13 [E, 2I, K], w2 [E, K, I] -> [N, K] fp32
at::Tensor experts(const at::Tensor& x_in, const at::Tensor& counts, const at::Tensor& w13, const at::Tensor& w2) {
  check_weight(w13, 3);
  check_weight(w2, 3);
  TORCH_CHECK(w13.scalar_type() == w2.scalar_type(), "w13 and w2 must share a dtype");
  at::Tensor x = x_in.to(at::kFloat).contiguous();
  at::Tensor c = counts.to(at::kLong).contiguous();
  TORCH_CHECK(c.dim() == 1 && c.size(0) == w13.size(0), "counts must have one entry per expert");
  at::Tensor y = at::empty({x.size(0), w13.size(2)}, x.options());
  if (w13.scalar_type() == at::kFloat) experts_impl<float>(x, c, w13, w2, y);
  else experts_impl<c10::BFloat16>(x, c, w13, w2, y);
  return y;
}

// q [B, nh, d] fp32; k_cache, v_cache [NB, bs, nkv, d] fp32|bf16 (contiguous rows); block_tables [B, >=blocks]
// int64; seq_lens [B] int64 -> [B, nh, d] fp32. Query head i belongs to KV head i / (nh / nkv).
at::Tensor decode_attention(const at::Tensor& q_in, const at::Tensor& k_cache, const at::Tensor& v_cache,
                            const at::Tensor& block_tables_in, const at::Tensor& seq_lens_in, double scale) {
  TORCH_CHECK(k_cache.dim() == 4 && k_cache.sizes() == v_cache.sizes() && k_cache.strides() == v_cache.strides(),
              "k_cache and v_cache must be [NB, bs, nkv, d] views of one layout");
  TORCH_CHECK(k_cache.stride(3) == 1 && k_cache.stride(2) == k_cache.size(3), "cache rows must be contiguous");
  TORCH_CHECK(k_cache.scalar_type() == v_cache.scalar_type() &&
              (k_cache.scalar_type() == at::kFloat || k_cache.scalar_type() == at::kBFloat16),
              "cache dtype must be fp32 or bf16");
  at::Tensor q = q_in.to(at::kFloat).contiguous();
  at::Tensor tables = block_tables_in.to(at::kLong).contiguous();
  at::Tensor lens = seq_lens_in.to(at::kLong).contiguous();
  const int64_t B = q.size(0), nh = q.size(1), d = q.size(2), bs = k_cache.size(1), nkv = k_cache.size(2);
  TORCH_CHECK(d == k_cache.size(3) && nh % nkv == 0, "q [B, nh, d] does not match the cache");
  TORCH_CHECK(tables.size(0) >= B && lens.size(0) >= B, "one block-table row and seq_len per request");
  const int64_t g = nh / nkv, row_stride = k_cache.stride(1), block_stride = k_cache.stride(0);
  const int64_t* lp = lens.data_ptr<int64_t>();
  int64_t max_len = 0;
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(lp[b] > 0 && (lp[b] + bs - 1) / bs <= tables.size(1), "seq_len ", lp[b], " out of range");
    max_len = std::max(max_len, lp[b]);
  }
  at::Tensor out = at::empty({B, nh, d}, q.options());
  const float* qp = q.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t* tp = tables.data_ptr<int64_t>();
  const int64_t tstride = tables.size(1);
  at::parallel_for(0, B * nkv, 1, [&](int64_t a, int64_t b_end) {
    std::vector<float> scores(g * max_len), acc(g * d);
    for (int64_t item = a; item < b_end; ++item) {
      const int64_t b = item / nkv, h = item % nkv;
      const int64_t qoff = (b * nh + h * g) * d;
      if (k_cache.scalar_type() == at::kFloat)
        decode_one(qp + qoff, g, d, k_cache.data_ptr<float>() + h * d, v_cache.data_ptr<float>() + h * d,
                   tp + b * tstride, lp[b], bs, row_stride, block_stride, static_cast<float>(scale), scores.data(),
                   acc.data(), op + qoff);
      else
        decode_one(qp + qoff, g, d, k_cache.data_ptr<at::BFloat16>() + h * d,
                   v_cache.data_ptr<at::BFloat16>() + h * d, tp + b * tstride, lp[b], bs, row_stride,
                   block_stride, static_cast<float>(scale), scores.data(), acc.data(), op + qoff);
    }
  });
  return out;
}

bool has_avx2() {
#ifdef M2_AVX2
  return true;
#else
  return false;
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("linear", &linear, "few-row x @ w^T, fp32 accumulation, fp32 or bf16 weights");
  m.def("experts", &experts, "SwiGLU experts over rows sorted by expert");
  m.def("decode_attention", &decode_attention, "paged decode attention read in place (GQA)");
  m.def("has_avx2", &has_avx2);
}
