"""The Responses serving layer fed scripted engine outputs: input mapping, refusals, output items, and streamed
events (order, sequence numbers) that agree with the non-streamed response."""
import asyncio
import json
import random
import re

import pytest

from m2serve.entrypoints.openai.protocol import ResponsesRequest
from m2serve.entrypoints.openai.serving_chat import ChatHandler
from m2serve.entrypoints.openai.serving_common import ServingContext
from m2serve.entrypoints.openai.serving_responses import ResponsesHandler, to_chat_tools, to_messages
from m2serve.errors import M2ServeError
from m2serve.outputs import CompletionOutput, Logprob, RequestOutput

TOOLS = [{"type": "function", "name": "get_current_weather", "description": "Weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}]
CALL = ("<minimax:tool_call>\n<invoke name=\"get_current_weather\">\n<parameter name=\"city\">上海</parameter>\n"
        "<parameter name=\"days\">3</parameter>\n</invoke>\n</minimax:tool_call>")
TOOL_SCRIPT = "The user wants weather.\n</think>\n\n" + CALL
TEXT_SCRIPT = "Let me add.\n</think>\n\nThe answer is 4."
DELTA = {"reasoning": "response.reasoning_text.delta", "message": "response.output_text.delta",
         "function_call": "response.function_call_arguments.delta"}


def make_handler(tok, **flags):
    ctx = ServingContext(client=None, tokenizer=tok, served_model_names=["m"], max_model_len=4096, **flags)
    return ResponsesHandler(ctx, ChatHandler(ctx))


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from tests.helpers.tiny_tokenizer import build_tiny_tokenizer
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def handler(tok):
    return make_handler(tok, enable_auto_tool_choice=True, tool_call_parser="minimax_m2",
                        reasoning_parser="minimax_m2")


def _lp(n):
    return [{i: Logprob(-0.5, 1)} for i in range(n)]


def final(text, n_tokens=40, finish="stop", logprobs=False):
    return RequestOutput("r", None, [1, 2, 3], [CompletionOutput(0, text, list(range(n_tokens)), None,
                                                                 _lp(n_tokens) if logprobs else None, finish)], True)


def scripted(pieces, finish="stop", logprobs=False):
    """Cumulative RequestOutputs growing by the given text pieces (one token each)."""
    async def gen():
        acc = ""
        for i, p in enumerate(pieces):
            acc += p
            last = i == len(pieces) - 1
            yield RequestOutput("r", None, [1, 2, 3], [CompletionOutput(
                0, acc, list(range(i + 1)), None, _lp(i + 1) if logprobs else None, finish if last else None)], last)
    return gen()


def split_randomly(text, rng):
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, min(30, len(text) - 1))))
    return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


def run_stream(handler, prepared, outputs):
    async def collect():
        return [e async for e in handler.stream(prepared, outputs)]
    events = []
    for raw in asyncio.run(collect()):
        head, data, blank = raw.split("\n", 2)
        assert head.startswith("event: ") and data.startswith("data: ") and blank == "\n"
        event = json.loads(data[6:])
        assert event["type"] == head[7:]
        events.append(event)
    return check_events(events)


