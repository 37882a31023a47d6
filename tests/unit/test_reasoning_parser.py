"""The `minimax_m2` and `minimax_m2_append_think` reasoning parsers (spec minimax-m2.md §7, regressions of §9),
alone and followed by the tool parser (the server's order), under random re-chunking."""
import random

import pytest

from m2serve.parsers import (
    REASONING_PARSERS,
    MiniMaxM2AppendThinkReasoningParser,
    MiniMaxM2ReasoningParser,
    MiniMaxM2ToolParser,
    OutputParser,
    count_reasoning_tokens,
    get_reasoning_parser,
)
from m2serve.parsers.types import DeltaMessage
from tests.unit.parser_cases import (
    ETC,
    TC,
    TOOLS,
    Streamed,
    args,
    block,
    chunkings,
    invoke,
    random_chunks,
    run_stream,
)

CALL = block(invoke("get_weather", [("location", "Paris"), ("days", "2")]))

# (id, output, reasoning, content) for minimax_m2
SEPARATE_CASES = [
    ("prefilled_think", "The user greets me.\n</think>\n\nHello!", "The user greets me.\n", "\n\nHello!"),
    ("leading_think", "<think>\nreasoning here\n</think>\n\nanswer", "\nreasoning here\n", "\n\nanswer"),
    ("whitespace_then_think", "\n <think>r</think>c", "r", "c"),
    ("non_leading_think_is_text", "abc<think>def</think>x", "abc<think>def", "x"),
    ("no_end_truncated", "still thinking about it", "still thinking about it", None),
    ("empty", "", None, None),
    ("only_end", "</think>", None, None),
    ("empty_reasoning", "</think>\n\nanswer", None, "\n\nanswer"),
    ("empty_content", "reasoning</think>", "reasoning", None),
    ("second_end_removed", "reasoning</think>A</think>B", "reasoning", "AB"),
    ("many_ends_removed", "r</think></think>x</think></think>y</think>", "r", "xy"),
    ("end_tag_fragments", "r</thi</think>a</thin", "r</thi", "a</thin"),
    ("chinese", "用户在问天气。\n</think>\n\n今天北京晴，18°C。", "用户在问天气。\n", "\n\n今天北京晴，18°C。"),
    ("tool_call_after_end", "Need weather.\n</think>\n\n" + CALL, "Need weather.\n", "\n\n" + CALL),
    ("tool_call_escape_without_end", "Need weather." + CALL, "Need weather.", CALL),
    ("tool_call_escape_then_stray_end", "r" + CALL + "</think>\n", "r", CALL + "\n"),
    ("think_tags_only", "<think></think>", None, None),
    ("partial_think_only", "  <thi", "  <thi", None),
    ("whitespace_only", "\n\n", "\n\n", None),
]


@pytest.mark.parametrize("case", SEPARATE_CASES, ids=lambda c: c[0])
def test_minimax_m2_extract(case):
    _, text, reasoning, content = case
    assert MiniMaxM2ReasoningParser().extract(text) == (reasoning, content)


def check_reasoning_stream(parser_cls, text, chunks):
    reasoning, content = parser_cls().extract(text)
    parser = parser_cls()
    got = run_stream(parser, chunks)
    assert got.reasoning == (reasoning or ""), chunks
    assert got.content == (content or ""), chunks
    assert parser.reasoning_ended == ("</think>" in text or TC in text)
    return got


@pytest.mark.parametrize("case", SEPARATE_CASES, ids=lambda c: c[0])
def test_minimax_m2_stream_random_rechunking(case):
    n = 0
    for chunks in chunkings(case[1]):
        check_reasoning_stream(MiniMaxM2ReasoningParser, case[1], chunks)
        n += 1
    assert n >= 50


def test_minimax_m2_stream_token_deltas():
    """Token-sized deltas as the detokenizer sends them: the stream starts in reasoning; a delta that is exactly
    `</think>` emits nothing; afterwards everything is content."""
    parser = MiniMaxM2ReasoningParser()
    assert not parser.reasoning_ended
    assert parser.stream("The") == DeltaMessage(reasoning="The")
    assert parser.stream(" user\n") == DeltaMessage(reasoning=" user\n")
    assert parser.stream("</think>") is None
    assert parser.reasoning_ended
    assert parser.stream("\n\n") == DeltaMessage(content="\n\n")
    assert parser.stream("Hi") == DeltaMessage(content="Hi")
    assert parser.finish() is None


