"""POST /v1/responses (spec §1.5): the OpenAI Responses API subset, on top of the chat pipeline.

The request is mapped to a ChatCompletionRequest (input items -> messages, flat function tools -> chat tools)
and rendered by ChatHandler.prepare; the output goes through the same OutputParser (reasoning parser only with
--reasoning-parser, tool parsing only with --enable-auto-tool-choice and tools). Output items, in order:
reasoning, message, function_call(s). Nothing is stored: store/previous_response_id/background, built-in tools
and structured output are refused with 400/404 rather than ignored (`store` itself is accepted, as in vLLM,
and every response says `"store": false`).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from pydantic import ValidationError

from m2serve.entrypoints.openai.protocol import ChatCompletionRequest, ResponsesRequest
from m2serve.entrypoints.openai.serving_chat import ChatHandler
from m2serve.entrypoints.openai.serving_common import ServingContext, chat_logprobs_content, now
from m2serve.errors import InvalidRequestError, M2ServeError
from m2serve.outputs import CompletionOutput, RequestOutput
from m2serve.sampling.params import SamplingParams

LOGPROBS_INCLUDE = "message.output_text.logprobs"
# vLLM sampling extensions a Responses request may carry as extra fields; passed on to the chat pipeline.
_PASSTHROUGH = ("presence_penalty", "frequency_penalty", "logit_bias", "stop_token_ids", "include_stop_str_in_output",
                "ignore_eos", "min_tokens", "skip_special_tokens", "spaces_between_special_tokens", "chat_template",
                "chat_template_kwargs")
_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")


class ResponsesError(InvalidRequestError):
    """A refused Responses request (400, or 404 for unknown stored ids); carries `param` into the error body."""

    def __init__(self, message: str, param: str | None = None, error_type: str = "BadRequestError", status: int = 400):
        super().__init__(message)
        self.param, self.error_type, self.status_code = param, error_type, status

    def to_openai(self, param: str | None = None) -> dict:
        return super().to_openai(param or self.param)


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# -- request mapping ------------------------------------------------------------------------------------------
def _text(parts: Any, where: str) -> str:
    """The text of a content given as a string or a list of text parts; anything else is refused."""
    if parts is None or isinstance(parts, str):
        return parts or ""
    if not isinstance(parts, list):
        raise ResponsesError(f"{where} must be a string or a list of content parts.", where)
    out = []
    for j, p in enumerate(parts):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in _TEXT_PARTS and isinstance(p.get("text"), str):
            out.append(p["text"])
        elif kind == "refusal" and isinstance(p.get("refusal"), str):
            out.append(p["refusal"])
        else:
            raise ResponsesError(f"{where}[{j}]: content part type {kind!r} is not supported; m2serve serves "
                                 "text only (input_text / output_text).", f"{where}[{j}]")
    return "".join(out)


def to_messages(input: str | list, instructions: str | None) -> list[dict]:
    """Responses input (a string or items) as chat messages. function_call items join the preceding assistant
    turn as tool_calls, function_call_output items become tool messages, reasoning items the next assistant
    turn's `reasoning`; `instructions` and leading system/developer messages form one system message."""
    msgs: list[dict] = [{"role": "system", "content": instructions}] if instructions else []
    items = [{"role": "user", "content": input}] if isinstance(input, str) else input
    if not items:
        raise ResponsesError("input must not be empty.", "input")
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise ResponsesError(f"{where} must be an object.", where)
        kind = item.get("type") or ("message" if "role" in item else None)
        last = msgs[-1] if msgs and msgs[-1]["role"] == "assistant" else None
        if kind == "message":
            role = {"developer": "system"}.get(item.get("role"), item.get("role"))
            if role not in ("user", "system", "assistant"):
                raise ResponsesError(f"{where}: role {item.get('role')!r} is not supported (use user, system, "
                                     "developer or assistant).", where)
            text = _text(item.get("content"), f"{where}.content")
            if role == "assistant" and last is not None and not last["content"] and not last.get("tool_calls"):
                last["content"] = text      # the message after this turn's reasoning item
            else:
                msgs.append({"role": role, "content": text})
        elif kind == "function_call":
            if not isinstance(item.get("name"), str) or not isinstance(item.get("call_id"), str):
                raise ResponsesError(f"{where}: a function_call item needs `name` and `call_id`.", where)
            if last is None:
                last = {"role": "assistant", "content": ""}
                msgs.append(last)
            last.setdefault("tool_calls", []).append({"id": item["call_id"], "type": "function", "function": {
                "name": item["name"], "arguments": item.get("arguments") or "{}"}})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise ResponsesError(f"{where}: a function_call_output item needs `call_id`.", where)
            msgs.append({"role": "tool", "tool_call_id": item["call_id"],
                         "content": _text(item.get("output"), f"{where}.output")})
        elif kind == "reasoning":
            if item.get("encrypted_content"):
                raise ResponsesError(f"{where}: reasoning.encrypted_content is not supported; send the reasoning "
                                     "text in `content`.", where)
            text = _text(item.get("content") or item.get("summary") or [], f"{where}.content")
            if last is not None and not last["content"] and not last.get("tool_calls") and not last.get("reasoning"):
                last["reasoning"] = text
            elif text:
                msgs.append({"role": "assistant", "content": "", "reasoning": text})
        else:
            hint = " (it needs stored responses)" if kind == "item_reference" else ""
            raise ResponsesError(f"{where}: input item type {kind!r} is not supported{hint}; m2serve accepts "
                                 "message, function_call, function_call_output and reasoning items.", where)
    lead = 0
    while lead < len(msgs) and msgs[lead]["role"] == "system":
        lead += 1
    if lead > 1:
        msgs[:lead] = [{"role": "system", "content": "\n\n".join(m["content"] for m in msgs[:lead])}]
    return msgs


