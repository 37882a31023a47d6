"""Batching, chunked prefill, preemption and prefix caching must not change a single greedy token, with the
engine's optional execution modes (async scheduling, compiled decode) off and on."""
import random

import pytest

from m2serve import LLM, SamplingParams

N_REQ = 16


def _prompts(seed=0, vocab=500):
    rng = random.Random(seed)
    lens = [1, 3, 7, 15, 16, 17, 31, 33, 50, 64, 5, 90, 12, 40, 2, 70]
    return [{"prompt_token_ids": [rng.randrange(3, vocab) for _ in range(n)]} for n in lens]


GREEDY = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
# Different lengths, so requests finish at different steps (async scheduling drops a finished one's extra step).
GREEDY_MIXED = [SamplingParams(temperature=0, max_tokens=6 + (7 * i) % 19, ignore_eos=True) for i in range(N_REQ)]

MODES = {"sync": {}, "async": {"async_scheduling": True},
         "compiled": {"compilation_config": {"cudagraph_mode": "FULL_DECODE_ONLY"}},
         "compiled+async": {"compilation_config": 3, "async_scheduling": True}}


@pytest.fixture(params=list(MODES))
def mode(request):
    return MODES[request.param]


@pytest.fixture(scope="module")
def alone_outputs(tiny_model_dir):
    llm = LLM(str(tiny_model_dir), dtype="float32", batch_invariant=True, max_num_seqs=1, enable_prefix_caching=False, kv_cache_memory_bytes=32 << 20,
              show_progress=False)
    return [llm.generate([p], GREEDY, use_tqdm=False)[0].outputs[0].token_ids for p in _prompts()]


def _check(llm, alone, prompts=None, params=GREEDY):
    outs = llm.generate(prompts or _prompts(), params, use_tqdm=False)
    got = [o.outputs[0].token_ids for o in outs]
    for i, (a, b) in enumerate(zip(alone, got)):
        assert a == b, f"request {i} differs: alone {a} vs batched {b}"
    return outs


def test_batched_defaults(tiny_model_dir, alone_outputs, mode):
    llm = LLM(str(tiny_model_dir), dtype="float32", batch_invariant=True, kv_cache_memory_bytes=32 << 20, show_progress=False,
              **mode)
    _check(llm, alone_outputs)
    # Requests finishing at different steps: each output is the prefix of its full-length greedy run.
    short = [a[:sp.max_tokens] for a, sp in zip(alone_outputs, GREEDY_MIXED)]
    _check(llm, short, params=GREEDY_MIXED)
    assert llm.engine.scheduler.kv.pool.num_free_blocks == llm.engine.num_blocks


def test_chunked_prefill(tiny_model_dir, alone_outputs, mode):
    llm = LLM(str(tiny_model_dir), dtype="float32", batch_invariant=True, max_num_batched_tokens=32, kv_cache_memory_bytes=32 << 20, show_progress=False,
              **mode)
    _check(llm, alone_outputs)


def test_preemption(tiny_model_dir, alone_outputs, mode):
    # 24 blocks of 16 tokens: the longest request alone needs 6; 16 of them at once cannot fit.
    llm = LLM(str(tiny_model_dir), dtype="float32", batch_invariant=True, num_gpu_blocks_override=24, show_progress=False,
              **mode)
    _check(llm, alone_outputs)
    assert llm.engine.scheduler.num_preemptions > 0
    assert llm.engine.scheduler.kv.pool.num_free_blocks == 24


def test_prefix_caching_shared_prefixes(tiny_model_dir, mode):
    rng = random.Random(3)
    prefix = [rng.randrange(3, 500) for _ in range(40)]
    prompts = [{"prompt_token_ids": prefix + [rng.randrange(3, 500) for _ in range(rng.randint(1, 20))]}
               for _ in range(N_REQ)]
    plain = LLM(str(tiny_model_dir), dtype="float32", batch_invariant=True, enable_prefix_caching=False, kv_cache_memory_bytes=32 << 20, show_progress=False)
    alone = [plain.generate([p], GREEDY, use_tqdm=False)[0].outputs[0].token_ids for p in prompts]
    cached = LLM(str(tiny_model_dir), dtype="float32", batch_invariant=True, kv_cache_memory_bytes=32 << 20, show_progress=False,
                 **mode)
    first = cached.generate(prompts[:1], GREEDY, use_tqdm=False)[0]
    assert first.outputs[0].token_ids == alone[0] and first.num_cached_tokens == 0
    outs = _check(cached, alone, prompts)
    assert all(o.num_cached_tokens >= 32 for o in outs), [o.num_cached_tokens for o in outs]
    # The same prompts again: everything but the last partial block comes from the cache.
    again = _check(cached, alone, prompts)
    assert all(o.num_cached_tokens >= 32 for o in again)
