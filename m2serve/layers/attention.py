"""CPU / plain-torch paged attention backend.

The KV cache of a layer is a view [2, num_blocks, block_size, nkv, d] (k then v) bound by the model runner.
Token slot s lives at block s // block_size, offset s % block_size; a request's context is the concatenation
of the blocks listed in its block-table row. K is stored after k_norm and RoPE, V raw (spec §3).

A step's rows follow AttentionMetadata: the first num_decodes requests have one query token each and are
computed together; every other request is a prefill chunk whose queries sit at positions
seq_len - qlen .. seq_len - 1 (causal within the chunk, full over the cached prefix).

What the cache holds is the layer's KV-cache method's business (layers/quant/): FloatKVCache stores K/V in the
model dtype; C8KVCache stores int8 with per-channel scales, quantized on write and dequantized on every read
of the cache. A prefill chunk with no cached prefix attends over its own float K/V (like Ascend's C8 path).

GQA is never materialised as repeated KV heads: decode reshapes q to [B, nkv, group, d] so one batched matmul
per KV head serves its whole query group, and prefill uses SDPA's enable_gqa.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from m2serve.layers import cpu_kernels
from m2serve.layers.attention_metadata import AttentionMetadata
from m2serve.layers.batch_invariant import is_batch_invariant
from m2serve.layers.quant.base import FloatKVCache, KVCacheMethod


class Attention(nn.Module):
    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, scale: float | None = None,
                 kv_cache_method: KVCacheMethod | None = None) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} is not a multiple of num_kv_heads={num_kv_heads}")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.group = num_heads // num_kv_heads
        self.scale = scale if scale is not None else 1.0 / math.sqrt(head_dim)
        # Bound by the model runner (not a buffer: it is shared storage, never part of the state dict).
        self.kv_cache: torch.Tensor | None = None                        # [2, num_blocks, block_size, nkv, d]
        self.kv_cache_method = kv_cache_method or FloatKVCache()
        self.kv_cache_method.create_weights(self)

    def kv_cache_dtype(self, model_dtype: torch.dtype) -> torch.dtype:
        return self.kv_cache_method.cache_dtype(model_dtype)

    def _read_kv(self, cached: torch.Tensor, which: str, dtype: torch.dtype) -> torch.Tensor:
        """Gathered cache entries [..., nkv, d] -> K or V in `dtype`."""
        return self.kv_cache_method.dequantize(self, cached, which, dtype)

    @torch.compiler.disable   # paged, per-request Python control flow: stays eager inside a compiled layer
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        # q [T, nh, d]; k, v [T, nkv, d]  ->  [T, nh, d]
        assert self.kv_cache is not None, "Attention.kv_cache is not bound (call bind_kv_cache first)"
        k_cache, v_cache = self.kv_cache[0], self.kv_cache[1]             # [NB, bs, nkv, d] each
        self._write_kv(k_cache, v_cache, k, v, meta.slot_mapping)

        out = torch.empty_like(q)                                         # [T, nh, d]
        if is_batch_invariant():
            for i in range(meta.num_reqs):
                s, e = meta.query_start_loc[i], meta.query_start_loc[i + 1]
                out[s:e] = self._exact(q[s:e], k_cache, v_cache, meta, i)
            return out
        nd = meta.num_decodes
        if nd:
            out[:nd] = self._decode(q[:nd], k_cache, v_cache, meta)
        for i in range(nd, meta.num_reqs):
            s, e = meta.query_start_loc[i], meta.query_start_loc[i + 1]
            if e > s:
                out[s:e] = self._prefill(q[s:e], k[s:e], v[s:e], k_cache, v_cache, meta, i)
        return out

    def _write_kv(self, k_cache: torch.Tensor, v_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  slots: torch.Tensor) -> None:
        # view (not reshape): a copy would silently drop the write.
        nkv, d = k_cache.shape[-2:]
        q = self.kv_cache_method.quantize
        k_cache.view(-1, nkv, d).index_copy_(0, slots, q(self, k, "k").to(k_cache.dtype))  # [NB*bs, nkv, d]
        v_cache.view(-1, nkv, d).index_copy_(0, slots, q(self, v, "v").to(v_cache.dtype))

    def _decode(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                meta: AttentionMetadata) -> torch.Tensor:
        """One query token per request, all requests in one batched matmul over their gathered blocks."""
        B, nkv, g, d = q.shape[0], self.num_kv_heads, self.group, self.head_dim
        bs = meta.block_size
        seq_lens = meta.seq_lens[:B]
        kernel = self._cpu_kernel(k_cache)
        if kernel is not None:
            # CPU: the compiled kernel reads each request's blocks in place (no gather, no copies).
            return cpu_kernels.decode_attention(kernel, q, k_cache, v_cache, meta.block_tables,
                                                meta.seq_lens_tensor(B), self.scale)
        n_blocks = -(-max(seq_lens) // bs)
        S = n_blocks * bs                                                 # padded context length
        # index_select over whole blocks: about 1.5x faster than advanced indexing k_cache[table] on CPU.
        table = meta.block_tables[:B, :n_blocks].reshape(-1)              # [B*n_blocks]
        keys = self._read_kv(k_cache.index_select(0, table).view(B, S, nkv, d), "k", q.dtype).transpose(1, 2)
        values = self._read_kv(v_cache.index_select(0, table).view(B, S, nkv, d), "v", q.dtype).transpose(1, 2)
        # keys, values [B, nkv, S, d]

        qg = q.view(B, nkv, g, d)                                         # query heads grouped by their KV head
        scores = torch.matmul(qg, keys.transpose(-1, -2)).float() * self.scale   # [B, nkv, g, S] fp32
        lens = torch.tensor(seq_lens, device=q.device)
        pad = torch.arange(S, device=q.device)[None, :] >= lens[:, None]  # [B, S] slots past the context
        scores.masked_fill_(pad[:, None, None, :], float("-inf"))
        probs = torch.softmax(scores, dim=-1).to(values.dtype)            # [B, nkv, g, S]
        return torch.matmul(probs, values).reshape(B, nkv * g, d)         # [B, nh, d]

    def _cpu_kernel(self, k_cache: torch.Tensor):
        if k_cache.device.type != "cpu" or not isinstance(self.kv_cache_method, FloatKVCache):
            return None
        if k_cache.dtype not in (torch.float32, torch.bfloat16):
            return None
        return cpu_kernels.get()

    def _exact(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, meta: AttentionMetadata,
               i: int) -> torch.Tensor:
        """Batch-invariant path: each query token [n, nh, d] against exactly its own prefix, so its reduction
        shapes never depend on chunking or batching."""
        n, L = q.shape[0], meta.seq_lens[i]
        bs, nkv, g, d = meta.block_size, self.num_kv_heads, self.group, self.head_dim
        table = meta.block_tables[i, :-(-L // bs)]
        keys = self._read_kv(k_cache.index_select(0, table).view(-1, nkv, d)[:L], "k", q.dtype).transpose(0, 1)
        values = self._read_kv(v_cache.index_select(0, table).view(-1, nkv, d)[:L], "v", q.dtype).transpose(0, 1)
        # keys, values [nkv, L, d]
        out = torch.empty_like(q)
        for j in range(n):
            p = L - n + j + 1                                                # context length of this token
            qj = q[j].view(nkv, g, d)
            scores = torch.matmul(qj, keys[:, :p].transpose(1, 2)).float() * self.scale   # [nkv, g, p]
            probs = torch.softmax(scores, dim=-1).to(values.dtype)
            out[j] = torch.matmul(probs, values[:, :p]).reshape(nkv * g, d)
        return out

    def _prefill(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                 v_cache: torch.Tensor, meta: AttentionMetadata, i: int) -> torch.Tensor:
        """One request's chunk q [n, nh, d] attending to its whole context (cached prefix + this chunk)."""
        n, L = q.shape[0], meta.seq_lens[i]
        if n == L:
            # No cached prefix: the chunk's own k/v are the whole context; no gather needed.
            keys, values = k, v                                           # [L, nkv, d]
            if isinstance(self.kv_cache_method, FloatKVCache) and self.kv_cache_method.rounds(q.dtype):
                # As the cache holds them (--kv-cache-dtype bfloat16): later chunks and decode steps read the
                # rounded values, so a prompt gives the same tokens whether it is chunked or prefix-cached.
                keys, values = k.to(k_cache.dtype).to(q.dtype), v.to(v_cache.dtype).to(q.dtype)
        else:
            bs = meta.block_size
            n_blocks = -(-L // bs)
            table = meta.block_tables[i, :n_blocks]                       # [n_blocks]
            keys = self._read_kv(k_cache.index_select(0, table).view(n_blocks * bs, self.num_kv_heads,
                                                                     self.head_dim)[:L], "k", q.dtype)   # [L, nkv, d]
            values = self._read_kv(v_cache.index_select(0, table).view(n_blocks * bs, self.num_kv_heads,
                                                                       self.head_dim)[:L], "v", q.dtype)
        qh = q.transpose(0, 1).unsqueeze(0)                               # [1, nh, n, d]
        kh = keys.to(q.dtype).transpose(0, 1).unsqueeze(0)                # [1, nkv, L, d]
        vh = values.to(q.dtype).transpose(0, 1).unsqueeze(0)
        if n == L:
            o = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True, scale=self.scale, enable_gqa=True)
        else:
            # Query j sits at position L-n+j and sees keys 0..L-n+j (SDPA's is_causal aligns top-left instead).
            q_pos = torch.arange(L - n, L, device=q.device)
            mask = torch.arange(L, device=q.device)[None, :] <= q_pos[:, None]   # [n, L] True = attend
            o = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, scale=self.scale, enable_gqa=True)
        return o[0].transpose(0, 1)                                       # [n, nh, d]