def to_chat_tools(tools: list[dict] | None) -> list[dict] | None:
    """Flat Responses function tools as chat tools; built-in tools are refused."""
    out = []
    for i, t in enumerate(tools or ()):
        kind = t.get("type")
        if kind != "function":
            raise ResponsesError(f"tools[{i}]: tool type {kind!r} is not supported; m2serve serves function tools "
                                 "only (no built-in web_search, file_search, code_interpreter, MCP or custom tools).",
                                 f"tools[{i}]")
        if isinstance(t.get("function"), dict):     # already chat-shaped: accepted as is
            out.append({"type": "function", "function": t["function"]})
            continue
        if not isinstance(t.get("name"), str) or not t["name"]:
            raise ResponsesError(f"tools[{i}]: a function tool needs a `name`.", f"tools[{i}].name")
        fn = {k: t[k] for k in ("name", "description", "parameters") if t.get(k) is not None}
        out.append({"type": "function", "function": fn})
    return out or None


def _chat_tool_choice(choice: Any, has_tools: bool) -> Any:
    if choice in (None, "auto", "none"):
        return choice if has_tools else None
    if not has_tools:
        raise ResponsesError("When using `tool_choice`, `tools` must be set.", "tool_choice")
    if choice == "required":
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise ResponsesError(f"tool_choice {choice!r} is not supported; use 'auto', 'none', 'required' or "
                         "{'type': 'function', 'name': ...}.", "tool_choice")


@dataclass
class PreparedResponse:
    req: ResponsesRequest
    id: str
    prompt: str
    prompt_ids: list[int]
    params: SamplingParams
    tools: list | None                  # chat-shaped tools to parse calls against; None: no tool parsing
    created_at: int = field(default_factory=now)

    @property
    def top_logprobs(self) -> int | None:
        return _top_logprobs(self.req)


def _top_logprobs(req: ResponsesRequest) -> int | None:
    """k when output_text logprobs were asked for (include), else None."""
    return (req.top_logprobs or 0) if LOGPROBS_INCLUDE in (req.include or ()) else None


