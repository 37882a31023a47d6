"""One streamed benchmark request and its client-side timing (specs/openai-api.md §5.2-5.3).

st is taken just before the POST. The SSE body is split into events on blank lines, `:` comment lines are
skipped and parsing stops at `[DONE]`. A *token event* is, for completions, any chunk with non-empty `choices`
(even with empty text); for chat, a chunk whose delta has non-empty content / reasoning / tool_calls, or
content == "" without a role (the role-only opening chunk is not one). TTFT = first token event − st; ITL = gaps
between consecutive token events (one per chunk); latency = last token event − st (the usage chunk does not
extend it). output_tokens / prompt_len come from the final usage chunk when present.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

NO_TOKEN_ERROR = "Never received a valid chunk to calculate TTFT."


@dataclass
class RequestFuncInput:
    prompt: str
    api_url: str
    prompt_len: int
    output_len: int
    model: str
    model_name: str | None = None
    logprobs: int | None = None
    ignore_eos: bool = False
    extra_body: dict | None = None
    extra_headers: dict | None = None
    request_id: str | None = None


@dataclass
class RequestFuncOutput:
    generated_text: str = ""
    success: bool = False
    latency: float = 0.0
    output_tokens: int = 0
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    tpot: float = 0.0
    prompt_len: int = 0
    error: str = ""
    start_time: float = 0.0
    client_queue_time: float = 0.0


def completions_payload(inp: RequestFuncInput) -> dict:
    payload: dict[str, Any] = {
        "model": inp.model_name or inp.model,
        "prompt": inp.prompt,
        "repetition_penalty": 1.0,
        "max_tokens": inp.output_len,
        "logprobs": inp.logprobs,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if inp.ignore_eos:
        payload["ignore_eos"] = True
    payload.update(inp.extra_body or {})
    return payload


def chat_payload(inp: RequestFuncInput) -> dict:
    payload: dict[str, Any] = {
        "model": inp.model_name or inp.model,
        "messages": [{"role": "user", "content": [{"type": "text", "text": inp.prompt}]}],
        "max_completion_tokens": inp.output_len,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if inp.logprobs is not None:
        payload["logprobs"] = True
        payload["top_logprobs"] = inp.logprobs
    if inp.ignore_eos:
        payload["ignore_eos"] = True
    payload.update(inp.extra_body or {})
    return payload


def request_headers(inp: RequestFuncInput) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    api_key = os.environ.get("OPENAI_API_KEY")
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    headers.update(inp.extra_headers or {})
    if inp.request_id:
        headers["x-request-id"] = inp.request_id
    return headers


class SSEParser:
    """Incremental SSE: feed bytes, get the `data` payloads of complete events (None once `[DONE]` is seen)."""

    def __init__(self):
        self._buf = b""
        self.done = False

    def feed(self, chunk: bytes) -> list[str]:
        self._buf += chunk.replace(b"\r\n", b"\n")
        events = []
        while not self.done and b"\n\n" in self._buf:
            raw, self._buf = self._buf.split(b"\n\n", 1)
            data_lines = []
            for line in raw.decode("utf-8").split("\n"):
                if not line or line.startswith(":"):
                    continue
                if line.startswith("data:"):
                    data_lines.append(line[5:])
            if not data_lines:
                continue
            data = "\n".join(data_lines).strip()
            if data == "[DONE]":
                self.done = True
                break
            events.append(data)
        return events


def is_chat_token_event(delta: dict) -> bool:
    content = delta.get("content")
    if content or delta.get("reasoning") or delta.get("reasoning_content") or delta.get("tool_calls"):
        return True
    return content == "" and "role" not in delta


class _Timer:
    """Token-event bookkeeping shared by both endpoints."""

    def __init__(self, out: RequestFuncOutput, st: float):
        self.out, self.st, self.last = out, st, st
        self.seen = False

    def token(self, ts: float) -> None:
        if not self.seen:
            self.seen = True
            self.out.ttft = ts - self.st
        else:
            self.out.itl.append(ts - self.last)
        self.last = ts


async def async_request(session, inp: RequestFuncInput, chat: bool, pbar=None) -> RequestFuncOutput:
    """POST one streamed request with `session` (aiohttp.ClientSession); never raises."""
    payload = chat_payload(inp) if chat else completions_payload(inp)
    out = RequestFuncOutput(prompt_len=inp.prompt_len)
    parts: list[str] = []
    usage_completion: int | None = None
    st = time.perf_counter()
    out.start_time = st
    timer = _Timer(out, st)
    try:
        async with session.post(inp.api_url, json=payload, headers=request_headers(inp)) as resp:
            if resp.status != 200:
                body = (await resp.read()).decode("utf-8", "replace")
                out.error = f"HTTP {resp.status}: {body[:2000]}" if body else f"HTTP {resp.status}"
            else:
                parser = SSEParser()
                async for chunk in resp.content.iter_any():
                    ts = time.perf_counter()
                    for data in parser.feed(chunk):
                        msg = json.loads(data)
                        if "error" in msg and not msg.get("choices"):
                            raise RuntimeError(f"error event in stream: {data[:2000]}")
                        choices = msg.get("choices")
                        if choices:
                            if chat:
                                delta = choices[0].get("delta") or {}
                                if is_chat_token_event(delta):
                                    timer.token(ts)
                                parts.append(delta.get("reasoning") or delta.get("reasoning_content") or "")
                                parts.append(delta.get("content") or "")
                            else:
                                timer.token(ts)
                                parts.append(choices[0].get("text") or "")
                        usage = msg.get("usage")
                        if usage:
                            if usage.get("completion_tokens") is not None:
                                usage_completion = int(usage["completion_tokens"])
                            if usage.get("prompt_tokens") is not None:
                                out.prompt_len = int(usage["prompt_tokens"])
                    if parser.done:
                        break
                out.generated_text = "".join(parts)
                if timer.seen:
                    out.success = True
                    out.latency = timer.last - st
                    out.output_tokens = usage_completion or 0
                else:
                    out.error = NO_TOKEN_ERROR
    except Exception:
        out.success = False
        out.error = "".join(traceback.format_exception(*sys.exc_info()))
    if pbar is not None:
        pbar.update(1)
    return out
