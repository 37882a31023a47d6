"""--dtype bfloat16 on a CPU without native bf16 matmul: bf16 weights, fp32 compute (layers/quant/cpu_bf16.py).

On a bf16 checkpoint this mode must give the fp32 run's tokens and log-probs: the weights are the same numbers,
only stored in half the bytes, and every path (decode kernels, the fused layer, prefill through widened weights,
batch-invariant tiles) computes in fp32."""
import random

import pytest
import torch

from m2serve import LLM, SamplingParams
from m2serve.executor import cpu_memory
from m2serve.layers import cpu_kernels
from m2serve.layers.batch_invariant import set_batch_invariant
from m2serve.layers.quant.cpu_bf16 import Bf16WeightLinearMethod, Bf16WeightMoEMethod
from m2serve.models import loader
from tests.helpers.tiny_model import make_tiny_model
from tests.helpers.tiny_tokenizer import build_tiny_tokenizer

pytestmark = pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
                                reason="the kernels need AVX2")

# Staggered lengths: decode steps of 12 rows down to 1 (fused layer), prompts of 2-60 tokens (prefill on MKL).
PARAMS = [SamplingParams(temperature=0, max_tokens=3 + i, ignore_eos=True, logprobs=3) for i in range(12)]


@pytest.fixture(scope="module")
def bf16_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-bf16")
    make_tiny_model(path, dtype=torch.bfloat16)
    build_tiny_tokenizer(path)
    return path


@pytest.fixture(autouse=True)
def no_native_bf16(monkeypatch):
    """Run the mode on any AVX2 machine, AMX ones included."""
    monkeypatch.setattr(loader, "cpu_has_native_bf16", lambda: False)


def _prompts(seed=0):
    rng = random.Random(seed)
    return [{"prompt_token_ids": [rng.randrange(3, 500) for _ in range(rng.randint(2, 60))]} for _ in range(12)]


def _run(path, dtype, **kw):
    llm = LLM(str(path), dtype=dtype, kv_cache_memory_bytes=32 << 20, show_progress=False, **kw)
    return llm, llm.generate(_prompts(), PARAMS, use_tqdm=False)


def _assert_same(a, b, tol=1e-5):
    """Same tokens; log-probs within tol (at 1e-5 the top-3 sets must match too; past it near-ties may swap)."""
    for x, y in zip(a, b):
        assert x.outputs[0].token_ids == y.outputs[0].token_ids
        for lx, ly in zip(x.outputs[0].logprobs, y.outputs[0].logprobs):
            for tok in lx if tol <= 1e-5 else lx.keys() & ly.keys():
                assert lx[tok].logprob == pytest.approx(ly[tok].logprob, abs=tol)


def test_bf16_weights_fp32_compute_matches_fp32(bf16_dir):
    llm, got = _run(bf16_dir, "bfloat16")
    model = llm.engine.runner.model
    layer = model.model.layers[0]
    assert isinstance(layer.self_attn.q_proj.quant_method, Bf16WeightLinearMethod)
    assert isinstance(layer.mlp.experts.quant_method, Bf16WeightMoEMethod)
    assert layer.self_attn.q_proj.weight.dtype == layer.mlp.experts.w13_weight.dtype == torch.bfloat16
    assert model.dtype == torch.float32 and model.model.embed_tokens.weight.dtype == torch.float32
    assert layer.mlp.gate.weight.dtype == torch.float32                   # the router stays fp32
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert llm.engine.runner.kv_cache.dtype == torch.float32
    assert model.model.fused_layers() is not None
    _, want = _run(bf16_dir, "float32")
    _assert_same(got, want)


def test_bf16_weights_batch_invariant_matches_fp32(bf16_dir):
    try:
        _, got = _run(bf16_dir, "bfloat16", batch_invariant=True)
        _, want = _run(bf16_dir, "float32", batch_invariant=True)
    finally:
        set_batch_invariant(False)
    _assert_same(got, want)