class ResponsesHandler:
    def __init__(self, ctx: ServingContext, chat: ChatHandler):
        self.ctx, self.chat = ctx, chat

    def prepare(self, req: ResponsesRequest, request_id: str | None = None) -> PreparedResponse:
        ctx = self.ctx
        ctx.check_model(req.model)
        if req.previous_response_id:
            raise ResponsesError(f"Response with id '{req.previous_response_id}' not found: m2serve does not store "
                                 "responses, so previous_response_id cannot be used; send the whole conversation in "
                                 "`input`.", "previous_response_id", "NotFoundError", 404)
        if req.background:
            raise ResponsesError("background mode needs stored responses, which m2serve does not support; set "
                                 "`background` to false.", "background")
        for key in ("conversation", "prompt"):
            if (req.model_extra or {}).get(key) is not None:
                raise ResponsesError(f"`{key}` needs stored server-side state, which m2serve does not support; "
                                     "send the conversation in `input`.", key)
        fmt = (req.text or {}).get("format") or {}
        if fmt.get("type", "text") != "text":
            raise ResponsesError(f"text.format type {fmt.get('type')!r} needs structured output, which m2serve "
                                 "does not have yet; use {'type': 'text'}.", "text.format")
        for inc in req.include or ():
            if inc != LOGPROBS_INCLUDE:
                raise ResponsesError(f"include value {inc!r} is not supported; only '{LOGPROBS_INCLUDE}' is.",
                                     "include")
        if req.top_logprobs and LOGPROBS_INCLUDE not in (req.include or ()):
            raise ResponsesError(f"when using `top_logprobs`, `include` must contain '{LOGPROBS_INCLUDE}'.",
                                 "top_logprobs")
        if req.truncation not in (None, "disabled"):
            raise ResponsesError(f"truncation {req.truncation!r} is not supported; use 'disabled'.", "truncation")
        if req.max_output_tokens is not None and not 1 <= req.max_output_tokens <= ctx.max_model_len:
            raise ResponsesError(f"max_output_tokens must be in [1, max_model_len={ctx.max_model_len}], got "
                                 f"{req.max_output_tokens}.", "max_output_tokens")
        tools = to_chat_tools(req.tools)
        extra = req.model_extra or {}
        fields = {k: extra[k] for k in _PASSTHROUGH if k in extra}
        if (req.reasoning or {}).get("effort") is not None:
            fields["chat_template_kwargs"] = {"reasoning_effort": req.reasoning["effort"],
                                              **(fields.get("chat_template_kwargs") or {})}
        k = _top_logprobs(req)
        try:
            chat_req = ChatCompletionRequest(
                model=req.model, messages=to_messages(req.input, req.instructions), tools=tools,
                tool_choice=_chat_tool_choice(req.tool_choice, bool(tools)), max_tokens=req.max_output_tokens,
                temperature=req.temperature, top_p=req.top_p, top_k=req.top_k, min_p=req.min_p,
                repetition_penalty=req.repetition_penalty, seed=req.seed, stop=req.stop,
                include_reasoning=req.include_reasoning, logprobs=k is not None, top_logprobs=k, **fields)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err.get("loc", ()))
            raise ResponsesError(f"{loc + ': ' if loc else ''}{str(err.get('msg')).removeprefix('Value error, ')}",
                                 loc or None) from None
        try:
            prompt, ids, params, parse_tools = self.chat.prepare(chat_req)
        except InvalidRequestError as e:
            if "maximum context length" in str(e):
                raise ResponsesError(str(e), "input", "invalid_request_error") from None
            raise
        return PreparedResponse(req, f"resp_{request_id or req.request_id or uuid.uuid4().hex}", prompt, ids,
                                params.resolve(ctx.tokenizer.generation_config), parse_tools)

    # -- response objects ---------------------------------------------------------------------------------------
    def response_object(self, p: PreparedResponse, status: str, output: list, out: RequestOutput | None = None,
                        error: dict | None = None) -> dict:
        req = p.req
        usage = None
        if out is not None:
            c = out.outputs[0]
            n_in, n_out = len(out.prompt_token_ids), len(c.token_ids)
            usage = {"input_tokens": n_in, "input_tokens_details": {"cached_tokens": out.num_cached_tokens},
                     "output_tokens": n_out,
                     "output_tokens_details": {"reasoning_tokens": self.chat._reasoning_tokens(c) or 0,
                                               "tool_output_tokens": 0},
                     "total_tokens": n_in + n_out}
        return {"id": p.id, "object": "response", "created_at": p.created_at, "status": status,
                "background": False, "error": error,
                "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
                "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
                "max_tool_calls": None, "model": self.ctx.model_name, "output": output,
                "parallel_tool_calls": req.parallel_tool_calls is not False, "previous_response_id": None,
                "reasoning": req.reasoning, "service_tier": req.service_tier or "auto", "store": False,
                "temperature": p.params.temperature, "text": req.text or {"format": {"type": "text"}},
                "tool_choice": req.tool_choice or "auto", "tools": req.tools or [],
                "top_logprobs": req.top_logprobs or 0, "top_p": p.params.top_p,
                "truncation": req.truncation or "disabled", "usage": usage, "user": req.user,
                "metadata": req.metadata or {}}

    def _logprobs(self, p: PreparedResponse, c: CompletionOutput, start: int, end: int | None = None) -> list:
        if p.top_logprobs is None or c.logprobs is None:
            return []
        return chat_logprobs_content(self.ctx.tokenizer, c.token_ids[start:end], c.logprobs[start:end],
                                     p.top_logprobs)

    def full_response(self, p: PreparedResponse, out: RequestOutput) -> dict:
        c = out.outputs[0]
        parsed = self.chat._parser(p.tools).extract(c.text)
        calls = parsed.tool_calls if p.req.parallel_tool_calls is not False else parsed.tool_calls[:1]
        items: list[dict] = []
        if parsed.reasoning and self._show_reasoning(p):
            items.append(_reasoning_item(_id("rs"), parsed.reasoning))
        content = parsed.content or ""
        if content.strip() or not (calls or items):
            lps = self._logprobs(p, c, self.chat._reasoning_tokens(c) or 0) if p.top_logprobs is not None else None
            items.append(_message_item(_id("msg"), content, "completed", lps))
        items += [_call_item(_id("fc"), call.id, call.name, call.arguments, "completed") for call in calls]
        status = "incomplete" if c.finish_reason == "length" else "completed"
        if status == "incomplete" and items[-1]["type"] != "reasoning":
            items[-1]["status"] = "incomplete"
        return self.response_object(p, status, items, out)

    def _show_reasoning(self, p: PreparedResponse) -> bool:
        return self.ctx.reasoning_parser is not None and p.req.include_reasoning

    async def stream(self, p: PreparedResponse, outputs: AsyncIterator[RequestOutput]) -> AsyncIterator[str]:
        s = _EventStream(p, self._show_reasoning(p))
        yield s.event("response.created", response=self.response_object(p, "in_progress", []))
        yield s.event("response.in_progress", response=self.response_object(p, "in_progress", []))
        parser, counter = self.chat._parser(p.tools), self.chat._reasoning_parser()
        sent_text = lp_next = 0
        in_reasoning = counter is not None     # output_text logprobs skip the reasoning tokens (scanned once)
        try:
            async for out in outputs:
                c = out.outputs[0]
                delta_text, sent_text = c.text[sent_text:], len(c.text)
                lps: list = []
                if p.top_logprobs is not None and len(c.token_ids) > lp_next:
                    start = lp_next + (counter.count_reasoning_tokens(c.token_ids[lp_next:]) if in_reasoning else 0)
                    in_reasoning = in_reasoning and start >= len(c.token_ids)
                    lps, lp_next = self._logprobs(p, c, start), len(c.token_ids)
                for e in s.feed(parser.stream(delta_text) if delta_text else None, lps):
                    yield e
                if c.finish_reason is not None:
                    for e in s.finish(parser.finish(), c.finish_reason == "length"):
                        yield e
                    status = "incomplete" if c.finish_reason == "length" else "completed"
                    yield s.event(f"response.{status}", response=self.response_object(p, status, s.items, out))
                    return
        except M2ServeError as e:
            yield s.event("error", code=e.error_type, message=str(e), param=None)
            yield s.event("response.failed", response=self.response_object(
                p, "failed", s.items, error={"code": "server_error", "message": str(e)}))


