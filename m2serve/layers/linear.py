"""Bias-free linear layers, replicated or split over the tensor-parallel group (MiniMax-M2 has no biases).

Each layer allocates only its own shard and takes it from the full checkpoint tensor at load time:
`param.weight_loader(param, full_tensor)` slices by tp_rank. Weights are stored [out, in] like the checkpoint.

* ReplicatedLinear: every rank holds the whole weight.
* ColumnParallelLinear: output features split; rank r computes y[:, r*out/tp:(r+1)*out/tp] (no gather: the
  next op consumes the shard, e.g. attention heads).
* RowParallelLinear: input features split; each rank's partial product is summed with an all-reduce.

What a layer holds and computes is its quant method's business (layers/quant/): the default
UnquantizedLinearMethod creates `weight`; int8 methods add scales. The loader below shards any of those
parameters along the dimension its `output_dim` / `input_dim` tag names, so methods need no loader of their own.
"""
from __future__ import annotations

import torch
from torch import nn

from m2serve.distributed.parallel_state import ParallelContext, get_parallel_context
from m2serve.errors import CheckpointError
from m2serve.layers.quant.base import LinearMethod, UnquantizedLinearMethod, conform


def default_weight_loader(param: nn.Parameter, full: torch.Tensor) -> None:
    """Copy a whole tensor (casting dtype/device); the loader names the tensor if this raises."""
    if tuple(full.shape) != tuple(param.shape):
        raise CheckpointError(f"shape {tuple(full.shape)}, expected {tuple(param.shape)}")
    param.data.copy_(full)


class LinearBase(nn.Module):
    """y = x @ W^T with W [out_local, in_local], computed by the layer's quant method. Subclasses choose the shard."""

    shard_dim_attr: str | None = None          # "output_dim" / "input_dim": the tag of the dim this layer splits
    reduce_results = False                     # True where partial outputs are all-reduced (row parallel)

    def __init__(self, in_features: int, out_features: int, in_local: int, out_local: int,
                 dtype: torch.dtype | None, parallel: ParallelContext,
                 quant_method: LinearMethod | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.parallel = parallel
        self.quant_method = quant_method or UnquantizedLinearMethod()
        self.quant_method.create_weights(self, in_local, out_local, dtype)

    def _full_shape(self, param: nn.Parameter) -> tuple[int, ...]:
        shape = list(param.shape)
        for attr, size in (("output_dim", self.out_features), ("input_dim", self.in_features)):
            dim = getattr(param, attr, None)
            if dim is not None and attr == self.shard_dim_attr:
                shape[dim] = size
        return tuple(shape)

    def weight_loader(self, param: nn.Parameter, full: torch.Tensor) -> None:
        """Copy this rank's part of a whole checkpoint tensor into `param` (any parameter of this layer)."""
        expected = self._full_shape(param)
        full = conform(param, full, expected)
        if tuple(full.shape) != expected:
            raise CheckpointError(f"shape {tuple(full.shape)}, expected {expected}")
        dim = getattr(param, self.shard_dim_attr, None) if self.shard_dim_attr else None
        if dim is not None and self.parallel.tp_size > 1:
            n = param.shape[dim]
            full = full.narrow(dim, self.parallel.tp_rank * n, n)
        param.data.copy_(full)

    def forward(self, x: torch.Tensor) -> torch.Tensor:                       # x [T, in_local]
        return self.quant_method.apply(self, x)                               # [T, out_local]

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        q = "" if isinstance(self.quant_method, UnquantizedLinearMethod) else f", quant={self.quant_method.name}"
        return f"in={self.in_features}, out={self.out_features}, local=[{o}, {i}]{q}"


def _split(size: int, tp: int, what: str) -> int:
    if size % tp:
        raise ValueError(f"{what}={size} is not divisible by tp_size={tp}")
    return size // tp


class ReplicatedLinear(LinearBase):
    def __init__(self, in_features: int, out_features: int, dtype: torch.dtype | None = None,
                 parallel: ParallelContext | None = None, quant_method: LinearMethod | None = None) -> None:
        parallel = parallel or get_parallel_context()
        super().__init__(in_features, out_features, in_features, out_features, dtype, parallel, quant_method)


class ColumnParallelLinear(LinearBase):
    shard_dim_attr = "output_dim"              # rows of this rank

    def __init__(self, in_features: int, out_features: int, dtype: torch.dtype | None = None,
                 parallel: ParallelContext | None = None, quant_method: LinearMethod | None = None) -> None:
        parallel = parallel or get_parallel_context()
        out_local = _split(out_features, parallel.tp_size, "out_features")
        super().__init__(in_features, out_features, in_features, out_local, dtype, parallel, quant_method)


class RowParallelLinear(LinearBase):
    shard_dim_attr = "input_dim"               # columns of this rank
    reduce_results = True

    def __init__(self, in_features: int, out_features: int, dtype: torch.dtype | None = None,
                 parallel: ParallelContext | None = None, quant_method: LinearMethod | None = None) -> None:
        parallel = parallel or get_parallel_context()
        in_local = _split(in_features, parallel.tp_size, "in_features")
        super().__init__(in_features, out_features, in_local, out_features, dtype, parallel, quant_method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:                       # x [T, in_local]
        y = self.quant_method.apply(self, x)                                  # [T, out] partial sum
        if self.parallel.tp_size > 1:
            y = self.parallel.all_reduce(y)
        return y
