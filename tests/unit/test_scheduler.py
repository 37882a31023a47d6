"""The scheduler alone, fed fake model outputs (no model): budgets, chunking, preemption, prefix hits."""
import random

import pytest

from m2serve.config import SchedulerConfig
from m2serve.core.kv_cache.manager import KVCacheManager
from m2serve.core.messages import ModelRunnerOutput
from m2serve.core.request import Request, RequestStatus
from m2serve.core.scheduler import Scheduler
from m2serve.errors import InvalidRequestError
from m2serve.sampling import SamplingParams

EOS = 999


def fake_next_token(tokens):
    """A deterministic 'model': the next token depends on the whole context."""
    return (sum((i + 1) * t for i, t in enumerate(tokens)) * 2654435761) % 997


class FakeRunner:
    """Tracks what the scheduler sent, like the real runner, and checks block tables stay consistent."""

    def __init__(self, block_size):
        self.block_size = block_size
        self.tokens: dict[str, list[int]] = {}
        self.tables: dict[str, list[int]] = {}

    def execute(self, out):
        for new in out.new_requests:
            self.tokens[new.req_id] = list(new.prompt_token_ids)
        for rid in out.finished_req_ids:
            self.tokens.pop(rid, None)
            self.tables.pop(rid, None)
        ids, sampled = [], []
        seen_blocks = set()
        for s in out.scheduled:
            table = list(s.block_ids) if s.resumed else self.tables[s.req_id] + list(s.block_ids)
            self.tables[s.req_id] = table
            end = s.num_computed_tokens + s.num_new_tokens
            assert len(table) * self.block_size >= end, "tokens scheduled without KV slots"
            # Blocks written this step are owned by one request only (shared ones are full prefix blocks).
            written = set(table[s.num_computed_tokens // self.block_size:-(-end // self.block_size)])
            assert not (written & seen_blocks)
            seen_blocks |= written
            toks = self.tokens[s.req_id]
            if end == len(toks):
                t = fake_next_token(toks)
                toks.append(t)
                ids.append(s.req_id)
                sampled.append([t])
        return ModelRunnerOutput(ids, sampled, [None] * len(ids))


def run(sched, runner, max_steps=10_000, on_step=None):
    outputs = {}
    steps = []
    while sched.has_unfinished_requests():
        out = sched.schedule()
        steps.append(out)
        assert out.num_batched_tokens <= sched.config.max_num_batched_tokens
        assert len(out.scheduled) <= sched.config.max_num_seqs
        res = runner.execute(out)
        for o in sched.update_from_output(out, res):
            outputs.setdefault(o.req_id, []).extend(o.new_token_ids)
            if o.finish_reason:
                outputs[o.req_id + ":finish"] = o.finish_reason
        if on_step:
            on_step(sched)
        assert len(steps) < max_steps
    return outputs, steps


def make(num_blocks=100, block_size=4, budget=64, max_seqs=16, max_len=512, caching=True):
    kv = KVCacheManager(num_blocks, block_size, caching)
    return Scheduler(SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=budget, max_model_len=max_len), kv)


def req(rid, prompt, max_tokens=10, **kw):
    return Request(rid, prompt, SamplingParams(max_tokens=max_tokens, **kw), eos_token_ids=[EOS], max_model_len=512)


def reference(prompt, max_tokens):
    toks = list(prompt)
    for _ in range(max_tokens):
        toks.append(fake_next_token(toks))
    return toks[len(prompt):]


def prompts(n, seed=0, lo=1, hi=40):
    rng = random.Random(seed)
    return [[rng.randrange(1, 900) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


@pytest.mark.parametrize("budget,num_blocks", [(64, 200), (7, 200), (64, 30), (16, 24)])
def test_outputs_do_not_depend_on_budget_or_preemption(budget, num_blocks):
    ps = prompts(12)
    sched = make(num_blocks=num_blocks, budget=budget)
    for i, p in enumerate(ps):
        sched.add_request(req(f"r{i}", p, max_tokens=12))
    outs, steps = run(sched, FakeRunner(4), on_step=lambda s: s.kv.pool.check_invariants())
    for i, p in enumerate(ps):
        assert outs[f"r{i}"] == reference(p, 12)
        assert outs[f"r{i}:finish"] == "length"
    assert sched.kv.pool.num_free_blocks == num_blocks
    if num_blocks <= 30:
        assert sched.num_preemptions > 0


def test_one_step_mixes_decodes_and_a_prefill_chunk():
    sched = make(budget=10)
    sched.add_request(req("a", [1, 2, 3]))
    runner = FakeRunner(4)
    sched.update_from_output(out := sched.schedule(), runner.execute(out))  # a prefilled
    sched.add_request(req("b", list(range(1, 30))))
    out = sched.schedule()
    assert [(s.req_id, s.num_new_tokens) for s in out.scheduled] == [("a", 1), ("b", 9)]
    assert out.num_batched_tokens == 10


def test_max_num_seqs_and_fcfs():
    sched = make(max_seqs=2)
    for i in range(4):
        sched.add_request(req(f"r{i}", [i + 1] * 3, max_tokens=3))
    runner = FakeRunner(4)
    out = sched.schedule()
    assert [s.req_id for s in out.scheduled] == ["r0", "r1"]
    first = {o.req_id: o.new_token_ids for o in sched.update_from_output(out, runner.execute(out))}
    outs, _ = run(sched, runner)
    assert all(first.get(f"r{i}", []) + outs[f"r{i}"] == reference([i + 1] * 3, 3) for i in range(4))


def test_eos_min_tokens_and_stop_token_ids():
    p = [5, 6, 7]
    ref = reference(p, 6)
    sched = make()
    # Make the 3rd generated token an "eos" via stop_token_ids; min_tokens=4 must suppress stopping there.
    sched.add_request(req("a", p, max_tokens=6, stop_token_ids=[ref[2]]))
    sched.add_request(req("b", p, max_tokens=6, stop_token_ids=[ref[2]], min_tokens=4))
    outs, _ = run(sched, FakeRunner(4))
    assert outs["a"] == ref[:3] and outs["a:finish"] == "stop"
    assert outs["b"] == ref[:6] or ref[2] in ref[4:]


def test_prefix_cache_hits_counted():
    sched = make()
    shared = list(range(1, 33))
    sched.add_request(req("a", shared + [40]))
    run(sched, FakeRunner(4))
    sched.add_request(r := req("b", shared + [41]))
    out = sched.schedule()
    assert out.scheduled[0].num_computed_tokens == 32 and r.num_cached_tokens == 32


def test_abort_frees_blocks_and_rejects_long_prompts():
    sched = make(num_blocks=20)
    sched.add_request(req("a", list(range(1, 20))))
    sched.schedule()
    assert sched.kv.pool.num_free_blocks < 20
    sched.abort_requests(["a"])
    assert sched.kv.pool.num_free_blocks == 20 and not sched.has_unfinished_requests()
    with pytest.raises(InvalidRequestError, match="maximum model length"):
        sched.add_request(Request("x", list(range(600)), SamplingParams(), [EOS], max_model_len=512))
    with pytest.raises(InvalidRequestError, match="KV-cache blocks"):
        sched.add_request(req("y", list(range(1, 100)), max_tokens=10))
    with pytest.raises(InvalidRequestError, match="empty"):
        sched.add_request(req("z", []))


def test_finished_requests_reported_to_runner_once():
    sched = make()
    sched.add_request(req("a", [1, 2], max_tokens=1))
    runner = FakeRunner(4)
    out = sched.schedule()
    sched.update_from_output(out, runner.execute(out))
    assert sched.requests == {}
    sched.add_request(req("b", [3]))
    assert sched.schedule().finished_req_ids == ["a"]
    assert sched.schedule().finished_req_ids == []
    assert RequestStatus.FINISHED_LENGTH.finish_reason == "length"


def run_async(sched, runner, max_steps=10_000):
    """EngineCore's async loop: up to two steps in flight; the runner executes each in submission order."""
    from collections import deque
    outputs, queue, steps = {}, deque(), 0
    while sched.has_unfinished_requests() or queue:
        if len(queue) < 2 and sched.has_unfinished_requests():
            out = sched.schedule()
            if not out.is_empty or out.finished_req_ids:
                queue.append((out, runner.execute(out)))
                if len(queue) < 2 and not out.is_empty:
                    continue
        if not queue:
            continue
        out, res = queue.popleft()
        for o in sched.update_from_output(out, res):
            outputs.setdefault(o.req_id, []).extend(o.new_token_ids)
            if o.finish_reason:
                outputs[o.req_id + ":finish"] = o.finish_reason
        sched.kv.pool.check_invariants()
        steps += 1
        assert steps < max_steps
    return outputs


@pytest.mark.parametrize("budget,num_blocks", [(64, 200), (7, 200), (64, 30), (16, 24)])
def test_async_scheduling_same_outputs(budget, num_blocks):
    ps = prompts(12, seed=5)
    sched = make(num_blocks=num_blocks, budget=budget)
    for i, p in enumerate(ps):
        sched.add_request(req(f"r{i}", p, max_tokens=4 + i))
    # An EOS-stopped request: its extra in-flight step must be dropped.
    eos_prompt = ps[0][:5]
    stop_at = reference(eos_prompt, 3)[2]
    sched.add_request(req("eos", eos_prompt, max_tokens=20, stop_token_ids=[stop_at]))
    outs = run_async(sched, FakeRunner(4))
    for i, p in enumerate(ps):
        assert outs[f"r{i}"] == reference(p, 4 + i)
        assert outs[f"r{i}:finish"] == "length"
    assert outs["eos"] == reference(eos_prompt, 3) and outs["eos:finish"] == "stop"
    assert sched.kv.pool.num_free_blocks == num_blocks
    if num_blocks <= 30:
        assert sched.num_preemptions > 0


def test_async_plans_the_next_decode_before_the_output():
    sched = make()
    sched.add_request(req("a", [1, 2, 3], max_tokens=2))
    runner = FakeRunner(4)
    first = sched.schedule()
    r1 = runner.execute(first)
    second = sched.schedule()        # before step 1's token is folded in
    assert [(s.req_id, s.num_computed_tokens, s.num_new_tokens) for s in second.scheduled] == [("a", 3, 1)]
    r2 = runner.execute(second)
    assert sched.schedule().is_empty  # both tokens of max_tokens=2 are in flight: nothing more to plan
    got = [o.new_token_ids for o in sched.update_from_output(first, r1)]
    got += [o.new_token_ids for o in sched.update_from_output(second, r2)]
    assert sum(got, []) == reference([1, 2, 3], 2)
    assert not sched.has_unfinished_requests()