def check_events(events):
    """Event order of spec §1.5; returns the final response rebuilt from the deltas (and checked against it)."""
    types = [e["type"] for e in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert types[:2] == ["response.created", "response.in_progress"]
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    assert types[-1] in ("response.completed", "response.incomplete") and "[DONE]" not in types
    response = events[-1]["response"]
    assert response["status"] == types[-1].split(".")[1]
    i, rebuilt = 2, []
    while i < len(events) - 1:
        assert types[i] == "response.output_item.added"
        kind, index, item_id = events[i]["item"]["type"], events[i]["output_index"], events[i]["item"]["id"]
        assert index == len(rebuilt)
        i += 1
        if kind != "function_call":
            assert types[i] == "response.content_part.added"
            i += 1
        text = ""
        while types[i] == DELTA[kind]:
            assert events[i]["output_index"] == index and events[i]["item_id"] == item_id
            text += events[i]["delta"]
            i += 1
        assert types[i] == DELTA[kind].removesuffix("delta") + "done"
        assert events[i].get("text", events[i].get("arguments")) == text
        i += 1
        if kind != "function_call":
            assert types[i] == "response.content_part.done"
            i += 1
        assert types[i] == "response.output_item.done" and events[i]["output_index"] == index
        item = events[i]["item"]
        assert item["id"] == item_id
        got = {"reasoning": lambda: item["content"][0]["text"], "message": lambda: item["content"][0]["text"],
               "function_call": lambda: item["arguments"]}[kind]()
        assert got == text
        rebuilt.append(item)
        i += 1
    assert rebuilt == response["output"]
    return response


def summary(response):
    """What must agree between streamed and non-streamed responses (ids differ)."""
    out = []
    for item in response["output"]:
        if item["type"] == "function_call":
            out.append(("function_call", item["name"], json.loads(item["arguments"]), item["status"]))
        else:
            out.append((item["type"], item["content"][0]["text"], item["status"]))
    return out, response["status"], response["incomplete_details"]


def test_function_call_streamed_equals_full(handler):
    req = ResponsesRequest(model="m", input="请查询上海的天气", tools=TOOLS, stream=True)
    p = handler.prepare(req)
    assert p.tools and p.tools[0]["function"]["name"] == "get_current_weather"
    assert "get_current_weather" in p.prompt and p.id.startswith("resp_")
    full = handler.full_response(p, final(TOOL_SCRIPT))
    assert full["object"] == "response" and full["status"] == "completed" and full["store"] is False
    items = full["output"]
    assert [it["type"] for it in items] == ["reasoning", "function_call"]
    assert items[0]["content"] == [{"type": "reasoning_text", "text": "The user wants weather.\n"}]
    assert items[0]["summary"] == [] and items[0]["id"].startswith("rs_")
    call = items[1]
    assert call["name"] == "get_current_weather" and call["id"].startswith("fc_") and call["call_id"]
    assert json.loads(call["arguments"]) == {"city": "上海", "days": 3}
    assert full["tools"] == TOOLS and full["usage"]["output_tokens"] == 40
    rng = random.Random(0)
    for _ in range(15):
        streamed = run_stream(handler, p, scripted(split_randomly(TOOL_SCRIPT, rng)))
        assert summary(streamed) == summary(full)


def test_text_answer_streamed_equals_full_with_usage(handler):
    p = handler.prepare(ResponsesRequest(input="2+2?", instructions="Be brief.", max_output_tokens=100))
    assert p.prompt.startswith("]~!b[]~b]system\nBe brief.") and p.params.max_tokens == 100
    full = handler.full_response(p, final(TEXT_SCRIPT, n_tokens=12))
    assert summary(full)[0] == [("reasoning", "Let me add.\n", None),
                                ("message", "\n\nThe answer is 4.", "completed")]
    msg = full["output"][1]
    assert msg["role"] == "assistant" and msg["id"].startswith("msg_") and msg["content"][0]["annotations"] == []
    u = full["usage"]
    assert u["input_tokens"] == 3 and u["output_tokens"] == 12 and u["total_tokens"] == 15
    assert u["input_tokens_details"]["cached_tokens"] == 0 and "reasoning_tokens" in u["output_tokens_details"]
    for pieces in (list(TEXT_SCRIPT), [TEXT_SCRIPT], re.split(r"(?<= )", TEXT_SCRIPT)):
        streamed = run_stream(handler, p, scripted(pieces))
        assert summary(streamed) == summary(full)
        assert streamed["usage"]["output_tokens"] == len(pieces)


def test_length_limit_gives_incomplete(handler):
    p = handler.prepare(ResponsesRequest(input="Tell me a story", max_output_tokens=5))
    cut = TEXT_SCRIPT[:-4]
    full = handler.full_response(p, final(cut, n_tokens=5, finish="length"))
    assert full["status"] == "incomplete" and full["incomplete_details"] == {"reason": "max_output_tokens"}
    assert full["output"][-1]["type"] == "message" and full["output"][-1]["status"] == "incomplete"
    streamed = run_stream(handler, p, scripted(list(cut), finish="length"))
    assert summary(streamed) == summary(full)
    # Cut inside the reasoning: only a reasoning item, still incomplete.
    full = handler.full_response(p, final("Let me", n_tokens=2, finish="length"))
    assert [it["type"] for it in full["output"]] == ["reasoning"] and full["status"] == "incomplete"
    assert summary(run_stream(handler, p, scripted(["Let", " me"], finish="length"))) == summary(full)


def test_without_reasoning_parser_everything_is_text(tok):
    plain = make_handler(tok)
    p = plain.prepare(ResponsesRequest(input="hi", include=["message.output_text.logprobs"], top_logprobs=2))
    full = plain.full_response(p, final(TEXT_SCRIPT, n_tokens=6, logprobs=True))
    assert summary(full)[0] == [("message", TEXT_SCRIPT, "completed")]
    assert len(full["output"][0]["content"][0]["logprobs"]) == 6
    assert full["usage"]["output_tokens_details"]["reasoning_tokens"] == 0
    streamed = run_stream(plain, p, scripted(list("abcdef"), logprobs=True))
    assert len(streamed["output"][0]["content"][0]["logprobs"]) == 6
    empty = plain.full_response(p, final("", n_tokens=1))   # never an empty output list
    assert summary(empty)[0] == [("message", "", "completed")]
    assert summary(run_stream(plain, p, scripted([""]))) == summary(empty)
    with pytest.raises(M2ServeError, match="enable-auto-tool-choice"):
        plain.prepare(ResponsesRequest(input="hi", tools=TOOLS))


def test_input_items_become_chat_messages():
    items = [{"role": "developer", "content": "Use tools."},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in "},
                                                               {"type": "input_text", "text": "Paris?"}]},
             {"type": "reasoning", "id": "rs_1", "summary": [],
              "content": [{"type": "reasoning_text", "text": "Call the tool."}]},
             {"type": "function_call", "call_id": "call_1", "name": "get_current_weather",
              "arguments": "{\"city\": \"Paris\"}"},
             {"type": "function_call", "call_id": "call_2", "name": "get_current_weather", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
             {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "?"}]},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 18C."}]},
             {"role": "user", "content": "Thanks"}]
    assert to_messages(items, "Be brief.") == [
        {"role": "system", "content": "Be brief.\n\nUse tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "reasoning": "Call the tool.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_current_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_current_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "?"},
        {"role": "assistant", "content": "It is 18C."},
        {"role": "user", "content": "Thanks"}]
    assert to_messages("Hello", None) == [{"role": "user", "content": "Hello"}]


