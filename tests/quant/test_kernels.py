"""The integer kernels and the W8A8 linear methods against their formulas, layer by layer."""
import pytest
import torch

from m2serve.distributed.parallel_state import ParallelContext
from m2serve.layers.linear import ColumnParallelLinear, RowParallelLinear
from m2serve.layers.quant import W8A8DynamicLinearMethod, W8A8StaticLinearMethod
from m2serve.layers.quant.kernels import (deq_scale_to_float, deq_scale_to_int64, int8_mm, quantize_per_token,
                                          quantize_static)

GEN = torch.Generator().manual_seed(0)


def randint8(*shape):
    return torch.randint(-128, 128, shape, dtype=torch.int8, generator=GEN)


@pytest.mark.parametrize("m,k,n", [(1, 64, 32), (5, 63, 33), (16, 64, 96), (17, 128, 8), (40, 7, 5), (0, 8, 8)])
def test_int8_mm_is_exact(m, k, n):
    a, w = randint8(m, k), randint8(n, k)
    got = int8_mm(a, w)
    assert got.dtype == torch.int32 and got.shape == (m, n)
    assert torch.equal(got.long(), a.long() @ w.long().T)


def test_per_token_quant_scales_rows_and_handles_zero_rows():
    x = torch.randn(4, 32, generator=GEN) * torch.tensor([[1.0], [10.0], [0.0], [1e-3]])
    q, s = quantize_per_token(x)
    assert q.dtype == torch.int8 and s.shape == (4, 1)
    assert torch.equal(s[:, 0], x.abs().amax(1) / 127)
    assert torch.equal(q[2], torch.zeros(32, dtype=torch.int8))
    assert (q.abs().amax(1)[[0, 1, 3]] == 127).all()                           # each row uses the full range
    assert torch.equal(q.float(), torch.round(x / torch.where(s > 0, s, 1)).clamp(-128, 127))


def test_static_quant_clamps_and_offsets():
    x = torch.tensor([[-100.0, -1.0, 0.0, 0.5, 100.0]])
    q = quantize_static(x, torch.tensor([4.0]), torch.tensor([-3.0]))
    assert q.tolist() == [[-128, -7, -3, -1, 127]]                          # round(x*4 - 3), half to even


def test_deq_scale_int64_form_round_trips():
    s = torch.rand(17, generator=GEN) * 1e-3 + 1e-6
    i64 = deq_scale_to_int64(s)
    assert i64.dtype == torch.int64 and (i64 >= 0).all()
    assert torch.equal(deq_scale_to_float(i64), s)


def _load(layer, tensors):
    for name, t in tensors.items():
        p = getattr(layer, name)
        p.weight_loader(p, t)
    layer.quant_method.process_weights_after_loading(layer)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dynamic_linear_matches_formula_and_rounds_scales_to_the_model_dtype(dtype):
    out, inn = 24, 40
    wq, s_w = randint8(out, inn), torch.rand(out, 1, generator=GEN) * 0.01 + 1e-4
    layer = ColumnParallelLinear(inn, out, dtype, quant_method=W8A8DynamicLinearMethod())
    _load(layer, {"weight": wq, "weight_scale": s_w, "weight_offset": torch.zeros(out, 1)})
    assert layer.weight.dtype == torch.int8
    x = torch.randn(7, inn, generator=GEN).to(dtype)
    s_t = x.float().abs().amax(1, keepdim=True) / 127
    xq = torch.round(x.float() / s_t).clamp(-128, 127)
    ref = (xq.double() @ wq.double().T) * s_w.to(dtype).double().T * s_t.double()
    got = layer(x)
    assert got.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got.double(), ref.to(dtype).double(), rtol=tol, atol=tol * ref.abs().max().item())


def test_static_linear_matches_formula_and_counts_quant_bias_once_under_tp():
    out, inn, o_x, s_x = 16, 32, -5.0, 0.03
    wq = randint8(out, inn)
    s_w = torch.rand(out, generator=GEN) * 0.01 + 1e-4
    deq = s_x * s_w
    qb = (-o_x * wq.long().sum(1)).to(torch.int32)
    tensors = {"weight": wq, "input_scale": torch.tensor([s_x]), "input_offset": torch.tensor([o_x]),
               "deq_scale": deq_scale_to_int64(deq), "quant_bias": qb}
    full = RowParallelLinear(inn, out, torch.float32, quant_method=W8A8StaticLinearMethod())
    _load(full, tensors)
    x = torch.randn(6, inn, generator=GEN)
    xq = torch.round(x * (1 / torch.tensor(s_x)) + o_x).clamp(-128, 127)
    ref = s_x * s_w.double() * ((xq.double() - o_x) @ wq.double().T)      # the exact float form
    torch.testing.assert_close(full(x).double(), ref, rtol=1e-5, atol=1e-6)
    # Two TP ranks: each gets half the columns, only rank 0 adds quant_bias; the sum is the whole product.
    parts = []
    for r in range(2):
        layer = RowParallelLinear(inn, out, torch.float32, ParallelContext(tp_rank=r, tp_size=2),
                                  W8A8StaticLinearMethod())
        _load(layer, tensors)
        assert layer.adds_quant_bias == (r == 0)
        parts.append(layer.quant_method.apply(layer, x[:, r * 16:(r + 1) * 16]))
    torch.testing.assert_close(parts[0] + parts[1], full(x), rtol=1e-5, atol=1e-5)
