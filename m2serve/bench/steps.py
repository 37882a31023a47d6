"""Per-step records of an in-process engine (`LLM`), for the offline benchmarks' roofline numbers.

`StepRecorder(llm)` wraps `llm.engine.step` (wall time of the whole step: schedule, model, sampling, update) and the
runner's `execute_model` (what the step scheduled), and marks on a [layers, experts] mask which experts the
step's tokens were routed to (a forward pre-hook on each MoE's fused experts, and the route hook of each fused CPU
decode layer; no host sync inside the model).
`close()` restores everything.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from m2serve.bench.roofline import StepCost, WeightBytes, step_cost


@dataclass
class StepRecord:
    seconds: float
    seqs: list[tuple[int, int]]          # (new tokens, context length after the step) per scheduled sequence
    distinct_experts: float | None       # mean distinct experts per MoE layer this step

    @property
    def num_tokens(self) -> int:
        return sum(n for n, _ in self.seqs)

    @property
    def is_decode(self) -> bool:
        return all(n == 1 for n, _ in self.seqs)


class StepRecorder:
    def __init__(self, llm, count_experts: bool = True):
        self.engine = llm.engine
        self.runner = self.engine.runner
        self.arch = self.runner.arch
        # The compute dtype (fp32 where --dtype bfloat16 means bf16 weights with fp32 math on a CPU without AMX).
        self.dtype = getattr(self.runner.model, "dtype", self.runner.dtype)
        self.steps: list[StepRecord] = []
        self.elem_bytes = torch.tensor([], dtype=self.dtype).element_size()
        kv = getattr(self.runner, "kv_cache", None)
        self.kv_elem_bytes = kv.element_size() if isinstance(kv, torch.Tensor) else self.elem_bytes
        self.weights = WeightBytes.from_model(self.runner.model, self.arch)
        self._sched: list[tuple[int, int]] | None = None
        self._orig_step = self.engine.step
        self._orig_exec = self.runner.execute_model
        self._shadowed = ("step" in vars(self.engine), "execute_model" in vars(self.runner))
        self._hooks = []
        self._fused = []
        self._mask = None
        if count_experts:
            from m2serve.layers.moe import FusedExperts
            experts = [m for m in self.runner.model.modules() if isinstance(m, FusedExperts)]
            if experts:
                self._mask = torch.zeros(len(experts), self.arch.num_local_experts, dtype=torch.bool,
                                         device=self.runner.device)
                for i, mod in enumerate(experts):
                    self._hooks.append(mod.register_forward_pre_hook(self._make_hook(i)))
                self._fused = self.runner.model.model.fused_layers() or []   # one per layer, like experts
                for i, layer in enumerate(self._fused):
                    layer.route_hook = self._make_route_hook(i)
        self.engine.step = self._step
        self.runner.execute_model = self._execute

    def _make_hook(self, layer: int):
        def hook(module, args):
            self._mask[layer, args[1].flatten()] = True
        return hook

    def _make_route_hook(self, layer: int):
        def hook(ids):
            self._mask[layer, ids.flatten()] = True
        return hook

    def _execute(self, sched):
        self._sched = [(s.num_new_tokens, s.num_computed_tokens + s.num_new_tokens) for s in sched.scheduled]
        return self._orig_exec(sched)

    def _step(self):
        self._sched = None
        t0 = time.perf_counter()
        out = self._orig_step()
        dt = time.perf_counter() - t0
        if self._sched:
            distinct = None
            if self._mask is not None:
                distinct = float(self._mask.sum(1).float().mean().item())
                self._mask.zero_()
            self.steps.append(StepRecord(dt, self._sched, distinct))
        return out

    def clear(self) -> None:
        self.steps.clear()

    def cost(self, record: StepRecord) -> StepCost:
        return step_cost(self.arch, record.seqs, elem_bytes=self.elem_bytes, kv_elem_bytes=self.kv_elem_bytes,
                         distinct_experts=record.distinct_experts, weights=self.weights)

    def total(self, records=None) -> tuple[float, StepCost]:
        records = self.steps if records is None else records
        cost = StepCost()
        for r in records:
            cost = cost + self.cost(r)
        return sum(r.seconds for r in records), cost

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        for layer in self._fused:
            layer.route_hook = None
        self._fused = []
        for obj, name, orig, shadowed in ((self.engine, "step", self._orig_step, self._shadowed[0]),
                                          (self.runner, "execute_model", self._orig_exec, self._shadowed[1])):
            if shadowed:
                setattr(obj, name, orig)
            else:
                vars(obj).pop(name, None)
