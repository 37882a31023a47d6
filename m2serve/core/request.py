"""The engine's view of one request: its tokens, progress and state."""
from __future__ import annotations

import enum
import time

from m2serve.sampling.params import SamplingParams


class RequestStatus(enum.IntEnum):
    WAITING = 0
    WAITING_FOR_REMOTE_KVS = 1   # PD disaggregation: KV blocks being pulled from a prefiller
    RUNNING = 2
    PREEMPTED = 3
    # Everything from here on is finished.
    FINISHED_STOPPED = 4
    FINISHED_LENGTH = 5
    FINISHED_ABORTED = 6

    @property
    def finished(self) -> bool:
        return self >= RequestStatus.FINISHED_STOPPED

    @property
    def finish_reason(self) -> str | None:
        return {RequestStatus.FINISHED_STOPPED: "stop", RequestStatus.FINISHED_LENGTH: "length",
                RequestStatus.FINISHED_ABORTED: "abort"}.get(self)


class Request:
    def __init__(self, request_id: str, prompt_token_ids: list[int], sampling_params: SamplingParams,
                 eos_token_ids: list[int], max_model_len: int, arrival_time: float | None = None):
        self.request_id = request_id
        self.prompt_token_ids = list(prompt_token_ids)
        self.sampling_params = sampling_params
        self.eos_token_ids = [] if sampling_params.ignore_eos else list(eos_token_ids)
        self.stop_token_ids = set(sampling_params.stop_token_ids or ())
        self.arrival_time = time.time() if arrival_time is None else arrival_time
        self.status = RequestStatus.WAITING
        self.output_token_ids: list[int] = []
        self.all_token_ids: list[int] = list(prompt_token_ids)
        self.num_computed_tokens = 0          # tokens whose KV is in the cache (after the last scheduled step)
        self.num_cached_tokens = -1           # prefix-cache hit at first schedule; -1 until scheduled
        self.num_preemptions = 0
        # Async scheduling: tokens being sampled by steps already scheduled but not yet returned. The scheduler
        # plans the next step as if they were known (the runner has them by the time that step runs).
        self.num_output_placeholders = 0
        self.stop_reason: int | str | None = None
        self.block_hashes: list[bytes] = []   # chained hashes of the full blocks of all_token_ids
        # Hard cap: max_tokens, and never past the context window.
        budget = max_model_len - len(prompt_token_ids)
        mt = sampling_params.max_tokens
        self.max_tokens = budget if mt is None else min(mt, budget)

    @property
    def num_tokens(self) -> int:
        return len(self.all_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)

    @property
    def is_finished(self) -> bool:
        return self.status.finished

    def append_output_token(self, token_id: int) -> None:
        self.output_token_ids.append(token_id)
        self.all_token_ids.append(token_id)

    def check_stop(self) -> bool:
        """After a token is appended: set a finished status if the request must stop. Returns finished."""
        last = self.output_token_ids[-1]
        n = self.num_output_tokens
        if n >= self.sampling_params.min_tokens:
            if last in self.eos_token_ids:
                self.status = RequestStatus.FINISHED_STOPPED
                return True
            if last in self.stop_token_ids:
                self.status = RequestStatus.FINISHED_STOPPED
                self.stop_reason = last
                return True
        if n >= self.max_tokens:
            self.status = RequestStatus.FINISHED_LENGTH
            return True
        return False

    def __repr__(self) -> str:
        return (f"Request({self.request_id!r}, {self.status.name}, prompt={self.num_prompt_tokens}, "
                f"out={self.num_output_tokens}, computed={self.num_computed_tokens})")
