"""Typed messages between scheduler, model runner and engine front end (msgspec: they cross processes)."""
from __future__ import annotations

import msgspec

from m2serve.sampling.params import SamplingParams


class NewRequestData(msgspec.Struct, array_like=True):
    """Sent to the model runner the first time a request is scheduled; the runner keeps it until finished."""
    req_id: str
    prompt_token_ids: list[int]
    sampling_params: SamplingParams
    stop_token_ids: list[int]           # eos + params.stop_token_ids: banned before min_tokens


class ScheduledRequest(msgspec.Struct, array_like=True):
    req_id: str
    num_computed_tokens: int            # tokens already in the KV cache before this step
    num_new_tokens: int                 # tokens whose KV this step computes
    block_ids: list[int]                # the request's whole block table (resumed) or only new blocks
    resumed: bool = False               # block_ids replaces the table (after preemption)


class SchedulerOutput(msgspec.Struct, array_like=True):
    new_requests: list[NewRequestData]
    scheduled: list[ScheduledRequest]   # in schedule order
    finished_req_ids: list[str]         # the runner drops their state
    num_batched_tokens: int

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


class TokenLogprob(msgspec.Struct, array_like=True):
    token_id: int
    logprob: float
    rank: int
    top: list[tuple[int, float]]


class ModelRunnerOutput(msgspec.Struct, array_like=True):
    req_ids: list[str]                       # requests that sampled a token this step
    sampled_token_ids: list[list[int]]       # per request: the accepted tokens (one without spec decode)
    logprobs: list[list[TokenLogprob] | None]
    # Per request, with its first sampled token only: logprobs of prompt tokens 1..P-1 (prompt_logprobs set).
    prompt_logprobs: list[list[TokenLogprob] | None] | None = None


class EngineCoreOutput(msgspec.Struct, array_like=True):
    req_id: str
    new_token_ids: list[int]
    new_logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None         # stop | length | abort
    stop_reason: int | str | None = None
    num_cached_tokens: int = 0
    prompt_logprobs: list[TokenLogprob] | None = None   # first output only, when asked


# -- API process <-> engine-core process (ZMQ, msgspec; tagged so one decoder reads any of them) -----------
class EngineCoreRequest(msgspec.Struct, tag=True, array_like=True):
    request_id: str
    prompt_token_ids: list[int]
    sampling_params: SamplingParams       # resolved, n == 1
    eos_token_ids: list[int]
    arrival_time: float


class AbortRequests(msgspec.Struct, tag=True, array_like=True):
    request_ids: list[str]


class UtilityCall(msgspec.Struct, tag=True, array_like=True):
    call_id: int
    method: str                            # reset_prefix_cache | shutdown


class SchedulerStats(msgspec.Struct, array_like=True):
    num_running: int
    num_waiting: int
    kv_cache_usage: float
    prefix_cache_queries: int              # cumulative, tokens
    prefix_cache_hits: int                 # cumulative, tokens
    num_preemptions: int                   # cumulative
    step_num_tokens: int = 0               # tokens computed in this step (vllm:iteration_tokens_total)


class EngineCoreOutputs(msgspec.Struct, tag=True, array_like=True):
    outputs: list[EngineCoreOutput]
    stats: SchedulerStats | None = None
    timestamp: float = 0.0


class EngineReady(msgspec.Struct, tag=True, array_like=True):
    num_blocks: int
    block_size: int
    max_model_len: int
    dtype: str


class RequestRejected(msgspec.Struct, tag=True, array_like=True):
    request_id: str
    message: str


class UtilityResult(msgspec.Struct, tag=True, array_like=True):
    call_id: int
    result: bool


class EngineDead(msgspec.Struct, tag=True, array_like=True):
    message: str


ToEngine = EngineCoreRequest | AbortRequests | UtilityCall
FromEngine = EngineCoreOutputs | EngineReady | RequestRejected | UtilityResult | EngineDead
