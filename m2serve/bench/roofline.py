"""Roofline numbers for the offline benchmarks.

`probe()` measures this machine once per process (and device): memory bandwidth (GB/s; a large tensor copy,
counted as read + write, and a large sum, read only; the better of the two) and dense matmul throughput (GFLOP/s,
fp32 and bf16, square matmuls of 2048 where that takes under about a second, smaller otherwise).

`step_cost()` estimates the bytes a MiniMax-M2 engine step moves and the FLOPs it does, from the architecture:
per layer the attention projections and norms, the fp32 router, the SwiGLU weights of every *distinct* expert the
step's tokens are routed to (measured by the benchmarks, else the expectation under uniform routing
E·(1 − (1 − k/E)^T)), KV-cache reads of every sequence's context and writes of the new tokens; then the final norm
and the whole lm_head. Activations are left out (small next to the weights at decode batch sizes). FLOPs count a
multiply-add as 2: projections, router, k experts per token, QK^T and PV over the causal context, lm_head per
sampled row.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import torch

from m2serve.models.arch import MiniMaxM2Arch


# ---- machine probe ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MachineLimits:
    device: str
    threads: int
    copy_gbs: float            # (read + write) bytes / s of a large copy
    read_gbs: float            # bytes / s of a large sum
    matmul_gflops: dict = field(default_factory=dict)   # dtype name -> GFLOP/s
    matmul_size: dict = field(default_factory=dict)     # dtype name -> n of the n^3 matmul measured

    @property
    def bandwidth_gbs(self) -> float:
        return max(self.copy_gbs, self.read_gbs)

    def peak_gflops(self, dtype: torch.dtype | str) -> float:
        name = dtype_name(dtype)
        return self.matmul_gflops.get(name) or self.matmul_gflops["float32"]

    def describe(self) -> str:
        mm = ", ".join(f"{k} {v:.1f} GFLOP/s (n={self.matmul_size[k]})" for k, v in self.matmul_gflops.items())
        return (f"{self.device} ({self.threads} threads): memory {self.bandwidth_gbs:.1f} GB/s "
                f"(copy {self.copy_gbs:.1f}, read {self.read_gbs:.1f}); matmul {mm}")


def dtype_name(dtype: torch.dtype | str) -> str:
    return str(dtype).replace("torch.", "")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn, device: torch.device, reps: int) -> float:
    fn()
    _sync(device)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _matmul_gflops(device: torch.device, dtype: torch.dtype, max_n: int, budget_s: float) -> tuple[float, int]:
    """GFLOP/s of an n^3 matmul, n = max_n unless a small trial says that would take more than budget_s."""
    n = 512
    a = torch.randn(n, n, device=device).to(dtype)
    t = _best_time(lambda: a @ a, device, 2)
    while n < max_n and t * 8 * 4 <= budget_s:      # doubling n costs 8x; warmup + 3 timed runs
        n *= 2
        t *= 8
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    t = _best_time(lambda: a @ b, device, 3)
    return 2 * n ** 3 / t / 1e9, n


@functools.lru_cache(maxsize=None)
def probe(device: str = "cpu", mem_mib: int | None = None) -> MachineLimits:
    """Bandwidth and matmul throughput of `device` (cached per process and device)."""
    dev = torch.device(device)
    if mem_mib is None:
        mem_mib = 1024 if dev.type == "cuda" else 256
    n = mem_mib * 2**20 // 4
    x = torch.ones(n, dtype=torch.float32, device=dev)
    y = torch.empty_like(x)
    t_copy = _best_time(lambda: y.copy_(x), dev, 5)
    t_sum = _best_time(lambda: x.sum(), dev, 5)
    nbytes = x.numel() * 4
    del x, y
    max_n = 8192 if dev.type == "cuda" else 2048
    gflops, sizes = {}, {}
    for dtype in (torch.float32, torch.bfloat16):
        gflops[dtype_name(dtype)], sizes[dtype_name(dtype)] = _matmul_gflops(dev, dtype, max_n, budget_s=2.0)
    threads = torch.get_num_threads() if dev.type == "cpu" else 0
    return MachineLimits(str(dev), threads, 2 * nbytes / t_copy / 1e9, nbytes / t_sum / 1e9, gflops, sizes)


# ---- model step cost -------------------------------------------------------------------------------------------
@dataclass
class StepCost:
    weight_bytes: float = 0.0
    kv_read_bytes: float = 0.0
    kv_write_bytes: float = 0.0
    flops: float = 0.0

    @property
    def bytes(self) -> float:
        return self.weight_bytes + self.kv_read_bytes + self.kv_write_bytes

    def __add__(self, other: "StepCost") -> "StepCost":
        return StepCost(self.weight_bytes + other.weight_bytes, self.kv_read_bytes + other.kv_read_bytes,
                        self.kv_write_bytes + other.kv_write_bytes, self.flops + other.flops)


def expected_distinct_experts(num_experts: int, top_k: int, num_tokens: int) -> float:
    """Expected number of distinct experts `num_tokens` tokens touch with uniform top-k routing."""
    if num_tokens <= 0:
        return 0.0
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** num_tokens)


def kv_bytes_per_token(arch: MiniMaxM2Arch, kv_elem_bytes: int) -> int:
    return arch.num_hidden_layers * 2 * arch.num_key_value_heads * arch.head_dim * kv_elem_bytes


@dataclass(frozen=True)
class WeightBytes:
    """Bytes of the weights a step reads: every non-expert weight but the embedding (`dense`), one expert of one
    layer (`per_expert`, with its scales when quantized), one embedding row (`embed_row`)."""
    dense: float
    per_expert: float
    embed_row: float

    @classmethod
    def from_arch(cls, arch: MiniMaxM2Arch, elem_bytes: int) -> "WeightBytes":
        a = arch
        H, q, kv, E = a.hidden_size, a.q_size, a.kv_size, a.num_local_experts
        attn = (H * q + 2 * H * kv + q * H) + (2 * H + q + kv)      # projections + 2 layer norms + QK norms
        layer = attn * elem_bytes + (H * E + E) * 4                  # + the fp32 router and its bias
        dense = a.num_hidden_layers * layer + (a.vocab_size * H + H) * elem_bytes   # + lm_head, final norm
        return cls(dense, 3 * H * a.intermediate_size * elem_bytes, H * elem_bytes)

    @classmethod
    def from_model(cls, model, arch: MiniMaxM2Arch) -> "WeightBytes":
        """Measured from a loaded model's parameters and buffers (quantized weights and scales as stored)."""
        from m2serve.layers.moe import FusedExperts

        def nbytes(tensors) -> int:
            return sum(t.numel() * t.element_size() for t in tensors)

        def weights_of(module) -> int:   # parameters and quantization buffers; not RoPE tables (rows looked up)
            return nbytes(module.parameters()) + nbytes(b for name, b in module.named_buffers()
                                                        if not name.endswith(("cos_cache", "sin_cache", "inv_freq")))

        total = weights_of(model)
        expert_mods = [m for m in model.modules() if isinstance(m, FusedExperts)]
        experts = sum(weights_of(m) for m in expert_mods)
        n_experts = sum(getattr(m, "num_local", arch.num_local_experts) for m in expert_mods)
        embed = sum(nbytes(m.parameters()) for name, m in model.named_modules() if name.endswith("embed_tokens"))
        row = embed / arch.vocab_size if embed else arch.hidden_size * 4
        return cls(total - experts - embed, experts / n_experts if n_experts else 0.0, row)


