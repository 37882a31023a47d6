import math

import pytest
import torch

from m2serve.sampling.params import SamplingParams
from m2serve.sampling.penalties import apply_logit_bias, apply_penalties, ban_tokens
from m2serve.sampling.sampler import (
    Sampler, SamplingRow, apply_min_p, apply_top_k, apply_top_k_top_p,
)

NEG_INF = float("-inf")


def params(**kw) -> SamplingParams:
    return SamplingParams(**kw).resolve()


def row(p: SamplingParams, seed: int | None = None, prompt=(), output=(), stop=()) -> SamplingRow:
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return SamplingRow(params=p, prompt_token_ids=list(prompt), output_token_ids=list(output), generator=gen,
                       stop_token_ids=list(stop))


def known_logits() -> torch.Tensor:
    return torch.tensor([[0.5, 0.25, 0.15, 0.1]]).log()


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.nonzero(logits[0] > NEG_INF).flatten().tolist())


# ---- masks ----------------------------------------------------------------------------------------------------
def test_top_k_mask():
    assert kept(apply_top_k(known_logits(), torch.tensor([2]))) == {0, 1}
    assert kept(apply_top_k(known_logits(), torch.tensor([4]))) == {0, 1, 2, 3}
    two = torch.cat([known_logits(), known_logits()])
    out = apply_top_k(two, torch.tensor([1, 3]))
    assert kept(out[0:1]) == {0} and kept(out[1:2]) == {0, 1, 2}


@pytest.mark.parametrize("p, expected", [(0.45, {0}), (0.6, {0, 1}), (0.8, {0, 1, 2}), (1.0, {0, 1, 2, 3})])
def test_top_p_mask(p, expected):
    out = apply_top_k_top_p(known_logits(), None, torch.tensor([p]))
    assert kept(out) == expected
    assert torch.equal(out[0, list(expected)], known_logits()[0, list(expected)])  # kept logits untouched


def test_top_k_then_top_p_renormalises():
    # after top_k=2 the kept probs are 2/3, 1/3: top_p=0.6 keeps only token 0
    assert kept(apply_top_k_top_p(known_logits(), torch.tensor([2]), torch.tensor([0.6]))) == {0}
    assert kept(apply_top_k_top_p(known_logits(), torch.tensor([3]), torch.tensor([0.6]))) == {0, 1}


@pytest.mark.parametrize("min_p, expected", [(0.4, {0, 1}), (0.25, {0, 1, 2}), (0.1, {0, 1, 2, 3}), (1.0, {0})])
def test_min_p_mask(min_p, expected):
    assert kept(apply_min_p(known_logits(), torch.tensor([min_p]))) == expected


@pytest.mark.parametrize("kw, allowed", [
    (dict(top_k=2), {0, 1}), (dict(top_p=0.6), {0, 1}), (dict(min_p=0.45), {0, 1}),
    (dict(top_k=3, top_p=0.8), {0, 1}), (dict(top_k=3, top_p=0.9), {0, 1, 2}),
])
def test_sampling_respects_masks(kw, allowed):
    n = 400
    logits = known_logits().expand(n, 4).contiguous()
    out = Sampler(seed=0)(logits, [row(params(temperature=1.0, **kw))] * n)
    seen = set(out.token_ids.tolist())
    assert seen == allowed


def test_sampling_distribution():
    n = 6000
    probs = torch.tensor([0.5, 0.25, 0.15, 0.1])
    out = Sampler(seed=1)(probs.log().expand(n, 4).contiguous(), [row(params(temperature=1.0))] * n)
    freq = torch.bincount(out.token_ids, minlength=4).float() / n
    assert torch.allclose(freq, probs, atol=0.03), freq
    # temperature 0.5 squares the probabilities (renormalised)
    out = Sampler(seed=2)(probs.log().expand(n, 4).contiguous(), [row(params(temperature=0.5))] * n)
    freq = torch.bincount(out.token_ids, minlength=4).float() / n
    sharp = probs ** 2 / (probs ** 2).sum()
    assert torch.allclose(freq, sharp, atol=0.03), freq


# ---- greedy, bias, min_tokens, penalties ---------------------------------------------------------------------
def test_greedy_is_argmax():
    torch.manual_seed(0)
    logits = torch.randn(5, 97)
    out = Sampler(seed=0)(logits, [row(params(temperature=0.0))] * 5)
    assert torch.equal(out.token_ids, logits.argmax(-1))
    assert out.token_ids.dtype == torch.int64 and out.logprobs == [None] * 5


