"""Golden chat-template tests (specs/minimax-m2.md §5, shared/reference/README.md).

m2serve's renderer (`m2serve.frontend.chat_template.render_chat_template`, reached through
`Tokenizer.apply_chat_template`) must produce, byte for byte, what transformers' `apply_chat_template` produces
from the reference MiniMax-M2 template with its line 132 removed. The reference side is rendered here directly
with Jinja2 and a minimal clean-up of its own (tool-call arguments as dicts, None content as "", vLLM's
`reasoning` name mapped to `reasoning_content`), independent of m2serve's `prepare_messages`.

Known deviations of the reference template from spec §5 (shared/reference/README.md), asserted explicitly:
* its line 132 leaves an extra "\\n" after every tool-call block (the golden comparisons use the template
  without that line);
* it renders inline `<think>…</think>` assistant content raw (a Jinja2 `set` inside a `for` loop does not leave
  the loop), where spec §5 (and m2serve) split it like `reasoning_content`.
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from m2serve.entrypoints.openai.protocol import ChatCompletionRequest
from m2serve.entrypoints.openai.serving_chat import ChatHandler
from m2serve.entrypoints.openai.serving_common import ServingContext
from m2serve.errors import InvalidRequestError
from m2serve.frontend.chat_template import ChatTemplateError, prepare_messages, render_chat_template
from tests.helpers.tiny_tokenizer import build_tiny_tokenizer, find_reference_template, reference_template_text

_REF_PATH = find_reference_template()
pytestmark = pytest.mark.skipif(_REF_PATH is None, reason="reference MiniMax-M2 chat template not available")

OCHAFIK_LINE = 132  # 1-based line of the reference template that adds the stray "\n" after tool calls


def _load_templates() -> tuple[str, str]:
    """(raw reference template text, the same with line 132 deleted), read and cut here, not by the helper."""
    raw = _REF_PATH.read_text(encoding="utf-8")
    lines = raw.splitlines(keepends=True)
    assert "ochafik" in lines[OCHAFIK_LINE - 1], "reference template changed: line 132 is not the ochafik comment"
    return raw, "".join(lines[:OCHAFIK_LINE - 1] + lines[OCHAFIK_LINE:])


RAW_TEMPLATE, TEMPLATE = _load_templates() if _REF_PATH is not None else ("", "")


# ---- independent reference rendering ---------------------------------------------------------------------------
def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


@lru_cache(maxsize=4)
def _compiled(template_text: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x: json.dumps(x, ensure_ascii=False)
    env.globals["raise_exception"] = _raise_exception
    return env.from_string(template_text)


def ref_prepare(messages: list[dict]) -> list[dict]:
    """The minimal clean-up the reference template needs: arguments as dicts, None content as ""."""
    out = copy.deepcopy(messages)
    for m in out:
        if m.get("content") is None:
            m["content"] = ""
        if m.get("role") != "assistant":
            continue
        if not isinstance(m.get("reasoning_content"), str) and isinstance(m.get("reasoning"), str):
            m["reasoning_content"] = m["reasoning"]  # vLLM's newer field name
        for call in m.get("tool_calls") or []:
            args = call["function"].get("arguments")
            if args is None or (isinstance(args, str) and not args.strip()):
                call["function"]["arguments"] = {}
            elif isinstance(args, str):
                call["function"]["arguments"] = json.loads(args)
    return out


def ref_render(messages, tools=None, add_generation_prompt=True, template=None, **kwargs) -> str:
    return _compiled(TEMPLATE if template is None else template).render(
        messages=ref_prepare(messages), tools=tools, add_generation_prompt=add_generation_prompt, **kwargs)


# ---- fixtures and data -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("golden_tok"))


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"}}, "required": ["location"]}}}

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "获取指定城市的当前天气。",
        "parameters": {"type": "object", "properties": {
            "location": {"type": "string", "description": "城市名称，例如：北京"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["location"]}}},
    {"type": "function", "function": {
        "name": "search_flights", "description": "搜索航班 / Search flights between two airports.",
        "parameters": {"type": "object", "properties": {
            "route": {"type": "object", "description": "航线", "properties": {
                "from": {"type": "string"}, "to": {"type": "string"},
                "stops": {"type": "array", "items": {"type": "object", "properties": {
                    "airport": {"type": "string", "description": "机场代码"},
                    "minutes": {"type": "integer"}}, "required": ["airport"]}}},
                "required": ["from", "to"]},
            "passengers": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "age": {"type": ["integer", "null"]}}}},
            "flexible": {"type": "boolean", "default": False},
            "budget": {"anyOf": [{"type": "number"}, {"type": "null"}]}},
            "required": ["route"]}}},
    {"type": "function", "function": {
        "name": "run_python",
        "description": 'Run Python code "safely"; returns stdout.\nSpecial chars: <b>&</b> \\ 😀',
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
        "strict": True}},
]


def call(name, arguments, call_id=None):
    c = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call_id is not None:
        c["id"] = call_id
    return c


# (id, messages, tools)
CONVERSATIONS = [
    ("user_only_no_system", [{"role": "user", "content": "hi"}], None),
    ("system_chinese_multi_turn", [
        {"role": "system", "content": "你是一个乐于助人的助手。请用中文回答。"},
        {"role": "user", "content": "北京是哪个国家的首都？"},
        {"role": "assistant", "content": "北京是中国的首都。"},
        {"role": "user", "content": "上海呢？😀"}], None),
    ("system_as_text_parts", [
        {"role": "system", "content": [{"type": "text", "text": "You are terse. "},
                                       {"type": "text", "text": "Answer in one line."}]},
        {"role": "user", "content": [{"type": "text", "text": "look "},
                                     {"type": "image_url", "image_url": {"url": "x"}},
                                     {"type": "text", "text": "here"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Seen."}]}], None),
    ("tools_single_call_json_string_args", [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "巴黎的天气怎么样？"},
        {"role": "assistant", "content": None, "reasoning_content": "用户想知道巴黎的天气，调用 get_weather。",
         "tool_calls": [call("get_weather", '{"location": "巴黎", "unit": "celsius", "days": 2}', "call_1")]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 18, "condition": "晴"}'},
        {"role": "assistant", "content": "巴黎今天晴，18°C。", "reasoning_content": "结果已返回，总结。"}], TOOLS),
    ("parallel_calls_dict_args_consecutive_results", [
        {"role": "user", "content": "Weather in Paris and Tokyo, and book a flight."},
        {"role": "assistant", "content": "Let me check.", "reasoning_content": "Three independent calls.",
         "tool_calls": [
             call("get_weather", {"location": "Paris"}, "c1"),
             call("get_weather", {"location": "Tokyo", "unit": "fahrenheit", "days": 3}, "c2"),
             call("search_flights", {"route": {"from": "CDG", "to": "HND",
                                               "stops": [{"airport": "PEK", "minutes": 95}]},
                                     "passengers": [{"name": "李雷", "age": None}, {"name": "Ann", "age": 31}],
                                     "flexible": True, "budget": 1234.5}, "c3")]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny, 18"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "rain, 55F"}]},
        {"role": "tool", "tool_call_id": "c3", "content": [{"type": "text", "text": "AF276 "},
                                                           {"type": "text", "text": "¥5,000"}]}], TOOLS),
    ("reasoning_field_before_and_after_last_user", [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "one", "reasoning": "OLD reasoning, dropped"},
        {"role": "user", "content": "run code"},
        {"role": "assistant", "content": "", "reasoning": "need python",
         "tool_calls": [call("run_python", json.dumps({"code": "print(1 + 1)\nprint('é')"}), "p1")]},
        {"role": "tool", "tool_call_id": "p1", "content": "2\né\n"},
        {"role": "assistant", "content": "It printed 2.", "reasoning": "interleaved, kept"}], TOOLS),
    ("reasoning_content_before_and_after_last_user", [
        {"role": "system", "content": "Sys."},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1", "reasoning_content": "OLD r1, dropped"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2", "reasoning_content": "r2 kept"}], None),
    ("empty_content_only_tool_calls_no_reasoning", [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call("get_weather", '{"location": "Oslo"}')]},
        {"role": "tool", "content": "cold"}], [WEATHER_TOOL]),
    ("interleaved_tool_loop_after_last_user", [
        {"role": "user", "content": "Plan a trip: weather first, then flights."},
        {"role": "assistant", "content": "", "reasoning_content": "step 1: weather",
         "tool_calls": [call("get_weather", '{"location": "Rome"}', "a")]},
        {"role": "tool", "tool_call_id": "a", "content": "warm"},
        {"role": "assistant", "content": "", "reasoning_content": "step 2: flights",
         "tool_calls": [call("search_flights", '{"route": {"from": "LHR", "to": "FCO"}}', "b")]},
        {"role": "tool", "tool_call_id": "b", "content": "BA550"}], TOOLS),
    ("tool_calls_before_last_user_drop_reasoning", [
        {"role": "system", "content": [{"type": "text", "text": "工具助手"}]},
        {"role": "user", "content": "天气？"},
        {"role": "assistant", "content": None, "reasoning_content": "dropped: before last user",
         "tool_calls": [call("get_weather", {"location": "深圳", "days": 1})]},
        {"role": "tool", "content": [{"type": "text", "text": "多云"}]},
        {"role": "assistant", "content": "深圳多云。"},
        {"role": "user", "content": "谢谢"}], TOOLS),
    ("argument_value_types_and_unicode_escapes", [
        {"role": "user", "content": "types"},
        {"role": "assistant", "content": "", "tool_calls": [
            call("f", '{"s": "\\u4f60\\u597d", "n": 3, "x": 2.5, "b": false, "z": null, "l": [1, "二", {"k": true}],'
                      ' "o": {"嵌套": {"深": [null]}}, "empty": "", "quote": "say \\"hi\\"\\n<tag>"}'),
            call("g", {}), call("h", None), call("i", "")]},
        {"role": "tool", "content": "ok"},
        {"role": "tool", "content": ""},
        {"role": "tool", "content": None}], None),
    ("system_date_location_and_later_system_dropped", [
        {"role": "system", "content": "Sys", "current_date": "2025-06-01", "current_location": "上海"},
        {"role": "user", "content": "when?"},
        {"role": "system", "content": "later system: dropped"},
        {"role": "developer", "content": "developer: dropped"},
        {"role": "assistant", "content": "now"}], None),
    ("empty_tool_calls_list_and_empty_system", [
        {"role": "system", "content": ""},
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "user", "content": "y"}], []),
    ("tool_result_list_with_plain_string_item", [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [call("run_python", {"code": "1"})]},
        {"role": "tool", "content": ["plain string item", {"type": "text", "text": "text item"}]}], TOOLS),
]
CONV_IDS = [c[0] for c in CONVERSATIONS]


# ---- the reference template itself ------------------------------------------------------------------------------
def test_reference_template_text():
    # shared/reference/README.md: 7224 characters, 7236 bytes UTF-8, 172 lines
    assert (len(RAW_TEMPLATE), len(RAW_TEMPLATE.encode("utf-8")), len(RAW_TEMPLATE.splitlines())) == (7224, 7236, 172)
    assert len(TEMPLATE.splitlines()) == 171 and "ochafik" not in TEMPLATE
    assert reference_template_text(drop_ochafik_line=True) == TEMPLATE
    assert reference_template_text(drop_ochafik_line=False) == RAW_TEMPLATE


# ---- golden: m2serve == direct Jinja2 rendering of the reference template -------------------------------------
@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("conv_id,messages,tools", CONVERSATIONS, ids=CONV_IDS)
def test_matches_reference_rendering(tok, conv_id, messages, tools, add_generation_prompt):
    before = copy.deepcopy(messages)
    expected = ref_render(messages, tools=tools, add_generation_prompt=add_generation_prompt)
    ours = render_chat_template(TEMPLATE, messages, tools=tools, add_generation_prompt=add_generation_prompt)
    assert ours == expected
    assert ours.encode("utf-8") == expected.encode("utf-8")
    assert tok.apply_chat_template(messages, tools=tools, add_generation_prompt=add_generation_prompt,
                                   chat_template=TEMPLATE) == expected
    assert messages == before, "the renderer must not mutate the caller's messages"
    assert expected.startswith("]~!b[]~b]system\n")
    assert expected.endswith("]~b]ai\n<think>\n") == add_generation_prompt


def test_conversation_features_are_exercised():
    """The matrix really holds what it claims to test (guards against silently trivial renderings)."""
    by_id = {cid: (msgs, tools) for cid, msgs, tools in CONVERSATIONS}
    out = {cid: ref_render(m, tools=t) for cid, (m, t) in by_id.items()}
    assert len(CONVERSATIONS) >= 12
    # no system message: default identity; empty system content: default identity too
    assert out["user_only_no_system"] == "]~!b[]~b]system\nYou are a helpful assistant.[e~[\n]~b]user\nhi[e~[\n" \
                                         "]~b]ai\n<think>\n"
    assert out["empty_tool_calls_list_and_empty_system"].startswith(
        "]~!b[]~b]system\nYou are a helpful assistant.[e~[\n]~b]user\nx[e~[\n]~b]ai\n[e~[\n")
    assert out["system_as_text_parts"].startswith("]~!b[]~b]system\nYou are terse. Answer in one line.[e~[\n"
                                                  "]~b]user\nlook here[e~[\n]~b]ai\nSeen.[e~[\n")
    # tools with Chinese descriptions, nested schemas, key order as given, non-ASCII kept
    tools_out = out["tools_single_call_json_string_args"]
    for t in TOOLS:
        assert "<tool>" + json.dumps(t["function"], ensure_ascii=False) + "</tool>\n" in tools_out
    assert '"strict": true}' in tools_out and "\\u" not in tools_out
    # a single call whose JSON-string arguments became parameters
    assert ('<think>\n用户想知道巴黎的天气，调用 get_weather。\n</think>\n\n\n<minimax:tool_call>\n'
            '<invoke name="get_weather">\n<parameter name="location">巴黎</parameter>\n'
            '<parameter name="unit">celsius</parameter>\n<parameter name="days">2</parameter>\n</invoke>\n'
            '</minimax:tool_call>[e~[\n]~b]tool\n<response>{"temperature": 18, "condition": "晴"}</response>[e~[\n'
            ) in tools_out
    # parallel calls, nested dict arguments as JSON, three consecutive results under one header
    par = out["parallel_calls_dict_args_consecutive_results"]
    assert par.count("<invoke name=") == 3 + 1 and par.count("]~b]tool") == 1
    assert ('<parameter name="route">{"from": "CDG", "to": "HND", "stops": [{"airport": "PEK", "minutes": 95}]}'
            '</parameter>\n<parameter name="passengers">[{"name": "李雷", "age": null}, {"name": "Ann", "age": 31}]'
            '</parameter>\n<parameter name="flexible">true</parameter>\n<parameter name="budget">1234.5</parameter>'
            ) in par
    assert ("]~b]tool\n<response>sunny, 18</response>\n<response>rain, 55F\n</response>\n<response>AF276 \n"
            "</response>\n<response>¥5,000\n</response>[e~[\n]~b]ai\n<think>\n") in par
    # reasoning before the last user message dropped, after it kept (both field names)
    for cid in ("reasoning_field_before_and_after_last_user", "reasoning_content_before_and_after_last_user"):
        assert "OLD" not in out[cid] and "dropped" not in out[cid]
    assert "<think>\nneed python\n</think>\n\n\n<minimax:tool_call>" in \
        out["reasoning_field_before_and_after_last_user"]
    assert "]~b]ai\n<think>\ninterleaved, kept\n</think>\n\nIt printed 2.[e~[\n" in \
        out["reasoning_field_before_and_after_last_user"]
    assert "]~b]ai\n<think>\nr2 kept\n</think>\n\na2[e~[\n" in out["reasoning_content_before_and_after_last_user"]
    loop = out["interleaved_tool_loop_after_last_user"]
    assert "<think>\nstep 1: weather\n</think>" in loop and "<think>\nstep 2: flights\n</think>" in loop
    assert "dropped" not in out["tool_calls_before_last_user_drop_reasoning"]
    # empty content, only tool calls: "]~b]ai\n" then "\n<minimax:tool_call>"
    assert "]~b]ai\n\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"location\">Oslo" \
        "</parameter>\n</invoke>\n</minimax:tool_call>[e~[\n" in out["empty_content_only_tool_calls_no_reasoning"]
    # argument value types: strings raw (escapes decoded), everything else JSON with non-ASCII kept
    types = out["argument_value_types_and_unicode_escapes"]
    assert ('<parameter name="s">你好</parameter>\n<parameter name="n">3</parameter>\n'
            '<parameter name="x">2.5</parameter>\n<parameter name="b">false</parameter>\n'
            '<parameter name="z">null</parameter>\n<parameter name="l">[1, "二", {"k": true}]</parameter>\n'
            '<parameter name="o">{"嵌套": {"深": [null]}}</parameter>\n<parameter name="empty"></parameter>\n'
            '<parameter name="quote">say "hi"\n<tag></parameter>\n</invoke>\n'
            '<invoke name="g">\n</invoke>\n<invoke name="h">\n</invoke>\n<invoke name="i">\n</invoke>\n') in types
    assert "]~b]tool\n<response>ok</response>\n<response></response>\n<response></response>[e~[\n" in types
    # system extras; later system/developer messages dropped
    sys_out = out["system_date_location_and_later_system_dropped"]
    assert sys_out.startswith("]~!b[]~b]system\nSys\nCurrent date: 2025-06-01\nCurrent location: 上海[e~[\n")
    assert "dropped" not in sys_out
    assert "<response>plain string item\n</response>\n<response>text item\n</response>" in \
        out["tool_result_list_with_plain_string_item"]


# ---- spec §5.1 golden strings -------------------------------------------------------------------------------------
# specs/minimax-m2.md §5.1, verbatim.
SPEC_5_1 = """]~!b[]~b]system
You are a helpful assistant.

