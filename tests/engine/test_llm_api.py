"""The offline LLM API: vLLM's names and semantics, seeded sampling, n, logprobs, stops, chat."""
import math
import random

import pytest
import torch

from m2serve import LLM, SamplingParams
from m2serve.errors import InvalidRequestError


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    return LLM(str(tiny_model_dir), dtype="float32", batch_invariant=True, kv_cache_memory_bytes=32 << 20,
               show_progress=False)


def _ids(n, seed):
    rng = random.Random(seed)
    return {"prompt_token_ids": [rng.randrange(3, 500) for _ in range(n)]}


def test_outputs_in_input_order_with_fields(llm):
    prompts = ["Hello there", _ids(7, 1), {"prompt": "你好，世界"}]
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=5, ignore_eos=True), use_tqdm=False)
    assert [o.prompt for o in outs] == ["Hello there", None, "你好，世界"]
    assert outs[1].prompt_token_ids == prompts[1]["prompt_token_ids"]
    for o in outs:
        c = o.outputs[0]
        assert len(c.token_ids) == 5 and c.finish_reason == "length" and o.finished
        assert c.text == llm.get_tokenizer().decode(c.token_ids) or "\ufffd" in llm.get_tokenizer().decode(c.token_ids)
        assert o.num_cached_tokens >= 0


def test_seeded_sampling_reproduces_alone_and_in_batches(llm):
    seeded = [SamplingParams(temperature=1.0, top_p=0.9, max_tokens=12, seed=s, ignore_eos=True) for s in (1, 2, 3)]
    prompts = [_ids(5, 10), _ids(20, 11), _ids(9, 12)]
    alone = [llm.generate([p], sp, use_tqdm=False)[0].outputs[0].token_ids for p, sp in zip(prompts, seeded)]
    # In a batch, at other positions, beside unseeded and greedy requests.
    noise = SamplingParams(temperature=1.0, max_tokens=12, ignore_eos=True)
    greedy = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    batch_prompts = [_ids(3, 99), prompts[2], prompts[0], _ids(30, 98), prompts[1]]
    batch_params = [noise, seeded[2], seeded[0], greedy, seeded[1]]
    outs = llm.generate(batch_prompts, batch_params, use_tqdm=False)
    assert outs[2].outputs[0].token_ids == alone[0]
    assert outs[4].outputs[0].token_ids == alone[1]
    assert outs[1].outputs[0].token_ids == alone[2]
    # Different seeds give different samples.
    assert alone[0] != llm.generate([prompts[0]], seeded[1], use_tqdm=False)[0].outputs[0].token_ids


def test_n_samples_and_logprobs(llm):
    sp = SamplingParams(n=3, temperature=1.0, max_tokens=6, seed=7, logprobs=2, ignore_eos=True)
    out = llm.generate([_ids(6, 3)], sp, use_tqdm=False)[0]
    assert [c.index for c in out.outputs] == [0, 1, 2]
    assert len({tuple(c.token_ids) for c in out.outputs}) > 1
    for c in out.outputs:
        assert len(c.logprobs) == len(c.token_ids)
        total = 0.0
        for tok, d in zip(c.token_ids, c.logprobs):
            assert tok in d and d[tok].logprob <= 0 and d[tok].rank >= 1
            tops = sorted((lp for t, lp in d.items() if lp.rank is not None and lp.rank <= 2), key=lambda x: x.rank)
            assert len(tops) >= 2 and tops[0].logprob >= tops[1].logprob
            total += d[tok].logprob
        assert math.isclose(c.cumulative_logprob, total, rel_tol=1e-6)


