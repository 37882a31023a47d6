"""The `minimax_m2` tool-call parser (spec minimax-m2.md §6, regressions of §9).

Streaming invariant checked for every case under random re-chunking: concatenated content == extract().content
("" for None); per index the concatenated arguments == the extracted arguments string, same names and count;
except for outputs that end inside a streamed call, which stream exactly one more, unfinished, last call.
"""
import json
import random
import re

import pytest

from m2serve.parsers import (
    MiniMaxM2ToolParser,
    TOOL_PARSERS,
    get_tool_parser,
)
from m2serve.parsers.schema import convert_value, schema_types
from m2serve.parsers.types import DeltaMessage
from tests.unit.parser_cases import (
    ETC,
    TC,
    TOOL_CASES,
    TOOLS,
    TRUNCATED_CALL_CASES,
    Streamed,
    args,
    block,
    chunkings,
    invoke,
    random_chunks,
    run_stream,
)

CASES = {c.id: c for c in TOOL_CASES}


def check_invariant(text, tools, chunks, expected=None):
    """Stream `chunks` and compare with extract(text); returns the Streamed result."""
    extracted = (expected if expected is not None else MiniMaxM2ToolParser(tools).extract(text))
    parser = MiniMaxM2ToolParser(tools)
    got = run_stream(parser, chunks)
    assert not got.content_after_call, chunks
    assert got.content == (extracted.content or ""), chunks
    want = [(c.name, c.arguments) for c in extracted.tool_calls]
    streamed = [(c["name"], c["arguments"]) for c in got.calls]
    if parser.in_truncated_call:
        assert streamed[:-1] == want, chunks
        with pytest.raises(ValueError):
            json.loads(streamed[-1][1])
    else:
        assert streamed == want, chunks
        assert parser.tools_called == extracted.tools_called
    # bookkeeping (vllm#30554): what the parser says it streamed == what the client assembled
    assert [(c.name, c.arguments) for c in parser.streamed_tool_calls] == streamed
    assert [c.id for c in parser.streamed_tool_calls] == [c["id"] for c in got.calls]
    return got


# ---- non-streaming ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", TOOL_CASES, ids=lambda c: c.id)
def test_extract(case):
    result = MiniMaxM2ToolParser(case.tools).extract(case.text)
    assert result.content == case.content
    assert [(c.name, c.arguments) for c in result.tool_calls] == case.calls
    assert result.tools_called == case.tools_called
    for call in result.tool_calls:
        assert re.fullmatch(r"call_[0-9a-f]{24}", call.id)
        assert isinstance(json.loads(call.arguments), dict)
    assert len({c.id for c in result.tool_calls}) == len(result.tool_calls)


def test_no_tool_call_content_is_whole_text():
    text = "Plain answer, no tools.\n\n"
    result = MiniMaxM2ToolParser(TOOLS).extract(text)
    assert (result.tools_called, result.tool_calls, result.content) == (False, [], text)


def test_arguments_match_template_rendering_and_order():
    """arguments = json.dumps(dict, ensure_ascii=False) in order of appearance: what the chat template renders
    back (tojson with the default separators)."""
    text = block(invoke("get_weather", [("days", "3"), ("location", "Zürich")]))
    (call,) = MiniMaxM2ToolParser(TOOLS).extract(text).tool_calls
    assert call.arguments == '{"days": 3, "location": "Zürich"}'
    assert list(json.loads(call.arguments)) == ["days", "location"]


def test_unknown_name_tools_with_empty_list_accepts_any_name():
    """tools=[] behaves like no tools: names cannot be validated, so every name is accepted."""
    text = block(invoke("whatever", [("a", "1")]))
    assert [c.name for c in MiniMaxM2ToolParser([]).extract(text).tool_calls] == ["whatever"]


def test_tools_accepts_bare_function_dicts_and_skips_junk():
    tools = [{"name": "f", "parameters": {"properties": {"n": {"type": "integer"}}}}, "junk", {"type": "function"}]
    (call,) = MiniMaxM2ToolParser(tools).extract(block(invoke("f", [("n", "4")]))).tool_calls
    assert call.arguments == '{"n": 4}'


