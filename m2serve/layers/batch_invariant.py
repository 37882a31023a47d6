"""Batch-invariant numerics: a token's result does not depend on what else is in its batch.

BLAS kernels pick their blocking from the matrix shape, so the same row multiplied inside a batch of 1, 2 or
40 rows can differ in the last bits; a MoE router then occasionally flips a near-tied expert and the greedy
continuation diverges. With batch invariance on (vLLM's VLLM_BATCH_INVARIANT, here `batch_invariant=True` /
`--batch-invariant` / M2SERVE_BATCH_INVARIANT=1):
  * every matmul runs over fixed tiles of TILE rows (the last one zero-padded), so each row always meets the
    same kernel with the same shape;
  * attention computes each query token against exactly its own prefix, so a token gets the same reduction
    whether it is decoded, prefilled whole, prefilled in chunks or recomputed after preemption.
Then batching, chunked prefill, preemption and prefix caching give bitwise the same tokens. It costs speed
(prefill most), so it is off by default.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

TILE = 16
_enabled = False


def set_batch_invariant(enabled: bool) -> None:
    global _enabled
    _enabled = bool(enabled)


def is_batch_invariant() -> bool:
    return _enabled


ROW_ALIGN = 64


def rowwise(fn, x: torch.Tensor) -> torch.Tensor:
    """fn(x) for an elementwise fn on a contiguous x [T, ...], with each row's result independent of T.

    PyTorch's CPU elementwise loops run whole SIMD blocks through SLEEF (exp, sigmoid, silu, ...) and the last
    numel % block elements through the scalar libm function; the two differ in the last bit. On a contiguous
    [T, E] tensor which elements fall in that tail depends on T, so a row's value depends on its batch. With
    the rows padded to a multiple of 64, numel is a multiple of every block size (16 floats on AVX2, 32 on
    AVX-512) and every element takes the SIMD path."""
    if not _enabled:
        return fn(x)
    T = x.shape[0]
    pad = (-T) % ROW_ALIGN
    if pad:
        x = torch.cat([x, x.new_zeros(pad, *x.shape[1:])])
    return fn(x)[:T]


def linear(x: torch.Tensor, weight: torch.Tensor, packed: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, over fixed row tiles when batch invariance is on. x [T, in], weight [out, in] -> [T, out].
    `packed` (layers/prepack.py) is the same weight prepacked for oneDNN; used instead when given."""
    if packed is not None:
        from m2serve.layers.prepack import packed_linear

        def mm(t):
            return packed_linear(t, packed)
    else:
        def mm(t):
            return F.linear(t, weight)
    if not _enabled:
        return mm(x)
    T = x.shape[0]
    pad = (-T) % TILE
    if pad:
        x = torch.cat([x, x.new_zeros(pad, x.shape[1])])
    return torch.cat([mm(tile) for tile in x.split(TILE)])[:T]