def test_raw_logprobs_match_a_direct_forward(llm, tiny_model_dir):
    """Logprobs are of the model's raw distribution, even with temperature and penalties."""
    prompt = _ids(8, 5)
    greedy = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=1, logprobs=5), use_tqdm=False)[0]
    shaped = llm.generate([prompt], SamplingParams(temperature=0.3, top_k=3, repetition_penalty=1.5, max_tokens=1,
                                                   logprobs=5, seed=0), use_tqdm=False)[0]
    g = greedy.outputs[0].logprobs[0]
    s = shaped.outputs[0].logprobs[0]
    for tok, lp in g.items():
        if tok in s:
            assert s[tok].logprob == pytest.approx(lp.logprob, abs=1e-5)


def test_stop_strings_stop_token_ids_min_tokens(llm):
    prompt = _ids(10, 21)
    base = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=16, ignore_eos=True), use_tqdm=False)[0]
    text, toks = base.outputs[0].text, base.outputs[0].token_ids
    stop = text[5:8]
    cut = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=16, ignore_eos=True, stop=[stop]),
                       use_tqdm=False)[0].outputs[0]
    assert cut.text == text[:text.index(stop)] and cut.finish_reason == "stop" and cut.stop_reason == stop
    incl = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=16, ignore_eos=True, stop=[stop],
                                                 include_stop_str_in_output=True), use_tqdm=False)[0].outputs[0]
    assert incl.text == text[:text.index(stop) + len(stop)]
    by_id = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=16, stop_token_ids=[toks[3]]),
                         use_tqdm=False)[0].outputs[0]
    assert by_id.token_ids == toks[:toks.index(toks[3]) + 1] and by_id.stop_reason == toks[3]
    # min_tokens bans the stop token until 6 tokens are out.
    late = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=16, stop_token_ids=[toks[0]],
                                                 min_tokens=6), use_tqdm=False)[0].outputs[0]
    assert len(late.token_ids) >= 6 and toks[0] not in late.token_ids[:6]


def test_generation_config_defaults_and_errors(llm):
    d = llm.get_default_sampling_params()
    assert d.temperature is not None and d.top_p is not None and d.top_k is not None
    with pytest.raises(InvalidRequestError, match="maximum model length"):
        llm.generate([{"prompt_token_ids": [5] * 5000}], SamplingParams(max_tokens=2), use_tqdm=False)
    with pytest.raises(InvalidRequestError):
        llm.generate([{"prompt_token_ids": [10 ** 6]}], use_tqdm=False)
    with pytest.raises(InvalidRequestError):
        SamplingParams(top_p=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        LLM(model="x", not_a_flag=1)
    # The engine is unharmed: nothing half-added stays queued.
    assert not llm.engine.has_unfinished_requests()


def test_chat_renders_template(llm):
    out = llm.chat([{"role": "user", "content": "Hello, who are you?"}],
                   SamplingParams(temperature=0, max_tokens=4), use_tqdm=False)[0]
    assert out.prompt.startswith("]~!b[]~b]system") and out.prompt.endswith("]~b]ai\n<think>\n")
    assert len(out.outputs[0].token_ids) >= 1


def test_failed_step_leaves_no_request_behind(llm, monkeypatch):
    """A step that raises (a device error, say) aborts that call's requests; the next call is unaffected."""
    greedy = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    want = [o.outputs[0].token_ids for o in llm.generate([_ids(9, 3), _ids(4, 4)], greedy, use_tqdm=False)]
    runner = llm.engine.runner
    real = runner.execute_model
    calls = {"n": 0}

    def flaky(sched):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected device failure")
        return real(sched)

    monkeypatch.setattr(runner, "execute_model", flaky)
    with pytest.raises(RuntimeError, match="injected"):
        llm.generate([_ids(9, 3), _ids(4, 4)], greedy, use_tqdm=False)
    monkeypatch.setattr(runner, "execute_model", real)
    assert not llm.engine.has_unfinished_requests()
    got = [o.outputs[0].token_ids for o in llm.generate([_ids(9, 3), _ids(4, 4)], greedy, use_tqdm=False)]
    assert got == want
    assert llm.engine.scheduler.kv.pool.num_free_blocks == llm.engine.num_blocks
