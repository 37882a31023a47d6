// One MiniMax-M2 decoder layer for a decode-only step on CPU, in one call (m2serve/models/minimax_m2_fused.py).
//
// Why: at decode batch 16 the layer's matmuls take about 3 ms, while the ~100 small torch ops around them
// (RMSNorms, QK norm, RoPE, the cache write, routing, sort and combine) cost about as much again in dispatch and
// Python. Here they are plain loops over a few rows, between the same matmul kernels the single ops use.
//
//   x = RMSNorm(h)                         q, k, v = x @ Wq^T, x @ Wk^T, x @ Wv^T
//   q, k = QKNorm over the full width, then partial NeoX RoPE on each head's first rotary_dim dims
//   cache[slot] = k, v;  a = paged attention(q)     h += a @ Wo^T
//   x = RMSNorm(h);  s = sigmoid(x @ Wg^T);  ids = topk(s + bias);  w = s[ids] / sum(s[ids])
//   h += sum_k w_k * SwiGLU_{ids_k}(x)
// The math and its order are the unfused path's (models/minimax_m2.py, layers/moe.py), all in fp32.

#include "kernels.h"

namespace {

// y[r] = w * (x[r] / sqrt(mean(x[r]^2) + eps)) for n rows of width H (row strides ldx, ldy)
void rms_norm(const float* x, int64_t ldx, int64_t n, int64_t H, const float* w, float eps, float* y, int64_t ldy) {
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * ldx;
    double ss = 0.0;
    for (int64_t i = 0; i < H; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = 1.f / std::sqrt(static_cast<float>(ss / H) + eps);
    float* yr = y + r * ldy;
    for (int64_t i = 0; i < H; ++i) yr[i] = w[i] * (xr[i] * inv);
  }
}

// NeoX rotate-half on the first rd dims of each of n_heads heads of one row x [n_heads, d]; cos, sin [rd/2]
void rope_row(float* x, int64_t n_heads, int64_t d, int64_t rd, const float* cos, const float* sin) {
  const int64_t half = rd / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* xh = x + h * d;
    for (int64_t j = 0; j < half; ++j) {
      const float x1 = xh[j], x2 = xh[j + half];
      xh[j] = x1 * cos[j] - x2 * sin[j];
      xh[j + half] = x2 * cos[j] + x1 * sin[j];
    }
  }
}

// y [n, M_i] (row stride ld_i) = x [n, K] @ w_i^T for several weights sharing x, one parallel region for all
template <typename W>
struct Proj {
  const W* w;
  int64_t M;
  float* y;
};
template <typename W>
void gemv_many(const float* x, int64_t n, int64_t K, const std::vector<Proj<W>>& projs) {
  std::vector<std::pair<size_t, int64_t>> items;  // (projection, first weight row)
  for (size_t p = 0; p < projs.size(); ++p)
    for (int64_t j = 0; j < projs[p].M; j += m2::kBlock) items.emplace_back(p, j);
  at::parallel_for(0, static_cast<int64_t>(items.size()), 1, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      const Proj<W>& p = projs[items[i].first];
      const int64_t j = items[i].second;
      m2::gemv_block(x, K, n, p.w, K, j, std::min(p.M, j + m2::kBlock), p.y, p.M);
    }
  });
}