def test_auto_keeps_a_bf16_checkpoint_in_bf16(bf16_dir, tiny_model_dir):
    auto, _ = _run(bf16_dir, "auto")
    assert auto.engine.runner.model.model.layers[0].mlp.experts.w13_weight.dtype == torch.bfloat16
    fp32, _ = _run(tiny_model_dir, "auto")                                 # an fp32 checkpoint stays fp32
    assert fp32.engine.runner.model.model.layers[0].mlp.experts.w13_weight.dtype == torch.float32


def test_switch_off_keeps_bf16_activations(bf16_dir, monkeypatch):
    monkeypatch.setenv("M2SERVE_CPU_BF16_WEIGHTS", "0")
    llm, out = _run(bf16_dir, "bfloat16")
    model = llm.engine.runner.model
    assert model.dtype == torch.bfloat16 and model.quant_config is None
    assert len(out[-1].outputs[0].token_ids) == PARAMS[-1].max_tokens


@pytest.mark.parametrize("shape", [(3,), (5, 7), (2, 9, 33)])
def test_widen_is_exact(shape):
    kernel = cpu_kernels.get()
    w = torch.randn(*shape).bfloat16()
    assert torch.equal(kernel.widen(w), w.float())


def test_keep_freed_memory(monkeypatch):
    cpu_memory.keep_freed_memory.cache_clear()
    try:
        monkeypatch.setenv("M2SERVE_CPU_KEEP_FREED_MEMORY", "0")
        assert cpu_memory.keep_freed_memory() is False
        cpu_memory.keep_freed_memory.cache_clear()
        monkeypatch.delenv("M2SERVE_CPU_KEEP_FREED_MEMORY")
        assert cpu_memory.keep_freed_memory() is True                   # glibc on every machine we run
    finally:
        cpu_memory.keep_freed_memory.cache_clear()


def test_bf16_kv_cache_same_tokens_in_every_mode(bf16_dir, monkeypatch):
    """--kv-cache-dtype bfloat16 under bf16 weights: the cache holds bf16 (twice the blocks for the same bytes), the
    fused layer still runs, and the fused, unfused, chunked-prefill and prefix-cached runs give the same tokens (a prompt
    prefilled in one chunk attends over its K/V rounded as the cache stores them). Against the fp32 cache only the
    rounding of K/V differs: the first token's log-probs stay close."""
    llm, fused = _run(bf16_dir, "bfloat16", kv_cache_dtype="bfloat16")
    runner = llm.engine.runner
    assert runner.kv_cache.dtype == torch.bfloat16 and runner.model.model.fused_layers() is not None
    fp32_cache, want = _run(bf16_dir, "bfloat16")
    assert runner.kv_cache.shape[2] == 2 * fp32_cache.engine.runner.kv_cache.shape[2]            # blocks
    again = llm.generate(_prompts(), PARAMS, use_tqdm=False)          # every prompt's blocks are cached by now
    _assert_same(again, fused)
    _, chunked = _run(bf16_dir, "bfloat16", kv_cache_dtype="bfloat16", max_num_batched_tokens=16,
                      enable_prefix_caching=False)
    # Chunks multiply other shapes, so K/V can differ by an fp32 ulp, which now and then rounds to the neighbouring
    # bf16 value in the cache: the same tokens, log-probs within 2e-3 (1e-5 with an fp32 cache).
    _assert_same(chunked, fused, tol=2e-3)
    monkeypatch.setenv("M2SERVE_FUSED_DECODE", "0")
    _, unfused = _run(bf16_dir, "bfloat16", kv_cache_dtype="bfloat16")
    _assert_same(unfused, fused)
    # The first token's log-probs (prefill attends over rounded K/V): within 0.05 (measured <= 0.012). Later steps
    # are not compared: a near-tie in the router can pick another expert and move them by tenths.
    compared = 0
    for x, y in zip(fused, want):
        lx, ly = x.outputs[0].logprobs[0], y.outputs[0].logprobs[0]
        for tok in lx.keys() & ly.keys():
            assert lx[tok].logprob == pytest.approx(ly[tok].logprob, abs=0.05)
            compared += 1
    assert compared >= 24


def test_kv_cache_dtype_refusals(tiny_model_dir):
    from m2serve.errors import ConfigError

    with pytest.raises(ConfigError, match="fp8.*not built"):
        LLM(str(tiny_model_dir), kv_cache_dtype="fp8", show_progress=False)