def test_conversation_renders_with_the_template(handler):
    items = [{"role": "user", "content": "Weather in Paris?"},
             {"type": "function_call", "call_id": "call_1", "name": "get_current_weather",
              "arguments": "{\"city\": \"Paris\"}"},
             {"type": "function_call_output", "call_id": "call_1", "output": "18C"}]
    p = handler.prepare(ResponsesRequest(input=items, tools=TOOLS, instructions="Sys."))
    assert "<invoke name=\"get_current_weather\">" in p.prompt and "<response>18C</response>" in p.prompt
    assert p.prompt.startswith("]~!b[]~b]system\nSys.") and "<tools>" in p.prompt


def test_flat_tools_to_chat_shape():
    assert to_chat_tools(TOOLS) == [{"type": "function", "function": {
        "name": "get_current_weather", "description": "Weather of a city", "parameters": TOOLS[0]["parameters"]}}]
    assert to_chat_tools([]) is None and to_chat_tools(None) is None


@pytest.mark.parametrize("body,status,param", [
    ({"previous_response_id": "resp_x"}, 404, "previous_response_id"),
    ({"background": True}, 400, "background"),
    ({"tools": [{"type": "web_search"}]}, 400, "tools[0]"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}, 400, "text.format"),
    ({"include": ["reasoning.encrypted_content"]}, 400, "include"),
    ({"top_logprobs": 3}, 400, "top_logprobs"),
    ({"truncation": "auto"}, 400, "truncation"),
    ({"max_output_tokens": 0}, 400, "max_output_tokens"),
    ({"max_output_tokens": 5000}, 400, "max_output_tokens"),
    ({"tool_choice": "required"}, 400, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": "required"}, 400, None),
    ({"tools": TOOLS, "tool_choice": {"type": "web_search_preview"}}, 400, "tool_choice"),
    ({"input": []}, 400, "input"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, 400, "input[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, 400,
     "input[0].content[0]"),
    ({"input": "word " * 5000}, 400, "input"),
    ({"model": "nope"}, 404, None),
])
def test_refusals(handler, body, status, param):
    with pytest.raises(M2ServeError) as e:
        handler.prepare(ResponsesRequest(**{"input": "hi", **body}))
    err = e.value.to_openai()["error"]
    assert e.value.status_code == status and err["code"] == status and err["message"]
    if param:
        assert err["param"] == param


