"""An independent MiniMax-M2 forward over an msModelSlim (AscendV1) folder, written from the spec for the tests.

It reads the safetensors and quant_model_description.json directly (no m2serve loader or layer code) and
computes in float64, except the documented quantization steps, which use fp32 like the runtime:
  W8A8_DYNAMIC  s_t = max|x|/127 (fp32), x_q = round(x/s_t); y = (x_q . W_q, exact int64) * s_w * s_t
  W8A8          x_q = clamp(round(x * (1/s_x) + o_x)); y = (x_q . W_q + quant_bias) * deq_scale
  C8            cached K/V = round(k / s) int8, read back as k_q * s (a prefill with no cached prefix attends
                over float K/V; every decode step over the dequantized cache, its own token included)
The integer products are exact int64 matmuls; `scale_dtype` rounds weight/input scales like the runtime does
for a bf16 model.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from m2serve.models.arch import MiniMaxM2Arch


def _int_product(xq: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
    return (xq.to(torch.int64) @ wq.to(torch.int64).T).double()


def _deq_scale(t: torch.Tensor) -> torch.Tensor:
    if t.is_floating_point():
        return t.double()
    return (t.to(torch.int64) & 0xFFFFFFFF).to(torch.int32).view(torch.float32).double()   # int64 form


class QuantReference:
    def __init__(self, path: str | Path, scale_dtype: torch.dtype = torch.float32) -> None:
        path = Path(path)
        self.arch = MiniMaxM2Arch.from_dir(path)
        self.desc = json.loads((path / "quant_model_description.json").read_text())
        index = path / "quant_model_weights.safetensors.index.json"
        files = (sorted({path / f for f in json.loads(index.read_text())["weight_map"].values()}) if index.is_file()
                 else [path / "quant_model_weights.safetensors"])
        self.t: dict[str, torch.Tensor] = {}
        for f in files:
            self.t.update(load_file(str(f)))
        self.scale_dtype = scale_dtype
        self.c8 = self.desc.get("kv_cache_type") == "C8"

    # -- pieces -----------------------------------------------------------------------------------------
    def linear(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        kind = self.desc[prefix + ".weight"]
        w = self.t[prefix + ".weight"]
        if kind == "FLOAT":
            return x @ w.double().T
        xf = x.float()
        if kind == "W8A8_DYNAMIC":
            s_t = xf.abs().amax(-1, keepdim=True) / 127.0
            xq = torch.round(xf / torch.where(s_t > 0, s_t, torch.ones_like(s_t))).clamp(-128, 127)
            s_w = self.t[prefix + ".weight_scale"].to(self.scale_dtype).double().reshape(-1)
            return _int_product(xq, w) * s_w * s_t.double()
        if kind == "W8A8":
            s_x = self.t[prefix + ".input_scale"].to(self.scale_dtype).float().reshape(())
            o_x = self.t[prefix + ".input_offset"].float().reshape(())
            xq = torch.round(xf * (1.0 / s_x) + o_x).clamp(-128, 127)
            acc = _int_product(xq, w) + self.t[prefix + ".quant_bias"].double().reshape(-1)
            return acc * _deq_scale(self.t[prefix + ".deq_scale"]).reshape(-1)
        raise AssertionError(f"{prefix}: type {kind}")

    def rmsnorm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.arch.rms_norm_eps) * self.t[name].double()

    def rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:      # x [T, n, d]
        rd = self.arch.rotary_dim
        inv = 1.0 / (self.arch.rope_theta ** (torch.arange(0, rd, 2, dtype=torch.float64) / rd))
        ang = pos.double()[:, None] * inv[None, :]
        cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
        x1, x2 = x[..., :rd // 2], x[..., rd // 2:rd]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, x[..., rd:]], -1)

    def kv_roundtrip(self, t: torch.Tensor, layer: int, which: str) -> torch.Tensor:
        s = self.t[f"model.layers.{layer}.self_attn.{which}_proj.kv_cache_scale"].float().reshape(-1)
        s = s.view(t.shape[-2], t.shape[-1])
        q = torch.round(t.float() * torch.where(s > 0, 1.0 / s, torch.zeros_like(s))).clamp(-128, 127)
        return q.double() * s.double()

    def moe(self, i: int, x: torch.Tensor) -> torch.Tensor:
        a, p = self.arch, f"model.layers.{i}.block_sparse_moe"
        scores = torch.sigmoid(x.float() @ self.t[p + ".gate.weight"].float().T).double()   # fp32 router
        _, ids = torch.topk(scores + self.t[p + ".e_score_correction_bias"].double(), a.num_experts_per_tok, -1)
        weights = scores.gather(1, ids)
        weights = weights / weights.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for tok in range(x.shape[0]):
            for k in range(a.num_experts_per_tok):
                e = int(ids[tok, k])
                xe = x[tok:tok + 1]
                g = self.linear(f"{p}.experts.{e}.w1", xe)
                u = self.linear(f"{p}.experts.{e}.w3", xe)
                out[tok] += weights[tok, k] * self.linear(f"{p}.experts.{e}.w2", torch.nn.functional.silu(g) * u)[0]
        return out

    # -- the model --------------------------------------------------------------------------------------
    def logits(self, prompt: list[int], decode: list[int] = ()) -> torch.Tensor:
        """Logits [len(prompt) + len(decode), V]: one prefill of `prompt`, then one decode step per token."""
        a = self.arch
        nh, nkv, d = a.num_attention_heads, a.num_key_value_heads, a.head_dim
        cache: dict[int, tuple[list, list]] = {i: ([], []) for i in range(a.num_hidden_layers)}
        self.keys: dict[int, torch.Tensor] = {}                           # per layer: float K after norm + RoPE
        out = []
        steps = [list(prompt)] + [[t] for t in decode]
        start = 0
        for chunk in steps:
            ids = torch.tensor(chunk)
            pos = torch.arange(start, start + len(chunk))
            h = self.t["model.embed_tokens.weight"].double()[ids]
            for i in range(a.num_hidden_layers):
                p = f"model.layers.{i}"
                x = self.rmsnorm(h, f"{p}.input_layernorm.weight")
                q = self.rmsnorm(self.linear(f"{p}.self_attn.q_proj", x), f"{p}.self_attn.q_norm.weight")
                k = self.rmsnorm(self.linear(f"{p}.self_attn.k_proj", x), f"{p}.self_attn.k_norm.weight")
                v = self.linear(f"{p}.self_attn.v_proj", x).view(-1, nkv, d)
                q = self.rope(q.view(-1, nh, d), pos)
                k = self.rope(k.view(-1, nkv, d), pos)
                ks, vs = cache[i]
                ks.append(k)
                vs.append(v)
                K, V = torch.cat(ks), torch.cat(vs)                       # [L, nkv, d]
                self.keys[i] = K
                if self.c8 and start > 0:                                 # decode: the int8 cache, dequantized
                    K, V = self.kv_roundtrip(K, i, "k"), self.kv_roundtrip(V, i, "v")
                L, n = K.shape[0], q.shape[0]
                rep = nh // nkv
                Kh = K.repeat_interleave(rep, dim=1).transpose(0, 1)      # [nh, L, d]
                Vh = V.repeat_interleave(rep, dim=1).transpose(0, 1)
                scores = (q.transpose(0, 1) @ Kh.transpose(1, 2)) * d ** -0.5     # [nh, n, L]
                qpos = torch.arange(L - n, L)
                scores = scores.masked_fill(torch.arange(L)[None, :] > qpos[:, None], float("-inf"))
                o = (torch.softmax(scores, -1) @ Vh).transpose(0, 1).reshape(n, nh * d)
                h = h + self.linear(f"{p}.self_attn.o_proj", o)
                h = h + self.moe(i, self.rmsnorm(h, f"{p}.post_attention_layernorm.weight"))
            out.append(self.rmsnorm(h, "model.norm.weight") @ self.t["lm_head.weight"].double().T)
            start += len(chunk)
        return torch.cat(out)