def test_plain_greedy_fast_path_matches_the_general_path():
    # Rows with nothing to apply skip the copy and gathers; with a greedy row that asks for logprobs in the batch
    # the same rows go through the general path. Both must pick the first maximum (ties, NaN) and leave the
    # caller's logits untouched.
    torch.manual_seed(0)
    logits = torch.randint(0, 4, (6, 50)).float()                 # many ties per row
    logits[2, 7] = float("nan")
    logits[4] = float("-inf")
    before = logits.clone()
    fast = Sampler()(logits, [row(params(temperature=0.0))] * 6)
    general = Sampler()(logits, [row(params(temperature=0.0))] * 5 + [row(params(temperature=0.0, logprobs=0))])
    assert torch.equal(fast.token_ids, general.token_ids)
    assert torch.equal(fast.token_ids, logits.argmax(-1)) and fast.token_ids[2] == 7
    assert torch.equal(logits.nan_to_num(), before.nan_to_num()) and logits.isnan().sum() == 1
    # min_tokens still applies: the fast path is not taken while a stop id is banned
    hot = torch.tensor([[0.0, 9.0, 1.0]])
    assert Sampler()(hot, [row(params(temperature=0.0, min_tokens=2), stop=[1])]).token_ids.tolist() == [2]


def test_logit_bias():
    logits = torch.zeros(2, 6)
    apply_logit_bias(logits, [0, 1], [{3: 2.5, 5: -1.0}, {0: 1.0, 99: 5.0}])  # 99: outside the vocab, ignored
    assert logits.tolist() == [[0, 0, 0, 2.5, 0, -1.0], [1.0, 0, 0, 0, 0, 0]]
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    out = Sampler()(logits, [row(params(temperature=0.0, logit_bias={0: 2.5}))])
    assert out.token_ids.tolist() == [0]
    out = Sampler()(logits, [row(params(temperature=1.0, logit_bias={1: 100.0}))])
    assert out.token_ids.tolist() == [1]


def test_min_tokens_bans_stop_tokens():
    eos, stop = 4, 2
    logits = torch.tensor([[0.0, 1.0, 5.0, 0.5, 9.0]])
    p = params(temperature=0.0, min_tokens=3)
    assert Sampler()(logits, [row(p, output=[1], stop=[eos, stop])]).token_ids.tolist() == [1]
    assert Sampler()(logits, [row(p, output=[1, 1, 1], stop=[eos, stop])]).token_ids.tolist() == [eos]
    # sampled rows never pick a banned token either
    hot = torch.tensor([[0.0, 0.0, 20.0, 0.0, 20.0]]).expand(200, 5).contiguous()
    out = Sampler(seed=0)(hot, [row(params(temperature=1.0, min_tokens=2), stop=[eos, stop])] * 200)
    assert not set(out.token_ids.tolist()) & {eos, stop}
    x = torch.zeros(2, 5)
    ban_tokens(x, [1], [[0, 3]])
    assert x[0].tolist() == [0] * 5 and x[1].tolist() == [NEG_INF, 0, 0, NEG_INF, 0]


def test_penalties_numerically():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5, 3.0, -1.0]])
    apply_penalties(logits, prompt_token_ids=[[0, 5]], output_token_ids=[[1, 2, 2]],
                    repetition_penalties=torch.tensor([2.0]), frequency_penalties=torch.tensor([0.5]),
                    presence_penalties=torch.tensor([0.25]))
    expected = [2.0 / 2,              # prompt, positive: divided
                -2.0 * 2 - 0.5 - 0.25,  # output once, negative: multiplied, then frequency + presence
                1.0 / 2 - 0.5 * 2 - 0.25,  # output twice
                0.5, 3.0,             # unseen
                -1.0 * 2]             # prompt, negative
    assert logits[0].tolist() == pytest.approx(expected)


def test_penalties_in_sampler_change_greedy_choice():
    logits = torch.tensor([[3.0, 2.9, 0.0, 0.0]])
    original = logits.clone()
    sampler = Sampler()
    assert sampler(logits, [row(params(temperature=0.0), output=[0])]).token_ids.tolist() == [0]
    assert sampler(logits, [row(params(temperature=0.0, presence_penalty=0.2), output=[0])]).token_ids.tolist() == [1]
    assert sampler(logits, [row(params(temperature=0.0, frequency_penalty=0.1), output=[0, 0])]).token_ids.tolist() == [1]
    assert sampler(logits, [row(params(temperature=0.0, repetition_penalty=1.1), prompt=[0])]).token_ids.tolist() == [1]
    # frequency/presence look only at the output, not the prompt
    assert sampler(logits, [row(params(temperature=0.0, presence_penalty=2.0), prompt=[0])]).token_ids.tolist() == [0]
    # the caller's logits are not modified
    assert torch.equal(logits, original)


