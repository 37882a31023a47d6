"""The fused CPU decode layer (models/minimax_m2_fused.py, csrc/decode_layer.cpp) against the per-op path: same
greedy tokens and log-probs to float rounding, used exactly on the steps it serves, and the benchmark's expert
count still sees its routing."""
import random

import pytest
import torch

from m2serve import LLM, SamplingParams
from m2serve.bench.steps import StepRecorder
from m2serve.layers import cpu_kernels
from m2serve.layers.attention_metadata import AttentionMetadata
from m2serve.layers.batch_invariant import set_batch_invariant
from m2serve.models import minimax_m2_fused

pytestmark = pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
                                reason="the kernels need AVX2")

PARAMS = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True, logprobs=3)
# 20 requests ending one step apart: decode steps of 20 rows (per-op path) down to 1 row (fused).
STAGGERED = [SamplingParams(temperature=0, max_tokens=4 + i, ignore_eos=True, logprobs=3) for i in range(20)]


def _prompts(n, seed=0):
    rng = random.Random(seed)
    return [{"prompt_token_ids": [rng.randrange(3, 500) for _ in range(rng.randint(2, 40))]} for _ in range(n)]


def _llm(path, **kw):
    return LLM(str(path), dtype="float32", kv_cache_memory_bytes=32 << 20, show_progress=False, **kw)


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts (rows) of every fused layer call."""
    calls = []
    orig = minimax_m2_fused.FusedDecodeLayer.__call__

    def counting(self, h, *args):
        calls.append(h.shape[0])
        return orig(self, h, *args)

    monkeypatch.setattr(minimax_m2_fused.FusedDecodeLayer, "__call__", counting)
    return calls


@pytest.fixture(scope="module")
def per_op_outputs(tiny_model_dir):
    mp = pytest.MonkeyPatch()
    mp.setenv("M2SERVE_FUSED_DECODE", "0")
    try:
        llm = _llm(tiny_model_dir)
        assert llm.engine.runner.model.model.fused_layers() is None
        return llm.generate(_prompts(20), STAGGERED, use_tqdm=False)
    finally:
        mp.undo()


def test_fused_matches_per_op_path(tiny_model_dir, per_op_outputs, fused_calls):
    llm = _llm(tiny_model_dir)
    outs = llm.generate(_prompts(20), STAGGERED, use_tqdm=False)
    layers = llm.engine.runner.arch.num_hidden_layers
    assert fused_calls and len(fused_calls) % layers == 0, "the fused layer never ran"
    assert max(fused_calls) <= cpu_kernels.LINEAR_MAX_ROWS          # 20 decodes at once go the per-op way
    for a, b in zip(per_op_outputs, outs):
        assert a.outputs[0].token_ids == b.outputs[0].token_ids
        for la, lb in zip(a.outputs[0].logprobs, b.outputs[0].logprobs):
            assert la.keys() == lb.keys()
            for tok in la:
                assert la[tok].logprob == pytest.approx(lb[tok].logprob, abs=1e-4)
    assert llm.engine.scheduler.kv.pool.num_free_blocks == llm.engine.num_blocks


def test_fused_not_used_in_batch_invariant_mode(tiny_model_dir, fused_calls):
    try:
        llm = _llm(tiny_model_dir, batch_invariant=True)
        llm.generate(_prompts(4), PARAMS, use_tqdm=False)
    finally:
        set_batch_invariant(False)                                   # the flag is process-wide
    assert fused_calls == []


def _meta(num_reqs, num_decodes):
    T = num_decodes + 3 * (num_reqs - num_decodes)
    return AttentionMetadata(slot_mapping=torch.zeros(T, dtype=torch.long), query_start_loc=[0] * (num_reqs + 1),
                             seq_lens=[4] * num_reqs, block_tables=torch.zeros(num_reqs, 1, dtype=torch.long),
                             num_decodes=num_decodes, block_size=16), T


def test_serves_only_small_decode_only_steps(tiny_llm):
    fused = tiny_llm.engine.runner.model.model.fused_layers()
    assert fused is not None
    layer = fused[0]
    for reqs, decodes, ok in ((1, 1, True), (16, 16, True), (17, 17, False), (4, 3, False)):
        meta, T = _meta(reqs, decodes)
        assert layer.serves(torch.zeros(T, 64), meta) is ok, (reqs, decodes)
    meta, T = _meta(2, 2)
    assert not layer.serves(torch.zeros(T, 64, dtype=torch.bfloat16), meta)
    set_batch_invariant(True)
    try:
        assert not layer.serves(torch.zeros(T, 64), meta)
    finally:
        set_batch_invariant(False)


def test_kernel_rejects_a_wrong_weight_list(tiny_llm):
    layer = tiny_llm.engine.runner.model.model.fused_layers()[0]
    meta, T = _meta(1, 1)
    with pytest.raises(RuntimeError, match="12 weight tensors"):
        layer.kernel.decode_layer(torch.zeros(1, 64), layer.weights[:-1], torch.zeros(1, 4), torch.zeros(1, 4),
                                  layer.layer.self_attn.attn.kv_cache, meta.slot_mapping, meta.block_tables,
                                  torch.tensor([1]), 4, 8, 2, 1e-6, 0.25, None)


def test_step_recorder_counts_experts_of_fused_steps(tiny_model_dir):
    llm = _llm(tiny_model_dir)
    rec = StepRecorder(llm)
    try:
        llm.generate(_prompts(4), PARAMS, use_tqdm=False)
    finally:
        rec.close()
    decode = [s for s in rec.steps if s.is_decode]
    assert decode and all(s.distinct_experts is not None and 2 <= s.distinct_experts <= 8 for s in decode)
    assert all(f.route_hook is None for f in llm.engine.runner.model.model.fused_layers())
