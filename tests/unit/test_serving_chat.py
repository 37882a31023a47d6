"""The chat serving layer fed scripted engine outputs: reasoning and tool calls, streamed and not, agree."""
import asyncio
import json
import random

import pytest

from m2serve.entrypoints.openai.protocol import ChatCompletionRequest
from m2serve.entrypoints.openai.serving_chat import ChatHandler
from m2serve.entrypoints.openai.serving_common import ServingContext
from m2serve.outputs import CompletionOutput, RequestOutput

TOOLS = [{"type": "function", "function": {"name": "get_current_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]
SCRIPT = ("The user wants weather.\n</think>\n\n<minimax:tool_call>\n<invoke name=\"get_current_weather\">\n"
          "<parameter name=\"city\">上海</parameter>\n<parameter name=\"days\">3</parameter>\n</invoke>\n"
          "</minimax:tool_call>")


@pytest.fixture(scope="module")
def handler(tmp_path_factory):
    from tests.helpers.tiny_tokenizer import build_tiny_tokenizer
    tok = build_tiny_tokenizer(tmp_path_factory.mktemp("tok"))
    ctx = ServingContext(client=None, tokenizer=tok, served_model_names=["m"], max_model_len=4096,
                         enable_auto_tool_choice=True, tool_call_parser="minimax_m2", reasoning_parser="minimax_m2")
    return ChatHandler(ctx)


def scripted(text: str, pieces: list[str], finish: str = "stop"):
    """Cumulative RequestOutputs growing by the given text pieces (one token each, for counting)."""
    async def gen():
        acc = ""
        for i, p in enumerate(pieces):
            acc += p
            last = i == len(pieces) - 1
            yield RequestOutput("r", None, [1, 2, 3], [CompletionOutput(0, acc, list(range(i + 1)), None, None,
                                                                        finish if last else None)], last)
    return gen()


def split_randomly(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, min(30, len(text) - 1))))
    return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


def run_stream(handler, req, outputs, tools):
    async def collect():
        return [e async for e in handler.stream(req, outputs, tools)]
    events = asyncio.run(collect())
    assert events[-1] == "data: [DONE]\n\n"
    return [json.loads(e[6:]) for e in events[:-1]]


def test_tool_call_streamed_equals_full(handler):
    req = ChatCompletionRequest(messages=[{"role": "user", "content": "请查询上海的天气"}], tools=TOOLS, stream=True)
    _, _, _, tools = handler.prepare(req)
    full = handler.full_response(req, RequestOutput("r", None, [1], [CompletionOutput(
        0, SCRIPT, list(range(40)), None, None, "stop")], True), tools)
    msg = full["choices"][0]["message"]
    assert full["choices"][0]["finish_reason"] == "tool_calls"
    assert msg["reasoning"] == "The user wants weather.\n" and not (msg["content"] or "").strip()
    call = msg["tool_calls"][0]
    assert call["function"]["name"] == "get_current_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "上海", "days": 3}
    rng = random.Random(0)
    for _ in range(20):
        chunks = run_stream(handler, req, scripted(SCRIPT, split_randomly(SCRIPT, rng)), tools)
        deltas = [c["choices"][0] for c in chunks if c["choices"]]
        assert deltas[0]["delta"]["role"] == "assistant"
        reasoning = "".join(d["delta"].get("reasoning", "") for d in deltas)
        content = "".join(d["delta"].get("content", "") or "" for d in deltas)
        args = "".join(tc["function"].get("arguments", "") for d in deltas for tc in d["delta"].get("tool_calls", []))
        names = [tc["function"]["name"] for d in deltas for tc in d["delta"].get("tool_calls", [])
                 if "name" in tc.get("function", {})]
        assert reasoning == msg["reasoning"] and content == (msg["content"] or "")
        assert names == ["get_current_weather"] and args == call["function"]["arguments"]
        assert [d["finish_reason"] for d in deltas if d["finish_reason"]] == ["tool_calls"]


def test_plain_answer_after_reasoning(handler):
    text = "think think</think>\n\nThe answer is 4."
    req = ChatCompletionRequest(messages=[{"role": "user", "content": "2+2?"}], stream=True,
                                stream_options={"include_usage": True})
    chunks = run_stream(handler, req, scripted(text, list(text)), None)
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == "\n\nThe answer is 4."
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] >= 0
