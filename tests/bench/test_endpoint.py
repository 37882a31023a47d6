"""One benchmark request: payloads, SSE parsing and token events (specs/openai-api.md §5.2-5.3), against a local
aiohttp server that streams scripted chunks."""
import asyncio
import json

import aiohttp
from aiohttp import web

from m2serve.bench.endpoint import (NO_TOKEN_ERROR, RequestFuncInput, SSEParser, async_request, chat_payload,
                                    completions_payload, is_chat_token_event)


def inp(**kw):
    base = dict(prompt="hi", api_url="http://test/v1/completions", prompt_len=3, output_len=4, model="m",
                request_id="bench-0")
    base.update(kw)
    return RequestFuncInput(**base)


def test_payloads():
    p = completions_payload(inp(ignore_eos=True, extra_body={"temperature": 0}))
    assert p == {"model": "m", "prompt": "hi", "repetition_penalty": 1.0, "max_tokens": 4, "logprobs": None,
                 "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True, "temperature": 0}
    c = chat_payload(inp(model_name="served"))
    assert c["model"] == "served" and c["max_completion_tokens"] == 4 and c["stream"] is True
    assert c["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_sse_parser_comments_split_chunks_and_done():
    p = SSEParser()
    assert p.feed(b": keep-alive\n\ndata: {\"a\"") == []
    assert p.feed(b": 1}\n\ndata: {\"b\": 2}\r\n\r\ndata: [DONE]\n\ndata: {\"c\": 3}\n\n") == ['{"a": 1}', '{"b": 2}']
    assert p.done


def test_chat_token_event_rule():
    assert not is_chat_token_event({"role": "assistant", "content": ""})      # the role-only opening chunk
    assert is_chat_token_event({"content": ""})
    assert is_chat_token_event({"content": "x"})
    assert is_chat_token_event({"reasoning": "hmm"})
    assert is_chat_token_event({"tool_calls": [{"index": 0}]})
    assert not is_chat_token_event({})


def run_scripted(events, status=200, chat=False):
    body = b"".join(f"data: {json.dumps(e) if not isinstance(e, str) else e}\n\n".encode() for e in events)
    seen = {}

    async def handler(request: web.Request):
        seen["headers"] = {k.lower(): v for k, v in request.headers.items()}
        seen["json"] = await request.json()
        resp = web.StreamResponse(status=status, headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for line in body.split(b"\n\n"):
                if line:
                    await resp.write(line + b"\n\n")
                    await asyncio.sleep(0.01)
            await resp.write_eof()
        except ConnectionResetError:                 # the client hung up after [DONE], as it should
            pass
        return resp

    async def go():
        app = web.Application()
        app.router.add_post("/v1/completions", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with aiohttp.ClientSession() as session:
                return await async_request(session, inp(api_url=f"http://127.0.0.1:{port}/v1/completions"), chat)
        finally:
            await runner.cleanup()
    return asyncio.run(go()), seen


def test_completions_stream_timing_and_usage():
    events = [{"choices": [{"text": "a"}]}, {"choices": [{"text": ""}]}, {"choices": [{"text": "bc"}]},
              {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4}}, "[DONE]"]
    out, seen = run_scripted(events)
    assert out.success and out.error == ""
    assert out.generated_text == "abc"
    assert len(out.itl) == 2                      # three token events (the empty-text chunk counts), one per chunk
    assert out.output_tokens == 4 and out.prompt_len == 5
    assert abs(out.latency - (out.ttft + sum(out.itl))) < 1e-9    # last token event, not the usage chunk
    assert seen["headers"]["x-request-id"] == "bench-0" and seen["json"]["stream"] is True


def test_chat_role_chunk_is_not_the_first_token():
    events = [{"choices": [{"delta": {"role": "assistant", "content": ""}}]},
              {"choices": [{"delta": {"content": "x"}}]}, {"choices": [{"delta": {"content": "y"}}]},
              {"choices": [{"delta": {}, "finish_reason": "length"}]}, "[DONE]"]
    out, _ = run_scripted(events, chat=True)
    assert out.success and out.generated_text == "xy" and len(out.itl) == 1
    assert out.ttft >= 0.008                      # the role chunk (sent at once) did not stop the clock


def test_failures():
    out, _ = run_scripted([], status=404)
    assert not out.success and out.error.startswith("HTTP 404")
    out, _ = run_scripted([{"choices": [], "usage": {"completion_tokens": 0}}, "[DONE]"])
    assert not out.success and out.error == NO_TOKEN_ERROR