def step_cost(arch: MiniMaxM2Arch, seqs: list[tuple[int, int]], *, elem_bytes: int, kv_elem_bytes: int | None = None,
              num_sampled: int | None = None, distinct_experts: float | None = None,
              weights: WeightBytes | None = None) -> StepCost:
    """Bytes and FLOPs of one step. `seqs`: per scheduled sequence (new tokens, context length after the step).
    `num_sampled`: rows through lm_head (default: one per sequence). `distinct_experts`: mean distinct experts per
    layer (default: the uniform-routing expectation for the step's tokens). `weights`: the model's weight bytes
    (default: from the architecture at `elem_bytes` per element)."""
    kv_elem_bytes = elem_bytes if kv_elem_bytes is None else kv_elem_bytes
    a = arch
    H, q, kv, E, k, I, V, L = (a.hidden_size, a.q_size, a.kv_size, a.num_local_experts, a.num_experts_per_tok,
                               a.intermediate_size, a.vocab_size, a.num_hidden_layers)
    tokens = sum(n for n, _ in seqs)
    sampled = len(seqs) if num_sampled is None else num_sampled
    if distinct_experts is None:
        distinct_experts = expected_distinct_experts(E, k, tokens)
    w = weights or WeightBytes.from_arch(arch, elem_bytes)
    weight = w.dense + L * distinct_experts * w.per_expert + tokens * w.embed_row
    kv_tok = kv_bytes_per_token(a, kv_elem_bytes)
    kv_read = sum(ctx for _, ctx in seqs) * kv_tok
    kv_write = tokens * kv_tok
    # Causal attention: a chunk of n new tokens ending at context c attends to n·c − n(n−1)/2 keys.
    keys = sum(n * ctx - n * (n - 1) // 2 for n, ctx in seqs)
    per_token = 2 * H * (q + 2 * kv) + 2 * q * H + 2 * H * E + k * 2 * 3 * H * I
    flops = L * (tokens * per_token + 4 * a.num_attention_heads * a.head_dim * keys) + sampled * 2 * H * V
    return StepCost(weight, kv_read, kv_write, flops)


def decode_step_cost(arch: MiniMaxM2Arch, batch_size: int, context_len: int, *, elem_bytes: int,
                     kv_elem_bytes: int | None = None, distinct_experts: float | None = None,
                     weights: WeightBytes | None = None) -> StepCost:
    """One decode step of `batch_size` sequences, each `context_len` tokens long after the step."""
    return step_cost(arch, [(1, context_len)] * batch_size, elem_bytes=elem_bytes, kv_elem_bytes=kv_elem_bytes,
                     distinct_experts=distinct_experts, weights=weights)


# ---- reporting -------------------------------------------------------------------------------------------------
@dataclass
class RooflineReport:
    seconds: float
    bytes: float
    flops: float
    bandwidth_gbs: float          # machine
    peak_gflops: float            # machine, the model's dtype

    @property
    def achieved_gbs(self) -> float:
        return self.bytes / self.seconds / 1e9

    @property
    def achieved_gflops(self) -> float:
        return self.flops / self.seconds / 1e9

    @property
    def memory_bound_s(self) -> float:
        return self.bytes / (self.bandwidth_gbs * 1e9)

    @property
    def compute_bound_s(self) -> float:
        return self.flops / (self.peak_gflops * 1e9)

    @property
    def bound_s(self) -> float:
        return max(self.memory_bound_s, self.compute_bound_s)

    @property
    def ratio(self) -> float:
        """Measured time over the roofline bound (1.0 = at the machine's limit)."""
        return self.seconds / self.bound_s if self.bound_s > 0 else math.inf

    def as_dict(self) -> dict:
        return {"bytes": self.bytes, "flops": self.flops, "achieved_gb_per_s": self.achieved_gbs,
                "achieved_gflop_per_s": self.achieved_gflops, "machine_gb_per_s": self.bandwidth_gbs,
                "machine_gflop_per_s": self.peak_gflops,
                "bandwidth_fraction": self.achieved_gbs / self.bandwidth_gbs,
                "compute_fraction": self.achieved_gflops / self.peak_gflops,
                "memory_bound_s": self.memory_bound_s, "compute_bound_s": self.compute_bound_s,
                "measured_over_bound": self.ratio}

    def lines(self, what: str) -> list[str]:
        bound = "memory" if self.memory_bound_s >= self.compute_bound_s else "compute"
        return [
            f"{what}: {self.bytes / 1e9:.4g} GB moved, {self.flops / 1e9:.4g} GFLOP in {self.seconds:.4g} s",
            f"  achieved bandwidth: {self.achieved_gbs:.2f} GB/s = {100 * self.achieved_gbs / self.bandwidth_gbs:.1f}%"
            f" of {self.bandwidth_gbs:.1f} GB/s measured",
            f"  achieved compute:   {self.achieved_gflops:.2f} GFLOP/s = "
            f"{100 * self.achieved_gflops / self.peak_gflops:.1f}% of {self.peak_gflops:.1f} GFLOP/s measured",
            f"  roofline bound: {1000 * self.bound_s:.4g} ms ({bound}-bound; memory {1000 * self.memory_bound_s:.4g}"
            f" ms, compute {1000 * self.compute_bound_s:.4g} ms); measured / bound = {self.ratio:.2f}x",
        ]


def report(seconds: float, cost: StepCost, limits: MachineLimits, dtype) -> RooflineReport:
    return RooflineReport(seconds, cost.bytes, cost.flops, limits.bandwidth_gbs, limits.peak_gflops(dtype))
