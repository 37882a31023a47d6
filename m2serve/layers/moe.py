"""MiniMax-M2 sparse MoE: sigmoid router with a selection-only bias, SwiGLU experts, no shared expert (spec §3).

Routing (all fp32, like vLLM, whatever the model dtype):
    s = sigmoid(x @ Wgate^T)                 [T, E]
    idx = topk(s + e_score_correction_bias)  the bias only *chooses* experts
    w = s.gather(idx); w /= w.sum(-1)        the weights are the unbiased scores, renormalised

Experts are stacked: w13 [E_local, 2I, H] (gate rows 0..I-1 = checkpoint w1, up rows I..2I-1 = w3) and
w2 [E_local, H, I]. The (token, k) pairs are sorted by expert so each expert's tokens are one contiguous slice,
and both projections run as one grouped matmul (torch._grouped_mm) over those slices. Where _grouped_mm is
unavailable (its strides must be 16-byte aligned; CUDA wants bf16) a loop over *experts* does the same slices.
Measured on 2 CPU cores (ms; T tokens, E experts, top-k K, H, I):
    fp32 T=64 E=8 K=2 H=64 I=32: grouped 0.10, loop 0.22      fp32 T=1: 0.06 vs 0.05 (equal)
    fp32 T=16 E=64 K=8 H=512 I=256: 3.6 vs 5.8               T=256: 22 vs 20 (noise level)
    bf16 T=16 / T=256 E=64 K=8 H=512 I=256: 5.8 vs 8.7 / 9.9 vs 13.9

On a CPU with m2serve's kernels (layers/cpu_kernels.py) the float experts take the kernels instead: a few rows per
expert (decode) the few-row SwiGLU pass, more rows (prefill) `experts_mm` (MKL sgemm per expert, bf16 weights
widened one expert at a time, SwiGLU in place), and the weighted sum back in token order is `moe_combine`.

Quantized experts: the layer's MoE quant method (layers/quant/) creates the stacked parameters and computes
the expert slices; the default UnquantizedMoEMethod runs the float code below (float_experts).

Parallelism: with expert parallelism (ep_size > 1) a rank holds experts [ep_rank*E/ep, (ep_rank+1)*E/ep) whole
and computes only the (token, k) pairs routed to them; summing the ranks' partial outputs gives the MoE output.
Without EP, tensor parallelism splits every expert's intermediate dim I over the TP ranks (w13 rows, w2
columns) and the partial outputs are all-reduced, like a row-parallel linear.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from m2serve.distributed.parallel_state import ParallelContext, get_parallel_context
from m2serve.errors import CheckpointError
from m2serve.layers import cpu_kernels
from m2serve.layers.batch_invariant import is_batch_invariant, linear, rowwise
from m2serve.layers.linear import ReplicatedLinear, default_weight_loader
from m2serve.layers.quant.base import MoEMethod, UnquantizedMoEMethod, conform


class FusedExperts(nn.Module):
    """This rank's SwiGLU experts as stacked weights."""

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int, dtype: torch.dtype | None,
                 parallel: ParallelContext, quant_method: MoEMethod | None = None) -> None:
        super().__init__()
        ep, tp = parallel.ep_size, (parallel.tp_size if parallel.ep_size == 1 else 1)
        if num_experts % ep or intermediate_size % tp:
            raise ValueError(f"num_experts={num_experts} / ep_size={ep} or intermediate_size={intermediate_size}"
                             f" / tp_size={tp} does not divide")
        self.parallel = parallel
        self.num_experts, self.hidden_size, self.intermediate_size = num_experts, hidden_size, intermediate_size
        self.num_local = num_experts // ep
        self.first_expert = parallel.ep_rank * self.num_local                # global id of local expert 0
        self.tp_size, self.tp_rank = tp, (parallel.tp_rank if tp > 1 else 0)
        self.i_local = intermediate_size // tp
        # w13_weight [E_local, 2I_local, H], w2_weight [E_local, H, I_local] (+ the method's scales)
        self.quant_method = quant_method or UnquantizedMoEMethod()
        self.quant_method.create_weights(self, self.num_local, self.i_local, hidden_size, dtype)
        self._use_grouped_mm: bool | None = None if hasattr(torch, "_grouped_mm") else False

    def is_local(self, expert_id: int) -> bool:
        return self.first_expert <= expert_id < self.first_expert + self.num_local

    def weight_loader(self, param: nn.Parameter, full: torch.Tensor, expert_id: int, shard_id: str) -> None:
        """Load one checkpoint expert tensor: shard_id w1 (gate) / w3 (up) [I, H], or w2 (down) [H, I]; a
        per-row scale of the method ([I, 1] / [H, 1]) has no input dim and is not split by columns."""
        H, I, n = self.hidden_size, self.intermediate_size, self.i_local
        cols = getattr(param, "input_dim", None) is not None
        last = param.shape[2]
        expected = ((H, I) if cols else (H, last)) if shard_id == "w2" else ((I, H) if cols else (I, last))
        full = conform(param, full, expected)
        if tuple(full.shape) != expected:
            raise CheckpointError(f"shape {tuple(full.shape)}, expected {expected}")
        e = expert_id - self.first_expert
        lo = self.tp_rank * n
        if shard_id == "w2":
            param.data[e].copy_(full[:, lo:lo + n] if cols else full)       # input columns of this TP rank
        else:
            rows = slice(0, n) if shard_id == "w1" else slice(n, 2 * n)
            param.data[e, rows].copy_(full[lo:lo + n])

    @torch.compiler.disable   # data-dependent group sizes: stays eager inside a compiled layer
    def forward(self, x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor) -> torch.Tensor:
        """x [T, H], topk_ids/weights [T, K] -> this rank's partial output [T, H] (fp32)."""
        T, K = topk_ids.shape
        local_ids = topk_ids.flatten() - self.first_expert                   # [T*K]
        if self.num_local != self.num_experts:
            # Pairs routed to other EP ranks get id num_local: sorted last, outside every group, weight 0.
            off_rank = (local_ids < 0) | (local_ids >= self.num_local)
            local_ids = local_ids.masked_fill(off_rank, self.num_local)
        order = local_ids.argsort(stable=True)                               # [T*K] pairs grouped by expert
        counts = torch.bincount(local_ids, minlength=self.num_local + 1)[:self.num_local]   # [E_local]
        x_sorted = x[order // K]                                             # [T*K, H] token of each pair

        y_sorted = self.quant_method.apply(self, x_sorted, counts)           # [T*K, H]; off-rank rows junk
        kernel = getattr(self, "cpu_kernel", None)
        if kernel is not None and self.num_local == self.num_experts and y_sorted.dtype == torch.float32:
            # CPU: scale, scatter back to token order and sum over k in one pass.
            pos = torch.empty_like(order).scatter_(0, order, torch.arange(T * K, device=x.device))   # [T*K]
            return cpu_kernels.moe_combine(kernel, y_sorted, pos.view(T, K), topk_weights)
        w_sorted = topk_weights.flatten()[order].float()                     # [T*K]
        if self.num_local != self.num_experts:
            w_sorted = w_sorted.masked_fill(off_rank[order], 0.0)
            y_sorted = torch.where(off_rank[order, None], 0.0, y_sorted.float())
        y = torch.empty(T * K, self.hidden_size, dtype=torch.float32, device=x.device)
        y[order] = y_sorted.float() * w_sorted[:, None]                      # back to (token, k) order
        return y.view(T, K, -1).sum(1)                                       # [T, H] weighted sum over k

    def float_experts(self, xs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """SwiGLU of each contiguous expert slice of xs [N, H] (counts [E_local] rows each) -> [N, H]."""
        if getattr(self, "packed_experts", None) is not None:
            return self._experts_loop(xs, counts, self.w13_weight, self.w2_weight, self.packed_experts)  # oneDNN
        kernel = getattr(self, "cpu_kernel", None)
        if cpu_kernels.serves_experts(kernel, xs.shape[0], self.num_local):
            return cpu_kernels.experts(kernel, xs, counts, self.w13_weight, self.w2_weight)   # decode on CPU
        if cpu_kernels.serves_expert_sgemm(kernel, self.w13_weight):
            return cpu_kernels.experts_mm(kernel, xs, counts, self.w13_weight, self.w2_weight)   # prefill on CPU
        w13, w2 = self.quant_method.float_weights(self, xs.dtype)
        if self._use_grouped_mm is not False and not is_batch_invariant():
            try:
                out = self._experts_grouped(xs, counts, w13, w2)
                self._use_grouped_mm = True
                return out
            except RuntimeError:
                if self._use_grouped_mm:                                     # it worked before: a real error
                    raise
                self._use_grouped_mm = False                                 # unsupported here: loop from now on
        return self._experts_loop(xs, counts, w13, w2)

    def _experts_grouped(self, xs: torch.Tensor, counts: torch.Tensor, w13: torch.Tensor,
                         w2: torch.Tensor) -> torch.Tensor:
        offs = counts.cumsum(0).to(torch.int32)                              # [E_local] end row of each group
        gate_up = torch._grouped_mm(xs, w13.transpose(1, 2), offs=offs)     # [N, 2I]
        gate, up = gate_up.chunk(2, dim=-1)
        return torch._grouped_mm(F.silu(gate) * up, w2.transpose(1, 2), offs=offs)  # [N, H]

    def _experts_loop(self, xs: torch.Tensor, counts: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor,
                      packed=None) -> torch.Tensor:
        out = torch.zeros(xs.shape[0], self.hidden_size, dtype=xs.dtype, device=xs.device)
        start = 0
        for e, n in enumerate(counts.tolist()):
            if n:
                p13, p2 = packed[e] if packed is not None else (None, None)
                gate, up = linear(xs[start:start + n], w13[e], p13).chunk(2, dim=-1)
                out[start:start + n] = linear(F.silu(gate) * up, w2[e], p2)
                start += n
        return out


class MiniMaxM2MoE(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, num_experts: int, top_k: int,
                 dtype: torch.dtype | None = None, parallel: ParallelContext | None = None,
                 quant_method: MoEMethod | None = None) -> None:
        super().__init__()
        self.parallel = parallel or get_parallel_context()
        self.num_experts, self.top_k = num_experts, top_k
        # Router kept in fp32 (spec §3): tiny, and near-ties between experts must not flip with bf16 rounding.
        self.gate = ReplicatedLinear(hidden_size, num_experts, dtype=torch.float32, parallel=self.parallel)
        self.e_score_correction_bias = nn.Parameter(torch.zeros(num_experts, dtype=torch.float32),
                                                    requires_grad=False)      # [E]
        self.e_score_correction_bias.weight_loader = default_weight_loader
        self.experts = FusedExperts(num_experts, hidden_size, intermediate_size, dtype, self.parallel, quant_method)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, H] -> (topk_ids [T, K] int64, topk_weights [T, K] fp32)."""
        scores = rowwise(torch.sigmoid, self.gate(x.float()))          # [T, E] fp32
        _, ids = torch.topk(scores + self.e_score_correction_bias, self.top_k, dim=-1)   # bias picks only
        weights = scores.gather(1, ids)                                      # [T, K] unbiased scores
        return ids, weights / weights.sum(-1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:                      # x [T, H] -> [T, H]
        if x.shape[0] == 0:
            return torch.zeros_like(x)
        ids, weights = self.route(x)
        out = self.experts(x, ids, weights)                                  # [T, H] fp32, this rank's part
        if self.parallel.ep_size > 1:
            # Needs a sum over the EP group, which ParallelContext does not offer yet.
            raise NotImplementedError("expert-parallel combine (all-reduce over the EP group) is not wired yet")
        if self.experts.tp_size > 1:
            out = self.parallel.all_reduce(out)
        return out.to(x.dtype)
