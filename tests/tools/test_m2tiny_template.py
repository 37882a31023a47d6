"""models/m2-tiny/chat_template.jinja renders exactly MiniMax-M2's format.

Reference: shared/reference/minimax_m2_chat_template.jinja with its line 132 deleted (the comment that adds a
stray newline after tool calls, see shared/reference/README.md). Equal output whenever a system message is given;
without one the only difference is the default identity.
"""

from pathlib import Path

import jinja2
import pytest

from tools.m2tiny.common import jinja_env

ROOT = Path(__file__).resolve().parents[2]
OURS = ROOT / "models" / "m2-tiny" / "chat_template.jinja"
REFERENCE = ROOT / "tests" / "data" / "minimax_m2_chat_template.jinja"
M2_DEFAULT = "You are a helpful assistant."
M2_TINY_DEFAULT = "You are a helpful assistant. Your name is m2-tiny and is built by the m2serve project."


def _reference_source():
    for cand in (REFERENCE, ROOT.parent / "shared" / "reference" / "minimax_m2_chat_template.jinja"):
        if cand.exists():
            lines = cand.read_text(encoding="utf-8").split("\n")
            assert lines[131].strip().startswith("{# Fix by ochafik"), "reference line 132 moved"
            del lines[131]
            return "\n".join(lines)
    pytest.skip("shared/reference/minimax_m2_chat_template.jinja not available")


@pytest.fixture(scope="module")
def templates():
    env = jinja_env()
    return env.from_string(OURS.read_text(encoding="utf-8")), env.from_string(_reference_source())


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer"}},
        "required": ["location"]}}}
CN_WEATHER = {"type": "function", "function": {
    "name": "get_current_weather", "description": "获取指定城市的当前天气",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "城市名，例如北京"}},
                   "required": ["city"]}}}
TODO = {"type": "function", "function": {
    "name": "create_todo", "description": "Add a to-do.",
    "parameters": {"type": "object", "properties": {
        "task": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
        "done": {"type": "boolean"}, "weight": {"type": "number"}, "meta": {"type": "object"}},
        "required": ["task"]}}}


def call(name, args):
    return {"type": "function", "function": {"name": name, "arguments": args}}


SYS = {"role": "system", "content": "You are a helpful assistant."}
SPEC_51 = [
    SYS, {"role": "user", "content": "What's the weather in Paris? Use celsius."},
    {"role": "assistant", "content": "", "reasoning_content":
        "The user wants the weather in Paris in celsius. I should call get_weather.",
     "tool_calls": [call("get_weather", {"location": "Paris", "unit": "celsius", "days": 1})]},
    {"role": "tool", "content": '{"temperature": 18, "condition": "sunny"}'},
]

