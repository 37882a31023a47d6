"""Quantization method interfaces: a layer owns one method object that creates its parameters and runs it.

    LinearMethod     create_weights(layer, in_local, out_local, dtype); apply(layer, x [T, in]) -> [T, out]
    MoEMethod        create_weights(experts, E_local, I_local, H, dtype); apply(experts, xs, counts) -> [N, H]
    KVCacheMethod    create_weights(attn); cache_dtype(model dtype);
                     quantize(t, "k"|"v") on cache write; dequantize(t, "k"|"v", dtype) on cache read
and all three: process_weights_after_loading(layer), called once by the loader after every tensor is in.

The float classes here (UnquantizedLinearMethod, UnquantizedMoEMethod, FloatKVCache) are what the layers use
by default; the int8 ones live in w8a8.py and kv_c8.py and are chosen per layer by a quant config (ascend.py).

Parameters created by a method carry loading metadata the generic weight loaders read:
    output_dim / input_dim   which tensor dim holds the layer's output / input features (TP shards along it)
    disk_dtypes              safetensors dtypes accepted on disk (default: float types only)
    load_transform           applied to the checkpoint tensor before the copy (e.g. int64 deq_scale -> fp32)
    flexible_shape           [n], [n, 1] and [1, n] are the same tensor (scales: writers differ)
"""
from __future__ import annotations

import torch
from torch import nn

from m2serve.layers import cpu_kernels
from m2serve.layers.batch_invariant import linear
from m2serve.layers.prepack import prepack

FLOAT_DISK_DTYPES = frozenset({"F32", "F16", "BF16", "F64"})


def make_param(module: nn.Module, name: str, shape, dtype: torch.dtype, *, loader=None, output_dim: int | None = None,
               input_dim: int | None = None, disk_dtypes=None, load_transform=None,
               flexible_shape: bool = False) -> nn.Parameter:
    """Register an uninitialised frozen parameter `name` on `module` with its loading metadata."""
    p = nn.Parameter(torch.empty(*shape, dtype=dtype), requires_grad=False)
    p.output_dim, p.input_dim = output_dim, input_dim
    p.disk_dtypes = frozenset(disk_dtypes) if disk_dtypes else FLOAT_DISK_DTYPES
    p.load_transform, p.flexible_shape = load_transform, flexible_shape
    if loader is not None:
        p.weight_loader = loader
    module.register_parameter(name, p)
    return p


def conform(param: nn.Parameter, full: torch.Tensor, expected: tuple[int, ...]) -> torch.Tensor:
    """The checkpoint tensor after the parameter's load_transform, reshaped when only the unit dims differ."""
    transform = getattr(param, "load_transform", None)
    if transform is not None:
        full = transform(full)
    if (getattr(param, "flexible_shape", False) and tuple(full.shape) != tuple(expected)
            and full.numel() == torch.Size(expected).numel()):
        full = full.reshape(expected)
    return full


