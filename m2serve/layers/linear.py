"""Bias-free linear layers, replicated or split over the tensor-parallel group (MiniMax-M2 has no biases).

Each layer allocates only its own shard and takes it from the full checkpoint tensor at load time:
`param.weight_loader(param, full_tensor)` slices by tp_rank. Weights are stored [out, in] like the checkpoint.

* ReplicatedLinear: every rank holds the whole weight.
* ColumnParallelLinear: output features split; rank r computes y[:, r*out/tp:(r+1)*out/tp] (no gather: the
  next op consumes the shard, e.g. attention heads).
* RowParallelLinear: input features split; each rank's partial product is summed with an all-reduce.
"""
from __future__ import annotations

import torch
from torch import nn

from m2serve.distributed.parallel_state import ParallelContext, get_parallel_context
from m2serve.errors import CheckpointError
from m2serve.layers.batch_invariant import linear


def default_weight_loader(param: nn.Parameter, full: torch.Tensor) -> None:
    """Copy a whole tensor (casting dtype/device); the loader names the tensor if this raises."""
    if tuple(full.shape) != tuple(param.shape):
        raise CheckpointError(f"shape {tuple(full.shape)}, expected {tuple(param.shape)}")
    param.data.copy_(full)


class LinearBase(nn.Module):
    """y = x @ W^T with W [out_local, in_local]. Subclasses choose the shard."""

    def __init__(self, in_features: int, out_features: int, in_local: int, out_local: int,
                 dtype: torch.dtype | None, parallel: ParallelContext) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.parallel = parallel
        self.weight = nn.Parameter(torch.empty(out_local, in_local, dtype=dtype), requires_grad=False)
        self.weight.weight_loader = self.weight_loader

    def _check_full(self, full: torch.Tensor) -> None:
        if tuple(full.shape) != (self.out_features, self.in_features):
            raise CheckpointError(f"shape {tuple(full.shape)}, expected {(self.out_features, self.in_features)}")

    def weight_loader(self, param: nn.Parameter, full: torch.Tensor) -> None:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:                       # x [T, in_local]
        return linear(x, self.weight)                                         # [T, out_local]

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"in={self.in_features}, out={self.out_features}, local=[{o}, {i}]"


def _split(size: int, tp: int, what: str) -> int:
    if size % tp:
        raise ValueError(f"{what}={size} is not divisible by tp_size={tp}")
    return size // tp


class ReplicatedLinear(LinearBase):
    def __init__(self, in_features: int, out_features: int, dtype: torch.dtype | None = None,
                 parallel: ParallelContext | None = None) -> None:
        parallel = parallel or get_parallel_context()
        super().__init__(in_features, out_features, in_features, out_features, dtype, parallel)

    def weight_loader(self, param: nn.Parameter, full: torch.Tensor) -> None:
        self._check_full(full)
        param.data.copy_(full)


class ColumnParallelLinear(LinearBase):
    def __init__(self, in_features: int, out_features: int, dtype: torch.dtype | None = None,
                 parallel: ParallelContext | None = None) -> None:
        parallel = parallel or get_parallel_context()
        out_local = _split(out_features, parallel.tp_size, "out_features")
        super().__init__(in_features, out_features, in_features, out_local, dtype, parallel)

    def weight_loader(self, param: nn.Parameter, full: torch.Tensor) -> None:
        self._check_full(full)
        n = param.shape[0]
        param.data.copy_(full[self.parallel.tp_rank * n:(self.parallel.tp_rank + 1) * n])   # rows of this rank


class RowParallelLinear(LinearBase):
    def __init__(self, in_features: int, out_features: int, dtype: torch.dtype | None = None,
                 parallel: ParallelContext | None = None) -> None:
        parallel = parallel or get_parallel_context()
        in_local = _split(in_features, parallel.tp_size, "in_features")
        super().__init__(in_features, out_features, in_local, out_features, dtype, parallel)

    def weight_loader(self, param: nn.Parameter, full: torch.Tensor) -> None:
        self._check_full(full)
        n = param.shape[1]
        param.data.copy_(full[:, self.parallel.tp_rank * n:(self.parallel.tp_rank + 1) * n])  # columns of this rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:                       # x [T, in_local]
        y = linear(x, self.weight)                                            # [T, out] partial sum
        if self.parallel.tp_size > 1:
            y = self.parallel.all_reduce(y)
        return y