template <typename W, typename C>
void layer_impl(float* h, int64_t T, int64_t H, const std::vector<at::Tensor>& wt, const float* cos, const float* sin,
                C* k_cache, C* v_cache, int64_t block_stride, int64_t row_stride, int64_t bs, const int64_t* slots,
                const int64_t* tables, int64_t tstride, const int64_t* lens, int64_t nh, int64_t nkv, int64_t d,
                int64_t rd, int64_t top_k, float eps, float scale, int64_t* routed) {
  const int64_t qw = nh * d, kw = nkv * d, E = wt[8].size(0), I = wt[10].size(1) / 2;
  std::vector<float> x(T * H), q(T * qw), k(T * kw), v(T * kw), a(T * qw), o(T * H);

  // attention block
  rms_norm(h, H, T, H, wt[0].data_ptr<float>(), eps, x.data(), H);
  gemv_many<W>(x.data(), T, H, {{wt[1].data_ptr<W>(), qw, q.data()}, {wt[2].data_ptr<W>(), kw, k.data()},
                                {wt[3].data_ptr<W>(), kw, v.data()}});
  rms_norm(q.data(), qw, T, qw, wt[4].data_ptr<float>(), eps, q.data(), qw);   // QK norm: full width, in place
  rms_norm(k.data(), kw, T, kw, wt[5].data_ptr<float>(), eps, k.data(), kw);
  const int64_t half = rd / 2;
  for (int64_t t = 0; t < T; ++t) {
    rope_row(q.data() + t * qw, nh, d, rd, cos + t * half, sin + t * half);
    rope_row(k.data() + t * kw, nkv, d, rd, cos + t * half, sin + t * half);
    // K (normed, rotated) and V (raw) into the token's cache slot, rounded to the cache dtype
    const int64_t slot = slots[t];
    C* kc = k_cache + (slot / bs) * block_stride + (slot % bs) * row_stride;
    C* vc = v_cache + (slot / bs) * block_stride + (slot % bs) * row_stride;
    for (int64_t i = 0; i < kw; ++i) {
      kc[i] = static_cast<C>(k[t * kw + i]);
      vc[i] = static_cast<C>(v[t * kw + i]);
    }
  }
  m2::decode_attention_all(q.data(), T, nh, nkv, d, k_cache, v_cache, bs, row_stride, block_stride, tables, tstride,
                           lens, scale, a.data());
  m2::gemv(a.data(), T, wt[6].data_ptr<W>(), H, qw, o.data(), H);
  for (int64_t i = 0; i < T * H; ++i) h[i] += o[i];

  // MoE block
  rms_norm(h, H, T, H, wt[7].data_ptr<float>(), eps, x.data(), H);
  std::vector<float> s(T * E);
  m2::gemv(x.data(), T, wt[8].data_ptr<float>(), E, H, s.data(), E);          // router logits, fp32 weight
  const float* bias = wt[9].data_ptr<float>();
  std::vector<int64_t> ids(T * top_k), counts(E, 0);
  std::vector<float> rw(T * top_k), biased(E);
  for (int64_t t = 0; t < T; ++t) {
    float* st = s.data() + t * E;
    for (int64_t e = 0; e < E; ++e) {
      st[e] = 1.f / (1.f + std::exp(-st[e]));
      biased[e] = st[e] + bias[e];                                             // the bias only picks experts
    }
    float total = 0.f;
    for (int64_t kk = 0; kk < top_k; ++kk) {                                  // top_k is small: selection by scan
      int64_t best = -1;
      for (int64_t e = 0; e < E; ++e)
        if (biased[e] > -std::numeric_limits<float>::infinity() && (best < 0 || biased[e] > biased[best])) best = e;
      TORCH_CHECK(best >= 0, "router scores are not finite");
      biased[best] = -std::numeric_limits<float>::infinity();
      ids[t * top_k + kk] = best;
      rw[t * top_k + kk] = st[best];
      total += st[best];
      ++counts[best];
    }
    for (int64_t kk = 0; kk < top_k; ++kk) rw[t * top_k + kk] /= total;
  }
  if (routed != nullptr) std::copy(ids.begin(), ids.end(), routed);
  // (token, k) pairs grouped by expert, in pair order within a group (a stable sort)
  std::vector<int64_t> off(E + 1, 0), fill(E), pos(T * top_k);
  for (int64_t e = 0; e < E; ++e) off[e + 1] = off[e] + counts[e];
  std::copy(off.begin(), off.end() - 1, fill.begin());
  const int64_t N = T * top_k;
  std::vector<float> xs(N * H), ys(N * H), gu(N * 2 * I);
  for (int64_t p = 0; p < N; ++p) {
    pos[p] = fill[ids[p]]++;
    std::copy(x.data() + (p / top_k) * H, x.data() + (p / top_k + 1) * H, xs.data() + pos[p] * H);
  }
  m2::swiglu_experts(xs.data(), off, wt[10].data_ptr<W>(), wt[11].data_ptr<W>(), I, H, gu.data(), ys.data());
  for (int64_t t = 0; t < T; ++t) {
    float* ht = h + t * H;
    for (int64_t i = 0; i < H; ++i) {
      float acc = 0.f;
      for (int64_t kk = 0; kk < top_k; ++kk) {
        const int64_t p = t * top_k + kk;
        acc += ys[pos[p] * H + i] * rw[p];
      }
      ht[i] += acc;
    }
  }
}

}  // namespace

