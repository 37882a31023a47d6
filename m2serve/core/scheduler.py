"""Continuous-batching scheduler.

One plain CPU object with no phases: every step fills a token budget, first with the running requests (a
decode is one token, an unfinished prompt a chunk), then with waiting requests in arrival order (FCFS). When
the KV pool runs dry, the most recently arrived running request is preempted: its blocks are freed and it is
recomputed later (its prefix-cached blocks usually survive). The model is not needed to test it: feed
`update_from_output` fake sampled tokens.

Async scheduling: `schedule()` may run again before the previous step's output came back. A request whose
scheduled tokens reach its end gets an output placeholder (the token that step will sample); the next schedule
counts placeholders as known tokens, so a decode is planned one step ahead. The runner executes steps in order,
so it has the sampled token by then. A request that turns out finished has one extra step computed for it, and
its result is dropped.
"""
from __future__ import annotations

from collections import deque

from m2serve.config import SchedulerConfig
from m2serve.core.kv_cache.manager import KVCacheManager, cdiv
from m2serve.core.messages import (EngineCoreOutput, ModelRunnerOutput, NewRequestData, ScheduledRequest,
                                   SchedulerOutput)
from m2serve.core.request import Request, RequestStatus
from m2serve.errors import InvalidRequestError


class Scheduler:
    def __init__(self, config: SchedulerConfig, kv_manager: KVCacheManager):
        self.config = config
        self.kv = kv_manager
        self.block_size = kv_manager.block_size
        self.requests: dict[str, Request] = {}
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self._sent_to_runner: set[str] = set()
        self._finished_ids: list[str] = []
        self.num_preemptions = 0

    # -- intake -------------------------------------------------------------------------------------
    def add_request(self, request: Request) -> None:
        n = request.num_prompt_tokens
        if n == 0:
            raise InvalidRequestError("The prompt is empty: at least one token is required.")
        if n >= self.config.max_model_len:
            raise InvalidRequestError(
                f"The prompt (length {n}) is longer than the maximum model length of "
                f"{self.config.max_model_len}: it must leave room for at least one generated token.")
        # A request must fit in the whole pool on its own, or it could never run.
        need = cdiv(min(n + request.max_tokens, self.config.max_model_len), self.block_size)
        if need > self.kv.pool.num_blocks:
            raise InvalidRequestError(
                f"The request needs up to {need} KV-cache blocks ({n} prompt + {request.max_tokens} new tokens) "
                f"but the cache has {self.kv.pool.num_blocks}; lower max_tokens or give the KV cache more memory.")
        if request.request_id in self.requests:
            raise InvalidRequestError(f"request id {request.request_id!r} is already in use")
        self.requests[request.request_id] = request
        self.waiting.append(request)

    def abort_requests(self, request_ids) -> list[Request]:
        aborted = []
        for rid in request_ids:
            req = self.requests.get(rid)
            if req is None or req.is_finished:
                continue
            if req.status == RequestStatus.RUNNING:
                self.running.remove(req)
            else:
                self.waiting.remove(req)
            req.status = RequestStatus.FINISHED_ABORTED
            self._free(req)
            aborted.append(req)
        return aborted

    @property
    def num_unfinished(self) -> int:
        return len(self.waiting) + len(self.running)

    def has_unfinished_requests(self) -> bool:
        return self.num_unfinished > 0

    # -- one step -----------------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        budget = self.config.max_num_batched_tokens
        scheduled: list[ScheduledRequest] = []
        new_reqs: list[NewRequestData] = []

        # 1. Running requests, oldest first; preempt from the newest end when blocks run out.
        preempted_now = False
        i = 0
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            num_new = min(req.num_tokens + req.num_output_placeholders - req.num_computed_tokens, budget,
                          self.config.max_model_len - req.num_computed_tokens)
            if num_new <= 0 or req.num_output_tokens + req.num_output_placeholders >= req.max_tokens:
                i += 1         # its in-flight step samples its last token: nothing more to plan
                continue
            while True:
                new_blocks = self.kv.allocate_slots(req, num_new)
                if new_blocks is not None:
                    break
                victim = self.running.pop()
                self._preempt(victim)
                preempted_now = True
                if victim is req:
                    break
            if new_blocks is None:   # req itself was preempted
                break
            scheduled.append(ScheduledRequest(req.request_id, req.num_computed_tokens, num_new,
                                              [b.block_id for b in new_blocks]))
            budget -= num_new
            i += 1

        # 2. Waiting requests in arrival order (preempted ones were put back at the front).
        # After a preemption the pool is full: admit nothing more this step.
        while not preempted_now and self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            req = self.waiting[0]
            if req.num_output_placeholders:
                break          # preempted while a step of its was in flight: wait for that token first
            hits, num_hit_tokens = self.kv.get_computed_blocks(req)
            num_new = min(req.num_tokens - num_hit_tokens, budget)
            new_blocks = self.kv.allocate_slots(req, num_new, hits)
            if new_blocks is None:
                break
            self.waiting.popleft()
            resumed = req.status == RequestStatus.PREEMPTED
            req.status = RequestStatus.RUNNING
            req.num_computed_tokens = num_hit_tokens
            if req.num_cached_tokens < 0:
                req.num_cached_tokens = num_hit_tokens
            self.running.append(req)
            if req.request_id not in self._sent_to_runner:
                self._sent_to_runner.add(req.request_id)
                new_reqs.append(NewRequestData(req.request_id, req.prompt_token_ids, req.sampling_params,
                                               sorted(set(req.eos_token_ids) | req.stop_token_ids)))
            scheduled.append(ScheduledRequest(req.request_id, num_hit_tokens, num_new,
                                              self.kv.block_ids(req.request_id), resumed=True))
            budget -= num_new

        for s in scheduled:
            req = self.requests[s.req_id]
            req.num_computed_tokens += s.num_new_tokens
            if req.num_computed_tokens == req.num_tokens + req.num_output_placeholders:
                req.num_output_placeholders += 1      # this step samples its next token
        finished, self._finished_ids = self._finished_ids, []
        return SchedulerOutput(new_reqs, scheduled, finished, self.config.max_num_batched_tokens - budget)

    def _preempt(self, req: Request) -> None:
        self.kv.free(req)
        req.status = RequestStatus.PREEMPTED
        req.num_computed_tokens = 0
        req.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(req)

    # -- results ------------------------------------------------------------------------------------
    def update_from_output(self, sched: SchedulerOutput, out: ModelRunnerOutput) -> list[EngineCoreOutput]:
        outputs: list[EngineCoreOutput] = []
        prompt_lps = out.prompt_logprobs or [None] * len(out.req_ids)
        for req_id, token_ids, logprobs, prompt_lp in zip(out.req_ids, out.sampled_token_ids, out.logprobs,
                                                          prompt_lps):
            req = self.requests.get(req_id)
            if req is None or req.is_finished:
                continue   # aborted (or finished by an earlier step) while the step ran
            req.num_output_placeholders = max(req.num_output_placeholders - 1, 0)
            accepted = []
            for tok in token_ids:
                req.append_output_token(tok)
                accepted.append(tok)
                if req.check_stop():
                    break
            lp = logprobs[:len(accepted)] if logprobs is not None else None
            if req.is_finished:
                self._free(req)
                # Async: a request preempted while this step ran sits in the waiting queue.
                (self.running if req in self.running else self.waiting).remove(req)
            outputs.append(EngineCoreOutput(req_id, accepted, lp, req.status.finish_reason, req.stop_reason,
                                            max(req.num_cached_tokens, 0), prompt_lp))
        return outputs

    def _free(self, req: Request) -> None:
        self.kv.free(req)
        if req.request_id in self._sent_to_runner:
            self._sent_to_runner.discard(req.request_id)
            self._finished_ids.append(req.request_id)
        del self.requests[req.request_id]

    # -- stats --------------------------------------------------------------------------------------
    def stats(self) -> dict:
        pool = self.kv.pool
        return {"num_running": len(self.running), "num_waiting": len(self.waiting),
                "kv_cache_usage": self.kv.usage, "prefix_cache_queries": pool.prefix_queries,
                "prefix_cache_hits": pool.prefix_hits, "num_preemptions": self.num_preemptions}
