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

// x [N, K] rows sorted by expert, counts [E] int64, w13 [E, 2I, K], w2 [E, K, I] -> [N, K] fp32. Rows past the
// last group (pairs routed to another expert-parallel rank) get zeros.
at::Tensor experts(const at::Tensor& x_in, const at::Tensor& counts, const at::Tensor& w13, const at::Tensor& w2) {
  m2::check_weight(w13, 3);
  m2::check_weight(w2, 3);
  TORCH_CHECK(w13.scalar_type() == w2.scalar_type(), "w13 and w2 must share a dtype");
  at::Tensor x = x_in.to(at::kFloat).contiguous();
  at::Tensor c = counts.to(at::kLong).contiguous();
  const int64_t E = w13.size(0), I = w13.size(1) / 2, K = w13.size(2), N = x.size(0);
  TORCH_CHECK(c.dim() == 1 && c.size(0) == E, "counts must have one entry per expert");
  std::vector<int64_t> off(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) off[e + 1] = off[e] + c.data_ptr<int64_t>()[e];
  TORCH_CHECK(off[E] <= N, "counts sum to ", off[E], " but x has ", N, " rows");
  at::Tensor y = at::empty({N, K}, x.options());
  if (off[E] < N) y.narrow(0, off[E], N - off[E]).zero_();
  at::Tensor gu = at::empty({off[E], 2 * I}, x.options());   // rows of local experts only
  if (w13.scalar_type() == at::kFloat)
    m2::swiglu_experts(x.data_ptr<float>(), off, w13.data_ptr<float>(), w2.data_ptr<float>(), I, K,
                       gu.data_ptr<float>(), y.data_ptr<float>());
  else
    m2::swiglu_experts(x.data_ptr<float>(), off, w13.data_ptr<at::BFloat16>(), w2.data_ptr<at::BFloat16>(), I, K,
                       gu.data_ptr<float>(), y.data_ptr<float>());
  return y;
}

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
  const at::BFloat16* src = w.data_ptr<at::BFloat16>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, w.numel(), 1 << 16, [&](int64_t a, int64_t b) {
    int64_t i = a;
#ifdef M2_AVX2
    for (; i + 8 <= b; i += 8) _mm256_storeu_ps(dst + i, m2::load8(src + i));
#endif
    for (; i < b; ++i) dst[i] = static_cast<float>(src[i]);
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
  m.def("decode_layer", &decode_layer, "one MiniMax-M2 decoder layer for a decode-only step -> its output (a new tensor)");
  m.def("widen", &widen, "bf16 -> fp32 copy");
  m.def("has_avx2", &has_avx2);
}