# ---- schema conversion -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("schema,types", [
    (None, ["string"]),
    ({}, ["string"]),
    ({"type": "integer"}, ["integer"]),
    ({"type": ["number", "null"]}, ["number", "null"]),
    ({"enum": [None, True, 1, 1.5, "a", [1], {"a": 1}]}, ["null", "boolean", "integer", "number", "string", "array",
                                                         "object"]),
    ({"anyOf": [{"type": "string"}, {"type": "null"}]}, ["string", "null"]),
    ({"oneOf": [{"allOf": [{"type": "object"}]}, {"enum": ["x"]}]}, ["object", "string"]),
    ({"description": "no type"}, ["string"]),
])
def test_schema_types(schema, types):
    assert schema_types(schema) == types


@pytest.mark.parametrize("text,schema,value", [
    ("5", {"type": "integer"}, 5),
    ("-12", {"type": "integer"}, -12),
    ("5.0", {"type": "number"}, 5),
    ("1e3", {"type": "number"}, 1000),
    ("3.25", {"type": "number"}, 3.25),
    ("123456789012345678901234567890", {"type": "number"}, 123456789012345678901234567890),
    ("nan", {"type": "number"}, "nan"),
    ("1_000", {"type": "integer"}, "1_000"),
    ("٣", {"type": "integer"}, "٣"),              # non-ASCII digit: not a JSON number
    ("yes", {"type": "boolean"}, True),
    ("ON", {"type": "boolean"}, True),
    ("0", {"type": "boolean"}, False),
    ("off", {"type": "boolean"}, False),
    ("1", {"type": ["integer", "boolean"]}, 1),      # integer before boolean
    ("true", {"type": ["integer", "boolean"]}, True),
    ("NaN", {"type": "array"}, "NaN"),
    ('{"k": [1, {"z": null}]}', {"type": "object"}, {"k": [1, {"z": None}]}),
    ("[]", {"type": "array"}, []),
    ("null", {"type": "string"}, None),
    ("Null", {"anyOf": [{"type": "string"}, {"type": "null"}]}, None),
    ("nullable", {"anyOf": [{"type": "string"}, {"type": "null"}]}, "nullable"),
    ("", {"anyOf": [{"type": "string"}, {"type": "null"}]}, ""),
    ("42", {"type": "null"}, 42),                    # nothing matched: json.loads
    ("x y", {"type": "null"}, "x y"),                # ... else the raw text
    ("42", {"type": "string"}, "42"),
    ("42", None, "42"),
    ("fahrenheit", {"enum": ["celsius", "fahrenheit"]}, "fahrenheit"),
    ("3", {"enum": [1, 2, 3]}, 3),
    ("中文", {"type": "integer"}, "中文"),
])
def test_convert_value(text, schema, value):
    got = convert_value(text, schema)
    assert got == value and type(got) is type(value)


# ---- streaming ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", TOOL_CASES, ids=lambda c: c.id)
def test_stream_random_rechunking(case):
    """Every case, >= 60 chunkings (whole, per character, 3 seeds x 20 random splits)."""
    expected = MiniMaxM2ToolParser(case.tools).extract(case.text)
    n = 0
    for chunks in chunkings(case.text):
        assert "".join(chunks) == case.text
        got = check_invariant(case.text, case.tools, chunks, expected)
        n += 1
    assert n >= 50
    extra = 1 if case.id in TRUNCATED_CALL_CASES else 0
    assert len(got.calls) == len(case.calls) + extra


def test_stream_content_then_header_then_argument_per_parameter():
    parser = MiniMaxM2ToolParser(TOOLS)
    steps = [
        ("I'll check.", DeltaMessage(content="I'll check.")),
        ("\n\n", DeltaMessage(content="\n\n")),
        (TC, None),
        ('\n<invoke name="get_', None),
        ('weather">', "header"),
        ('\n<parameter name="location">Par', None),
        ("is</parameter>", '{"location": "Paris"'),
        ('\n<parameter name="days">2</parameter>\n', ', "days": 2'),
        ("</invoke>", "}"),
        ("\n" + ETC, None),
        ("\n", None),
    ]
    for delta, want in steps:
        msg = parser.stream(delta)
        if want is None:
            assert msg is None, (delta, msg)
        elif want == "header":
            (piece,) = msg.tool_calls
            assert (piece.index, piece.name, piece.arguments) == (0, "get_weather", "")
            assert re.fullmatch(r"call_[0-9a-f]{24}", piece.id) and msg.content is None
        elif isinstance(want, DeltaMessage):
            assert msg == want
        else:
            (piece,) = msg.tool_calls
            assert (piece.index, piece.id, piece.name, piece.arguments) == (0, None, None, want)
    assert parser.finish() is None
    assert parser.tools_called


