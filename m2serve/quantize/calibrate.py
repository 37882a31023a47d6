"""Calibration passes over a float MiniMax-M2 (after QuaRot, if any): one prefill per text sample.

* static W8A8: the min and max over all elements of each listed linear's input (per-tensor, asymmetric);
* C8: the per-channel abs-max of K after k_norm and RoPE and of V (as attention receives them), over the
  flattened (kv_head, head_dim) channels.
"""
from __future__ import annotations

import torch

from m2serve.layers.attention_metadata import AttentionMetadata


class Calibrator:
    def __init__(self, model, static_linears: list[str] = (), kv: bool = False) -> None:
        self.model = model
        modules = dict(model.named_modules())
        self.minmax: dict[str, list[float]] = {}
        self.kv_absmax: dict[int, dict[str, torch.Tensor]] = {}
        self._hooks = []
        for name in static_linears:
            self._hooks.append(modules[name].register_forward_pre_hook(self._linear_hook(name)))
        if kv:
            for i, layer in enumerate(model.model.layers):
                self._hooks.append(layer.self_attn.attn.register_forward_pre_hook(self._attn_hook(i)))

    def _linear_hook(self, name: str):
        def hook(module, args):
            x = args[0].detach().float()
            lo, hi = float(x.min()), float(x.max())
            cur = self.minmax.setdefault(name, [lo, hi])
            cur[0], cur[1] = min(cur[0], lo), max(cur[1], hi)
        return hook

    def _attn_hook(self, i: int):
        def hook(module, args):
            _, k, v, _ = args                                             # k, v [T, nkv, d]
            for which, t in (("k", k), ("v", v)):
                amax = t.detach().float().abs().reshape(t.shape[0], -1).amax(0)     # [nkv * d]
                prev = self.kv_absmax.setdefault(i, {}).get(which)
                self.kv_absmax[i][which] = amax if prev is None else torch.maximum(prev, amax)
        return hook

    @torch.inference_mode()
    def run(self, samples: list[list[int]], progress=None, block_size: int = 16) -> None:
        arch = self.model.arch
        longest = max(len(s) for s in samples)
        n_blocks = -(-longest // block_size)
        dev = next(self.model.parameters()).device
        cache = torch.zeros(arch.num_hidden_layers, 2, n_blocks, block_size, arch.num_key_value_heads,
                            arch.head_dim, dtype=self.model.kv_cache_dtype, device=dev)
        self.model.bind_kv_cache(cache)
        for ids in (progress or (lambda x: x))(samples):
            L = len(ids)
            meta = AttentionMetadata(slot_mapping=torch.arange(L, device=dev), query_start_loc=[0, L], seq_lens=[L],
                                     block_tables=torch.arange(n_blocks, device=dev)[None, :], num_decodes=0,
                                     block_size=block_size)
            self.model(torch.tensor(ids, device=dev), torch.arange(L, device=dev), meta)

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