# Tools
You may call one or more tools to assist with the user query.
Here are the tools available in JSONSchema format:

<tools>
<tool>{"name": "get_weather", "description": "Get the current weather for a city.", "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "City name"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer"}}, "required": ["location"]}}</tool>
</tools>

When making tool calls, use XML format to invoke tools and pass parameters:

<minimax:tool_call>
<invoke name="tool-name-1">
<parameter name="param-key-1">param-value-1</parameter>
<parameter name="param-key-2">param-value-2</parameter>
...
</invoke>
</minimax:tool_call>[e~[
]~b]user
What's the weather in Paris? Use celsius.[e~[
]~b]ai
<think>
The user wants the weather in Paris in celsius. I should call get_weather.
</think>


<minimax:tool_call>
<invoke name="get_weather">
<parameter name="location">Paris</parameter>
<parameter name="unit">celsius</parameter>
<parameter name="days">1</parameter>
</invoke>
</minimax:tool_call>[e~[
]~b]tool
<response>{"temperature": 18, "condition": "sunny"}</response>[e~[
]~b]ai
<think>
"""


def spec_5_1_messages(arguments):
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What's the weather in Paris? Use celsius."},
        {"role": "assistant", "content": None,
         "reasoning_content": "The user wants the weather in Paris in celsius. I should call get_weather.",
         "tool_calls": [call("get_weather", arguments, "call_1")]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 18, "condition": "sunny"}'},
    ]


@pytest.mark.parametrize("arguments", ['{"location": "Paris", "unit": "celsius", "days": 1}',
                                       {"location": "Paris", "unit": "celsius", "days": 1}], ids=["json", "dict"])
def test_spec_5_1_golden(tok, arguments):
    assert len(SPEC_5_1) == 1236 and SPEC_5_1.endswith("]~b]ai\n<think>\n")
    msgs = spec_5_1_messages(arguments)
    assert render_chat_template(TEMPLATE, msgs, tools=[WEATHER_TOOL]) == SPEC_5_1
    assert tok.apply_chat_template(msgs, tools=[WEATHER_TOOL], chat_template=TEMPLATE) == SPEC_5_1
    assert ref_render(msgs, tools=[WEATHER_TOOL]) == SPEC_5_1
    # the unmodified reference template (line 132 kept): one extra "\n" after the tool-call block (README)
    raw = ref_render(msgs, tools=[WEATHER_TOOL], template=RAW_TEMPLATE)
    assert len(raw) == 1237
    assert raw == SPEC_5_1.replace("</minimax:tool_call>[e~[\n]~b]tool", "</minimax:tool_call>\n[e~[\n]~b]tool")


def test_spec_5_1_direct_rendering_needs_the_clean_up():
    # what a renderer that skipped the §5 clean-up would produce: content None renders as "None",
    # JSON-string arguments render no parameters
    msgs = spec_5_1_messages('{"location": "Paris"}')
    uncleaned = _compiled(TEMPLATE).render(messages=msgs, tools=[WEATHER_TOOL], add_generation_prompt=True)
    assert "</think>\n\nNone\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n</invoke>" in uncleaned
    assert render_chat_template(TEMPLATE, msgs, tools=[WEATHER_TOOL]) == ref_render(msgs, tools=[WEATHER_TOOL])


def test_spec_5_1_two_calls_two_results():
    msgs = [{"role": "user", "content": "go"},
            {"role": "assistant", "content": "", "tool_calls": [call("a", '{"x": 1}'), call("b", {"y": "s"})]},
            {"role": "tool", "content": "r1"},
            {"role": "tool", "content": [{"type": "text", "text": "r2"}]}]
    golden = ('[e~[\n]~b]ai\n\n<minimax:tool_call>\n<invoke name="a">\n<parameter name="x">1</parameter>\n</invoke>\n'
              '<invoke name="b">\n<parameter name="y">s</parameter>\n</invoke>\n</minimax:tool_call>[e~[\n'
              ']~b]tool\n<response>r1</response>\n<response>r2\n</response>[e~[\n')
    ours = render_chat_template(TEMPLATE, msgs, add_generation_prompt=False)
    assert ours.endswith(golden)
    assert ours == ref_render(msgs, add_generation_prompt=False)
    raw = ref_render(msgs, add_generation_prompt=False, template=RAW_TEMPLATE)
    assert raw == ours.replace("</minimax:tool_call>[e~[", "</minimax:tool_call>\n[e~[")


# ---- inline <think> (spec §5 rule; reference template deviation 2) ---------------------------------------------
def test_spec_5_1_inline_think_before_last_user_is_dropped(tok):
    msgs = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": "<think>\nold thoughts\n</think>\n\nHello!"},
            {"role": "user", "content": "bye"}]
    golden = ("]~!b[]~b]system\nYou are a helpful assistant.[e~[\n]~b]user\nhi[e~[\n]~b]ai\nHello![e~[\n"
              "]~b]user\nbye[e~[\n]~b]ai\n<think>\n")
    assert render_chat_template(TEMPLATE, msgs) == golden
    assert tok.apply_chat_template(msgs, chat_template=TEMPLATE) == golden
    # the reference rendering of the equivalent reasoning_content message
    equivalent = copy.deepcopy(msgs)
    equivalent[1] = {"role": "assistant", "content": "Hello!", "reasoning_content": "old thoughts"}
    assert ref_render(equivalent) == golden
    # deviation: the reference template renders the inline think raw (not split, not dropped)
    assert ref_render(msgs) == golden.replace("]~b]ai\nHello!", "]~b]ai\n<think>\nold thoughts\n</think>\n\nHello!")


@pytest.mark.parametrize("content,reasoning,visible", [
    ("<think>\nplan\n</think>\n\nok", "plan", "ok"),
    ("<think>plan</think>ok", "plan", "ok"),
    ("preamble<think>\n\nmulti\nline\n\n</think>\n\n\nanswer\n\n", "multi\nline", "answer"),
    ("no opening tag\n</think>\nanswer", "no opening tag", "answer"),
    ("<think>\na\n</think>\nb</think>\nc", "a", "c"),  # first </think> ends reasoning, content after the last
    ("<think>\n\n</think>\n\nonly content", "", "only content"),  # empty reasoning: no think block
    ("<think>\n中文思考\n</think>\n\n中文回答", "中文思考", "中文回答"),
])
@pytest.mark.parametrize("position", ["after_last_user", "before_last_user"])
def test_inline_think_is_split_like_reasoning_content(content, reasoning, visible, position):
    tail = [{"role": "user", "content": "next"}] if position == "before_last_user" else []
    inline = [{"role": "user", "content": "q"}, {"role": "assistant", "content": content}] + tail
    field = [{"role": "user", "content": "q"},
             {"role": "assistant", "content": visible, "reasoning_content": reasoning}] + tail
    for gen in (True, False):
        ours = render_chat_template(TEMPLATE, inline, add_generation_prompt=gen)
        assert ours == ref_render(field, add_generation_prompt=gen)
        kept = bool(reasoning) and position == "after_last_user"
        assert (f"]~b]ai\n<think>\n{reasoning}\n</think>\n\n{visible}[e~[\n" in ours) == kept
        if not kept:
            assert f"]~b]ai\n{visible}[e~[\n" in ours
        # deviation: the reference template does not split (content rendered raw)
        assert f"]~b]ai\n{content}[e~[\n" in ref_render(inline, add_generation_prompt=gen)
    assert prepare_messages(inline)[1]["reasoning_content"] == reasoning
    assert prepare_messages(inline)[1]["content"] == visible


def test_inline_think_with_tool_calls_and_explicit_reasoning():
    # inline think + tool calls after the last user message
    inline = [{"role": "user", "content": "q"},
              {"role": "assistant", "content": "<think>\ncall f\n</think>\n\n",
               "tool_calls": [call("f", '{"a": "b"}')]},
              {"role": "tool", "content": "r"}]
    field = copy.deepcopy(inline)
    field[1].update(content="", reasoning_content="call f")
    assert render_chat_template(TEMPLATE, inline) == ref_render(field)
    # an explicit reasoning_content string wins: inline tags in content stay raw (spec §5: "Otherwise, ...")
    explicit = [{"role": "user", "content": "q"},
                {"role": "assistant", "content": "<think>x</think>y", "reasoning_content": "r"}]
    assert render_chat_template(TEMPLATE, explicit) == ref_render(explicit)
    assert "<think>\nr\n</think>\n\n<think>x</think>y[e~[" in render_chat_template(TEMPLATE, explicit)
    # reasoning_content wins over reasoning when both are strings
    both = [{"role": "user", "content": "q"},
            {"role": "assistant", "content": "y", "reasoning_content": "RC", "reasoning": "R"}]
    assert "<think>\nRC\n</think>\n\ny" in render_chat_template(TEMPLATE, both)
    assert render_chat_template(TEMPLATE, both) == ref_render(both)


# ---- chat_template_kwargs ---------------------------------------------------------------------------------------
def test_chat_template_kwargs(tok):
    msgs = [{"role": "user", "content": "hi"}]
    default = render_chat_template(TEMPLATE, msgs)
    # model_identity replaces the default system text (the template reads it when no system message is given)
    ident = "You are MiniMax-M2, a helpful AI assistant built by MiniMax. Knowledge cutoff: 2025-06."
    out = render_chat_template(TEMPLATE, msgs, model_identity=ident)
    assert out == ref_render(msgs, model_identity=ident)
    assert out == default.replace("You are a helpful assistant.", ident)
    assert tok.apply_chat_template(msgs, chat_template=TEMPLATE, model_identity=ident) == out
    # ...but a non-empty system message wins over it
    with_sys = [{"role": "system", "content": "Custom."}] + msgs
    assert render_chat_template(TEMPLATE, with_sys, model_identity=ident) == ref_render(with_sys)
    # the official template has no thinking switch: enable_thinking and unknown kwargs change nothing
    for kwargs in ({"enable_thinking": False}, {"enable_thinking": True}, {"unused_option": [1, {"a": None}]}):
        assert render_chat_template(TEMPLATE, msgs, **kwargs) == default
        assert tok.apply_chat_template(msgs, chat_template=TEMPLATE, **kwargs) == default
    assert default.endswith("]~b]ai\n<think>\n")
    # kwargs reach a custom template as variables
    custom = "{{ greeting }}, {{ messages[0]['content'] }}{% if add_generation_prompt %}!{% endif %}"
    assert render_chat_template(custom, msgs, greeting="你好") == "你好, hi!"
    assert tok.apply_chat_template(msgs, chat_template=custom, add_generation_prompt=False, greeting="Hi") == "Hi, hi"


def test_chat_template_kwargs_through_the_chat_endpoint(tok):
    """ChatCompletionRequest.chat_template_kwargs over the server's defaults, as vLLM merges them."""
    ctx = ServingContext(client=None, tokenizer=tok, served_model_names=["m"], max_model_len=4096,
                         chat_template=TEMPLATE, default_chat_template_kwargs={"model_identity": "Default id."},
                         enable_auto_tool_choice=True, tool_call_parser="minimax_m2")
    handler = ChatHandler(ctx)
    msgs = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "reasoning": "r",
             "tool_calls": [{"id": "c", "type": "function",
                             "function": {"name": "get_weather", "arguments": '{"location": "巴黎"}'}}]},
            {"role": "tool", "tool_call_id": "c", "content": "晴"}]
    prompt, ids, _, _ = handler.prepare(ChatCompletionRequest(model="m", messages=msgs, tools=[WEATHER_TOOL]))
    assert prompt == ref_render(msgs, tools=[WEATHER_TOOL], model_identity="Default id.")
    assert ids == tok.encode(prompt, add_special_tokens=False)
    prompt, _, _, _ = handler.prepare(ChatCompletionRequest(
        model="m", messages=msgs, tools=[WEATHER_TOOL], chat_template_kwargs={"model_identity": "Request id.",
                                                                               "enable_thinking": False}))
    assert prompt == ref_render(msgs, tools=[WEATHER_TOOL], model_identity="Request id.")


