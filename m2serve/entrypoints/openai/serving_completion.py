"""POST /v1/completions: text or token-id prompts (one or a batch), echo, legacy logprobs, streaming."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

from m2serve.entrypoints.openai.protocol import CompletionRequest
from m2serve.entrypoints.openai.serving_common import ServingContext, clamp_logprob, new_id, now, sse, usage
from m2serve.errors import InvalidRequestError
from m2serve.outputs import CompletionOutput, Logprob, RequestOutput

MAX_PROMPTS = 1024


class CompletionHandler:
    def __init__(self, ctx: ServingContext):
        self.ctx = ctx

    def prepare(self, req: CompletionRequest) -> list[tuple[str, list[int], object]]:
        """Validate and tokenize: [(prompt text, token ids, SamplingParams)] per prompt."""
        ctx = self.ctx
        ctx.check_model(req.model)
        p = req.prompt
        if p is None or p == "" or p == [] or (isinstance(p, list) and p and isinstance(p[0], list) and not all(p)):
            raise InvalidRequestError("Either prompt or prompt_embeds must be provided and non-empty.")
        if isinstance(p, str):
            prompts: list = [p]
        elif isinstance(p[0], int):
            prompts = [p]
        else:
            prompts = list(p)
        if len(prompts) > MAX_PROMPTS:
            raise InvalidRequestError(f"At most {MAX_PROMPTS} prompts per request, got {len(prompts)}.")
        if req.suffix:
            raise InvalidRequestError("suffix is not supported: this model has no fill-in-the-middle tokens.")
        if req.logprobs is not None and req.logprobs < 0:
            raise InvalidRequestError(f"logprobs must be non-negative, got {req.logprobs}.")
        ctx.check_logprobs(req.logprobs)
        if req.prompt_logprobs is not None:
            ctx.check_logprobs(req.prompt_logprobs)
            if req.stream:
                raise InvalidRequestError("prompt_logprobs is not compatible with streaming.")
        if req.max_tokens == 0 and not req.echo:
            raise InvalidRequestError("max_tokens must be at least 1, got 0 (0 is allowed only with echo).")
        prepared = []
        for prompt in prompts:
            if isinstance(prompt, str):
                if not prompt:
                    raise InvalidRequestError("Either prompt or prompt_embeds must be provided and non-empty.")
                ids = ctx.tokenizer.encode(prompt, add_special_tokens=req.add_special_tokens)
                text = prompt
            else:
                ids = list(prompt)
                ctx.check_token_ids(ids)
                text = ctx.tokenizer.decode(ids, skip_special_tokens=False)
            # max_tokens=0 with echo scores the prompt only: run one step and drop the sampled token.
            requested = 1 if req.max_tokens == 0 else req.max_tokens
            max_tokens = ctx.resolve_max_tokens(len(ids), requested, 16)
            prompt_lp = req.prompt_logprobs
            if req.echo and req.logprobs is not None:
                prompt_lp = max(prompt_lp or 0, req.logprobs)
            prepared.append((text, ids, req.sampling_params(max_tokens, req.logprobs, prompt_lp)))
        return prepared

    # -- helpers ------------------------------------------------------------------------------------
    def _logprobs(self, token_ids: list[int], lps: list[dict[int, Logprob] | None], offset: int,
                  k: int) -> dict:
        tok = self.ctx.tokenizer
        tokens, token_logprobs, top_logprobs, text_offset = [], [], [], []
        for t, d in zip(token_ids, lps):
            s = tok.decode([t], skip_special_tokens=False)
            tokens.append(s)
            text_offset.append(offset)
            offset += len(s)
            if d is None:
                token_logprobs.append(None)
                top_logprobs.append(None)
                continue
            token_logprobs.append(clamp_logprob(d[t].logprob))
            top = {}
            for tid, lp in sorted(d.items(), key=lambda kv: kv[1].rank or 0):
                if tid == t or (lp.rank is not None and lp.rank <= k):
                    top.setdefault(tok.decode([tid], skip_special_tokens=False), clamp_logprob(lp.logprob))
            top_logprobs.append(top)
        return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs,
                "text_offset": text_offset}

    def _choice(self, req: CompletionRequest, index: int, out: RequestOutput, c: CompletionOutput) -> dict:
        gen_ids = [] if req.max_tokens == 0 else c.token_ids
        gen_text = "" if req.max_tokens == 0 else c.text
        gen_lps = (c.logprobs or []) if req.max_tokens != 0 else []
        text = (out.prompt or "") + gen_text if req.echo else gen_text
        logprobs = None
        if req.logprobs is not None:
            ids, lps = list(gen_ids), list(gen_lps)
            if req.echo:
                ids = list(out.prompt_token_ids) + ids
                lps = list(out.prompt_logprobs or [None] * len(out.prompt_token_ids)) + lps
            logprobs = self._logprobs(ids, lps, 0, req.logprobs)
        finish = "length" if req.max_tokens == 0 else (c.finish_reason or "stop")
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish,
                "stop_reason": None if req.max_tokens == 0 else c.stop_reason,
                "token_ids": gen_ids if req.return_token_ids else None,
                "prompt_logprobs": self._prompt_logprobs_field(out) if req.prompt_logprobs is not None else None,
                "prompt_token_ids": out.prompt_token_ids if req.return_token_ids else None}

    def _prompt_logprobs_field(self, out: RequestOutput):
        if out.prompt_logprobs is None:
            return None
        tok = self.ctx.tokenizer
        return [None if d is None else {str(t): {"logprob": clamp_logprob(lp.logprob), "rank": lp.rank,
                                                 "decoded_token": tok.decode([t], skip_special_tokens=False)}
                                        for t, lp in d.items()}
                for d in out.prompt_logprobs]

    # -- responses ----------------------------------------------------------------------------------
    async def full_response(self, req: CompletionRequest, streams: list[AsyncIterator[RequestOutput]]) -> dict:
        async def last(it):
            out = None
            async for out in it:
                pass
            return out
        outs = await asyncio.gather(*(last(s) for s in streams))
        choices, prompt_tokens, completion, cached = [], 0, 0, 0
        for pi, out in enumerate(outs):
            prompt_tokens += len(out.prompt_token_ids)
            cached += out.num_cached_tokens
            for c in out.outputs:
                completion += 0 if req.max_tokens == 0 else len(c.token_ids)
                choices.append(self._choice(req, pi * req.n + c.index, out, c))
        return {"id": new_id("cmpl", req.request_id), "object": "text_completion", "created": now(),
                "model": self.ctx.model_name, "choices": choices, "service_tier": None, "system_fingerprint": None,
                "usage": usage(prompt_tokens, completion, cached), "kv_transfer_params": None}

    async def stream(self, req: CompletionRequest, streams: list[AsyncIterator[RequestOutput]]) -> AsyncIterator[str]:
        rid, created = new_id("cmpl", req.request_id), now()
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(pi: int, it):
            try:
                async for out in it:
                    await queue.put((pi, out))
            except Exception as e:  # noqa: BLE001 - forwarded to the stream
                await queue.put((pi, e))
            finally:
                await queue.put((pi, None))

        tasks = [asyncio.create_task(pump(pi, s)) for pi, s in enumerate(streams)]
        sent_text: dict[int, int] = {}
        sent_tokens: dict[int, int] = {}
        offsets: dict[int, int] = {}
        finished: set[int] = set()
        last: dict[int, RequestOutput] = {}
        open_streams = len(streams)
        try:
            while open_streams:
                pi, item = await queue.get()
                if item is None:
                    open_streams -= 1
                    continue
                if isinstance(item, Exception):
                    raise item
                out: RequestOutput = item
                last[pi] = out
                for c in out.outputs:
                    idx = pi * req.n + c.index
                    if idx in finished:
                        continue
                    first = idx not in sent_text
                    text, lp_ids, lp_dicts = "", [], []
                    if first and req.echo:
                        text = out.prompt or ""
                        lp_ids = list(out.prompt_token_ids)
                        lp_dicts = list(out.prompt_logprobs or [None] * len(lp_ids))
                    start_tok = sent_tokens.get(idx, 0)
                    if req.max_tokens != 0:
                        text += c.text[sent_text.get(idx, 0):]
                        lp_ids += c.token_ids[start_tok:]
                        lp_dicts += (c.logprobs or [])[start_tok:]
                    sent_text[idx] = len(c.text)
                    sent_tokens[idx] = len(c.token_ids)
                    logprobs = None
                    if req.logprobs is not None:
                        logprobs = self._logprobs(lp_ids, lp_dicts, offsets.get(idx, 0), req.logprobs)
                    offsets[idx] = offsets.get(idx, 0) + len(text)
                    finish = None
                    if c.finish_reason is not None:
                        finished.add(idx)
                        finish = "length" if req.max_tokens == 0 else c.finish_reason
                    if text or finish or (logprobs and logprobs["tokens"]):
                        yield sse({"id": rid, "object": "text_completion", "created": created,
                                   "model": self.ctx.model_name,
                                   "choices": [{"index": idx, "text": text, "logprobs": logprobs,
                                                "finish_reason": finish,
                                                "stop_reason": c.stop_reason if finish else None}]})
            if include_usage:
                prompt_tokens = sum(len(o.prompt_token_ids) for o in last.values())
                completion = 0 if req.max_tokens == 0 else sum(len(c.token_ids) for o in last.values()
                                                                  for c in o.outputs)
                cached = sum(o.num_cached_tokens for o in last.values())
                yield sse({"id": rid, "object": "text_completion", "created": created, "model": self.ctx.model_name,
                           "choices": [], "usage": usage(prompt_tokens, completion, cached)})
        except InvalidRequestError as e:
            yield sse(e.to_openai())
        finally:
            for t in tasks:
                t.cancel()
        yield sse("[DONE]")