def test_minimax_m2_stream_delta_containing_end_is_split():
    parser = MiniMaxM2ReasoningParser()
    assert parser.stream("abc</think>\n\nxyz") == DeltaMessage(reasoning="abc", content="\n\nxyz")


def test_minimax_m2_empty_stream():
    parser = MiniMaxM2ReasoningParser()
    assert parser.stream("") is None
    assert parser.finish() is None
    assert not parser.reasoning_ended


def test_minimax_m2_partial_end_tag_held_then_released():
    parser = MiniMaxM2ReasoningParser()
    assert parser.stream("x </thi") == DeltaMessage(reasoning="x ")
    assert parser.stream("nk about it") == DeltaMessage(reasoning="</think about it")
    assert parser.stream("</") is None
    assert parser.finish() == DeltaMessage(reasoning="</")


# ---- append_think ------------------------------------------------------------------------------------------------
APPEND_CASES = [
    ("prefilled", "reasoning\n</think>\n\nHello!", "<think>reasoning\n</think>\n\nHello!"),
    ("with_tool_call", "r\n</think>\n\n" + CALL, "<think>r\n</think>\n\n" + CALL),
    ("truncated", "thinking...", "<think>thinking..."),
    ("already_has_think", "<think>r</think>a", "<think>r</think>a"),
    ("ws_then_think", "\n<think>r</think>a", "\n<think>r</think>a"),
    ("partial_think_prefix", " <thi", "<think> <thi"),
    ("chinese", "思考中。</think>答案", "<think>思考中。</think>答案"),
    ("empty", "", None),
]


@pytest.mark.parametrize("case", APPEND_CASES, ids=lambda c: c[0])
def test_append_think_extract_and_stream(case):
    _, text, content = case
    assert MiniMaxM2AppendThinkReasoningParser().extract(text) == (None, content)
    for chunks in chunkings(text):
        got = check_reasoning_stream(MiniMaxM2AppendThinkReasoningParser, text, chunks)
        assert got.reasoning == ""


def test_append_think_prefix_on_first_delta():
    parser = MiniMaxM2AppendThinkReasoningParser()
    assert parser.stream("The user") == DeltaMessage(content="<think>The user")
    assert parser.stream(" asks.\n") == DeltaMessage(content=" asks.\n")
    assert not parser.reasoning_ended
    assert parser.stream("</think>") == DeltaMessage(content="</think>")
    assert parser.reasoning_ended
    assert parser.finish() is None


# ---- is_reasoning_end / reasoning tokens -----------------------------------------------------------------------
PROMPT_AFTER_TOOL_ROUND = ("]~!b[]~b]system\nYou are a helpful assistant.[e~[\n]~b]user\nweather?[e~[\n]~b]ai\n"
                           "<think>\nI should call get_weather.\n</think>\n\n" + CALL + "[e~[\n]~b]tool\n"
                           "<response>sunny</response>[e~[\n]~b]ai\n<think>\n")


@pytest.mark.parametrize("cls", [MiniMaxM2ReasoningParser, MiniMaxM2AppendThinkReasoningParser])
@pytest.mark.parametrize("text,ended", [
    ("]~b]ai\n<think>\n", False),
    (PROMPT_AFTER_TOOL_ROUND, False),
    (PROMPT_AFTER_TOOL_ROUND + "more thoughts\n</think>\n\n", True),
    ("no tags at all", False),
    ("a</think>b<think>c", False),
    ("<think>a</think>b", True),
    ("", False),
])
def test_is_reasoning_end_text_and_ids(cls, text, ended):
    ids = {"<think>": 200050, "</think>": 200051}
    token_ids = []
    for piece in text.replace("</think>", "\x01").replace("<think>", "\x00"):
        token_ids.append({"\x00": 200050, "\x01": 200051}.get(piece, 7))
    assert cls().is_reasoning_end(text) is ended
    assert cls().is_reasoning_end(token_ids) is ended
    assert cls(think_start_id=1, think_end_id=2).is_reasoning_end(
        [{200050: 1, 200051: 2}.get(t, 7) for t in token_ids]) is ended
    assert ids  # the real ids are the defaults