# (messages, tools, add_generation_prompt)
CASES = {
    "spec_5_1": (SPEC_51, [WEATHER], True),
    "plain_no_system": ([{"role": "user", "content": "Hello, who are you?"}], None, True),
    "tools_no_system": (SPEC_51[1:], [WEATHER], True),
    "parallel_calls_two_results": ([
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "a and b"},
        {"role": "assistant", "content": "", "tool_calls": [call("a", {"x": 1}), call("b", {"y": "s"})]},
        {"role": "tool", "content": "r1"},
        {"role": "tool", "content": [{"type": "text", "text": "r2"}]},
        {"role": "assistant", "content": "done", "reasoning_content": "both returned"},
    ], [WEATHER, TODO], False),
    "chinese_tools_reasoning": ([
        {"role": "system", "content": "你是一个乐于助人的助手。"}, {"role": "user", "content": "请查询上海的天气"},
        {"role": "assistant", "content": "", "reasoning_content": "用户想知道上海的天气，调用 get_current_weather。",
         "tool_calls": [call("get_current_weather", {"city": "上海"})]},
        {"role": "tool", "content": '{"city": "上海", "temperature": 22, "condition": "晴"}'},
        {"role": "assistant", "content": "上海现在晴，22°C。", "reasoning_content": "工具返回 22°C。"},
    ], [CN_WEATHER], False),
    "chinese_no_system": ([
        {"role": "user", "content": "你好，你是谁？"},
    ], None, True),
    "multi_turn_reasoning_dropped_before_last_user": ([
        SYS, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!", "reasoning_content": "old thoughts"},
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "content": "", "reasoning_content": "call it",
         "tool_calls": [call("get_weather", {"location": "Oslo"})]},
        {"role": "tool", "content": "5C"},
        {"role": "assistant", "content": "It is 5C.", "reasoning_content": "interleaved thinking kept"},
    ], [WEATHER], True),
    "list_system_and_user_content": ([
        {"role": "system", "content": [{"type": "text", "text": "Part one. "}, {"type": "text", "text": "Part two."}]},
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}]},
    ], None, True),
    "current_date_location": ([
        {"role": "system", "content": "Sys.", "current_date": "2025-06-01", "current_location": "Berlin"},
        {"role": "user", "content": "date?"},
    ], None, True),
    "content_plus_call_and_typed_args": ([
        SYS, {"role": "user", "content": "add it"},
        {"role": "assistant", "content": "Sure, adding it.", "reasoning_content": "typed args",
         "tool_calls": [call("create_todo", {"task": "买牛奶", "tags": ["home", "紧急"], "done": False,
                                             "weight": 2.5, "meta": {"k": [1, 2]}})]},
        {"role": "tool", "content": [{"output": "ok"}, "raw string"]},
    ], [TODO], True),
    "empty_reasoning_and_no_generation_prompt": ([
        SYS, {"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "reasoning_content": ""},
    ], None, False),
    "later_system_ignored": ([
        {"role": "user", "content": "u"}, {"role": "system", "content": "ignored"},
        {"role": "assistant", "content": "a"},
    ], None, True),
}


def has_system(messages):
    return bool(messages) and messages[0]["role"] == "system" and bool(messages[0]["content"])


def render(t, case, **extra):
    msgs, tools, gen = case
    return t.render(messages=msgs, tools=tools, add_generation_prompt=gen, **extra)


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(templates, name):
    ours_t, ref_t = templates
    case = CASES[name]
    ours, ref = render(ours_t, case), render(ref_t, case)
    if has_system(case[0]):
        assert ours == ref
    else:
        header = "]~!b[]~b]system\n"
        assert ref.startswith(header + M2_DEFAULT)
        assert ours == ref.replace(header + M2_DEFAULT, header + M2_TINY_DEFAULT, 1)
        assert ours != ref
        # With an explicit model_identity both templates agree exactly.
        assert render(ours_t, case, model_identity="X") == render(ref_t, case, model_identity="X")


def test_spec_5_1_exact_text(templates):
    ours = render(templates[0], CASES["spec_5_1"])
    assert len(ours) == 1236
    assert ours.endswith("</minimax:tool_call>[e~[\n]~b]tool\n<response>{\"temperature\": 18, \"condition\": \"sunny\"}"
                         "</response>[e~[\n]~b]ai\n<think>\n")
    assert "\n</think>\n\n\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n" in ours


def test_enough_cases():
    assert len(CASES) >= 8


def test_tool_without_call_raises(templates):
    msgs = [SYS, {"role": "user", "content": "u"}, {"role": "tool", "content": "r"}]
    for t in templates:
        with pytest.raises(jinja2.exceptions.TemplateError):
            t.render(messages=msgs, tools=None, add_generation_prompt=False)


def test_inline_think_split_like_spec(templates):
    """Known reference deviation (shared/reference/README.md): inline <think> is split by ours (spec section 5),
    kept raw by the Unsloth copy."""
    ours_t, ref_t = templates
    msgs = [SYS, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "<think>\nold thoughts\n</think>\n\nHello!"},
            {"role": "user", "content": "bye"}]
    ours = ours_t.render(messages=msgs, tools=None, add_generation_prompt=True)
    assert ours == ("]~!b[]~b]system\nYou are a helpful assistant.[e~[\n]~b]user\nhi[e~[\n]~b]ai\nHello![e~[\n"
                    "]~b]user\nbye[e~[\n]~b]ai\n<think>\n")
    assert "old thoughts" in ref_t.render(messages=msgs, tools=None, add_generation_prompt=True)
