"""POST /v1/chat/completions: template, generate, split reasoning and tool calls, answer or stream."""
from __future__ import annotations

from typing import AsyncIterator

import jinja2

from m2serve.entrypoints.openai.protocol import ChatCompletionRequest
from m2serve.entrypoints.openai.serving_common import (ServingContext, chat_logprobs_content, new_id, now, sse,
                                                       usage)
from m2serve.errors import InvalidRequestError
from m2serve.outputs import CompletionOutput, RequestOutput
from m2serve.parsers import get_reasoning_parser, get_tool_parser
from m2serve.parsers.pipeline import OutputParser


class ChatHandler:
    def __init__(self, ctx: ServingContext):
        self.ctx = ctx
        tok = ctx.tokenizer
        # The parsers default to the real vocabulary's ids; a checkpoint's own tokenizer says where they are.
        self._ids = {k: i for k, i in (("think_start_id", tok.token_to_id("<think>")),
                                       ("think_end_id", tok.token_to_id("</think>")),
                                       ("tool_call_start_id", tok.token_to_id("<minimax:tool_call>")))
                     if i is not None}

    def _reasoning_parser(self):
        return get_reasoning_parser(self.ctx.reasoning_parser)(**self._ids) if self.ctx.reasoning_parser else None

    # -- request preparation ------------------------------------------------------------------------
    def prepare(self, req: ChatCompletionRequest):
        ctx = self.ctx
        ctx.check_model(req.model)
        tool_choice = req.tool_choice if req.tool_choice is not None else ("auto" if req.tools else "none")
        if isinstance(tool_choice, dict) or tool_choice == "required":
            shown = tool_choice if isinstance(tool_choice, str) else tool_choice.get("function", {}).get("name")
            raise InvalidRequestError(f"tool_choice={shown!r} needs constrained decoding, which m2serve does not "
                                      "have yet; use tool_choice='auto' or 'none'.")
        if req.tools and tool_choice == "auto" and not (ctx.enable_auto_tool_choice and ctx.tool_call_parser):
            raise InvalidRequestError('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser '
                                      "to be set")
        if req.response_format and req.response_format.get("type") not in (None, "text"):
            raise InvalidRequestError(f"response_format type {req.response_format.get('type')!r} needs structured "
                                      "output, which m2serve does not have yet; use {'type': 'text'}.")
        top = req.top_logprobs or 0
        if req.logprobs:
            ctx.check_logprobs(top)
        tools = [t if "type" in t else {"type": "function", **t} for t in req.tools] if req.tools else None
        kwargs = dict(ctx.default_chat_template_kwargs or {})
        kwargs.update(req.chat_template_kwargs or {})
        try:
            prompt = ctx.tokenizer.apply_chat_template(
                req.messages, tools=tools, add_generation_prompt=req.add_generation_prompt,
                continue_final_message=req.continue_final_message,
                chat_template=req.chat_template or ctx.chat_template, **kwargs)
        except (jinja2.TemplateError, ValueError, TypeError, KeyError) as e:
            raise InvalidRequestError(f"Cannot render the chat template: {e}") from None
        ids = ctx.tokenizer.encode(prompt, add_special_tokens=req.add_special_tokens)
        requested = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        max_tokens = ctx.resolve_max_tokens(len(ids), requested, None)
        params = req.sampling_params(max_tokens, top if req.logprobs else None)
        parse_tools = bool(req.tools) and tool_choice == "auto"
        return prompt, ids, params, tools if parse_tools else None

    # -- responses ----------------------------------------------------------------------------------
    def _reasoning_tokens(self, c: CompletionOutput) -> int | None:
        parser = self._reasoning_parser()
        return None if parser is None else parser.count_reasoning_tokens(c.token_ids)

    def _parser(self, tools: list | None) -> OutputParser:
        tool = get_tool_parser(self.ctx.tool_call_parser)(tools) if tools else None
        return OutputParser(self._reasoning_parser(), tool)

    def full_response(self, req: ChatCompletionRequest, out: RequestOutput, tools: list | None) -> dict:
        choices = []
        reasoning_total = None
        for c in out.outputs:
            parsed = self._parser(tools).extract(c.text)
            reasoning, content, calls = parsed.reasoning, parsed.content, parsed.tool_calls
            message = {"role": self.ctx.response_role, "content": content, "refusal": None, "annotations": None,
                       "audio": None, "function_call": None}
            if calls:
                message["tool_calls"] = [{"id": call.id, "type": "function",
                                          "function": {"name": call.name, "arguments": call.arguments}}
                                         for call in calls]
            if self.ctx.reasoning_parser is not None and req.include_reasoning:
                message["reasoning"] = reasoning
                message["reasoning_content"] = reasoning
            finish = c.finish_reason or "stop"
            if calls and finish == "stop":
                finish = "tool_calls"
            choice = {"index": c.index, "message": message, "logprobs": None, "finish_reason": finish,
                      "stop_reason": c.stop_reason, "token_ids": c.token_ids if req.return_token_ids else None}
            if req.logprobs and c.logprobs is not None:
                choice["logprobs"] = {"content": chat_logprobs_content(self.ctx.tokenizer, c.token_ids, c.logprobs,
                                                                       req.top_logprobs or 0)}
            choices.append(choice)
            r = self._reasoning_tokens(c)
            if r is not None:
                reasoning_total = (reasoning_total or 0) + r
        return {"id": new_id("chatcmpl", req.request_id), "object": "chat.completion", "created": now(),
                "model": self.ctx.model_name, "choices": choices, "service_tier": None, "system_fingerprint": None,
                "usage": usage(len(out.prompt_token_ids), sum(len(c.token_ids) for c in out.outputs),
                               out.num_cached_tokens, reasoning_total),
                "prompt_logprobs": None,
                "prompt_token_ids": out.prompt_token_ids if req.return_token_ids else None,
                "kv_transfer_params": None}

    async def stream(self, req: ChatCompletionRequest, outputs: AsyncIterator[RequestOutput],
                     tools: list | None) -> AsyncIterator[str]:
        ctx = self.ctx
        rid, created = new_id("chatcmpl", req.request_id), now()
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        continuous = bool(req.stream_options and req.stream_options.continuous_usage_stats)
        n = req.n
        sent_text = [0] * n
        sent_tokens = [0] * n
        started = [False] * n
        done = [False] * n
        parsers = [self._parser(tools) for _ in range(n)]

        def chunk(choices: list[dict], usage_obj: dict | None = None) -> str:
            body = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": ctx.model_name,
                    "choices": choices}
            if usage_obj is not None:
                body["usage"] = usage_obj
            return sse(body)

        last: RequestOutput | None = None
        try:
            async for out in outputs:
                last = out
                for c in out.outputs:
                    i = c.index
                    if done[i]:
                        continue
                    new_tokens = len(c.token_ids) - sent_tokens[i]
                    if not started[i] and (new_tokens > 0 or c.finish_reason):
                        started[i] = True
                        yield chunk([{"index": i, "delta": {"role": ctx.response_role, "content": ""},
                                      "logprobs": None, "finish_reason": None}])
                    delta_text = c.text[sent_text[i]:]
                    sent_text[i] = len(c.text)
                    delta = _delta_dict(parsers[i].stream(delta_text) if delta_text else None,
                                        req.include_reasoning)
                    lp = None
                    if req.logprobs and c.logprobs is not None and new_tokens > 0:
                        lp = {"content": chat_logprobs_content(ctx.tokenizer, c.token_ids[sent_tokens[i]:],
                                                               c.logprobs[sent_tokens[i]:], req.top_logprobs or 0)}
                    sent_tokens[i] = len(c.token_ids)
                    if c.finish_reason is not None:
                        done[i] = True
                        delta = _merge(delta, _delta_dict(parsers[i].finish(), req.include_reasoning))
                        finish = c.finish_reason
                        if parsers[i].tools_called and finish == "stop":
                            finish = "tool_calls"
                        yield chunk([{"index": i, "delta": delta or {}, "logprobs": lp, "finish_reason": finish,
                                      "stop_reason": c.stop_reason}],
                                    self._usage(out) if continuous else None)
                    elif delta or lp:
                        yield chunk([{"index": i, "delta": delta or {}, "logprobs": lp, "finish_reason": None}],
                                    self._usage(out) if continuous else None)
            if include_usage and last is not None:
                yield chunk([], self._usage(last))
        except InvalidRequestError as e:
            yield sse(e.to_openai())
        yield sse("[DONE]")

    def _usage(self, out: RequestOutput) -> dict:
        reasoning = None
        for c in out.outputs:
            r = self._reasoning_tokens(c)
            if r is not None:
                reasoning = (reasoning or 0) + r
        return usage(len(out.prompt_token_ids), sum(len(c.token_ids) for c in out.outputs), out.num_cached_tokens,
                     reasoning)


def _delta_dict(msg, include_reasoning: bool) -> dict:
    """A parser DeltaMessage as an OpenAI chat delta."""
    if msg is None:
        return {}
    out: dict = {}
    if msg.reasoning and include_reasoning:
        out["reasoning"] = out["reasoning_content"] = msg.reasoning
    if msg.content:
        out["content"] = msg.content
    if msg.tool_calls:
        out["tool_calls"] = [_tool_delta(tc) for tc in msg.tool_calls]
    return out


def _tool_delta(tc) -> dict:
    d: dict = {"index": tc.index}
    if tc.id is not None:
        d["id"] = tc.id
        d["type"] = "function"
    fn: dict = {}
    if tc.name is not None:
        fn["name"] = tc.name
    if tc.arguments is not None:
        fn["arguments"] = tc.arguments
    if fn:
        d["function"] = fn
    return d


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if k == "content" and "content" in out:
            out[k] = out[k] + v
        elif k in ("tool_calls", "reasoning", "reasoning_content") and k in out:
            out[k] = out[k] + v
        else:
            out[k] = v
    return out
