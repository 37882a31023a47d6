// The single CPU decode ops and the module's Python bindings. Built at first use by m2serve/layers/cpu_kernels.py;
// the building blocks are in kernels.h, the fused decoder layer in decode_layer.cpp.

#include <torch/extension.h>

#include "kernels.h"

// x [n, K] fp32, w [M, K] fp32|bf16 -> [n, M] fp32
at::Tensor linear(const at::Tensor& x_in, const at::Tensor& w) {
  m2::check_weight(w, 2);
  at::Tensor x = x_in.to(at::kFloat).contiguous();
  TORCH_CHECK(x.dim() == 2 && x.size(1) == w.size(1), "x [n, K] must match w [M, K]");
  const int64_t n = x.size(0), K = x.size(1), M = w.size(0);
  at::Tensor y = at::empty({n, M}, x.options());
  if (w.scalar_type() == at::kFloat) m2::gemv(x.data_ptr<float>(), n, w.data_ptr<float>(), M, K, y.data_ptr<float>(), M);
  else m2::gemv(x.data_ptr<float>(), n, w.data_ptr<at::BFloat16>(), M, K, y.data_ptr<float>(), M);
  return y;
}

// What both expert passes start from: the checks, x as contiguous fp32, each expert's first row (off [E + 1]) and
// y [N, K] with the rows past the last group (pairs routed to another expert-parallel rank) zeroed.
struct ExpertCall {
  at::Tensor x, y;
  std::vector<int64_t> off;
  int64_t E, I, K, N;
  ExpertCall(const at::Tensor& x_in, const at::Tensor& counts, const at::Tensor& w13, const at::Tensor& w2) {
    m2::check_weight(w13, 3);
    m2::check_weight(w2, 3);
    TORCH_CHECK(w13.scalar_type() == w2.scalar_type(), "w13 and w2 must share a dtype");
    x = x_in.to(at::kFloat).contiguous();
    at::Tensor c = counts.to(at::kLong).contiguous();
    E = w13.size(0), I = w13.size(1) / 2, K = w13.size(2), N = x.size(0);
    TORCH_CHECK(c.dim() == 1 && c.size(0) == E, "counts must have one entry per expert");
    TORCH_CHECK(x.dim() == 2 && x.size(1) == K && w2.size(0) == E && w2.size(1) == K && w2.size(2) == I,
                "x [N, K], w13 [E, 2I, K], w2 [E, K, I]");
    off.assign(E + 1, 0);
    for (int64_t e = 0; e < E; ++e) off[e + 1] = off[e] + c.data_ptr<int64_t>()[e];
    TORCH_CHECK(off[E] <= N, "counts sum to ", off[E], " but x has ", N, " rows");
    y = at::empty({N, K}, x.options());
    if (off[E] < N) y.narrow(0, off[E], N - off[E]).zero_();
  }
};

// x [N, K] rows sorted by expert, counts [E] int64, w13 [E, 2I, K], w2 [E, K, I] -> [N, K] fp32
at::Tensor experts(const at::Tensor& x_in, const at::Tensor& counts, const at::Tensor& w13, const at::Tensor& w2) {
  ExpertCall call(x_in, counts, w13, w2);
  const at::Tensor& x = call.x;
  at::Tensor y = call.y;
  const std::vector<int64_t>& off = call.off;
  const int64_t E = call.E, I = call.I, K = call.K;
  at::Tensor gu = at::empty({off[E], 2 * I}, x.options());   // rows of local experts only
  if (w13.scalar_type() == at::kFloat)
    m2::swiglu_experts(x.data_ptr<float>(), off, w13.data_ptr<float>(), w2.data_ptr<float>(), I, K,
                       gu.data_ptr<float>(), y.data_ptr<float>());
  else
    m2::swiglu_experts(x.data_ptr<float>(), off, w13.data_ptr<at::BFloat16>(), w2.data_ptr<at::BFloat16>(), I, K,
                       gu.data_ptr<float>(), y.data_ptr<float>());
  return y;
}

