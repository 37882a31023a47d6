"""What chat, completions and responses share: model-name checks, prompt-length checks, ids, usage, logprobs."""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from m2serve.errors import InvalidRequestError, M2ServeError
from m2serve.frontend.engine_client import AsyncEngineClient
from m2serve.frontend.tokenizer import Tokenizer
from m2serve.outputs import Logprob, RequestOutput


class ModelNotFoundError(M2ServeError):
    status_code = 404
    error_type = "NotFoundError"


def error_body(message: str, err_type: str = "BadRequestError", code: int = 400, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


@dataclass
class ServingContext:
    client: AsyncEngineClient
    tokenizer: Tokenizer
    served_model_names: list[str]
    max_model_len: int
    max_logprobs: int = 20
    response_role: str = "assistant"
    chat_template: str | None = None
    default_chat_template_kwargs: dict | None = None
    enable_auto_tool_choice: bool = False
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None

    @property
    def model_name(self) -> str:
        return self.served_model_names[0]

    def check_model(self, model: str | None) -> None:
        if model and model not in self.served_model_names:
            raise ModelNotFoundError(f"The model `{model}` does not exist. "
                                     f"Valid aliases: {', '.join(self.served_model_names)}.")

    def check_logprobs(self, k: int | None) -> None:
        if k is not None and k > self.max_logprobs:
            raise InvalidRequestError(f"Requested sample logprobs of {k}, which is greater than max allowed: "
                                      f"{self.max_logprobs}")

    def resolve_max_tokens(self, prompt_len: int, requested: int | None, default: int | None) -> int:
        """vLLM 0.33: 400 if the prompt alone fills the context or max_tokens exceeds it; else clamp."""
        w = self.max_model_len
        if prompt_len >= w:
            raise InvalidRequestError(
                f"This model's maximum context length is {w} tokens. However, your prompt contains {prompt_len} "
                "input tokens, which exceeds this limit even without any output tokens. Please reduce the length "
                "of the input prompt.")
        if requested is not None:
            if requested < 1:
                raise InvalidRequestError(f"max_tokens must be at least 1, got {requested}.")
            if requested > w:
                raise InvalidRequestError(f"max_tokens={requested} cannot be greater than max_model_len={w}. "
                                          "Please request fewer output tokens.")
        want = requested if requested is not None else default
        room = w - prompt_len
        return room if want is None else min(want, room)

    def check_token_ids(self, ids: list[int]) -> None:
        vocab = self.client.config.model.arch.vocab_size
        bad = [t for t in ids if not isinstance(t, int) or not 0 <= t < vocab]
        if bad:
            raise InvalidRequestError(f"Token id {bad[0]} is out of vocabulary (valid ids are 0..{vocab - 1}).")


def new_id(prefix: str, request_id: str | None = None) -> str:
    return f"{prefix}-{request_id or uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int, cached: int, reasoning: int | None = None) -> dict:
    u = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
         "completion_tokens": completion_tokens, "prompt_tokens_details": {"cached_tokens": cached}}
    if reasoning is not None:
        u["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return u


def completion_tokens(out: RequestOutput) -> int:
    return sum(len(c.token_ids) for c in out.outputs)


def clamp_logprob(x: float) -> float:
    return max(x, -9999.0)


def chat_logprobs_content(tokenizer: Tokenizer, token_ids: list[int], logprobs: list[dict[int, Logprob]],
                          top_k: int) -> list[dict]:
    """OpenAI chat logprobs: one entry per token with its top_k alternatives (engine order: by rank)."""
    content = []
    for tok, lp_dict in zip(token_ids, logprobs):
        chosen = lp_dict[tok]
        text = tokenizer.decode([tok], skip_special_tokens=False)
        top = sorted(lp_dict.items(), key=lambda kv: (kv[1].rank or 0))
        top = [(t, lp) for t, lp in top if lp.rank is not None and lp.rank <= top_k][:top_k] if top_k else []
        content.append({"token": text, "logprob": clamp_logprob(chosen.logprob),
                        "bytes": list(text.encode("utf-8")),
                        "top_logprobs": [{"token": (s := tokenizer.decode([t], skip_special_tokens=False)),
                                          "logprob": clamp_logprob(lp.logprob), "bytes": list(s.encode("utf-8"))}
                                         for t, lp in top]})
    return content


def sse(data: dict | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"
