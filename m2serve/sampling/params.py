"""SamplingParams with vLLM's names and meanings.

Fields left as None are "unset": `resolve()` fills them from the checkpoint's generation_config.json and then
from vLLM's defaults, so a request that says nothing samples the way the model card recommends.
"""
from __future__ import annotations

import msgspec

from m2serve.errors import InvalidRequestError

# vLLM's defaults for fields that neither the request nor generation_config.json set.
_FALLBACK = dict(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, repetition_penalty=1.0)
_GENERATION_CONFIG_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")

# Greedy below this temperature (vLLM treats tiny temperatures as greedy to avoid overflow).
_GREEDY_EPS = 1e-5


class SamplingParams(msgspec.Struct, kw_only=True, omit_defaults=True):
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None           # 0 or -1: disabled
    min_p: float | None = None
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float | None = None
    logit_bias: dict[int, float] | None = None
    stop: list[str] | None = None
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    max_tokens: int | None = 16
    min_tokens: int = 0
    logprobs: int | None = None        # top-k logprobs per generated token (0 = only the sampled one)
    prompt_logprobs: int | None = None
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.logit_bias is not None:
            self.logit_bias = {int(k): float(v) for k, v in self.logit_bias.items()}
        self.validate()

    def validate(self) -> None:
        def bad(field: str, msg: str) -> None:
            raise InvalidRequestError(f"{field} {msg}")

        if self.n < 1:
            bad("n", f"must be at least 1, got {self.n}.")
        if self.temperature is not None and self.temperature < 0:
            bad("temperature", f"must be non-negative, got {self.temperature}.")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            bad("top_p", f"must be in (0, 1], got {self.top_p}.")
        if self.top_k is not None and (self.top_k < -1):
            bad("top_k", f"must be -1 (disable), 0 (disable) or at least 1, got {self.top_k}.")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            bad("min_p", f"must be in [0, 1], got {self.min_p}.")
        if not -2 <= self.presence_penalty <= 2:
            bad("presence_penalty", f"must be in [-2, 2], got {self.presence_penalty}.")
        if not -2 <= self.frequency_penalty <= 2:
            bad("frequency_penalty", f"must be in [-2, 2], got {self.frequency_penalty}.")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            bad("repetition_penalty", f"must be greater than zero, got {self.repetition_penalty}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            bad("max_tokens", f"must be at least 1, got {self.max_tokens}.")
        if self.min_tokens < 0:
            bad("min_tokens", f"must be greater than or equal to 0, got {self.min_tokens}.")
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            bad("min_tokens", f"must be less than or equal to max_tokens={self.max_tokens}, got {self.min_tokens}.")
        if self.logprobs is not None and self.logprobs < 0:
            bad("logprobs", f"must be non-negative, got {self.logprobs}.")
        if self.prompt_logprobs is not None and self.prompt_logprobs < 0:
            bad("prompt_logprobs", f"must be non-negative, got {self.prompt_logprobs}.")
        if self.stop and any(not s for s in self.stop):
            bad("stop", "cannot contain an empty string.")

    def resolve(self, generation_config: dict | None = None) -> "SamplingParams":
        """A copy with every unset sampling field filled from generation_config.json, then vLLM's defaults."""
        gen = generation_config or {}
        filled = {}
        for key in _GENERATION_CONFIG_KEYS:
            if getattr(self, key) is None:
                value = gen.get(key)
                filled[key] = _FALLBACK[key] if value is None else value
        if gen.get("do_sample") is False and self.temperature is None:
            filled["temperature"] = 0.0
        return msgspec.structs.replace(self, **filled) if filled else self

    @property
    def greedy(self) -> bool:
        return self.temperature is not None and self.temperature < _GREEDY_EPS

    def clone(self, **changes) -> "SamplingParams":
        return msgspec.structs.replace(self, **changes)