def test_count_reasoning_tokens():
    assert count_reasoning_tokens([1, 2, 3, 200051, 4, 5]) == 3
    assert count_reasoning_tokens([1, 2, 200052, 9, 200053]) == 2       # <minimax:tool_call> without </think>
    assert count_reasoning_tokens([1, 2, 3]) == 3                       # truncated thinking
    assert count_reasoning_tokens([200051, 1]) == 0
    assert count_reasoning_tokens([]) == 0
    assert MiniMaxM2ReasoningParser(think_end_id=9).count_reasoning_tokens([1, 9, 2]) == 1


def test_registry():
    assert REASONING_PARSERS == {"minimax_m2": MiniMaxM2ReasoningParser,
                                 "minimax_m2_append_think": MiniMaxM2AppendThinkReasoningParser}
    assert get_reasoning_parser("minimax_m2_append_think") is MiniMaxM2AppendThinkReasoningParser
    with pytest.raises(ValueError, match=r"'deepseek_r1'.*minimax_m2, minimax_m2_append_think"):
        get_reasoning_parser("deepseek_r1")


# ---- pipeline: reasoning parser, then content into the tool parser --------------------------------------------
PIPELINE_OUTPUTS = [
    "I should check the weather.\n</think>\n\n" + CALL,
    "I should check.\n</think>\n\nSure, checking now." + CALL + "\n",
    "<think>\nM2.5 style.\n</think>\n\n" + CALL,
    "No end tag, straight to the call." + CALL,                                  # MiniMax-M2.1#10
    "用户想知道天气。\n</think>\n\n我来查一下。" + block(invoke("翻译", [("文本", "你好")]), invoke("get_time")),
    "Just answering.\n</think>\n\nThe answer is 4.",
    "thinking about <minimax:tool_call> syntax</think>ok",
    "r</think>" + block(invoke("hallucinated")) + " text",
    "r</think>" + block(invoke("get_time")) + "</think>",
    "still thinking" + TC + '\n<invoke name="get_weather">\n<parameter name="location">Pa',   # truncated call
    "truncated reasoning </thi",
    "",
]


def make_pipeline(mode):
    return OutputParser(get_reasoning_parser(mode)(), MiniMaxM2ToolParser(TOOLS))


@pytest.mark.parametrize("mode", ["minimax_m2", "minimax_m2_append_think"])
@pytest.mark.parametrize("text", PIPELINE_OUTPUTS, ids=range(len(PIPELINE_OUTPUTS)))
def test_pipeline_stream_random_rechunking(mode, text):
    expected = make_pipeline(mode).extract(text)
    n = 0
    for chunks in chunkings(text):
        parser = make_pipeline(mode)
        got = run_stream(parser, chunks)
        n += 1
        assert got.reasoning == (expected.reasoning or ""), chunks
        assert got.content == (expected.content or ""), chunks
        want = [(c.name, c.arguments) for c in expected.tool_calls]
        streamed = [(c["name"], c["arguments"]) for c in got.calls]
        if parser.tool_parser.in_truncated_call:
            assert streamed[:-1] == want
        else:
            assert streamed == want, chunks
            assert parser.tools_called == expected.tools_called
    assert n >= 50


def test_pipeline_fuzz():
    pieces = ["reason ", "</think>", "<think>", "\n\n", "答案", TC, ETC, CALL, invoke("get_time"), "</thi", "<min",
              block(invoke("bogus")), '<invoke name="get_weather">', '<parameter name="days">3</parameter>']
    rng = random.Random(99)
    for _ in range(150):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
        mode = rng.choice(["minimax_m2", "minimax_m2_append_think"])
        expected = make_pipeline(mode).extract(text)
        for chunks in [[text], list(text) or [""], random_chunks(text, rng), random_chunks(text, rng)]:
            parser = make_pipeline(mode)
            got = run_stream(parser, chunks)
            assert (got.reasoning, got.content) == (expected.reasoning or "", expected.content or ""), (text, chunks)
            streamed = [(c["name"], c["arguments"]) for c in got.calls]
            want = [(c.name, c.arguments) for c in expected.tool_calls]
            assert (streamed[:-1] if parser.tool_parser.in_truncated_call else streamed) == want, (text, chunks)


