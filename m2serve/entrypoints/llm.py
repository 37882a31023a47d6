"""Offline inference API with vLLM's names: `LLM(model=...).generate(prompts, SamplingParams(...))`."""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from m2serve.config import EngineConfig
from m2serve.core.engine_core import EngineCore
from m2serve.core.request import Request
from m2serve.errors import ConfigError, InvalidRequestError
from m2serve.frontend.output_processor import OutputProcessor
from m2serve.frontend.tokenizer import Tokenizer
from m2serve.outputs import RequestOutput
from m2serve.sampling.params import SamplingParams

# vLLM keyword arguments that change nothing here (accepted so existing scripts run unchanged).
_ACCEPTED_NO_EFFECT = {"trust_remote_code", "tokenizer_mode", "disable_log_stats", "swap_space",
                       "revision", "tokenizer_revision", "download_dir", "load_format"}

PromptType = str | dict[str, Any]


def eos_token_ids_for(tokenizer: Tokenizer | None, generation_config: dict, arch_eos) -> list[int]:
    if tokenizer is not None:
        return list(tokenizer.eos_token_ids)
    eos = generation_config.get("eos_token_id", arch_eos)
    if eos is None:
        return []
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


class LLM:
    def __init__(self, model: str | None = None, *, tokenizer: str | None = None, dtype: str = "auto",
                 max_model_len: int | None = None, max_num_seqs: int = 256,
                 max_num_batched_tokens: int | None = None, enable_prefix_caching: bool = True,
                 num_gpu_blocks_override: int | None = None, kv_cache_memory_bytes: int | None = None,
                 gpu_memory_utilization: float = 0.9, seed: int = 0, block_size: int = 16,
                 tensor_parallel_size: int = 1, device: str = "auto", batch_invariant: bool | None = None,
                 quantization: str | None = None, async_scheduling: bool = False, compilation_config=None,
                 enforce_eager: bool = False, model_loader_extra_config: dict | None = None,
                 kv_cache_dtype: str = "auto", show_progress: bool = True, **kwargs):
        unknown = set(kwargs) - _ACCEPTED_NO_EFFECT
        if unknown:
            raise TypeError(f"LLM() got unexpected keyword arguments: {sorted(unknown)}")
        self.config = EngineConfig.create(
            model, dtype=dtype, max_model_len=max_model_len, seed=seed, block_size=block_size,
            kv_cache_memory_bytes=kv_cache_memory_bytes, gpu_memory_utilization=gpu_memory_utilization,
            num_gpu_blocks_override=num_gpu_blocks_override, enable_prefix_caching=enable_prefix_caching,
            max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
            tensor_parallel_size=tensor_parallel_size, device=device, batch_invariant=batch_invariant,
            quantization=quantization, async_scheduling=async_scheduling, compilation_config=compilation_config,
            enforce_eager=enforce_eager, model_loader_extra_config=model_loader_extra_config,
            kv_cache_dtype=kv_cache_dtype)
        tok_dir = Path(tokenizer or self.config.model.path)
        self.tokenizer = Tokenizer.from_dir(tok_dir) if (tok_dir / "tokenizer.json").is_file() else None
        self.engine = EngineCore(self.config, show_progress=show_progress)
        self.generation_config = self.config.model.generation_config
        self.eos_token_ids = eos_token_ids_for(self.tokenizer, self.generation_config, self.config.model.arch.eos_token_id)
        self.output_processor = OutputProcessor(self.tokenizer)
        self._counter = itertools.count()

    def get_tokenizer(self) -> Tokenizer | None:
        return self.tokenizer

    def get_default_sampling_params(self) -> SamplingParams:
        return SamplingParams().resolve(self.generation_config)

    # -- generation ---------------------------------------------------------------------------------
    def generate(self, prompts: PromptType | Sequence[PromptType],
                 sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
                 use_tqdm: bool = True) -> list[RequestOutput]:
        if isinstance(prompts, (str, dict)):
            prompts = [prompts]
        prompts = list(prompts)
        if sampling_params is None:
            sampling_params = SamplingParams()
        params_list = (list(sampling_params) if isinstance(sampling_params, (list, tuple))
                       else [sampling_params] * len(prompts))
        if len(params_list) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params_list)} sampling params")
        ids: list[str] = []
        try:
            for prompt, params in zip(prompts, params_list):
                ids.append(self._add_request(prompt, params))
        except Exception:
            for rid in ids:   # nothing half-added stays in the engine
                self.engine.abort_requests(self.output_processor.abort(rid))
            raise
        return self._run(ids, use_tqdm)

    def chat(self, messages: list[dict] | list[list[dict]], sampling_params=None, use_tqdm: bool = True,
             tools: list[dict] | None = None, add_generation_prompt: bool = True,
             continue_final_message: bool = False, chat_template: str | None = None,
             chat_template_kwargs: dict | None = None) -> list[RequestOutput]:
        if self.tokenizer is None:
            raise ConfigError(f"{self.config.model.model} has no tokenizer.json: chat needs a tokenizer")
        conversations = [messages] if messages and isinstance(messages[0], dict) else messages
        prompts = []
        for conv in conversations:
            text = self.tokenizer.apply_chat_template(conv, tools=tools, add_generation_prompt=add_generation_prompt,
                                                      continue_final_message=continue_final_message,
                                                      chat_template=chat_template, **(chat_template_kwargs or {}))
            prompts.append({"prompt_token_ids": self.tokenizer.encode(text), "prompt": text})
        return self.generate(prompts, sampling_params, use_tqdm=use_tqdm)

    def _add_request(self, prompt: PromptType, params: SamplingParams) -> str:
        if isinstance(prompt, str):
            text, token_ids = prompt, None
        elif isinstance(prompt, dict):
            text, token_ids = prompt.get("prompt"), prompt.get("prompt_token_ids")
        else:
            raise InvalidRequestError(f"a prompt must be a string or a dict, got {type(prompt).__name__}")
        if token_ids is None:
            if text is None:
                raise InvalidRequestError("a prompt dict needs 'prompt' or 'prompt_token_ids'")
            if self.tokenizer is None:
                raise ConfigError(f"{self.config.model.model} has no tokenizer.json: pass prompt_token_ids")
            token_ids = self.tokenizer.encode(text)
        token_ids = [int(t) for t in token_ids]
        vocab = self.config.model.arch.vocab_size
        if any(not 0 <= t < vocab for t in token_ids):
            raise InvalidRequestError(f"prompt token ids must be in [0, {vocab})")
        params = params.resolve(self.generation_config)
        request_id = str(next(self._counter))
        child_ids = self.output_processor.add_request(request_id, text, token_ids, params)
        for i, cid in enumerate(child_ids):
            child = params.clone(n=1, seed=None if params.seed is None else params.seed + i)
            try:
                self.engine.add_request(Request(cid, token_ids, child, self.eos_token_ids,
                                                self.config.scheduler.max_model_len))
            except Exception:
                self.engine.abort_requests(child_ids)
                self.output_processor.abort(request_id)
                raise
        return request_id

    def _run(self, request_ids: list[str], use_tqdm: bool) -> list[RequestOutput]:
        pending = set(request_ids)
        finished: dict[str, RequestOutput] = {}
        bar = tqdm(total=len(request_ids), desc="Processed prompts", disable=not use_tqdm, dynamic_ncols=True)
        t0 = time.perf_counter()
        n_in = n_out = 0
        try:
            while pending:
                outputs = self.engine.step()
                results, to_abort = self.output_processor.process(outputs)
                if to_abort:
                    self.engine.abort_requests(to_abort)
                for ro in results:
                    if ro.finished and ro.request_id in pending:
                        pending.discard(ro.request_id)
                        finished[ro.request_id] = ro
                        n_in += len(ro.prompt_token_ids)
                        n_out += sum(len(c.token_ids) for c in ro.outputs)
                        dt = max(time.perf_counter() - t0, 1e-9)
                        bar.set_postfix_str(f"in: {n_in / dt:.0f} tok/s, out: {n_out / dt:.0f} tok/s")
                        bar.update(1)
                if not outputs and not self.engine.has_unfinished_requests() and pending:
                    raise RuntimeError(f"engine idle with unfinished requests {sorted(pending)}")
        except BaseException:
            # A failed step (or Ctrl-C) must not leave this call's requests queued: the next generate() would run
            # them against state the failure left half-updated.
            for rid in pending:
                self.engine.abort_requests(self.output_processor.abort(rid))
            raise
        finally:
            bar.close()
        return [finished[r] for r in request_ids]