def test_stream_held_back_partial_start_tag():
    """A delta ending in `<minimax:to` is held back, then released as content if it is not the tag (and at
    finish); never flushed as text when it does become the tag (sglang#23071)."""
    parser = MiniMaxM2ToolParser(TOOLS)
    assert parser.stream("Look: <minimax:to") == DeltaMessage(content="Look: ")
    assert parser.stream("ol_call>") is None
    assert parser.stream('<invoke name="get_time"></invoke>').tool_calls[0].name == "get_time"

    parser = MiniMaxM2ToolParser(TOOLS)
    assert parser.stream("a <minimax:to") == DeltaMessage(content="a ")
    assert parser.stream("p") == DeltaMessage(content="<minimax:top")
    assert parser.stream("<") is None
    assert parser.finish() == DeltaMessage(content="<")
    assert not parser.tools_called


def test_stream_finish_flushes_block_without_valid_call():
    parser = MiniMaxM2ToolParser(TOOLS)
    text = "x" + TC + '\n<invoke name="nope">\n'
    assert parser.stream(text) == DeltaMessage(content="x")
    assert parser.finish() == DeltaMessage(content=text[1:])
    assert not parser.tools_called


def test_stream_several_calls_in_one_delta_merged_per_index():
    text = "Hi" + block(invoke("get_weather", [("location", "Paris"), ("days", "2")]), invoke("get_time"))
    parser = MiniMaxM2ToolParser(TOOLS)
    msg = parser.stream(text)
    assert msg.content == "Hi"
    assert [(p.index, p.name, p.arguments) for p in msg.tool_calls] == [
        (0, "get_weather", '{"location": "Paris", "days": 2}'), (1, "get_time", "{}")]
    assert all(p.id for p in msg.tool_calls)


def test_truncated_call_streams_unfinished_and_extract_never_returns_half_call():
    text = CASES["truncated_inside_only_invoke"].text
    parser = MiniMaxM2ToolParser(TOOLS)
    got = run_stream(parser, [text])
    assert parser.in_truncated_call and parser.tools_called
    assert [(c["name"], c["arguments"]) for c in got.calls] == [("get_weather", '{"location": "Paris"')]
    assert got.content == "c"
    result = MiniMaxM2ToolParser(TOOLS).extract(text)
    assert (result.tools_called, result.tool_calls, result.content) == (False, [], "c")


def test_parser_instances_do_not_share_state():
    a, b = MiniMaxM2ToolParser(TOOLS), MiniMaxM2ToolParser(TOOLS)
    a.stream(TC + '<invoke name="get_time">')
    assert b.stream("hello") == DeltaMessage(content="hello")
    assert a.tools_called and not b.tools_called


def test_registry():
    assert TOOL_PARSERS == {"minimax_m2": MiniMaxM2ToolParser}
    assert get_tool_parser("minimax_m2") is MiniMaxM2ToolParser
    with pytest.raises(ValueError, match=r"'hermes'.*minimax_m2"):
        get_tool_parser("hermes")


# ---- fuzzing: random texts from grammar pieces, including malformed and truncated ones ---------------------
_PIECES = [
    "Let me think. ", "中文内容，", "a < b > c ", "\n", "\n\n", " ", "<", ">", "</", "<minimax:to", TC, ETC,
    '<invoke name="get_weather">', '<invoke name="get_time">', "<invoke name='翻译'>", '<invoke name="bogus">',
    "<invoke name=", "</invoke>", '<parameter name="location">', '<parameter name="days">', '<parameter name="文本">',
    "<parameter name=", "</parameter>", "Paris", "3", "2.5", "null", '["a", 1]', '{"k": "v"}', "true", "北京",
    "</think>", "<invoke", "<parameter", "name=", '"', ">\n",
]


def _well_formed(rng):
    calls = []
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(["get_weather", "get_time", "翻译", "set_config", "bogus"])
        params = [(rng.choice(["location", "days", "文本", "count", "ratio", "tags", "note"]),
                   rng.choice(["Paris", "7", "1.5", "null", "[1, 2]", "北京 <b>", "", " x "]))
                  for _ in range(rng.randint(0, 3))]
        calls.append(invoke(name, params, quote=rng.choice(['"', "'", ""])))
    return block(*calls)