class QuantMethod:
    """What every method has: a name for logs and errors, and a hook after loading."""
    name = "FLOAT"
    ignored_params: tuple[str, ...] = ()       # checkpoint tensors of the layer that are accepted and unused

    def process_weights_after_loading(self, layer: nn.Module) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearMethod(QuantMethod):
    def create_weights(self, layer: nn.Module, in_local: int, out_local: int, dtype: torch.dtype | None) -> None:
        raise NotImplementedError

    def apply(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class UnquantizedLinearMethod(LinearMethod):
    def create_weights(self, layer, in_local, out_local, dtype):
        make_param(layer, "weight", (out_local, in_local), dtype, loader=layer.weight_loader, output_dim=0,
                   input_dim=1)

    def process_weights_after_loading(self, layer):
        layer.packed_weight = prepack(layer.weight)            # bf16 on CPU: oneDNN-blocked copy, else None
        # Few-row (decode) calls on CPU: m2serve's kernel reads the weight once (layers/cpu_kernels.py).
        layer.cpu_kernel = (cpu_kernels.get() if layer.packed_weight is None and cpu_kernels.usable(layer.weight)
                            else None)

    def apply(self, layer, x):
        kernel = getattr(layer, "cpu_kernel", None)
        if cpu_kernels.serves_linear(kernel, x.shape[0]):
            return cpu_kernels.linear(kernel, x, layer.weight)
        return linear(x, self.float_weight(layer, x.dtype), getattr(layer, "packed_weight", None))

    def float_weight(self, layer, dtype: torch.dtype) -> torch.Tensor:
        """The weight the PyTorch path multiplies by (a storage-only method widens it here)."""
        return layer.weight


class MoEMethod(QuantMethod):
    # Checkpoint tensors per expert matrix: experts.{e}.{w1,w2,w3}.{suffix}; parameters w13_{suffix}, w2_{suffix}.
    param_suffixes: tuple[str, ...] = ("weight",)

    def create_weights(self, experts: nn.Module, num_local: int, i_local: int, hidden: int,
                       dtype: torch.dtype | None) -> None:
        raise NotImplementedError

    def apply(self, experts: nn.Module, xs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """SwiGLU of each contiguous expert slice of xs [N, H] (counts [E_local] rows each) -> [N, H]."""
        raise NotImplementedError


class UnquantizedMoEMethod(MoEMethod):
    def create_weights(self, experts, num_local, i_local, hidden, dtype):
        make_param(experts, "w13_weight", (num_local, 2 * i_local, hidden), dtype, loader=experts.weight_loader,
                   input_dim=2)
        make_param(experts, "w2_weight", (num_local, hidden, i_local), dtype, loader=experts.weight_loader,
                   input_dim=2)

    def process_weights_after_loading(self, experts):
        packed = [(prepack(a), prepack(b)) for a, b in zip(experts.w13_weight, experts.w2_weight)]
        experts.packed_experts = packed if packed and packed[0][0] is not None else None
        experts.cpu_kernel = (cpu_kernels.get() if experts.packed_experts is None and cpu_kernels.usable(
            experts.w13_weight) and cpu_kernels.usable(experts.w2_weight) else None)

    def apply(self, experts, xs, counts):
        return experts.float_experts(xs, counts)

    def float_weights(self, experts, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(w13, w2) the PyTorch path multiplies by (a storage-only method widens them here)."""
        return experts.w13_weight, experts.w2_weight


class KVCacheMethod(QuantMethod):
    def create_weights(self, attn: nn.Module) -> None:
        pass

    def cache_dtype(self, model_dtype: torch.dtype) -> torch.dtype:
        raise NotImplementedError

    def quantize(self, attn: nn.Module, t: torch.Tensor, which: str) -> torch.Tensor:
        """t [..., nkv, d] in the model dtype -> what the cache stores."""
        raise NotImplementedError

    def dequantize(self, attn: nn.Module, t: torch.Tensor, which: str, dtype: torch.dtype) -> torch.Tensor:
        """Cached values [..., nkv, d] -> K or V in `dtype`."""
        raise NotImplementedError


class FloatKVCache(KVCacheMethod):
    """The cache holds K/V in the model dtype (the default), or in `dtype` (`--kv-cache-dtype bfloat16`: half the
    bytes a decode step reads from the cache when the model computes in fp32)."""

    def __init__(self, dtype: torch.dtype | None = None) -> None:
        self.dtype = dtype

    def cache_dtype(self, model_dtype):
        return self.dtype or model_dtype

    def rounds(self, model_dtype: torch.dtype) -> bool:
        """The cache stores K/V in fewer bits than the model computes them."""
        return self.cache_dtype(model_dtype) != model_dtype

    def quantize(self, attn, t, which):
        return t

    def dequantize(self, attn, t, which, dtype):
        return t.to(dtype)