# ---- continue_final_message -------------------------------------------------------------------------------------
def _without_turn_end(rendered: str) -> str:
    assert rendered.endswith("[e~[\n")
    return rendered[:-len("[e~[\n")]


@pytest.mark.parametrize("final", [
    {"role": "assistant", "content": "The answer is "},
    {"role": "assistant", "content": "答案是", "reasoning_content": "先想一想"},
    {"role": "assistant", "content": None, "reasoning_content": "thinking so far"},
    {"role": "assistant", "content": [{"type": "text", "text": "part one, "}, {"type": "text", "text": "two"}]},
    {"role": "user", "content": "Complete this sentence: the sky is"},
], ids=["plain", "with_reasoning", "reasoning_only", "text_parts", "user"])
def test_continue_final_message(tok, final):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}, final]
    if final["role"] == "user":
        msgs = msgs[:1] + [final]
    expected = _without_turn_end(ref_render(msgs, add_generation_prompt=False))
    ours = render_chat_template(TEMPLATE, msgs, add_generation_prompt=False, continue_final_message=True)
    assert ours == expected
    assert tok.apply_chat_template(msgs, add_generation_prompt=False, continue_final_message=True,
                                   chat_template=TEMPLATE) == expected


def test_continue_final_message_inline_and_partial_think():
    q = [{"role": "user", "content": "q"}]
    # a finished inline think is split, then continued after the visible text (trailing space kept)
    out = render_chat_template(TEMPLATE, q + [{"role": "assistant", "content": "<think>\nplan\n</think>\n\nThe "}],
                               add_generation_prompt=False, continue_final_message=True)
    assert out.endswith("]~b]user\nq[e~[\n]~b]ai\n<think>\nplan\n</think>\n\nThe ")
    # an unfinished think (no </think>) is continued as is: the model goes on thinking
    out = render_chat_template(TEMPLATE, q + [{"role": "assistant", "content": "<think>\nLet me"}],
                               add_generation_prompt=False, continue_final_message=True)
    assert out.endswith("]~b]user\nq[e~[\n]~b]ai\n<think>\nLet me")