def test_pipeline_without_parsers_passes_text_through():
    parser = OutputParser()
    assert parser.extract("a</think>b").content == "a</think>b"
    assert run_stream(parser, ["a</th", "ink>b"]).content == "a</think>b"
    reasoning_only = OutputParser(MiniMaxM2ReasoningParser())
    assert run_stream(reasoning_only, ["r</think>", CALL]).content == CALL      # no tool parser: text stays


def test_pipeline_append_think_content_keeps_think_block_before_call():
    """Spec §7.2: non-streaming, the tool parser gets `<think>...</think>\\n\\n<minimax:tool_call>...`, so the
    content is the think block text before the call."""
    out = make_pipeline("minimax_m2_append_think").extract("r\n</think>\n\n" + CALL)
    assert out.reasoning is None
    assert out.content == "<think>r\n</think>\n\n"
    assert [(c.name, c.arguments) for c in out.tool_calls] == [("get_weather", args(location="Paris", days=2))]


# ---- regressions of spec §9 ------------------------------------------------------------------------------------
def test_vllm_28852_stream_starts_in_reasoning_without_think_tag():
    """vllm#28852 (PR #29882): with the `<think>\\n` prefill in the prompt the output has no `<think>`; all the
    reasoning was streamed as content."""
    got = run_stream(MiniMaxM2ReasoningParser(), ["Let", " me", " think", ".\n", "</think>", "\n\n", "Hi"])
    assert (got.reasoning, got.content) == ("Let me think.\n", "\n\nHi")


def test_vllm_38212_leading_think_in_output_is_swallowed():
    """vllm#38212 (PR #38213): output with `<think>` (M2.5) leaked `<think>…</think>` into content and left
    reasoning null."""
    text = "<think>\nM2.5 thinks.\n</think>\n\nAnswer."
    assert MiniMaxM2ReasoningParser().extract(text) == ("\nM2.5 thinks.\n", "\n\nAnswer.")
    got = run_stream(MiniMaxM2ReasoningParser(), ["<think>", "\nM2.5", " thinks.\n", "</think>", "\n\nAnswer."])
    assert (got.reasoning, got.content) == ("\nM2.5 thinks.\n", "\n\nAnswer.")
    assert "<think>" not in got.content


def test_vllm_35349_append_think_is_reasoning_end_ignores_history():
    """vllm#35349 (PR #35352): after a tool-call round the prompt history holds `</think>`; the old check saw it
    and the `<think>` prefix went missing from the next answer. Scan from the end; stop at the first think tag."""
    parser = MiniMaxM2AppendThinkReasoningParser()
    assert "</think>" in PROMPT_AFTER_TOOL_ROUND
    assert parser.is_reasoning_end(PROMPT_AFTER_TOOL_ROUND) is False
    assert parser.stream("Now I know.") == DeltaMessage(content="<think>Now I know.")


def test_sglang_22637_both_modes_and_separation_by_default():
    """sglang#22637: `minimax-append-think` leaked `<think>` into content and never filled reasoning; M2.5+ users
    expect separation. Both modes exist; `minimax_m2` separates."""
    text = "r\n</think>\n\nanswer"
    assert get_reasoning_parser("minimax_m2")().extract(text) == ("r\n", "\n\nanswer")
    assert get_reasoning_parser("minimax_m2_append_think")().extract(text) == (None, "<think>" + text)


@pytest.mark.parametrize("mode", ["minimax_m2", "minimax_m2_append_think"])
def test_minimax_m2_1_10_tool_call_without_end_think_is_parsed(mode):
    """MiniMax-AI/MiniMax-M2.1#10: the model omitted `</think>`; tool calls inside the unterminated think block
    were never parsed. `<minimax:tool_call>` ends the reasoning."""
    text = "I need the weather." + CALL
    out = make_pipeline(mode).extract(text)
    assert [(c.name, c.arguments) for c in out.tool_calls] == [("get_weather", args(location="Paris", days=2))]
    parser = make_pipeline(mode)
    got = Streamed()
    for chunk in ["I need", " the weather.", TC, "\n", CALL[len(TC) + 1:]]:
        got.add(parser.stream(chunk))
    got.add(parser.finish())
    assert parser.reasoning_parser.reasoning_ended
    assert [c["name"] for c in got.calls] == ["get_weather"] and parser.tools_called
    if mode == "minimax_m2":
        assert (got.reasoning, got.content) == ("I need the weather.", "")
    else:
        assert (got.reasoning, got.content) == ("", "<think>I need the weather.")
