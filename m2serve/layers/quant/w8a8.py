"""msModelSlim W8A8 (static) and W8A8_DYNAMIC methods for linears, and W8A8_DYNAMIC for the fused experts.

Math (specs/quantization-and-spec-decode.md A2), W_q int8 [out, in], int32 accumulation:

  W8A8_DYNAMIC  per token t: s_t = max_k |x[t,k]| / 127, x_q = round(x / s_t)
                y[t,n] = (sum_k x_q[t,k] W_q[n,k]) * s_w[n] * s_t          (weight_offset must be 0)
  W8A8 static   x_q = clamp(round(x * (1/s_x) + o_x), -128, 127)          (per-tensor s_x, integer o_x)
                y[t,n] = (sum_k x_q[t,k] W_q[n,k] + quant_bias[n]) * deq_scale[n]
                with quant_bias = round(b/deq - o_x * sum_k W_q[n,k]) and deq_scale = s_x * s_w[n], so
                y = s_x s_w[n] sum_k (x_q[k] - o_x) W_q[n,k] + b[n]. Row-parallel: quant_bias on TP rank 0 only.
  MoE DYNAMIC   per expert slice: g = (x_q W13_q^T) s_w13 s_t (model dtype), a = silu(g[:, :I]) * g[:, I:],
                a_q, s_a = per-token quant of a, o = (a_q W2_q^T) s_w2 s_a.

Like vllm-ascend, weight_scale and input_scale parameters have the model dtype (a bf16 model rounds them to
bf16 on load) and the math uses fp32 copies of them; deq_scale stays fp32. Because the integer product is
exact and every scale is per row or per tensor, these layers are batch invariant by construction.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from m2serve.errors import CheckpointError
from m2serve.layers.quant.base import LinearMethod, MoEMethod, make_param
from m2serve.layers.quant.kernels import (INT8_MAX, INT8_MIN, deq_scale_to_float, int8_mm, quantize_per_token,
                                          quantize_static)


def _check_zero(t: torch.Tensor, what: str) -> None:
    if bool((t != 0).any()):
        raise CheckpointError(f"{what} has non-zero entries: only symmetric int8 weights are supported "
                              "(msModelSlim writes zeros; vllm-ascend ignores the offset)")


def _buffer(module: torch.nn.Module, name: str, t: torch.Tensor) -> None:
    module.register_buffer(name, t.contiguous(), persistent=False)


class W8A8DynamicLinearMethod(LinearMethod):
    name = "W8A8_DYNAMIC"

    def create_weights(self, layer, in_local, out_local, dtype):
        sdt = dtype or torch.float32
        make_param(layer, "weight", (out_local, in_local), torch.int8, loader=layer.weight_loader, output_dim=0,
                   input_dim=1, disk_dtypes={"I8"})
        for name in ("weight_scale", "weight_offset"):
            make_param(layer, name, (out_local, 1), sdt, loader=layer.weight_loader, output_dim=0,
                       flexible_shape=True)

    def process_weights_after_loading(self, layer):
        _check_zero(layer.weight_offset, "weight_offset")
        _buffer(layer, "weight_scale_fp32", layer.weight_scale.detach().float().view(-1))   # [out]

    def apply(self, layer, x):
        x2 = x.reshape(-1, x.shape[-1])
        xq, s = quantize_per_token(x2)                                    # [T, in] int8, [T, 1]
        y = torch.mul(int8_mm(xq, layer.weight), layer.weight_scale_fp32).mul_(s)   # int32 * fp32 -> fp32
        return y.to(x.dtype).view(*x.shape[:-1], -1)


class W8A8StaticLinearMethod(LinearMethod):
    name = "W8A8"
    ignored_params = ("weight_scale", "weight_offset")     # declared but unused by vllm-ascend; v1 writes none

    def create_weights(self, layer, in_local, out_local, dtype):
        sdt = dtype or torch.float32
        make_param(layer, "weight", (out_local, in_local), torch.int8, loader=layer.weight_loader, output_dim=0,
                   input_dim=1, disk_dtypes={"I8"})
        make_param(layer, "input_scale", (1,), sdt, loader=layer.weight_loader, flexible_shape=True)
        make_param(layer, "input_offset", (1,), torch.float32, loader=layer.weight_loader, flexible_shape=True,
                   disk_dtypes={"F32", "F16", "BF16", "I8", "I32", "I64"}, load_transform=lambda t: t.float())
        make_param(layer, "deq_scale", (out_local,), torch.float32, loader=layer.weight_loader, output_dim=0,
                   flexible_shape=True, disk_dtypes={"F32", "I64"}, load_transform=deq_scale_to_float)
        make_param(layer, "quant_bias", (out_local,), torch.int32, loader=layer.weight_loader, output_dim=0,
                   flexible_shape=True, disk_dtypes={"I32"})

    def process_weights_after_loading(self, layer):
        s, o = layer.input_scale.detach().float(), layer.input_offset.detach()
        if not bool((s > 0).all()):
            raise CheckpointError(f"input_scale {s.tolist()} must be positive")
        if not bool((o == o.round()).all() and (o >= INT8_MIN).all() and (o <= INT8_MAX).all()):
            raise CheckpointError(f"input_offset {o.tolist()} must be an integer in [-128, 127]")
        _buffer(layer, "input_scale_inv", 1.0 / s)
        # Under TP a row-parallel layer's partial sums are all-reduced: its correction term counts once.
        layer.adds_quant_bias = not getattr(layer, "reduce_results", False) or layer.parallel.tp_rank == 0

    def apply(self, layer, x):
        x2 = x.reshape(-1, x.shape[-1])
        acc = int8_mm(quantize_static(x2, layer.input_scale_inv, layer.input_offset), layer.weight)   # [T, out]
        if layer.adds_quant_bias:
            acc = acc + layer.quant_bias
        y = torch.mul(acc, layer.deq_scale)
        return y.to(x.dtype).view(*x.shape[:-1], -1)


class W8A8DynamicMoEMethod(MoEMethod):
    name = "W8A8_DYNAMIC"
    param_suffixes = ("weight", "weight_scale", "weight_offset")

    def create_weights(self, experts, num_local, i_local, hidden, dtype):
        sdt = dtype or torch.float32
        loader = experts.weight_loader
        make_param(experts, "w13_weight", (num_local, 2 * i_local, hidden), torch.int8, loader=loader, input_dim=2,
                   disk_dtypes={"I8"})
        make_param(experts, "w2_weight", (num_local, hidden, i_local), torch.int8, loader=loader, input_dim=2,
                   disk_dtypes={"I8"})
        for w, rows in (("w13", 2 * i_local), ("w2", hidden)):
            for kind in ("weight_scale", "weight_offset"):
                make_param(experts, f"{w}_{kind}", (num_local, rows, 1), sdt, loader=loader, flexible_shape=True)

    def process_weights_after_loading(self, experts):
        _check_zero(experts.w13_weight_offset, "w1/w3 weight_offset")
        _check_zero(experts.w2_weight_offset, "w2 weight_offset")
        _buffer(experts, "w13_scale_fp32", experts.w13_weight_scale.detach().float()[..., 0])   # [E, 2I]
        _buffer(experts, "w2_scale_fp32", experts.w2_weight_scale.detach().float()[..., 0])     # [E, H]

    def apply(self, experts, xs, counts):
        """Only the integer matmuls loop over experts; quantization, scales and SwiGLU run once over all rows
        (per-token quantization commutes with slicing rows, and each row's weight scales are gathered by its
        expert), so a decode step costs two small ops per expert instead of a dozen."""
        I = experts.i_local
        N = xs.shape[0]
        sizes = counts.tolist()
        row_expert = torch.repeat_interleave(torch.arange(len(sizes), device=xs.device), counts)   # [N]
        tail = N - row_expert.numel()         # rows routed to other EP ranks (sorted last): computed as zeros
        if tail:
            row_expert = F.pad(row_expert, (0, tail))
        xq, sx = quantize_per_token(xs)                                   # [N, H] int8, [N, 1]
        alloc = torch.zeros if tail else torch.empty
        acc13 = alloc(N, 2 * I, dtype=torch.int32, device=xs.device)
        start = 0
        for e, n in enumerate(sizes):
            if n:
                acc13[start:start + n] = int8_mm(xq[start:start + n], experts.w13_weight[e])
                start += n
        g = torch.mul(acc13, experts.w13_scale_fp32[row_expert]).mul_(sx).to(xs.dtype)   # [N, 2I]
        a = F.silu(g[:, :I]) * g[:, I:]                                   # [N, I]
        aq, sa = quantize_per_token(a)
        acc2 = alloc(N, experts.hidden_size, dtype=torch.int32, device=xs.device)
        start = 0
        for e, n in enumerate(sizes):
            if n:
                acc2[start:start + n] = int8_mm(aq[start:start + n], experts.w2_weight[e])
                start += n
        return torch.mul(acc2, experts.w2_scale_fp32[row_expert]).mul_(sa).to(xs.dtype)   # [N, H]
