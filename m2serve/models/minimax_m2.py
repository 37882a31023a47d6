"""MiniMax-M2 (M2, M2.1, M2.5, M2.7): decoder-only MoE transformer (spec minimax-m2.md §3).

    h = embed_tokens[ids]
    for each layer:  h += Attn(RMSNorm(h));  h += MoE(RMSNorm(h))
    logits = lm_head(RMSNorm(h))

Attention: q/k/v projections, one RMSNorm over the *full* q (nh*d) and k (nkv*d) width before the head split,
partial NeoX RoPE on the first rotary_dim dims of each head, GQA paged attention, o_proj. MoE: sigmoid router
with a selection-only bias, top-k renormalised, SwiGLU experts, no shared expert. No biases, untied lm_head.

Parameter names follow the transformers v5 layout (model.layers.N.self_attn.q_proj.weight, ...mlp.gate.weight,
...mlp.e_score_correction_bias), except the stacked experts: mlp.experts.w13_weight / w2_weight. The mapping
from both on-disk layouts lives in models/loader.py.

Quantization: an optional quant config (layers/quant/ascend.py) hands every linear, fused-experts and attention
layer its method by parameter prefix (model.layers.N.self_attn.q_proj, ...mlp.experts, ...self_attn.attn);
without one every layer is float.

The model is shaped for a serving step, not a batch: inputs are flat [T] token rows (requests back to back,
AttentionMetadata says where each starts) and the KV cache is a paged tensor bound once by the model runner.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from m2serve.distributed.parallel_state import ParallelContext, get_parallel_context
from m2serve.layers.attention import Attention
from m2serve.layers.attention_metadata import AttentionMetadata
from m2serve.layers.linear import ColumnParallelLinear, ReplicatedLinear, RowParallelLinear, default_weight_loader
from m2serve.layers.moe import MiniMaxM2MoE
from m2serve.layers.norm import RMSNorm, ShardedRMSNorm
from m2serve.layers.rotary import RotaryEmbedding
from m2serve.models.arch import MiniMaxM2Arch
from m2serve.models.minimax_m2_fused import FusedDecodeLayer


def _linear_method(quant_config, prefix: str):
    return quant_config.get_linear_method(prefix) if quant_config is not None else None


class MiniMaxM2Attention(nn.Module):
    def __init__(self, arch: MiniMaxM2Arch, dtype: torch.dtype, parallel: ParallelContext, quant_config=None,
                 prefix: str = "model.layers.0.self_attn") -> None:
        super().__init__()
        tp = parallel.tp_size
        if arch.num_attention_heads % tp or arch.num_key_value_heads % tp:
            raise ValueError(f"tp_size={tp} must divide num_attention_heads={arch.num_attention_heads} "
                             f"and num_key_value_heads={arch.num_key_value_heads}")
        self.num_heads = arch.num_attention_heads // tp                       # local heads
        self.num_kv_heads = arch.num_key_value_heads // tp
        self.head_dim = arch.head_dim
        H, eps = arch.hidden_size, arch.rms_norm_eps
        def qm(name: str):                                                  # this projection's quant method
            return _linear_method(quant_config, f"{prefix}.{name}")
        self.q_proj = ColumnParallelLinear(H, arch.q_size, dtype, parallel, qm("q_proj"))   # [T, H] -> [T, nh*d]
        self.k_proj = ColumnParallelLinear(H, arch.kv_size, dtype, parallel, qm("k_proj"))  # [T, H] -> [T, nkv*d]
        self.v_proj = ColumnParallelLinear(H, arch.kv_size, dtype, parallel, qm("v_proj"))
        self.o_proj = RowParallelLinear(arch.q_size, H, dtype, parallel, qm("o_proj"))     # [T, nh*d] -> [T, H]
        # Full-width QK norm: one statistic over all q (or k) channels, all-reduced under TP.
        self.q_norm = ShardedRMSNorm(arch.q_size, eps, dtype, parallel)
        self.k_norm = ShardedRMSNorm(arch.kv_size, eps, dtype, parallel)
        kv_method = None if quant_config is None else quant_config.get_kv_cache_method(f"{prefix}.attn", parallel)
        self.attn = Attention(self.num_heads, self.num_kv_heads, self.head_dim, scale=arch.head_dim ** -0.5,
                              kv_cache_method=kv_method)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotary: RotaryEmbedding,
                meta: AttentionMetadata) -> torch.Tensor:
        T, d = x.shape[0], self.head_dim
        q = self.q_norm(self.q_proj(x)).view(T, self.num_heads, d)            # [T, nh, d]
        k = self.k_norm(self.k_proj(x)).view(T, self.num_kv_heads, d)         # [T, nkv, d]
        v = self.v_proj(x).view(T, self.num_kv_heads, d)                      # [T, nkv, d], not normed
        q, k = rotary.apply(q, cos, sin), rotary.apply(k, cos, sin)          # RoPE after the norm
        o = self.attn(q, k, v, meta)                                          # [T, nh, d]; caches k, v
        return self.o_proj(o.reshape(T, self.num_heads * d))                  # [T, H]


class MiniMaxM2DecoderLayer(nn.Module):
    def __init__(self, arch: MiniMaxM2Arch, dtype: torch.dtype, parallel: ParallelContext, quant_config=None,
                 prefix: str = "model.layers.0") -> None:
        super().__init__()
        H, eps = arch.hidden_size, arch.rms_norm_eps
        self.input_layernorm = RMSNorm(H, eps, dtype)
        self.self_attn = MiniMaxM2Attention(arch, dtype, parallel, quant_config, f"{prefix}.self_attn")
        self.post_attention_layernorm = RMSNorm(H, eps, dtype)
        moe_method = None if quant_config is None else quant_config.get_moe_method(f"{prefix}.mlp.experts")
        self.mlp = MiniMaxM2MoE(H, arch.intermediate_size, arch.num_local_experts, arch.num_experts_per_tok,
                                dtype, parallel, moe_method)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotary: RotaryEmbedding,
                meta: AttentionMetadata) -> torch.Tensor:                     # h [T, H] residual stream
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, rotary, meta)
        return h + self.mlp(self.post_attention_layernorm(h))


class MiniMaxM2Model(nn.Module):
    def __init__(self, arch: MiniMaxM2Arch, dtype: torch.dtype, parallel: ParallelContext, quant_config=None) -> None:
        super().__init__()
        # Replicated on every TP rank (a vocab-parallel embedding would need an all-gather-free masked sum).
        self.dtype, self.parallel = dtype, parallel
        self.embed_tokens = nn.Embedding(arch.vocab_size, arch.hidden_size, dtype=dtype)
        self.embed_tokens.weight.requires_grad_(False)
        self.embed_tokens.weight.weight_loader = default_weight_loader
        self.layers = nn.ModuleList(MiniMaxM2DecoderLayer(arch, dtype, parallel, quant_config, f"model.layers.{i}")
                                    for i in range(arch.num_hidden_layers))
        self.norm = RMSNorm(arch.hidden_size, arch.rms_norm_eps, dtype)
        # One cos/sin table shared by all layers (not a checkpoint tensor).
        self.rotary = RotaryEmbedding(arch.head_dim, arch.rotary_dim, arch.max_position_embeddings, arch.rope_theta)
        self._fused: list[FusedDecodeLayer] | None = None                    # built at the first step (weights in)
        self._fused_built = False

    def fused_layers(self) -> list[FusedDecodeLayer] | None:
        """Every layer's one-call CPU decode form, or None where this model cannot use it (minimax_m2_fused.py)."""
        if not self._fused_built:
            fused = [FusedDecodeLayer.build(layer, self.dtype, self.parallel) for layer in self.layers]
            self._fused = fused if fused and all(f is not None for f in fused) else None
            self._fused_built = True
        return self._fused

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata,
                aux_layer_ids: Sequence[int] = ()) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = self.embed_tokens(input_ids)                                      # [T, H], no scaling
        # max(seq_lens) bounds the positions: grows the RoPE table without a device sync.
        cos, sin = self.rotary.cos_sin(positions, max(meta.seq_lens, default=0))   # [T, rd/2] each
        aux: dict[int, torch.Tensor] = {}
        wanted = set(aux_layer_ids)
        fused = self.fused_layers()
        if fused is not None and not fused[0].serves(h, meta):
            fused = None                                                      # not a step the fused call serves
        for i, layer in enumerate(self.layers):
            if i in wanted:
                aux[i] = h                                                    # residual stream entering layer i
            if fused is not None:
                h = fused[i](h, cos, sin, self.rotary.rotary_dim, meta)      # a new tensor: aux[i] stays intact
            else:
                h = layer(h, cos, sin, self.rotary, meta)
        if len(self.layers) in wanted:
            aux[len(self.layers)] = h                                         # last layer's output, pre-norm
        return self.norm(h), [aux[i] for i in aux_layer_ids]