def _fuzz_text(rng):
    parts = []
    for _ in range(rng.randint(1, 6)):
        parts.append(_well_formed(rng) if rng.random() < 0.35 else rng.choice(_PIECES))
    text = "".join(parts)
    if rng.random() < 0.4:
        text = text[:rng.randint(0, len(text))]      # cut anywhere, as max_tokens would
    return text


def test_fuzz_stream_equals_extract():
    rng = random.Random(1234)
    for _ in range(250):
        text = _fuzz_text(rng)
        tools = TOOLS if rng.random() < 0.85 else None
        expected = MiniMaxM2ToolParser(tools).extract(text)
        for chunks in [[text], list(text) or [""]] + [random_chunks(text, rng) for _ in range(4)]:
            check_invariant(text, tools, chunks, expected)


def test_long_value_streamed_in_small_deltas_is_fast():
    """A 200 KB parameter value in 3-character deltas: the search for `</parameter>` resumes where it stopped."""
    import time
    value = ("x = 1\n" * 40000)[:200000]
    text = block(invoke("write_file", [("path", "a.txt"), ("content", value)]))
    parser = MiniMaxM2ToolParser(TOOLS)
    t0 = time.perf_counter()
    got = run_stream(parser, [text[i:i + 3] for i in range(0, len(text), 3)])
    assert time.perf_counter() - t0 < 2.0
    assert json.loads(got.calls[0]["arguments"]) == {"path": "a.txt", "content": value.strip()}


# ---- regressions of spec §9 ------------------------------------------------------------------------------------
def test_vllm_39649_arguments_stream_per_parameter_before_invoke_end():
    """vllm#39649 (also #40779, #36073, #36116; PR #45701): arguments were buffered until `</invoke>`."""
    parser = MiniMaxM2ToolParser(TOOLS)
    parser.stream(TC + '\n<invoke name="write_file">\n<parameter name="path">a.py</parameter>\n')
    assert parser.streamed_tool_calls[0].arguments == '{"path": "a.py"'
    msg = parser.stream('<parameter name="content">print(1)</parameter>\n')
    assert msg.tool_calls[0].arguments == ', "content": "print(1)"'


@pytest.mark.parametrize("case_id", ["spec_example_two_invokes", "type_conversion",
                                     "several_blocks_text_between_and_after"])
def test_vllm_pr_35895_whole_block_or_several_parameters_in_one_delta(case_id):
    """vllm PR #35895: parameters silently dropped when several parameters / closing tags came in one delta."""
    case = CASES[case_id]
    for size in (len(case.text), 64, 37, 200):
        chunks = [case.text[i:i + size] for i in range(0, len(case.text), size)]
        got = check_invariant(case.text, case.tools, chunks)
        assert [(c["name"], c["arguments"]) for c in got.calls] == case.calls


def test_vllm_30554_streamed_arguments_bookkeeping_and_finish():
    """vllm#30554 (PR #30555): IndexError from unmaintained streamed-argument bookkeeping broke the finish step.
    finish() after calls is safe, and the per-call record matches the deltas."""
    parser = MiniMaxM2ToolParser(TOOLS)
    text = CASES["several_blocks_text_between_and_after"].text
    got = run_stream(parser, random_chunks(text, random.Random(7)))
    assert parser.finish() is None                   # a second finish is harmless
    assert parser.stream("") is None                 # EOS with empty text
    assert [(c.name, c.arguments) for c in parser.streamed_tool_calls] == \
        [(c["name"], c["arguments"]) for c in got.calls]
    assert parser.tools_called


def test_vllm_pr_37790_hallucinated_names_are_not_tool_calls():
    """vllm PR #37790 (+ vLLM-Kunlun #288): names not in request.tools were returned as tool calls."""
    for case_id in ("unknown_name_only_is_text", "unknown_then_known", "unknown_block_then_known_block"):
        case = CASES[case_id]
        result = MiniMaxM2ToolParser(TOOLS).extract(case.text)
        assert all(c.name in {"get_weather", "get_time"} for c in result.tool_calls)
        got = run_stream(MiniMaxM2ToolParser(TOOLS), list(case.text))
        assert [c["name"] for c in got.calls] == [c[0] for c in case.calls]


