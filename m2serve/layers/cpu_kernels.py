"""m2serve's compiled CPU kernels (csrc/): few-row matmuls that read each weight once, and the decode layer built on them.

    linear(x [n, K], w [M, K] fp32|bf16) -> [n, M] fp32
    experts(x [N, H] sorted by expert, counts [E], w13 [E, 2I, H], w2 [E, H, I]) -> [N, H] fp32  (SwiGLU)
    decode_attention(q [B, nh, d], k_cache, v_cache [NB, bs, nkv, d], block_tables, seq_lens, scale) -> [B, nh, d]
    decode_layer(h [T, H], the layer's 12 tensors, ...) -> [T, H]: a whole MiniMax-M2 decoder layer of a decode-only
        step (models/minimax_m2_fused.py)
    widen(w bf16) -> fp32 copy
    experts_mm(x [N, H] sorted by expert, counts [E], w13, w2) -> [N, H] fp32: the many-row (prefill) SwiGLU experts,
        MKL sgemm per expert on weights widened one expert at a time, SwiGLU fused
    moe_combine(y [N, H] sorted by expert, pos [T, K], w [T, K]) -> [T, H]: the routing-weighted sum in token order

Built with torch.utils.cpp_extension the first time a process needs them (about a minute on 2 cores; cached under
TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions), only on CPUs with AVX2 + FMA. Where the build fails or
M2SERVE_CPU_KERNELS=0, `get()` returns None and callers keep the PyTorch path.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import time
from pathlib import Path

import torch

from m2serve import envs
from m2serve.layers.batch_invariant import is_batch_invariant

logger = logging.getLogger(__name__)

CSRC = Path(__file__).parent / "csrc"
SOURCES = [CSRC / "cpu_gemv.cpp", CSRC / "decode_layer.cpp"]   # + kernels.h, included by both
# Row limits: past these, MKL's blocked sgemm (compute-bound by then) beats reading the weight once.
LINEAR_MAX_ROWS = 16        # rows of a linear layer's input
EXPERT_MAX_MEAN_ROWS = 8    # mean rows per local expert of a MoE call


def _module_name() -> str:
    """The extension's name carries a hash of every source and header: an edited kernel (or another checkout's)
    gets its own build folder, never a stale library."""
    digest = hashlib.sha256()
    for path in sorted(CSRC.iterdir()):
        if path.suffix in (".cpp", ".h"):
            digest.update(path.name.encode() + path.read_bytes())
    return f"m2serve_cpu_{digest.hexdigest()[:12]}"


STALE_LOCK_S = 600.0        # a first build takes about a minute; a lock this old was left by a killed build


def clear_stale_lock(name: str) -> bool:
    """torch's extension build takes a `lock` file in the build folder and every later load waits on it forever;
    a build killed part way (a server stopped during its first start) leaves it behind, and each later start
    then hangs. Remove a lock older than STALE_LOCK_S. Returns whether one was removed."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        lock = Path(_get_build_directory(name, verbose=False)) / "lock"
        age = time.time() - lock.stat().st_mtime
    except (OSError, ImportError):
        return False                                                          # no lock (or no such helper)
    if age < STALE_LOCK_S:
        return False                                                          # a build may be running now
    logger.warning("removing a stale build lock %s (%.0f min old, left by an interrupted build)", lock, age / 60)
    lock.unlink(missing_ok=True)
    return True


@functools.cache
def get():
    """The compiled module, or None (disabled, no AVX2, or the build failed: logged once)."""
    if not envs.cpu_kernels():
        return None
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        logger.info("CPU kernels not built: this CPU lacks AVX2")
        return None
    try:
        from torch.utils.cpp_extension import load

        logger.info("loading m2serve CPU kernels (compiled once per machine, about a minute the first time)")
        clear_stale_lock(_module_name())
        return load(name=_module_name(), sources=[str(p) for p in SOURCES], extra_include_paths=[str(CSRC)],
                    verbose=False, extra_cflags=["-O3", "-mavx2", "-mfma", "-fopenmp"], extra_ldflags=["-fopenmp"])
    except Exception as e:  # noqa: BLE001 - any build problem means: use the torch path
        logger.warning("m2serve CPU kernels unavailable (%s: %s); using PyTorch matmuls",
                       type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return None


def usable(weight: torch.Tensor) -> bool:
    """A weight these kernels can multiply (then get() decides whether they exist)."""
    return (weight.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16)
            and weight.is_contiguous())


def serves_linear(kernel, rows: int) -> bool:
    """A linear call of `rows` input rows goes to the kernel (not past the row limit, not batch-invariant)."""
    return kernel is not None and rows <= LINEAR_MAX_ROWS and not is_batch_invariant()


def serves_experts(kernel, rows: int, num_experts: int) -> bool:
    """A MoE call of `rows` (token, expert) pairs over `num_experts` local experts goes to the kernel."""
    return kernel is not None and rows <= EXPERT_MAX_MEAN_ROWS * num_experts and not is_batch_invariant()


def serves_expert_sgemm(kernel, w13: torch.Tensor) -> bool:
    """A MoE call past the few-row limit goes to experts_mm (MKL per expert; not in batch-invariant mode, whose
    matmuls must not depend on the row count)."""
    return kernel is not None and w13.dtype in (torch.float32, torch.bfloat16) and not is_batch_invariant()


@torch.compiler.disable   # an opaque extension call: a compiled layer runs it eagerly
def linear(kernel, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [T, in] @ weight [out, in]^T -> [T, out] in x's dtype (fp32 accumulation)."""
    return kernel.linear(x, weight).to(x.dtype)


@torch.compiler.disable
def experts(kernel, xs: torch.Tensor, counts: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """SwiGLU experts over rows xs [N, H] sorted by expert (counts [E]) -> [N, H] in xs's dtype."""
    return kernel.experts(xs, counts, w13, w2).to(xs.dtype)


@torch.compiler.disable
def experts_mm(kernel, xs: torch.Tensor, counts: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """SwiGLU experts over many rows xs [N, H] sorted by expert (counts [E]) -> [N, H] in xs's dtype."""
    return kernel.experts_mm(xs, counts, w13, w2).to(xs.dtype)


@torch.compiler.disable
def moe_combine(kernel, y_sorted: torch.Tensor, pos: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """out [T, H] fp32: out[t] = sum_k weights[t, k] * y_sorted[pos[t, k]]."""
    return kernel.moe_combine(y_sorted, pos, weights)


@torch.compiler.disable
def widen(kernel, weight: torch.Tensor) -> torch.Tensor:
    """A contiguous bf16 tensor as fp32 (a new tensor), about 10x faster than torch's cast on these CPUs."""
    return kernel.widen(weight)


@torch.compiler.disable
def decode_attention(kernel, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     block_tables: torch.Tensor, seq_lens: torch.Tensor, scale: float) -> torch.Tensor:
    """One query token per request, q [B, nh, d], against its paged context -> [B, nh, d] in q's dtype."""
    return kernel.decode_attention(q, k_cache, v_cache, block_tables, seq_lens, scale).to(q.dtype)