def test_store_accepted_but_reported_false(handler):
    p = handler.prepare(ResponsesRequest(input="hi", store=True, reasoning={"effort": "low", "summary": "auto"}))
    full = handler.full_response(p, final("x</think>y", n_tokens=3))
    assert full["store"] is False and full["reasoning"] == {"effort": "low", "summary": "auto"}


def test_output_text_logprobs_skip_reasoning_tokens(handler, tok):
    pieces = ["Let ", "me ", "add.\n", "</think>", "\n\n", "The ", "answer ", "is ", "4."]
    ids = [100 + i if p != "</think>" else tok.token_to_id("</think>") for i, p in enumerate(pieces)]

    async def gen():
        for i in range(len(pieces)):
            last = i == len(pieces) - 1
            yield RequestOutput("r", None, [1], [CompletionOutput(
                0, "".join(pieces[:i + 1]), ids[:i + 1], None, [{t: Logprob(-1.0, 1)} for t in ids[:i + 1]],
                "stop" if last else None)], last)
    p = handler.prepare(ResponsesRequest(input="2+2?", include=["message.output_text.logprobs"]))
    full = handler.full_response(p, RequestOutput("r", None, [1], [CompletionOutput(
        0, "".join(pieces), ids, None, [{t: Logprob(-1.0, 1)} for t in ids], "stop")], True))
    want = full["output"][1]["content"][0]["logprobs"]
    assert len(want) == 6 and want[0]["logprob"] == -1.0 and want[0]["top_logprobs"] == []
    streamed = run_stream(handler, p, gen())
    assert streamed["output"][1]["content"][0]["logprobs"] == want
    assert full["usage"]["output_tokens_details"]["reasoning_tokens"] == 3


def test_parallel_tool_calls_false_keeps_the_first_call(handler):
    script = "ok</think>" + CALL + "\n" + CALL.replace("上海", "北京")
    p = handler.prepare(ResponsesRequest(input="hi", tools=TOOLS))
    assert [it["type"] for it in handler.full_response(p, final(script))["output"]].count("function_call") == 2
    p = handler.prepare(ResponsesRequest(input="hi", tools=TOOLS, parallel_tool_calls=False))
    full = handler.full_response(p, final(script))
    assert [it["type"] for it in full["output"]] == ["reasoning", "function_call"]
    assert summary(run_stream(handler, p, scripted(split_randomly(script, random.Random(1))))) == summary(full)


def test_engine_error_mid_stream_ends_with_failed(handler):
    from m2serve.errors import InvalidRequestError

    async def gen():
        yield RequestOutput("r", None, [1], [CompletionOutput(0, "Hi", [1], None, None, None)], False)
        raise InvalidRequestError("rejected by the engine")
    p = handler.prepare(ResponsesRequest(input="hi"))

    async def collect():
        return [json.loads(e.split("\ndata: ", 1)[1]) async for e in handler.stream(p, gen())]
    events = asyncio.run(collect())
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["message"] == "rejected by the engine" and events[-1]["response"]["status"] == "failed"
