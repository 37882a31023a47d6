"""Roofline estimates: bytes and FLOPs of a MiniMax-M2 step from its architecture, measured weight bytes."""
import pytest

from m2serve.bench.roofline import (MachineLimits, StepCost, WeightBytes, decode_step_cost,
                                    expected_distinct_experts, report, step_cost)
from m2serve.models.arch import MiniMaxM2Arch

ARCH = MiniMaxM2Arch(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, intermediate_size=32, num_local_experts=8,
                     num_experts_per_tok=2, rotary_dim=8, rope_theta=1e6, rms_norm_eps=1e-6,
                     max_position_embeddings=4096)


def test_expected_distinct_experts():
    assert expected_distinct_experts(8, 2, 1) == pytest.approx(2)
    assert expected_distinct_experts(8, 2, 0) == 0
    assert expected_distinct_experts(256, 8, 10_000) == pytest.approx(256)
    assert 2 < expected_distinct_experts(8, 2, 3) < 6


def test_decode_step_cost_by_hand():
    H, q, kv, E, I, V, L = 64, 64, 32, 8, 32, 1000, 2
    c = decode_step_cost(ARCH, batch_size=2, context_len=10, elem_bytes=2, distinct_experts=3)
    attn = H * q + 2 * H * kv + q * H + (2 * H + q + kv)
    weights = L * (attn * 2 + (H * E + E) * 4 + 3 * (3 * H * I * 2)) + (V * H + H) * 2 + 2 * H * 2
    assert c.weight_bytes == weights
    kv_tok = L * 2 * 2 * 16 * 2
    assert c.kv_read_bytes == 2 * 10 * kv_tok and c.kv_write_bytes == 2 * kv_tok
    per_token = 2 * H * (q + 2 * kv) + 2 * q * H + 2 * H * E + 2 * (2 * 3 * H * I)
    assert c.flops == L * (2 * per_token + 4 * 4 * 16 * (2 * 10)) + 2 * 2 * H * V
    assert c.bytes == c.weight_bytes + c.kv_read_bytes + c.kv_write_bytes


def test_prefill_chunk_attends_causally():
    # A chunk of 4 new tokens ending at context 10 attends to 7+8+9+10 = 34 keys.
    c = step_cost(ARCH, [(4, 10)], elem_bytes=4, distinct_experts=0)
    base = step_cost(ARCH, [(4, 4)], elem_bytes=4, distinct_experts=0)
    assert c.flops - base.flops == ARCH.num_hidden_layers * 4 * 4 * 16 * (34 - 10)
    assert (c + base).flops == c.flops + base.flops and isinstance(c + base, StepCost)


def test_weight_bytes_measured_from_a_model_match_the_arch(tiny_llm):
    runner = tiny_llm.engine.runner
    measured = WeightBytes.from_model(runner.model, runner.arch)
    estimated = WeightBytes.from_arch(runner.arch, 4)
    assert measured.per_expert == pytest.approx(estimated.per_expert)
    assert measured.embed_row == pytest.approx(estimated.embed_row)
    assert measured.dense == pytest.approx(estimated.dense, rel=0.01)


def test_report_ratio():
    limits = MachineLimits("cpu", 2, copy_gbs=10.0, read_gbs=8.0, matmul_gflops={"float32": 100.0},
                           matmul_size={"float32": 2048})
    r = report(0.004, StepCost(weight_bytes=20e6, flops=1e8), limits, "float32")
    assert r.memory_bound_s == pytest.approx(0.002) and r.compute_bound_s == pytest.approx(0.001)
    assert r.ratio == pytest.approx(2.0) and r.achieved_gbs == pytest.approx(5.0)
    assert limits.peak_gflops("bfloat16") == 100.0          # falls back to fp32 when not measured
    assert "measured / bound = 2.00x" in "\n".join(r.lines("step"))
