"""bf16 weights with fp32 compute: `--dtype bfloat16` on a CPU without native bf16 matmul (no AMX or AVX-512 BF16).

On such a CPU a bf16 matmul is emulated (1.2 GFLOP/s here against 140-170 for fp32), so bf16 activations are slow,
while a decode step is bound by reading the weights: storing them in bf16 halves those bytes. So the model keeps
fp32 activations, norms, embedding, router and KV cache, and only the big matrices (q/k/v/o projections, the
experts and lm_head) are stored in bf16:
  * decode (few rows): m2serve's CPU kernels read the bf16 weights and widen them in registers (fp32 math);
  * prefill and anything past the kernels' row limits: the weight is widened to fp32 for that call and MKL runs
    it (compute-bound there, so the extra pass over the weights costs a few percent).
The result is the fp32 computation of the bf16-rounded checkpoint: at least as accurate as bf16 activations.

`CpuBf16WeightsConfig` hands these methods to every projection and expert layer, like a quant config does
(layers/quant/base.py); models/loader.py picks it (`wants_cpu_bf16_weights`), also for `--dtype auto` with a
bf16 checkpoint, whose weights it then keeps exactly.
"""
from __future__ import annotations

import torch

from m2serve.layers import cpu_kernels
from m2serve.layers.quant.base import (FloatKVCache, KVCacheMethod, LinearMethod, MoEMethod, UnquantizedLinearMethod,
                                       UnquantizedMoEMethod)


def _widened(weight: torch.Tensor, kernel) -> torch.Tensor:
    """The bf16 weight as fp32 for one call (the kernel's cast: torch's runs at ~2.7 GB/s on these CPUs)."""
    return cpu_kernels.widen(kernel, weight) if kernel is not None else weight.float()


class Bf16WeightLinearMethod(UnquantizedLinearMethod):
    name = "BF16_WEIGHTS"

    def create_weights(self, layer, in_local, out_local, dtype):
        super().create_weights(layer, in_local, out_local, torch.bfloat16)

    def process_weights_after_loading(self, layer):
        layer.packed_weight = None                                 # no oneDNN bf16 path: the math is fp32
        layer.cpu_kernel = cpu_kernels.get() if cpu_kernels.usable(layer.weight) else None

    def float_weight(self, layer, dtype):                          # past the kernel: widened for this call
        return _widened(layer.weight, layer.cpu_kernel)


class Bf16WeightMoEMethod(UnquantizedMoEMethod):
    name = "BF16_WEIGHTS"

    def create_weights(self, experts, num_local, i_local, hidden, dtype):
        super().create_weights(experts, num_local, i_local, hidden, torch.bfloat16)

    def process_weights_after_loading(self, experts):
        experts.packed_experts = None
        experts.cpu_kernel = (cpu_kernels.get() if cpu_kernels.usable(experts.w13_weight)
                              and cpu_kernels.usable(experts.w2_weight) else None)

    def float_weights(self, experts, dtype):                       # past the kernel (prefill: compute-bound,
        kernel = experts.cpu_kernel                                # the copy is a small part of it)
        return _widened(experts.w13_weight, kernel), _widened(experts.w2_weight, kernel)


class CpuBf16WeightsConfig:
    """Every projection, expert layer and lm_head stores bf16 and computes fp32; the router stays fp32."""

    def get_linear_method(self, prefix: str) -> LinearMethod:
        return Bf16WeightLinearMethod()

    def get_moe_method(self, prefix: str) -> MoEMethod:
        return Bf16WeightMoEMethod()

    def get_kv_cache_method(self, prefix: str, parallel) -> KVCacheMethod:
        return FloatKVCache()

    def summary(self) -> str:
        return "bf16 weights, fp32 compute (this CPU has no native bf16 matmul)"
