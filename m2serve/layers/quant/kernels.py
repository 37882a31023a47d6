"""Integer kernels shared by the W8A8 methods, written with plain torch ops (CPU and CUDA).

    int8_mm(a, w)            a int8 [M, K], w int8 [N, K] -> a @ w^T, exact int32 [M, N]
    quantize_per_token(x)    symmetric per-row int8 + fp32 scale (W8A8_DYNAMIC's online activation quant)
    quantize_static(x, ...)  asymmetric per-tensor int8 with a calibrated scale and zero point (W8A8 static)

torch._int_mm is the kernel: on CPU (oneDNN, AMX/VNNI) it takes any shape; on CUDA (cuBLASLt IMMA) it needs
M > 16 and K, N multiples of 8, so rows and the reduction / output dims are zero-padded there (zero rows and
zero columns add nothing to an integer sum, so the result is the same exact int32). Measured on this repo's
2-core AMX CPU with one thread (us; int8 with the [N, K] weight passed as a transposed view vs fp32 / bf16
F.linear):  M=1 K=512 N=2048: 76 vs 202 / 373;  M=64: 148 vs 1118 / 357;  M=256: 604 vs 3435 / 698;
M=1 K=N=3072: 751 vs 1419 / 1386;  M=256 K=N=3072: 2915 vs 32038 / 5841. Passing the weight as `w.t()` of a
row-major [N, K] tensor was faster than a contiguous [K, N] copy at every shape, so weights stay [out, in].
One MiniMax-M2-sized layer (q/k/v/o at H=3072 plus 16 experts of I=1536, top-8; per-token quant included),
1 thread, ms at T = 1 / 16 / 64 tokens: fp32 54 / 242 / 338, bf16 43 / 76 / 104, W8A8_DYNAMIC 35 / 73 / 115.
"""
from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F

INT8_MIN, INT8_MAX = -128, 127
_CUDA_MIN_ROWS = 17
_TINY = torch.finfo(torch.float32).tiny


def int8_mm(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Exact int32 a @ w^T for a int8 [M, K] and w int8 [N, K]."""
    M, K = a.shape
    N = w.shape[0]
    if M == 0:
        return torch.zeros(0, N, dtype=torch.int32, device=a.device)
    if a.device.type == "cuda":
        pad_m, pad_k, pad_n = max(_CUDA_MIN_ROWS - M, 0), (-K) % 8, (-N) % 8
        if pad_k:
            a, w = F.pad(a, (0, pad_k)), F.pad(w, (0, pad_k))
        if pad_n:
            w = F.pad(w, (0, 0, 0, pad_n))
        if pad_m:
            a = F.pad(a, (0, 0, 0, pad_m))
        try:
            return torch._int_mm(a, w.t())[:M, :N]
        except RuntimeError as e:                   # a cuBLASLt layout it refuses: exact, slower, said once
            _warn_once(f"torch._int_mm failed on {a.device} ({e}); using an exact float64 matmul")
            return (a.double() @ w.double().t()).to(torch.int32)[:M, :N]
    if a.device.type == "cpu":
        return torch._int_mm(a, w.t())
    # Other backends: float64 holds every partial sum exactly (|sum| <= K * 2^14 << 2^53).
    return (a.double() @ w.double().t()).to(torch.int32)


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    logging.getLogger(__name__).warning(message)


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [T, K] float -> (x_q int8 [T, K], s fp32 [T, 1]) with s = max_k |x| / 127, x_q = round(x / s).

    An all-zero row gets s = 0 and x_q = 0 (its product is then 0, as it should be). |x / s| <= 127 up to two
    roundings, so no clamp is needed; few ops matter here, a decode step runs this once per linear."""
    xf = x.float()
    s = torch.linalg.vector_norm(xf, float("inf"), dim=-1, keepdim=True) / INT8_MAX      # max |x| per row, exact
    q = torch.div(xf, s.clamp_min(_TINY)).round_()
    return q.to(torch.int8), s


def quantize_static(x: torch.Tensor, inv_scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """x [T, K] float -> int8 clamp(round(x * (1/s_x) + o_x)) (per-tensor scale, integer zero point)."""
    q = torch.round(x.float() * inv_scale + offset).clamp_(INT8_MIN, INT8_MAX)
    return q.to(torch.int8)


def deq_scale_to_float(t: torch.Tensor) -> torch.Tensor:
    """deq_scale as stored: fp32 (bf16 models) or int64 holding the fp32 bit pattern (fp16 models) -> fp32."""
    if t.is_floating_point():
        return t.float()
    bits = t.to(torch.int64) & 0xFFFFFFFF                                   # low 32 bits: the fp32 pattern
    bits = torch.where(bits >= 2**31, bits - 2**32, bits)                   # as a signed int32 value
    return bits.to(torch.int32).view(torch.float32)


def deq_scale_to_int64(t: torch.Tensor) -> torch.Tensor:
    """fp32 deq_scale -> the int64 form (fp32 bits read as int32, widened)."""
    return t.float().contiguous().view(torch.int32).to(torch.int64)