def _kind(item: dict | None) -> str | None:
    return item["type"] if item else None


def _reasoning_item(item_id: str, text: str | None) -> dict:
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "summary": [], "content": content, "encrypted_content": None,
            "status": None}


def _text_part(text: str, logprobs: list | None) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}


def _message_item(item_id: str, text: str | None, status: str, logprobs: list | None) -> dict:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [] if text is None else [_text_part(text, logprobs)]}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict:
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


class _EventStream:
    """Turns parser deltas into Responses SSE events: one output item open at a time (reasoning, message or
    function_call), closed when another kind starts or at the end; `sequence_number` counts every event."""

    def __init__(self, p: PreparedResponse, show_reasoning: bool):
        self.p, self.show_reasoning = p, show_reasoning
        self.seq = 0
        self.items: list[dict] = []         # finished items, in output order
        self.cur: dict | None = None        # the open item
        self.text = ""                      # the open item's text / arguments so far
        self.lps: list = []                 # the open message's logprobs so far
        self.pending = ""                   # whitespace-only content not yet worth a message item
        self.lp_pending: list = []          # logprobs not yet sent with a text delta
        self.call_index = -1                # the parser's index of the open function call

    def event(self, kind: str, **fields) -> str:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    def _where(self) -> dict:
        return {"item_id": self.cur["id"], "output_index": len(self.items)}

    def _open(self, item: dict) -> list[str]:
        out = self._close(False)
        self.cur, self.text, self.lps = item, "", []
        out.append(self.event("response.output_item.added", output_index=len(self.items), item=item))
        if item["type"] != "function_call":
            part = {"type": "reasoning_text", "text": ""} if item["type"] == "reasoning" else _text_part("", [])
            out.append(self.event("response.content_part.added", **self._where(), content_index=0, part=part))
        return out

    def _delta(self, text: str, lps: list | None = None) -> list[str]:
        self.text += text
        kind = self.cur["type"]
        if kind == "function_call":
            return [self.event("response.function_call_arguments.delta", **self._where(), delta=text)]
        if kind == "reasoning":
            return [self.event("response.reasoning_text.delta", **self._where(), content_index=0, delta=text)]
        self.lps += lps or []
        return [self.event("response.output_text.delta", **self._where(), content_index=0, delta=text,
                           logprobs=lps or [])]

    def _close(self, truncated: bool) -> list[str]:
        item, out = self.cur, []
        if item is None:
            return out
        where = self._where()
        status = "incomplete" if truncated else "completed"
        if item["type"] == "function_call":
            out.append(self.event("response.function_call_arguments.done", **where, name=item["name"],
                                  arguments=self.text))
            item = _call_item(item["id"], item["call_id"], item["name"], self.text, status)
        elif item["type"] == "reasoning":
            out.append(self.event("response.reasoning_text.done", **where, content_index=0, text=self.text))
            item = _reasoning_item(item["id"], self.text)
            out.append(self.event("response.content_part.done", **where, content_index=0, part=item["content"][0]))
        else:
            lps = self.lps if self.p.top_logprobs is not None else None
            out.append(self.event("response.output_text.done", **where, content_index=0, text=self.text,
                                  logprobs=lps or []))
            item = _message_item(item["id"], self.text, status, lps)
            out.append(self.event("response.content_part.done", **where, content_index=0, part=item["content"][0]))
        out.append(self.event("response.output_item.done", output_index=len(self.items), item=item))
        self.items.append(item)
        self.cur = None
        return out

    def feed(self, msg, lps: list) -> list[str]:
        """Events for one parser delta; `lps` (output_text logprobs of new tokens) ride on the next text delta."""
        self.lp_pending += lps
        out: list[str] = []
        if msg is None:
            return out
        if msg.reasoning and self.show_reasoning:
            if _kind(self.cur) != "reasoning":
                out += self._open(_reasoning_item(_id("rs"), None))
            out += self._delta(msg.reasoning)
        if msg.content:
            text = msg.content
            if _kind(self.cur) != "message":
                self.pending, text = self.pending + text, ""
                if self.pending.strip():
                    out += self._open(_message_item(_id("msg"), None, "in_progress", None))
                    self.pending, text = "", self.pending
            if text:
                out += self._delta(text, self.lp_pending)
                self.lp_pending = []
        for tc in msg.tool_calls:
            if tc.index > 0 and self.p.req.parallel_tool_calls is False:
                continue
            if tc.id is not None:
                out += self._open(_call_item(_id("fc"), tc.id, tc.name or "", "", "in_progress"))
                self.call_index = tc.index
            if tc.arguments and _kind(self.cur) == "function_call" and tc.index == self.call_index:
                out += self._delta(tc.arguments)
        return out

    def finish(self, msg, truncated: bool) -> list[str]:
        out = self.feed(msg, [])
        if self.cur is None and not self.items:     # nothing at all: an (empty) answer message
            out += self._open(_message_item(_id("msg"), None, "in_progress", None))
            if self.pending:
                out += self._delta(self.pending, self.lp_pending)
                self.lp_pending = []
        if _kind(self.cur) == "message":
            self.lps += self.lp_pending
        return out + self._close(truncated and _kind(self.cur) != "reasoning")