// The prefill-sized expert pass (more rows than the few-row kernels serve): x [N, K] rows sorted by expert, counts
// [E], w13 [E, 2I, K], w2 [E, K, I] fp32|bf16 -> [N, K] fp32. Per routed expert: [gate | up] = MKL sgemm (at::mm),
// SwiGLU in place on both threads, y = MKL sgemm. bf16 weights are widened one expert at a time into a reused fp32
// scratch (2 x 2 MB at M2-tiny's sizes, still in cache when the sgemm reads it) rather than a whole layer at once
// (a 50 MB write and re-read from DRAM per layer), and the SwiGLU is one pass instead of silu, mul and a copy.
at::Tensor experts_mm(const at::Tensor& x_in, const at::Tensor& counts, const at::Tensor& w13, const at::Tensor& w2) {
  ExpertCall call(x_in, counts, w13, w2);
  const at::Tensor& x = call.x;
  at::Tensor y = call.y;
  const std::vector<int64_t>& off = call.off;
  const int64_t E = call.E, I = call.I, K = call.K;
  at::Tensor gu = at::empty({off[E], 2 * I}, x.options());   // [rows, gate | up] of local experts
  const bool bf16 = w13.scalar_type() == at::kBFloat16;
  at::Tensor s13, s2;                                                    // fp32 scratch for one expert's weights
  if (bf16) {
    s13 = at::empty({2 * I, K}, x.options());
    s2 = at::empty({K, I}, x.options());
  }
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = off[e], n = off[e + 1] - off[e];
    if (n == 0) continue;
    at::Tensor W13 = w13[e], W2 = w2[e];
    if (bf16) {
      m2::widen_bf16(w13.data_ptr<at::BFloat16>() + e * 2 * I * K, s13.data_ptr<float>(), 2 * I * K);
      m2::widen_bf16(w2.data_ptr<at::BFloat16>() + e * K * I, s2.data_ptr<float>(), K * I);
      W13 = s13;
      W2 = s2;
    }
    at::Tensor g = gu.narrow(0, r0, n);                                  // [n, 2I]
    at::mm_out(g, x.narrow(0, r0, n), W13.t());
    float* gp = g.data_ptr<float>();
    at::parallel_for(0, n, 16, [&](int64_t a, int64_t b) {
      for (int64_t r = a; r < b; ++r) m2::swiglu_row(gp + r * 2 * I, I);
    });
    at::Tensor out = y.narrow(0, r0, n);
    at::mm_out(out, g.narrow(1, 0, I), W2.t());                          // act: the gate half, row stride 2I
  }
  return y;
}

// The MoE's weighted sum back in token order: out [T, H] with out[t] = sum over k < K (in order) of
// w[t, k] * y[pos[t, k]], where pos [T, K] int64 is the row of pair (t, k) in the expert-sorted y [N, H] fp32, w [T, K].
// One pass instead of a scale, a scatter into (token, k) order and a sum, with the same roundings as those (each
// product rounded, then the sum: no fused multiply-add), so the per-op path keeps agreeing with the fused layer.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
at::Tensor moe_combine(const at::Tensor& y_in, const at::Tensor& pos_in, const at::Tensor& w_in) {
  at::Tensor y = y_in.to(at::kFloat).contiguous();
  at::Tensor pos = pos_in.to(at::kLong).contiguous();
  at::Tensor w = w_in.to(at::kFloat).contiguous();
  TORCH_CHECK(y.dim() == 2 && pos.dim() == 2 && w.sizes() == pos.sizes(), "y [N, H], pos and w [T, K]");
  const int64_t T = pos.size(0), Kk = pos.size(1), H = y.size(1), N = y.size(0);
  const int64_t* pp = pos.data_ptr<int64_t>();
  for (int64_t i = 0; i < T * Kk; ++i) TORCH_CHECK(pp[i] >= 0 && pp[i] < N, "pos out of range");
  at::Tensor out = at::empty({T, H}, y.options());
  const float* yp = y.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, T, 8, [&](int64_t a, int64_t b) {
    for (int64_t t = a; t < b; ++t) {
      float* o = op + t * H;
      for (int64_t k = 0; k < Kk; ++k) {
        const float wk = wp[t * Kk + k];
        const float* src = yp + pp[t * Kk + k] * H;
        if (k == 0) for (int64_t i = 0; i < H; ++i) o[i] = src[i] * wk;
        else for (int64_t i = 0; i < H; ++i) o[i] += src[i] * wk;
      }
    }
  });
  return out;
}
#pragma GCC pop_options

