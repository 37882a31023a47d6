"""QuaRot for MiniMax-M2, offline only (spec A4): fold the norms, then rotate the residual stream and V.

With an orthogonal Q (hidden size) and R_h (head_dim), on an unquantized float model, in place:
  1. fold each RMSNorm weight g into its consumers (W <- W diag(g)), then g := 1, so RMSNorm(hQ) = RMSNorm(h) Q:
     input_layernorm -> q/k/v_proj; post_attention_layernorm -> router gate and every expert's w1/w3;
     model.norm -> lm_head
  2. global rotation: E <- E Q; consumers W <- W Q (q/k/v, gate, w1/w3, lm_head); producers W <- Q^T W (o_proj,
     w2): the residual stream becomes h Q everywhere, every output is unchanged
  3. head rotation: v_proj W <- B_kv^T W (v' = v R_h per KV head), o_proj W <- W B_q (B = blockdiag(R_h, ...)):
     attention mixes V rows within a head, so o' = o B_q and o_proj undoes it; exact under GQA
Q and K are not rotated (RoPE and the full-width q/k norm sit between), and nothing runs online: the result is a
plain float model whose weights were pre-rotated. All products are computed in float64.
"""
from __future__ import annotations

import torch

from m2serve.quantize.hadamard import random_hadamard

DEFAULT_SEED = 1234


@torch.no_grad()
def apply_quarot(model, seed: int = DEFAULT_SEED, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate an unquantized MiniMaxM2ForCausalLM in place; returns (Q [H, H], R_h [d, d]) in fp32.

    Q is drawn first, then R_h, from one generator seeded with `seed`."""
    arch = model.arch
    H, d = arch.hidden_size, arch.head_dim
    gen = torch.Generator().manual_seed(seed)
    Q = random_hadamard(H, gen)
    Rh = random_hadamard(d, gen)

    def put(param: torch.nn.Parameter, value: torch.Tensor) -> None:
        param.data.copy_(value.to(param.dtype))

    emb = model.model.embed_tokens.weight
    put(emb, emb.double() @ Q)
    for layer in (progress or (lambda x: x))(model.model.layers):
        attn, moe = layer.self_attn, layer.mlp
        g_in = layer.input_layernorm.weight.double()
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            w = (proj.weight.double() * g_in[None, :]) @ Q                       # [out, H]
            if proj is attn.v_proj:
                nkv = w.shape[0] // d
                w = torch.einsum("ij,hjk->hik", Rh.T, w.view(nkv, d, H)).reshape(nkv * d, H)   # B_kv^T W
            put(proj.weight, w)
        layer.input_layernorm.weight.fill_(1.0)
        wo = Q.T @ attn.o_proj.weight.double()                                   # [H, nh*d]
        nh = wo.shape[1] // d
        put(attn.o_proj.weight, (wo.view(H, nh, d) @ Rh).reshape(H, nh * d))      # W_o B_q

        g_post = layer.post_attention_layernorm.weight.double()
        put(moe.gate.weight, (moe.gate.weight.double() * g_post[None, :]) @ Q)    # stays fp32
        experts = moe.experts
        put(experts.w13_weight, (experts.w13_weight.double() * g_post) @ Q)       # [E, 2I, H]
        put(experts.w2_weight, Q.T @ experts.w2_weight.double())                  # [E, H, I]
        layer.post_attention_layernorm.weight.fill_(1.0)
    g_final = model.model.norm.weight.double()
    put(model.lm_head.weight, (model.lm_head.weight.double() * g_final[None, :]) @ Q)
    model.model.norm.weight.fill_(1.0)
    return Q.float(), Rh.float()