// h [T, H] fp32, one decode token per request (request t is row t) -> the layer's output [T, H] (a new tensor).
// weights (12): input_layernorm [H], q_proj [nh*d, H], k_proj [nkv*d, H], v_proj [nkv*d, H], q_norm [nh*d],
//   k_norm [nkv*d], o_proj [H, nh*d], post_attention_layernorm [H], gate [E, H], e_score_correction_bias [E],
//   w13 [E, 2I, H], w2 [E, H, I]; norms, gate and bias fp32, the matrices all fp32 or all bf16.
// cos, sin [T, rotary_dim/2] fp32; kv_cache [2, NB, bs, nkv, d] fp32|bf16; slots [T], block_tables [>=T, width],
// seq_lens [>=T] int64 (seq_lens include this step's token, already counted). routed: optional [T, top_k] int64
// that receives each row's chosen experts (benchmarks count distinct experts with it).
at::Tensor decode_layer(const at::Tensor& h_in, const std::vector<at::Tensor>& weights, const at::Tensor& cos,
                        const at::Tensor& sin, const at::Tensor& kv_cache, const at::Tensor& slots,
                        const at::Tensor& block_tables, const at::Tensor& seq_lens, int64_t num_heads,
                        int64_t rotary_dim, int64_t top_k, double eps, double scale,
                        const c10::optional<at::Tensor>& routed) {
  TORCH_CHECK(weights.size() == 12, "decode_layer takes 12 weight tensors, got ", weights.size());
  TORCH_CHECK(h_in.dim() == 2 && h_in.scalar_type() == at::kFloat, "h must be [T, H] fp32");
  const int64_t T = h_in.size(0), H = h_in.size(1);
  TORCH_CHECK(kv_cache.dim() == 5 && kv_cache.size(0) == 2, "kv_cache must be [2, NB, bs, nkv, d]");
  at::Tensor k_cache = kv_cache[0], v_cache = kv_cache[1];
  m2::check_cache(k_cache, v_cache);
  const int64_t bs = k_cache.size(1), nkv = k_cache.size(2), d = k_cache.size(3), nh = num_heads;
  TORCH_CHECK(nh % nkv == 0 && rotary_dim % 2 == 0 && rotary_dim <= d, "head layout does not match the cache");
  const at::ScalarType wdt = weights[1].scalar_type();
  for (int i : {1, 2, 3, 6, 10, 11}) {
    m2::check_weight(weights[i], i >= 10 ? 3 : 2);
    TORCH_CHECK(weights[i].scalar_type() == wdt, "the layer's matrices must share one dtype");
  }
  for (int i : {0, 4, 5, 7, 8, 9})
    TORCH_CHECK(weights[i].scalar_type() == at::kFloat && weights[i].is_contiguous(), "weight ", i,
                " (norm, gate or bias) must be contiguous fp32");
  const int64_t E = weights[8].size(0);
  TORCH_CHECK(weights[1].sizes() == at::IntArrayRef({nh * d, H}) && weights[2].sizes() == at::IntArrayRef({nkv * d, H}) &&
                  weights[3].sizes() == weights[2].sizes() && weights[6].sizes() == at::IntArrayRef({H, nh * d}) &&
                  weights[0].numel() == H && weights[7].numel() == H && weights[4].numel() == nh * d &&
                  weights[5].numel() == nkv * d && weights[8].size(1) == H && weights[9].numel() == E &&
                  weights[10].size(0) == E && weights[10].size(2) == H && weights[11].size(0) == E &&
                  weights[11].size(1) == H && weights[11].size(2) * 2 == weights[10].size(1),
              "decode_layer weight shapes do not match h [T, H] and the cache");
  TORCH_CHECK(top_k >= 1 && top_k <= E, "top_k ", top_k, " out of range for ", E, " experts");
  at::Tensor c = cos.contiguous(), s = sin.contiguous();
  TORCH_CHECK(c.scalar_type() == at::kFloat && c.dim() == 2 && c.size(0) == T && c.size(1) == rotary_dim / 2 &&
                  s.sizes() == c.sizes() && s.scalar_type() == at::kFloat,
              "cos/sin must be [T, rotary_dim/2] fp32");
  at::Tensor sl = slots.to(at::kLong).contiguous(), tables = block_tables.to(at::kLong).contiguous(),
             lens = seq_lens.to(at::kLong).contiguous();
  TORCH_CHECK(sl.numel() == T && tables.size(0) >= T && lens.numel() >= T, "one slot, block-table row and seq_len per row");
  m2::check_lens(lens.data_ptr<int64_t>(), T, bs, tables.size(1));
  const int64_t nslots = k_cache.size(0) * bs;
  for (int64_t t = 0; t < T; ++t)
    TORCH_CHECK(sl.data_ptr<int64_t>()[t] >= 0 && sl.data_ptr<int64_t>()[t] < nslots, "slot out of range");

  int64_t* routed_ptr = nullptr;
  if (routed.has_value() && routed->defined()) {
    TORCH_CHECK(routed->scalar_type() == at::kLong && routed->is_contiguous() && routed->numel() == T * top_k,
                "routed must be a contiguous [T, top_k] int64 tensor");
    routed_ptr = routed->data_ptr<int64_t>();
  }
  at::Tensor h = h_in.clone(at::MemoryFormat::Contiguous);
  const float e = static_cast<float>(eps), sc = static_cast<float>(scale);
  auto run = [&](auto wtag, auto ctag) {
    using W = decltype(wtag);
    using C = decltype(ctag);
    layer_impl<W, C>(h.data_ptr<float>(), T, H, weights, c.data_ptr<float>(), s.data_ptr<float>(),
                     k_cache.data_ptr<C>(), v_cache.data_ptr<C>(), k_cache.stride(0), k_cache.stride(1), bs,
                     sl.data_ptr<int64_t>(), tables.data_ptr<int64_t>(), tables.size(1), lens.data_ptr<int64_t>(), nh,
                     nkv, d, rotary_dim, top_k, e, sc, routed_ptr);
  };
  const bool cache_f32 = k_cache.scalar_type() == at::kFloat;
  if (wdt == at::kFloat) {
    if (cache_f32) run(float{}, float{}); else run(float{}, at::BFloat16{});
  } else {
    if (cache_f32) run(at::BFloat16{}, float{}); else run(at::BFloat16{}, at::BFloat16{});
  }
  return h;
}