def test_continue_final_message_errors():
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    with pytest.raises(InvalidRequestError, match="Cannot set both"):
        render_chat_template(TEMPLATE, msgs, add_generation_prompt=True, continue_final_message=True)
    with pytest.raises(InvalidRequestError):
        render_chat_template(TEMPLATE, [], add_generation_prompt=False, continue_final_message=True)
    # a final message the template drops (a later system message) cannot be continued
    with pytest.raises(InvalidRequestError, match="does not appear"):
        render_chat_template(TEMPLATE, msgs + [{"role": "system", "content": "late"}],
                             add_generation_prompt=False, continue_final_message=True)
    # the request model refuses the combination too
    with pytest.raises(ValueError, match="Cannot set both"):
        ChatCompletionRequest(messages=msgs, continue_final_message=True)


# ---- template errors ----------------------------------------------------------------------------------------------
def test_tool_message_without_tool_call_raises_like_the_reference():
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "no calls"},
            {"role": "tool", "content": "x"}]
    with pytest.raises(jinja2.TemplateError, match="no previous assistant message with a tool call"):
        ref_render(msgs)
    with pytest.raises(ChatTemplateError, match="no previous assistant message with a tool call") as err:
        render_chat_template(TEMPLATE, msgs)
    assert err.value.status_code == 400