// q [B, nh, d] fp32; k_cache, v_cache [NB, bs, nkv, d] fp32|bf16 (contiguous rows); block_tables [B, >=blocks]
// int64; seq_lens [B] int64 -> [B, nh, d] fp32. Query head i belongs to KV head i / (nh / nkv).
at::Tensor decode_attention(const at::Tensor& q_in, const at::Tensor& k_cache, const at::Tensor& v_cache,
                            const at::Tensor& block_tables_in, const at::Tensor& seq_lens_in, double scale) {
  m2::check_cache(k_cache, v_cache);
  at::Tensor q = q_in.to(at::kFloat).contiguous();
  at::Tensor tables = block_tables_in.to(at::kLong).contiguous();
  at::Tensor lens = seq_lens_in.to(at::kLong).contiguous();
  const int64_t B = q.size(0), nh = q.size(1), d = q.size(2), bs = k_cache.size(1), nkv = k_cache.size(2);
  TORCH_CHECK(d == k_cache.size(3) && nh % nkv == 0, "q [B, nh, d] does not match the cache");
  TORCH_CHECK(tables.size(0) >= B && lens.size(0) >= B, "one block-table row and seq_len per request");
  m2::check_lens(lens.data_ptr<int64_t>(), B, bs, tables.size(1));
  at::Tensor out = at::empty({B, nh, d}, q.options());
  const float s = static_cast<float>(scale);
  if (k_cache.scalar_type() == at::kFloat)
    m2::decode_attention_all(q.data_ptr<float>(), B, nh, nkv, d, k_cache.data_ptr<float>(), v_cache.data_ptr<float>(),
                             bs, k_cache.stride(1), k_cache.stride(0), tables.data_ptr<int64_t>(), tables.size(1),
                             lens.data_ptr<int64_t>(), s, out.data_ptr<float>());
  else
    m2::decode_attention_all(q.data_ptr<float>(), B, nh, nkv, d, k_cache.data_ptr<at::BFloat16>(),
                             v_cache.data_ptr<at::BFloat16>(), bs, k_cache.stride(1), k_cache.stride(0),
                             tables.data_ptr<int64_t>(), tables.size(1), lens.data_ptr<int64_t>(), s,
                             out.data_ptr<float>());
  return out;
}

// bf16 [any shape, contiguous] -> fp32, widened 8 at a time on both threads. torch's own cast runs at about
// 2.7 GB/s here, which made widening a layer's weights for a prefill matmul cost more than the matmul.
at::Tensor widen(const at::Tensor& w) {
  TORCH_CHECK(w.scalar_type() == at::kBFloat16 && w.is_contiguous() && w.device().is_cpu(),
              "widen takes a contiguous CPU bf16 tensor");
  at::Tensor out = at::empty(w.sizes(), w.options().dtype(at::kFloat));
  m2::widen_bf16(w.data_ptr<at::BFloat16>(), out.data_ptr<float>(), w.numel());
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
  m.def("decode_layer", &decode_layer, "one MiniMax-M2 decoder layer for a decode-only step -> its output (a new tensor)");
  m.def("widen", &widen, "bf16 -> fp32 copy");
  m.def("experts_mm", &experts_mm, "SwiGLU experts over many rows sorted by expert: MKL per expert, fused SwiGLU");
  m.def("moe_combine", &moe_combine, "weighted sum of each token's expert rows, back in token order");
  m.def("has_avx2", &has_avx2);
}
