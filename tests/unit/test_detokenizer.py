import random

import pytest

from m2serve.frontend.detokenizer import IncrementalDetokenizer
from tests.helpers.tiny_tokenizer import build_tiny_tokenizer

FFFD = "\ufffd"


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny_tok"))


@pytest.fixture(scope="module")
def prompt(tok):
    return tok.encode("]~!b[]~b]user\nhi[e~[\n]~b]ai\n<think>\n")


def stream(detok: IncrementalDetokenizer, ids: list[int], chunk_sizes=None) -> list[str]:
    pieces, i = [], 0
    while i < len(ids):
        n = chunk_sizes() if chunk_sizes else 1
        pieces.append(detok.add(ids[i:i + n]))
        i += n
    pieces.append(detok.flush())
    return pieces


TEXTS = [
    "今天天气很好，我们去公园散步吧。北京是中国的首都。",
    "Emoji 😀🎉👍🏽 and 🇫🇷 flags, café, naïve, 温度 18°C.",
    "混合 mixed 文本 with 🤖 robots 和 机器学习!",
]


@pytest.mark.parametrize("text", TEXTS)
def test_streaming_never_splits_a_character(tok, prompt, text):
    ids = tok.encode(text)
    # the test is only meaningful if some tokens are partial characters on their own
    assert any(FFFD in tok.decode([i]) for i in ids)
    detok = IncrementalDetokenizer(tok, prompt)
    pieces = stream(detok, ids)
    assert all(FFFD not in p for p in pieces)
    assert "".join(pieces) == tok.decode(ids) == text
    assert detok.text == text and detok.stop_reason is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_any_chunking(tok, prompt, seed):
    rng = random.Random(seed)
    text = "".join(TEXTS)
    ids = tok.encode(text)
    pieces = stream(IncrementalDetokenizer(tok, prompt), ids, lambda: rng.randint(1, 5))
    assert all(FFFD not in p for p in pieces)
    assert "".join(pieces) == text


def test_incomplete_character_released_by_flush(tok, prompt):
    ids = tok.encode("ok 你")
    partial = ids[:-1] if FFFD in tok.decode(ids[:-1]) else ids
    detok = IncrementalDetokenizer(tok, prompt)
    out = detok.add(partial)
    rest = detok.flush()
    assert out + rest == tok.decode(partial)


def _token_ids_of_pieces(tok, *pieces: str) -> list[int]:
    ids = []
    for p in pieces:
        ids += tok.encode(p)
    return ids


@pytest.mark.parametrize("include", [False, True])
def test_stop_string_spanning_tokens(tok, prompt, include):
    text = "The weather is sunny today. More text after the stop."
    ids = tok.encode(text)
    stop = "sunny today"
    assert not any(stop in tok.decode([i]) for i in ids)  # the stop spans several tokens
    detok = IncrementalDetokenizer(tok, prompt, stop=["never", stop], include_stop_str_in_output=include)
    pieces = stream(detok, ids)
    expected = "The weather is sunny today" if include else "The weather is "
    assert "".join(pieces) == expected == detok.text
    assert detok.stop_reason == stop and detok.stopped
    assert detok.add(tok.encode("more")) == "" and detok.flush() == ""


def test_stop_prefix_is_held_back_then_released(tok, prompt):
    ids = [_token_ids_of_pieces(tok, p) for p in ("abc ", "x", "y", "q")]
    detok = IncrementalDetokenizer(tok, prompt, stop=["xyz"])
    assert detok.add(ids[0]) == "abc "
    assert detok.add(ids[1]) == ""       # "x" could start "xyz"
    assert detok.add(ids[2]) == ""       # "xy" too
    assert detok.add(ids[3]) == "xyq"    # no longer
    assert detok.flush() == "" and detok.text == "abc xyq" and detok.stop_reason is None

    detok = IncrementalDetokenizer(tok, prompt, stop=["xyz"])
    assert detok.add(ids[0] + ids[1]) == "abc "
    assert detok.flush() == "x"          # end of output: held text released

    detok = IncrementalDetokenizer(tok, prompt, stop=["xyz"])
    for part in ids[:3]:
        detok.add(part)
    assert detok.add(tok.encode("z tail")) == "" and detok.text == "abc " and detok.stop_reason == "xyz"


def test_include_stop_string_started_in_returned_text(tok, prompt):
    ids = [_token_ids_of_pieces(tok, p) for p in ("abc x", "y", "z and more")]
    detok = IncrementalDetokenizer(tok, prompt, stop=["xyz"], include_stop_str_in_output=True)
    assert detok.add(ids[0]) == "abc x"  # nothing held back when the stop string is kept anyway
    assert detok.add(ids[1]) == "y"
    assert detok.add(ids[2]) == "z"
    assert detok.text == "abc xyz" and detok.stop_reason == "xyz"


def test_earliest_stop_string_wins(tok, prompt):
    detok = IncrementalDetokenizer(tok, prompt, stop=["weather", "The"])
    detok.add(tok.encode("The weather"))
    assert detok.text == "" and detok.stop_reason == "The"


def test_control_tokens(tok, prompt):
    text = ("<think>\nhmm\n</think>\n\nok<minimax:tool_call>\n<invoke name=\"f\">\n</invoke>\n"
            "</minimax:tool_call>[e~[")
    ids = tok.encode(text)
    assert tok.token_to_id("[e~[") in ids and tok.token_to_id("<think>") in ids
    kept = "".join(stream(IncrementalDetokenizer(tok, prompt), ids))
    assert kept == text.replace("[e~[", "")
    assert "<think>" in kept and "</minimax:tool_call>" in kept
    raw = "".join(stream(IncrementalDetokenizer(tok, prompt, skip_special_tokens=False), ids))
    assert raw == text
    # ]~b], ]~!b[ and pad are stripped too
    ids = tok.encode("a]~b]b]~!b[c]!p~[d")
    assert "".join(stream(IncrementalDetokenizer(tok, prompt), ids)) == "abcd"


def test_prompt_is_context_only(tok):
    prompt = tok.encode("Hello 你")[:-1]  # the prompt ends inside a character: ignored as context
    ids = tok.encode(" world")
    assert "".join(stream(IncrementalDetokenizer(tok, prompt), ids)) == " world"
