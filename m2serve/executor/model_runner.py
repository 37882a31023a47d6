"""Model runner: owns the weights and the KV cache, turns a SchedulerOutput into one forward pass and samples.

It keeps its own copy of each request's tokens (prompt + every token it sampled), so the scheduler only
sends counts and block ids each step.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from m2serve.config import CacheConfig, CompilationConfig, ModelConfig, SchedulerConfig
from m2serve.core.messages import ModelRunnerOutput, NewRequestData, SchedulerOutput, TokenLogprob
from m2serve.distributed.parallel_state import get_parallel_context
from m2serve.executor.cpu_memory import keep_freed_memory
from m2serve.layers.attention_metadata import AttentionMetadata
from m2serve.layers.batch_invariant import set_batch_invariant
from m2serve.models.loader import load_model, resolve_dtype
from m2serve.sampling.sampler import Sampler, SamplingRow, gather_logprobs

logger = logging.getLogger(__name__)

DEFAULT_CPU_KV_CACHE_BYTES = 4 << 30


@dataclass
class CachedRequestState:
    req_id: str
    token_ids: list[int]                 # prompt + sampled tokens
    num_prompt_tokens: int
    new: NewRequestData
    generator: torch.Generator | None
    block_ids: list[int] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)   # for prompt positions 1..


class ModelRunner:
    def __init__(self, model_config: ModelConfig, cache_config: CacheConfig, scheduler_config: SchedulerConfig,
                 device: torch.device, show_progress: bool = True, compilation: CompilationConfig | None = None):
        self.model_config = model_config
        self.cache_config = cache_config
        self.scheduler_config = scheduler_config
        self.device = device
        self.arch = model_config.arch
        self.dtype = resolve_dtype(model_config.dtype, self.arch.torch_dtype, device)
        self.block_size = cache_config.block_size
        if torch.device(device).type == "cpu":
            keep_freed_memory()                          # step tensors reuse heap pages instead of faulting
        set_batch_invariant(model_config.batch_invariant)
        self.model = load_model(model_config.path, self.arch, self.dtype, device=device,
                                parallel=get_parallel_context(), show_progress=show_progress,
                                quantization=model_config.quantization, num_threads=model_config.load_threads,
                                kv_cache_dtype=model_config.kv_cache_dtype)
        self.kv_cache_dtype = self.model.kv_cache_dtype      # int8 under C8 (scales live in the attention layers)
        if compilation is not None and compilation.enabled:
            self._compile()
        self.sampler = Sampler(seed=model_config.seed)
        self.requests: dict[str, CachedRequestState] = {}
        self.kv_cache: torch.Tensor | None = None

    def _compile(self) -> None:
        """Regional torch.compile: each decoder layer in place, dynamic in the token count. Paged attention and
        the expert matmuls are torch.compiler.disable'd inside it; identical layers share one compiled graph."""
        import torch._dynamo

        # One entry per distinct graph, not per layer; keep room for the few shape/dtype variants.
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        for layer in self.model.model.layers:
            layer.compile(dynamic=True)
        logger.info("compiled %d decoder layers (torch.compile, dynamic token count; graphs built on first use)",
                    len(self.model.model.layers))

    # -- KV cache -----------------------------------------------------------------------------------
    @property
    def bytes_per_block(self) -> int:
        a = self.arch
        elem = torch.tensor([], dtype=self.kv_cache_dtype).element_size()
        return a.num_hidden_layers * 2 * self.block_size * a.num_key_value_heads * a.head_dim * elem

    def determine_num_blocks(self) -> int:
        cc = self.cache_config
        if cc.num_gpu_blocks_override is not None:
            return cc.num_gpu_blocks_override
        if cc.kv_cache_memory_bytes is not None:
            budget = cc.kv_cache_memory_bytes
        elif self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            # What the fraction allows beyond what is already used (weights, other processes), with headroom
            # for activations.
            budget = int(0.9 * (total * cc.gpu_memory_utilization - (total - free)))
        else:
            # CPU: 4 GiB by default, but no more than max_num_seqs full-length sequences could ever use.
            sc = self.scheduler_config
            most = sc.max_num_seqs * (sc.max_model_len + self.block_size) // self.block_size * self.bytes_per_block
            budget = min(DEFAULT_CPU_KV_CACHE_BYTES, most)
        num_blocks = budget // self.bytes_per_block
        if num_blocks < 1:
            raise RuntimeError(f"the KV-cache budget of {budget} bytes holds no block of {self.bytes_per_block} bytes")
        return num_blocks

    def init_kv_cache(self, num_blocks: int) -> None:
        a = self.arch
        # [layers, K/V, blocks, block_size, kv_heads, head_dim]: a block's bytes are addressable by id (transfer).
        self.kv_cache = torch.zeros(a.num_hidden_layers, 2, num_blocks, self.block_size, a.num_key_value_heads,
                                    a.head_dim, dtype=self.kv_cache_dtype, device=self.device)
        self.model.bind_kv_cache(self.kv_cache)
        logger.info("KV cache: %d blocks of %d tokens, %s (%.1f MiB)", num_blocks, self.block_size,
                    self.kv_cache_dtype, self.kv_cache.numel() * self.kv_cache.element_size() / 2**20)

    # -- one step -----------------------------------------------------------------------------------
    def _update_states(self, sched: SchedulerOutput) -> None:
        for rid in sched.finished_req_ids:
            self.requests.pop(rid, None)
        for new in sched.new_requests:
            gen = None
            if new.sampling_params.seed is not None:
                # On the logits' device: a CPU generator cannot drive sampling from CUDA logits.
                gen = torch.Generator(device=self.device).manual_seed(new.sampling_params.seed)
            self.requests[new.req_id] = CachedRequestState(new.req_id, list(new.prompt_token_ids),
                                                           len(new.prompt_token_ids), new, gen)
        for s in sched.scheduled:
            state = self.requests[s.req_id]
            if s.resumed:
                state.block_ids = list(s.block_ids)
            else:
                state.block_ids.extend(s.block_ids)

    @torch.inference_mode()
    def execute_model(self, sched: SchedulerOutput) -> ModelRunnerOutput:
        # The numerics mode is a process-wide switch: set it every step, so two engines in one process (tests,
        # notebooks) each run with their own.
        set_batch_invariant(self.model_config.batch_invariant)
        self._update_states(sched)
        if not sched.scheduled:
            return ModelRunnerOutput([], [], [])
        # Decodes (one new token) first: the attention backend batches them.
        order = sorted(sched.scheduled, key=lambda s: s.num_new_tokens != 1)
        bs = self.block_size
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        qsl = [0]
        seq_lens: list[int] = []
        tables: list[list[int]] = []
        sample_rows: list[int] = []        # index into order
        for i, s in enumerate(order):
            state = self.requests[s.req_id]
            start, end = s.num_computed_tokens, s.num_computed_tokens + s.num_new_tokens
            input_ids.extend(state.token_ids[start:end])
            pos = range(start, end)
            positions.extend(pos)
            blocks = state.block_ids
            slots.extend(blocks[p // bs] * bs + p % bs for p in pos)
            qsl.append(qsl[-1] + s.num_new_tokens)
            seq_lens.append(end)
            tables.append(blocks)
            if end == len(state.token_ids):
                sample_rows.append(i)
        max_blocks = max(len(t) for t in tables)
        # One tensor from padded lists: a tensor and an index_put per request cost ~15 us each at decode batch 16.
        block_tables = torch.tensor([t + [0] * (max_blocks - len(t)) for t in tables], dtype=torch.int64)
        num_decodes = sum(1 for s in order if s.num_new_tokens == 1)
        dev = self.device
        meta = AttentionMetadata(
            slot_mapping=torch.tensor(slots, dtype=torch.int64, device=dev), query_start_loc=qsl,
            seq_lens=seq_lens, block_tables=block_tables.to(dev), num_decodes=num_decodes, block_size=bs)
        hidden = self.model(torch.tensor(input_ids, dtype=torch.int64, device=dev),
                            torch.tensor(positions, dtype=torch.int64, device=dev), meta)
        self._prompt_logprobs(order, qsl, hidden)
        if not sample_rows:
            return ModelRunnerOutput([], [], [])
        if qsl[-1] == len(sample_rows):
            last_hidden = hidden                                             # every row is a sampled decode row
        else:
            last = torch.tensor([qsl[i + 1] - 1 for i in sample_rows], dtype=torch.int64, device=dev)
            last_hidden = hidden.index_select(0, last)
        logits = self.model.compute_logits(last_hidden)                      # [N, V] fp32
        rows = []
        for i in sample_rows:
            state = self.requests[order[i].req_id]
            rows.append(SamplingRow(params=state.new.sampling_params,
                                    prompt_token_ids=state.token_ids[:state.num_prompt_tokens],
                                    output_token_ids=state.token_ids[state.num_prompt_tokens:],
                                    generator=state.generator, stop_token_ids=state.new.stop_token_ids))
        out = self.sampler(logits, rows)
        sampled = out.token_ids.tolist()
        req_ids, tokens, logprobs, prompt_lps = [], [], [], []
        for i, tok, lp in zip(sample_rows, sampled, out.logprobs):
            state = self.requests[order[i].req_id]
            first = len(state.token_ids) == state.num_prompt_tokens
            prompt_lps.append(state.prompt_logprobs if first and state.new.sampling_params.prompt_logprobs is not None
                              else None)
            state.token_ids.append(tok)
            req_ids.append(state.req_id)
            tokens.append([tok])
            logprobs.append(None if lp is None else
                            [TokenLogprob(lp.token_id, lp.logprob, lp.rank, [tuple(t) for t in lp.top])])
        return ModelRunnerOutput(req_ids, tokens, logprobs, prompt_lps)

    def _prompt_logprobs(self, order, qsl: list[int], hidden: torch.Tensor, chunk: int = 256) -> None:
        """For requests that asked for prompt logprobs: score each prompt token of this step's chunk against the
        logits of the position before it."""
        for i, s in enumerate(order):
            state = self.requests[s.req_id]
            k = state.new.sampling_params.prompt_logprobs
            start = s.num_computed_tokens
            if k is None or start >= state.num_prompt_tokens - 1:
                continue
            del state.prompt_logprobs[start:]       # recomputed after a preemption
            hi = min(start + s.num_new_tokens, state.num_prompt_tokens - 1)
            for lo in range(start, hi, chunk):
                up = min(lo + chunk, hi)
                rows = hidden[qsl[i] + lo - start: qsl[i] + up - start]
                logprobs = torch.log_softmax(self.model.compute_logits(rows), dim=-1)     # [n, V]
                targets = torch.tensor(state.token_ids[lo + 1: up + 1], dtype=torch.int64, device=logprobs.device)
                for lp in gather_logprobs(logprobs, targets, [k] * (up - lo)):
                    state.prompt_logprobs.append(TokenLogprob(lp.token_id, lp.logprob, lp.rank,
                                                              [tuple(t) for t in lp.top]))
