"""Shared data and helpers for the tool-call and reasoning parser tests: tool schemas, model outputs, random
re-chunking and the collection of streamed deltas."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

TC, ETC = "<minimax:tool_call>", "</minimax:tool_call>"


def fn(name: str, properties: dict | None = None, **extra) -> dict:
    params = {"type": "object", "properties": properties or {}}
    return {"type": "function", "function": {"name": name, "description": f"{name} tool", "parameters": params,
                                             **extra}}


TOOLS = [
    fn("get_weather", {"location": {"type": "string", "description": "City name"},
                       "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                       "days": {"type": "integer"}}),
    fn("search_web", {"query_tag": {"type": "array", "items": {"type": "string"}},
                      "query_list": {"type": "array", "items": {"type": "string"}}}),
    fn("get_time"),                                         # no parameters
    fn("set_config", {
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "enabled": {"type": "boolean"},
        "options": {"type": "object"},
        "tags": {"type": "array"},
        "mode": {"enum": ["fast", "slow"]},
        "level": {"enum": [1, 2, 3]},
        "flag": {"enum": [True, False]},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "id_or_name": {"type": ["integer", "string"]},
        "nested": {"oneOf": [{"allOf": [{"type": "number"}]}, {"type": "boolean"}]},
        "payload": {"anyOf": [{"type": "object"}, {"type": "array"}, {"type": "string"}]},
    }),
    fn("翻译", {"文本": {"type": "string"}, "目标语言": {"type": "string"}}),
    fn("write_file", {"path": {"type": "string"}, "content": {"type": "string"}}),
]


def invoke(name: str, params: list[tuple[str, str]] | None = None, quote: str = '"') -> str:
    body = "".join(f'<parameter name="{k}">{v}</parameter>\n' for k, v in (params or []))
    return f"<invoke name={quote}{name}{quote}>\n{body}</invoke>\n"


def block(*invokes: str) -> str:
    return TC + "\n" + "".join(invokes) + ETC


def args(**kw) -> str:
    return json.dumps(kw, ensure_ascii=False)


@dataclass
class ToolCase:
    id: str
    text: str
    content: str | None
    calls: list[tuple[str, str]]          # (name, arguments JSON text), exact
    tools: list | None = field(default_factory=lambda: TOOLS)

    @property
    def tools_called(self) -> bool:
        return bool(self.calls)


SPEC_EXAMPLE = (
    TC + "\n"
    '<invoke name="search_web">\n'
    '<parameter name="query_tag">["technology", "events"]</parameter>\n'
    '<parameter name="query_list">["\\"OpenAI\\" \\"latest\\" \\"release\\""]</parameter>\n'
    "</invoke>\n"
    '<invoke name="search_web">\n'
    '<parameter name="query_tag">["AI"]</parameter>\n'
    '<parameter name="query_list">["GPU prices"]</parameter>\n'
    "</invoke>\n" + ETC
)

CODE = 'def f(x):\n    if x < 3 and x > 1:\n        return "<div>"\n    return None'

TOOL_CASES = [
    ToolCase("plain_text", "Hello! How can I help you today?", "Hello! How can I help you today?", []),
    ToolCase("empty", "", "", []),
    ToolCase("angle_brackets_in_text", "a < b and c > d, <b>bold</b> <minimax:tools> <minimax:tool_cal",
             "a < b and c > d, <b>bold</b> <minimax:tools> <minimax:tool_cal", []),
    ToolCase("spec_example_two_invokes", SPEC_EXAMPLE, None, [
        ("search_web", args(query_tag=["technology", "events"], query_list=['"OpenAI" "latest" "release"'])),
        ("search_web", args(query_tag=["AI"], query_list=["GPU prices"]))]),
    ToolCase("content_before_block",
             "Let me check the weather.\n\n" + block(invoke("get_weather", [("location", "Paris"), ("unit", "celsius"),
                                                                             ("days", "1")])),
             "Let me check the weather.\n\n", [("get_weather", args(location="Paris", unit="celsius", days=1))]),
    ToolCase("template_rendering_form",        # as rendered by the chat template (§5): leading \n
             "\n" + block(invoke("get_weather", [("location", "Paris")])),
             "\n", [("get_weather", args(location="Paris"))]),
    ToolCase("several_blocks_text_between_and_after",
             "Two lookups." + block(invoke("get_weather", [("location", "Paris")])) + "\nand then\n"
             + block(invoke("get_weather", [("location", "Rome")]), invoke("get_time")) + "\n\n  trailing words",
             "Two lookups.", [("get_weather", args(location="Paris")), ("get_weather", args(location="Rome")),
                              ("get_time", "{}")]),
    ToolCase("whitespace_after_block", block(invoke("get_time")) + "\n\n \n", None, [("get_time", "{}")]),
    ToolCase("zero_params", block(invoke("get_time")), None, [("get_time", "{}")]),
    ToolCase("zero_params_one_line", TC + '<invoke name="get_time"></invoke>' + ETC, None, [("get_time", "{}")]),
    ToolCase("single_quoted_and_bare_names",
             block(invoke("get_weather", [("location", "Oslo")], quote="'"),
                   "<invoke name=get_time>\n</invoke>\n",
                   "<invoke name=\" get_weather \">\n<parameter name='days'>3</parameter>\n"
                   "<parameter name=unit>fahrenheit</parameter>\n</invoke>\n"),
             None, [("get_weather", args(location="Oslo")), ("get_time", "{}"),
                    ("get_weather", args(days=3, unit="fahrenheit"))]),
    ToolCase("chinese_values_and_names",
             "我来帮你翻译。" + block(invoke("翻译", [("文本", "今天天气很好，我们去公园散步吧。"), ("目标语言", "英语")]),
                                   invoke("get_weather", [("location", "北京"), ("days", "2")])),
             "我来帮你翻译。", [("翻译", args(文本="今天天气很好，我们去公园散步吧。", 目标语言="英语")),
                          ("get_weather", args(location="北京", days=2))]),
    ToolCase("type_conversion",
             block(invoke("set_config", [
                 ("count", "42"), ("ratio", "5.0"), ("enabled", "True"), ("options", '{"a": [1, 2], "b": "中"}'),
                 ("tags", '["x", 1, null]'), ("mode", "fast"), ("level", "2"), ("flag", "false"),
                 ("note", "None of the above"), ("limit", "null"), ("id_or_name", "abc"), ("nested", "2.5"),
                 ("payload", "[1, 2]")])),
             None, [("set_config", args(count=42, ratio=5, enabled=True, options={"a": [1, 2], "b": "中"},
                                        tags=["x", 1, None], mode="fast", level=2, flag=False,
                                        note="None of the above", limit=None, id_or_name="abc", nested=2.5,
                                        payload=[1, 2]))]),
    ToolCase("null_literals",
             block(invoke("set_config", [("note", "null"), ("count", "NONE"), ("mode", "nil"), ("ratio", "Nil")])),
             None, [("set_config", args(note=None, count=None, mode=None, ratio=None))]),
    ToolCase("anyof_nullable_string_keeps_text",       # vllm PR #32342
             block(invoke("set_config", [("note", "hello world"), ("limit", "7"), ("payload", "not json")])),
             None, [("set_config", args(note="hello world", limit=7, payload="not json"))]),
    ToolCase("failed_conversions_fall_back",
             block(invoke("set_config", [("count", "many"), ("ratio", "inf"), ("enabled", "maybe"),
                                          ("options", "[1]"), ("tags", '{"a": 1}'), ("level", "1.5")])),
             None, [("set_config", args(count="many", ratio="inf", enabled="maybe", options=[1], tags={"a": 1},
                                        level=1.5))]),
    ToolCase("params_missing_from_schema_are_strings",
             block(invoke("get_weather", [("location", "Paris"), ("extra", "12"), ("flags", "[1, 2]")])),
             None, [("get_weather", args(location="Paris", extra="12", flags="[1, 2]"))]),
    ToolCase("no_tools_given_any_name_strings", "ok" + block(invoke("anything", [("n", "5"), ("b", "true"),
                                                                              ("z", "null")])),
             "ok", [("anything", args(n="5", b="true", z=None))], tools=None),
    ToolCase("multiline_code_value",
             block(invoke("write_file", [("path", "/tmp/a.py"), ("content", "\n" + CODE + "\n")])),
             None, [("write_file", args(path="/tmp/a.py", content=CODE))]),
    ToolCase("value_whitespace_stripped",
             block(invoke("get_weather", [("location", "  \n Paris \n\n "), ("days", " 3 ")])),
             None, [("get_weather", args(location="Paris", days=3))]),
    ToolCase("string_value_that_looks_like_json_stays_raw",
             block(invoke("get_weather", [("location", '"Paris"'), ("unit", "{}")])),
             None, [("get_weather", args(location='"Paris"', unit="{}"))]),
    ToolCase("unknown_name_only_is_text",            # vllm PR #37790
             "Sure." + block(invoke("get_wether", [("location", "Paris")])) + " done",
             "Sure." + block(invoke("get_wether", [("location", "Paris")])) + " done", []),
    ToolCase("unknown_then_known",
             "Hi" + block(invoke("hallucinated", [("x", "1")]), invoke("get_time")),
             "Hi", [("get_time", "{}")]),
    ToolCase("unknown_block_then_known_block",
             "A" + block(invoke("nope")) + "B" + block(invoke("get_time")) + "C",
             "A" + block(invoke("nope")) + "B", [("get_time", "{}")]),
    ToolCase("empty_block_is_text", "x" + TC + ETC + "y", "x" + TC + ETC + "y", []),
    ToolCase("block_without_invoke_is_text", "x" + TC + "\nno call here\n" + ETC, "x" + TC + "\nno call here\n" + ETC,
             []),
    ToolCase("malformed_name_is_text", TC + "<invoke name=\n</invoke>\n" + ETC, TC + "<invoke name=\n</invoke>\n" + ETC,
             []),
    ToolCase("name_without_gt_is_text", TC + '<invoke name="get_time"</invoke>' + ETC,
             TC + '<invoke name="get_time"</invoke>' + ETC, []),
    ToolCase("duplicate_param_first_wins",
             block(invoke("get_weather", [("location", "Paris"), ("location", "Rome"), ("days", "1")])),
             None, [("get_weather", args(location="Paris", days=1))]),
    ToolCase("same_param_name_in_next_invoke",      # sglang#23071: must not overwrite the previous invoke
             block(invoke("get_weather", [("location", "Paris")]), invoke("get_weather", [("location", "Rome")])),
             None, [("get_weather", args(location="Paris")), ("get_weather", args(location="Rome"))]),
    ToolCase("invoke_closed_by_block_end",
             TC + '\n<invoke name="get_weather">\n<parameter name="location">Paris</parameter>\n' + ETC,
             None, [("get_weather", args(location="Paris"))]),
    ToolCase("unclosed_parameter_ignored",
             block('<invoke name="get_weather">\n<parameter name="days">2</parameter>\n'
                   '<parameter name="location">Par\n</invoke>\n'),
             None, [("get_weather", args(days=2))]),
    ToolCase("parameter_without_gt_ignored",
             block('<invoke name="get_weather">\n<parameter name="days"</parameter>\n'
                   '<parameter name="location">Paris</parameter>\n</invoke>\n'),
             None, [("get_weather", args(location="Paris"))]),
    ToolCase("nested_start_tag_inside_block",
             TC + "\n" + TC + "\n" + invoke("get_time") + ETC, None, [("get_time", "{}")]),
    ToolCase("truncated_block_no_name_is_text", "Checking." + TC + '\n<invoke name="get_wea',
             "Checking." + TC + '\n<invoke name="get_wea', []),
    ToolCase("truncated_block_after_complete_invoke",
             "c" + TC + "\n" + invoke("get_time") + '<invoke name="get_weather">\n<parameter name="loca',
             "c", [("get_time", "{}")]),     # streams one extra, unfinished call (see test)
    ToolCase("truncated_inside_only_invoke",
             "c" + TC + '\n<invoke name="get_weather">\n<parameter name="location">Paris</parameter>\n<para',
             "c", []),                       # never a half call; streams an unfinished one
    ToolCase("m1_style_tool_calls_is_text",         # MiniMax-M2#14: M1 format is not M2's
             '<tool_calls>\n{"name": "get_time", "arguments": {}}\n</tool_calls>',
             '<tool_calls>\n{"name": "get_time", "arguments": {}}\n</tool_calls>', []),
]

# Cases that end inside a streamed call: streaming sends one more, unfinished call than extract() returns.
TRUNCATED_CALL_CASES = {"truncated_block_after_complete_invoke", "truncated_inside_only_invoke"}


# ---- chunking -----------------------------------------------------------------------------------------------
def random_chunks(text: str, rng: random.Random) -> list[str]:
    """`text` split at random points: chunk sizes from 1 character up to the whole text."""
    if not text:
        return [""]
    top = rng.choice([1, 2, 3, 5, 8, 13, 40, len(text)])
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, top)
        out.append(text[i:i + n])
        i += n
    return out


def chunkings(text: str, seeds=(0, 1, 2), per_seed: int = 20):
    """Whole text, one character at a time, then `per_seed` random splits for each seed (>= 60 in all)."""
    yield [text]
    yield list(text) or [""]
    for seed in seeds:
        rng = random.Random(f"{seed}:{len(text)}:{text[:32]}")
        for _ in range(per_seed):
            yield random_chunks(text, rng)


# ---- collecting streamed deltas -------------------------------------------------------------------------------
@dataclass
class Streamed:
    content: str = ""
    reasoning: str = ""
    calls: list[dict] = field(default_factory=list)     # per index: {"id", "name", "arguments"}
    content_after_call: bool = False

    def add(self, msg) -> None:
        if msg is None:
            return
        assert msg.content or msg.reasoning or msg.tool_calls, "parsers return None, not an empty DeltaMessage"
        if msg.reasoning:
            assert not self.content and not self.calls, "reasoning after content"
            self.reasoning += msg.reasoning
        if msg.content:
            if self.calls:
                self.content_after_call = True
            self.content += msg.content
        seen = set()
        for piece in msg.tool_calls:
            assert piece.index not in seen, "one entry per index in a delta"
            seen.add(piece.index)
            if piece.index == len(self.calls):          # a new call: the header comes first
                assert piece.id and piece.id.startswith("call_") and len(piece.id) == 29, piece
                assert piece.name, "header without a name (sglang#23071)"
                assert piece.arguments is not None
                self.calls.append({"id": piece.id, "name": piece.name, "arguments": piece.arguments})
            else:
                assert piece.index == len(self.calls) - 1, "arguments only for the current call"
                assert piece.id is None and piece.name is None, "second header for an index (sglang#23071)"
                assert piece.arguments, "empty argument delta"
                self.calls[piece.index]["arguments"] += piece.arguments


def run_stream(parser, chunks) -> Streamed:
    out = Streamed()
    for chunk in chunks:
        out.add(parser.stream(chunk))
    out.add(parser.finish())
    return out
