"""Where this process sits in the tensor/expert-parallel layout.

Layers ask this for their shard at construction and load time, so a single-process engine and a TP/EP worker
run the same model code. Multi-process groups are created by the executor (torch.distributed); until then the
world is one rank.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ParallelContext:
    tp_rank: int = 0
    tp_size: int = 1
    ep_rank: int = 0
    ep_size: int = 1

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum x over the tensor-parallel group (a no-op on one rank)."""
        if self.tp_size > 1:
            dist.all_reduce(x)
        return x


_CONTEXT = ParallelContext()


def get_parallel_context() -> ParallelContext:
    return _CONTEXT


def set_parallel_context(ctx: ParallelContext) -> None:
    global _CONTEXT
    _CONTEXT = ctx