def test_vllm_pr_32342_anyof_nullable_string_is_not_collapsed_to_none():
    """vllm PR #32342: `anyOf: [string, null]` turned real strings into None; only null/none/nil do."""
    schema = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert convert_value("hello", schema) == "hello"
    assert convert_value("None", schema) is None
    case = CASES["anyof_nullable_string_keeps_text"]
    assert MiniMaxM2ToolParser(TOOLS).extract(case.text).tool_calls[0].arguments == case.calls[0][1]


def test_sglang_23071_malformed_streaming_tool_calls():
    """sglang#23071 (PRs #24995, #36691): second entry with name null, duplicated arguments, partial start tag
    flushed as text, zero-argument invoke streamed "" instead of {}, later invoke's same-named parameter
    overwriting the current one. (`Streamed.add` asserts the delta structure for every stream in this file.)"""
    text = ("Answer: " + block(invoke("get_time"), invoke("get_weather", [("location", "Paris")]),
                               invoke("get_weather", [("location", "Rome"), ("days", "2")])))
    for chunks in chunkings(text, seeds=(5,), per_seed=30):
        got = run_stream(MiniMaxM2ToolParser(TOOLS), chunks)
        assert got.content == "Answer: "                         # no `<minimax:` fragment in content
        assert [(c["name"], c["arguments"]) for c in got.calls] == [
            ("get_time", "{}"), ("get_weather", '{"location": "Paris"}'),
            ("get_weather", '{"location": "Rome", "days": 2}')]


def test_mlx_lm_pr_1171_all_parallel_invokes_and_blocks_parsed():
    """ml-explore/mlx-lm PR #1171: only the first of several parallel invokes was parsed."""
    text = (block(*[invoke("get_weather", [("location", f"city{i}")]) for i in range(5)]) + "\n"
            + block(invoke("get_time"), invoke("get_time")))
    result = MiniMaxM2ToolParser(TOOLS).extract(text)
    assert [c.name for c in result.tool_calls] == ["get_weather"] * 5 + ["get_time"] * 2
    assert [json.loads(c.arguments).get("location") for c in result.tool_calls[:5]] == [f"city{i}" for i in range(5)]
    got = run_stream(MiniMaxM2ToolParser(TOOLS), list(text))
    assert len(got.calls) == 7


def test_minimax_m2_14_m1_style_tool_calls_left_as_text():
    """MiniMax-AI/MiniMax-M2#14: with the wrong (M1) template the model wrote `<tool_calls>`; that output is not
    an M2 tool call and must stay visible as content rather than vanish."""
    case = CASES["m1_style_tool_calls_is_text"]
    result = MiniMaxM2ToolParser(TOOLS).extract(case.text)
    assert not result.tools_called and result.content == case.text
    assert run_stream(MiniMaxM2ToolParser(TOOLS), list(case.text)).content == case.text


def test_vllm_pr_42307_tags_survive_detokenization(tmp_path):
    """vllm PR #42307: with skip_special_tokens=True the `<minimax:tool_call>` token vanished and no call was
    parsed. m2serve's detokenizer keeps the think and tool-call tags even then; the parsers get them as text."""
    try:
        from m2serve.frontend.detokenizer import IncrementalDetokenizer
        from tests.helpers.tiny_tokenizer import build_tiny_tokenizer
        tok = build_tiny_tokenizer(tmp_path)
    except Exception as e:         # pragma: no cover - frontend not importable in this checkout
        pytest.skip(f"tiny tokenizer unavailable: {e}")
    from m2serve.parsers import OutputParser, get_reasoning_parser

    output = ("The user wants the weather.\n</think>\n\n" + block(invoke("get_weather", [("location", "北京")]))
              + "[e~[")
    ids = tok.encode(output)
    assert tok.token_to_id(TC) in ids and tok.token_to_id(ETC) in ids
    prompt = tok.encode("]~!b[]~b]user\nhi[e~[\n]~b]ai\n<think>\n")
    detok = IncrementalDetokenizer(tok, prompt, skip_special_tokens=True)
    parser = OutputParser(get_reasoning_parser("minimax_m2")(), MiniMaxM2ToolParser(TOOLS))
    got = Streamed()
    for tid in ids:
        got.add(parser.stream(detok.add([tid])))
    got.add(parser.stream(detok.flush()))
    got.add(parser.finish())
    assert got.reasoning == "The user wants the weather.\n"
    assert got.content == "\n\n"
    assert [(c["name"], c["arguments"]) for c in got.calls] == [("get_weather", args(location="北京"))]
