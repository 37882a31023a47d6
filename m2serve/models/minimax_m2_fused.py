"""Fused CPU decode of a MiniMax-M2 decoder layer: the whole layer in one compiled call (csrc/decode_layer.cpp).

At decode batch 16 a layer's matmuls take about 3 ms on 2 cores, and the ~100 small torch ops between them
(RMSNorms, QK norm, RoPE, the cache write, routing, sort and combine) cost about as much again in dispatch and
Python. The fused call runs them as plain loops between the same matmul kernels the single ops use, with the
same math in the same order (fp32 throughout), so it agrees with the unfused layer to float rounding.

It serves only the case it was written for, and the unfused layer serves everything else:
    per model (checked once): CPU, fp32 activations, the compiled kernels present, no tensor or expert parallelism,
        float KV cache (fp32, or bf16 under --kv-cache-dtype bfloat16), projection and expert matrices all fp32 or
        all bf16 (layers/quant/cpu_bf16.py), not oneDNN-packed, fp32 router;
    per step: decode-only (one token per request), at most LINEAR_MAX_ROWS rows and EXPERT_MAX_MEAN_ROWS pairs
        per expert (past these MKL's blocked matmuls win), not batch-invariant mode, M2SERVE_FUSED_DECODE on.
"""
from __future__ import annotations

import torch

from m2serve import envs
from m2serve.layers import cpu_kernels
from m2serve.layers.attention_metadata import AttentionMetadata
from m2serve.layers.batch_invariant import is_batch_invariant
from m2serve.layers.quant.base import FloatKVCache, UnquantizedLinearMethod, UnquantizedMoEMethod
from m2serve.layers.quant.cpu_bf16 import Bf16WeightLinearMethod, Bf16WeightMoEMethod

# Methods whose weights the kernel reads as they are (fp32, or bf16 widened in registers).
_LINEAR_METHODS = (UnquantizedLinearMethod, Bf16WeightLinearMethod)
_MOE_METHODS = (UnquantizedMoEMethod, Bf16WeightMoEMethod)


class FusedDecodeLayer:
    """One decoder layer's tensors in the order the kernel takes them, and the call."""

    def __init__(self, kernel, layer) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        self.kernel = kernel
        self.layer = layer
        self.weights = [layer.input_layernorm.weight, attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight,
                        attn.q_norm.weight, attn.k_norm.weight, attn.o_proj.weight,
                        layer.post_attention_layernorm.weight, mlp.gate.weight, mlp.e_score_correction_bias,
                        mlp.experts.w13_weight, mlp.experts.w2_weight]
        self.num_heads, self.top_k = attn.num_heads, mlp.top_k
        self.eps, self.scale = layer.input_layernorm.eps, attn.attn.scale
        self.route_hook = None        # called with each step's expert ids [T, top_k] when set (bench/steps.py)
        self.max_rows = min(cpu_kernels.LINEAR_MAX_ROWS,
                            cpu_kernels.EXPERT_MAX_MEAN_ROWS * mlp.experts.num_local // mlp.top_k)

    @classmethod
    def build(cls, layer, dtype: torch.dtype, parallel) -> FusedDecodeLayer | None:
        """The fused form of `layer`, or None where the kernel does not serve this model (see module doc)."""
        if not envs.fused_decode() or dtype != torch.float32 or parallel.tp_size > 1 or parallel.ep_size > 1:
            return None
        attn, mlp = layer.self_attn, layer.mlp
        linears = (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate)
        if not all(type(m.quant_method) in _LINEAR_METHODS and getattr(m, "cpu_kernel", None) is not None
                   for m in linears):
            return None
        experts = mlp.experts
        if type(experts.quant_method) not in _MOE_METHODS or getattr(experts, "cpu_kernel", None) is None:
            return None
        matrices = (attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight, attn.o_proj.weight,
                    experts.w13_weight, experts.w2_weight)
        if len({m.dtype for m in matrices}) != 1 or mlp.gate.weight.dtype != torch.float32:
            return None                                                      # the kernel takes one matrix dtype
        if type(attn.attn.kv_cache_method) is not FloatKVCache or attn.q_proj.weight.device.type != "cpu":
            return None
        kernel = cpu_kernels.get()
        if kernel is None or not hasattr(kernel, "decode_layer"):
            return None
        return cls(kernel, layer)

    def serves(self, h: torch.Tensor, meta: AttentionMetadata) -> bool:
        T = h.shape[0]
        return (0 < T <= self.max_rows and meta.num_decodes == meta.num_reqs == T and h.dtype == torch.float32
                and not is_batch_invariant())

    def __call__(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotary_dim: int,
                 meta: AttentionMetadata) -> torch.Tensor:
        """h [T, H] residual stream -> the layer's output [T, H]; writes this step's K/V into the cache. Called from
        the model's layer loop, outside the regionally compiled layers, so dynamo never sees it."""
        T = h.shape[0]
        routed = torch.empty(T, self.top_k, dtype=torch.int64) if self.route_hook is not None else None
        out = self.kernel.decode_layer(h, self.weights, cos, sin, self.layer.self_attn.attn.kv_cache,
                                       meta.slot_mapping, meta.block_tables, meta.seq_lens_tensor(T),
                                       self.num_heads, rotary_dim, self.top_k, self.eps, self.scale, routed)
        if routed is not None:
            self.route_hook(routed)
        return out
