"""oneDNN weight prepacking for bf16 matmuls on CPU.

F.linear on a bf16 CPU weight makes oneDNN reorder the weight into its blocked (AMX / AVX-512) layout on every
call, which for a decode step's few rows costs more than the matmul. Reordering once at load and calling the
packed kernel is what PyTorch's own CPU inference path does (inductor's weight-prepack pass). Measured on this
repo's 2-core AMX machine, 64 matrices of [1024, 512], ms for the set: M=2 rows fp32 6.4 / bf16 7.3 / bf16
packed 4.4; M=16 18.2 / 7.6 / 4.3; a [8192, 512] lm_head at M=16: fp32 1.46, bf16 packed 0.33.

The packed copy lives beside the checkpoint-layout parameter (which stays for the state dict, TP and tools), so
bf16 weights take twice their memory on CPU; M2SERVE_CPU_WEIGHT_PREPACK=0 turns packing off.
"""
from __future__ import annotations

import functools

import torch

from m2serve import envs

PACK_BATCH_HINT = 16   # oneDNN picks the blocking for about this many rows; any row count runs


@functools.cache
def cpu_supports_packed_bf16() -> bool:
    """oneDNN's bf16 linear needs AVX-512 (bw/vl/dq) or AVX-NE-CONVERT; on a plain AVX2 CPU the reorder raises,
    and bf16 weights stay on F.linear there."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def can_prepack(weight: torch.Tensor) -> bool:
    return (weight.device.type == "cpu" and weight.dtype == torch.bfloat16 and weight.dim() == 2
            and envs.cpu_weight_prepack() and cpu_supports_packed_bf16())


def prepack(weight: torch.Tensor) -> torch.Tensor | None:
    """weight [out, in] bf16 on CPU -> an opaque oneDNN-blocked copy, or None where packing does not apply."""
    if not can_prepack(weight):
        return None
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACK_BATCH_HINT)


@torch.compiler.disable   # dynamo cannot trace the opaque oneDNN tensor: a compiled layer calls it eagerly
def packed_linear(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """x [T, in] bf16 @ the packed weight^T -> [T, out] bf16 (no bias: MiniMax-M2 has none)."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