# ---- logprobs ------------------------------------------------------------------------------------------------
def test_logprobs_are_raw_with_rank_and_top():
    torch.manual_seed(3)
    logits = torch.randn(4, 50) * 3
    logits[1, 10], logits[1, 11] = 20.0, 19.5
    rows = [
        row(params(temperature=0.7, top_k=5, logit_bias={7: 50.0}, logprobs=3), seed=11),
        row(params(temperature=0.0, presence_penalty=2.0, logprobs=0), output=[10]),
        row(params(temperature=1.0)),
        row(params(temperature=0.0, logprobs=5)),
    ]
    out = Sampler(seed=0)(logits, rows)
    raw = torch.log_softmax(logits, -1)
    assert out.logprobs[2] is None
    assert out.token_ids[0].item() == 7  # the bias decides the token, but logprobs stay raw
    for i in (0, 1, 3):
        lp = out.logprobs[i]
        tok = out.token_ids[i].item()
        assert lp.token_id == tok
        assert lp.logprob == pytest.approx(raw[i, tok].item(), abs=1e-6)
        assert lp.rank == int((raw[i] >= raw[i, tok]).sum())
        k = rows[i].params.logprobs
        top = torch.topk(raw[i], k) if k else None
        assert [t for t, _ in lp.top] == (top.indices.tolist() if k else [])
        assert [v for _, v in lp.top] == pytest.approx(top.values.tolist() if k else [])
    assert out.logprobs[3].rank == 1
    assert out.logprobs[1].rank == 2  # the penalty moved the greedy choice to the second most likely token
    assert all(math.isfinite(v) for _, v in out.logprobs[0].top)


# ---- per-request seeds ---------------------------------------------------------------------------------------
V = 64


def _steps(n_steps: int = 6):
    g = torch.Generator().manual_seed(1234)
    return [torch.randn(1, V, generator=g) * 2 for _ in range(n_steps)]


def _run_alone(p: SamplingParams, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    sampler = Sampler(seed=99)
    out = []
    for logits in _steps():
        r = SamplingRow(params=p, prompt_token_ids=[1, 2], output_token_ids=list(out), generator=gen)
        out.append(sampler(logits, [r]).token_ids.item())
    return out


def _run_batched(targets: list[tuple[SamplingParams, int]], position: list[int], batch: int,
                 engine_seed: int) -> list[list[int]]:
    """Run the target rows at the given positions of a batch padded with unrelated rows of every kind."""
    gens = [torch.Generator().manual_seed(s) for _, s in targets]
    others = [
        (params(temperature=0.9, top_p=0.5), torch.Generator().manual_seed(5)),
        (params(temperature=1.0), None),
        (params(temperature=0.0), None),
        (params(temperature=1.3, top_k=3, min_p=0.1, repetition_penalty=1.3), None),
        (params(temperature=0.6, top_p=0.8, top_k=10), torch.Generator().manual_seed(6)),
    ]
    outs = [[] for _ in targets]
    noise = torch.Generator().manual_seed(engine_seed)
    sampler = Sampler(seed=engine_seed)
    for logits in _steps():
        rows, mats = [], []
        other_i = 0
        for slot in range(batch):
            if slot in position:
                t = position.index(slot)
                rows.append(SamplingRow(params=targets[t][0], prompt_token_ids=[1, 2],
                                        output_token_ids=list(outs[t]), generator=gens[t]))
                mats.append(logits)
            else:
                p, g = others[other_i % len(others)]
                other_i += 1
                rows.append(SamplingRow(params=p, prompt_token_ids=[3], output_token_ids=[4, 4], generator=g))
                mats.append(torch.randn(1, V, generator=noise))
        res = sampler(torch.cat(mats), rows).token_ids.tolist()
        for t, slot in enumerate(position):
            outs[t].append(res[slot])
    return outs


def test_seeded_rows_reproduce_alone_and_in_any_batch():
    a = (params(temperature=0.8, top_p=0.9, top_k=20, presence_penalty=0.5), 7)
    b = (params(temperature=1.0, top_k=8), 8)            # top_k only: must not depend on top_p neighbours
    c = (params(temperature=1.2, min_p=0.05), 9)
    alone = [_run_alone(*t) for t in (a, b, c)]
    assert len(set(map(tuple, alone))) == 3  # the three streams differ (sanity)
    assert _run_alone(*a) == alone[0]
    for position, batch, engine_seed in [([0, 1, 2], 3, 0), ([5, 0, 3], 7, 1), ([2, 6, 4], 9, 2), ([8, 7, 1], 9, 3)]:
        assert _run_batched([a, b, c], position, batch, engine_seed) == alone, (position, batch)


def test_engine_seed_makes_unseeded_rows_reproducible():
    logits = torch.randn(8, V, generator=torch.Generator().manual_seed(0))
    rows = [row(params(temperature=1.0))] * 8
    assert torch.equal(Sampler(seed=3)(logits, rows).token_ids, Sampler(seed=3)(logits, rows).token_ids)
