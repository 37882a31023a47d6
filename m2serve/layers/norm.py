"""RMSNorm (spec minimax-m2.md §3).

`y = w * (x / sqrt(mean(x^2) + eps))`, the statistics in fp32. Like transformers, the normalized value is cast
back to the input dtype *before* the multiply by the weight: in fp32 this is bit-identical to the reference, in
bf16 it only changes one rounding.

MiniMax-M2 also normalizes the full q (nh*d) and k (nkv*d) projections with one RMSNorm each, before the head
split. Under tensor parallelism each rank holds only a slice of those channels, so `ShardedRMSNorm` averages
the per-rank mean of squares over the TP group; a per-rank norm would be numerically wrong.
"""
from __future__ import annotations

import torch
from torch import nn

from m2serve.distributed.parallel_state import ParallelContext, get_parallel_context
from m2serve.errors import CheckpointError


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size, dtype=dtype), requires_grad=False)
        self.weight.weight_loader = self.weight_loader

    def weight_loader(self, param: nn.Parameter, full: torch.Tensor) -> None:
        if tuple(full.shape) != tuple(param.shape):
            raise CheckpointError(f"shape {tuple(full.shape)}, expected {tuple(param.shape)}")
        param.data.copy_(full)

    def _mean_square(self, x: torch.Tensor) -> torch.Tensor:
        return x.pow(2).mean(-1, keepdim=True)                              # [..., 1] fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:                     # x [..., hidden]
        xf = x.float()
        normed = xf * torch.rsqrt(self._mean_square(xf) + self.eps)
        return self.weight * normed.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.hidden_size}, eps={self.eps}"


class ShardedRMSNorm(RMSNorm):
    """RMSNorm over a width split evenly across the TP group (full-width QK norm).

    This rank holds channels [tp_rank * full/tp, (tp_rank+1) * full/tp) of both the activations and the
    weight. Each rank computes the mean of squares of its slice; the mean over the full width is the sum of
    those local means over the group divided by tp_size (equal slices), which needs one all-reduce of a [T, 1]
    tensor. With tp_size == 1 it is exactly RMSNorm.
    """

    def __init__(self, full_size: int, eps: float = 1e-6, dtype: torch.dtype | None = None,
                 parallel: ParallelContext | None = None) -> None:
        self.parallel = parallel or get_parallel_context()
        tp = self.parallel.tp_size
        if full_size % tp:
            raise ValueError(f"norm width {full_size} is not divisible by tp_size={tp}")
        super().__init__(full_size // tp, eps, dtype)
        self.full_size = full_size

    def weight_loader(self, param: nn.Parameter, full: torch.Tensor) -> None:
        if tuple(full.shape) != (self.full_size,):
            raise CheckpointError(f"shape {tuple(full.shape)}, expected {(self.full_size,)}")
        n = self.hidden_size
        param.data.copy_(full[self.parallel.tp_rank * n:(self.parallel.tp_rank + 1) * n])

    def _mean_square(self, x: torch.Tensor) -> torch.Tensor:
        ms = x.pow(2).mean(-1, keepdim=True)                                # [..., 1] local mean
        if self.parallel.tp_size > 1:
            ms = self.parallel.all_reduce(ms) / self.parallel.tp_size       # global mean over full width
        return ms