class MiniMaxM2ForCausalLM(nn.Module):
    def __init__(self, arch: MiniMaxM2Arch, dtype: torch.dtype, parallel: ParallelContext | None = None,
                 quant_config=None) -> None:
        super().__init__()
        self.arch, self.dtype = arch, dtype
        self.parallel = parallel or get_parallel_context()
        self.quant_config = quant_config
        self.model = MiniMaxM2Model(arch, dtype, self.parallel, quant_config)
        # Untied (tie_word_embeddings is false for every released M2); replicated under TP for now. Float in every
        # quant config (msModelSlim keeps it FLOAT); bf16-stored under CPU bf16 weights (layers/quant/cpu_bf16.py).
        self.lm_head = ReplicatedLinear(arch.hidden_size, arch.vocab_size, dtype, self.parallel,
                                        _linear_method(quant_config, "lm_head"))

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata,
                aux_layer_ids: Sequence[int] = ()) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Run one step over T flat token rows.

        input_ids, positions: [T] int64 (positions 0-based absolute). Returns the final-normed hidden states
        [T, H]. With aux_layer_ids (each in 0..num_hidden_layers) also returns, in the order asked, the
        residual stream h [T, H] *entering* each listed layer before its input_layernorm: id 0 is the token
        embeddings, id i the output of layer i-1, id num_hidden_layers the last layer's output before the
        final norm (EAGLE3 taps these).
        """
        n = self.arch.num_hidden_layers
        if any(not 0 <= i <= n for i in aux_layer_ids):
            raise ValueError(f"aux_layer_ids={list(aux_layer_ids)} must lie in 0..{n}")
        hidden, aux = self.model(input_ids, positions, meta, aux_layer_ids)
        return (hidden, aux) if len(aux_layer_ids) else hidden

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:          # [N, H] -> [N, V] fp32
        return self.lm_head(hidden).float()

    @property
    def kv_cache_dtype(self) -> torch.dtype:
        """What the paged KV cache holds: the model dtype, or int8 under C8 (the same for every layer)."""
        return self.model.layers[0].self_attn.attn.kv_cache_dtype(self.dtype)

    def bind_kv_cache(self, kv_cache: torch.Tensor) -> None:
        """kv_cache [num_layers, 2, num_blocks, block_size, nkv_local, head_dim]: layer i attends in kv_cache[i]."""
        layers = self.model.layers
        attn0 = layers[0].self_attn
        expected = (len(layers), 2, attn0.num_kv_heads, attn0.head_dim)
        s = kv_cache.shape
        if kv_cache.dim() != 6 or (s[0], s[1], s[4], s[5]) != expected:
            raise ValueError(f"kv_cache shape {tuple(kv_cache.shape)} does not match "
                             f"[{expected[0]}, 2, num_blocks, block_size, {expected[2]}, {expected[3]}]")
        if (kv_cache.dtype == torch.int8) != (self.kv_cache_dtype == torch.int8):
            raise ValueError(f"kv_cache dtype {kv_cache.dtype}: this model's KV cache holds {self.kv_cache_dtype}")
        for i, layer in enumerate(layers):
            layer.self_attn.attn.kv_cache = kv_cache[i]                       # [2, NB, bs, nkv, d] view
