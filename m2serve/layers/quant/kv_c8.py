"""C8: an int8 paged KV cache with per-channel symmetric scales (msModelSlim "C8", spec A3).

One scale per channel of the flattened (kv_head, head_dim) vector, for K (after k_norm and RoPE) and for V:
    write   k_q = clamp(round(k * (1/s_k)), -128, 127)  int8 into the cache (likewise v)
    read    k^ = k_q * s_k (likewise v), then ordinary attention in the model dtype
Checkpoint tensors model.layers.N.self_attn.{k,v}_proj.kv_cache_{scale,offset} ([n] or [1, n], n = kv_heads *
head_dim) load into self_attn.attn.{k,v}_cache_{scale,offset}; offsets must be zero (Ascend's decode kernel
ignores them). Under TP each rank keeps the rows of its own KV heads.
"""
from __future__ import annotations

import torch

from m2serve.errors import CheckpointError
from m2serve.layers.quant.base import KVCacheMethod, conform, make_param
from m2serve.layers.quant.kernels import INT8_MAX, INT8_MIN


class C8KVCache(KVCacheMethod):
    name = "C8"

    def __init__(self, total_kv_heads: int, head_dim: int, tp_rank: int = 0, tp_size: int = 1) -> None:
        if total_kv_heads % tp_size:
            raise ValueError(f"num_key_value_heads={total_kv_heads} is not divisible by tp_size={tp_size}")
        self.total_kv_heads, self.head_dim = total_kv_heads, head_dim
        self.local_kv_heads = total_kv_heads // tp_size
        self.first_kv_head = tp_rank * self.local_kv_heads

    def create_weights(self, attn):
        n = self.total_kv_heads * self.head_dim
        for which in ("k", "v"):
            for kind in ("scale", "offset"):
                make_param(attn, f"{which}_cache_{kind}", (n,), torch.float32, loader=self._load, flexible_shape=True)

    @staticmethod
    def _load(param, full):
        full = conform(param, full, tuple(param.shape))
        if tuple(full.shape) != tuple(param.shape):
            raise CheckpointError(f"shape {tuple(full.shape)}, expected {tuple(param.shape)} "
                                  "(one value per kv_head * head_dim channel)")
        param.data.copy_(full)

    def cache_dtype(self, model_dtype):
        return torch.int8

    def process_weights_after_loading(self, attn):
        rows = slice(self.first_kv_head, self.first_kv_head + self.local_kv_heads)
        for which in ("k", "v"):
            scale = getattr(attn, f"{which}_cache_scale").detach().view(self.total_kv_heads, self.head_dim)[rows]
            offset = getattr(attn, f"{which}_cache_offset").detach()
            if bool((offset != 0).any()):
                raise CheckpointError(f"{which}_cache_offset has non-zero entries: C8 is symmetric (Ascend's "
                                      "attention kernel ignores the offset)")
            if not bool((scale >= 0).all() and torch.isfinite(scale).all()):
                raise CheckpointError(f"{which}_cache_scale must be finite and non-negative")
            attn.register_buffer(f"_{which}_scale", scale.float().contiguous(), persistent=False)   # [nkv, d]
            inv = torch.where(scale > 0, 1.0 / scale.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
            attn.register_buffer(f"_{which}_inv_scale", inv.float().contiguous(), persistent=False)

    def quantize(self, attn, t, which):
        inv = getattr(attn, f"_{which}_inv_scale")
        return torch.round(t.float() * inv).clamp_(INT8_MIN, INT8_MAX).to(torch.int8)

    def dequantize(self, attn, t, which, dtype):
        return (t.float() * getattr(attn, f"_{which}_scale")).to(dtype)
