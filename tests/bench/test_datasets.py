"""Benchmark datasets: the random dataset's exact token counts and range bounds, ShareGPT pruning, custom JSONL."""
import json
import math
import os

import pytest

from m2serve.bench.datasets import (length_bounds, parse_range_ratio, sample_custom, sample_random, sample_sharegpt,
                                    special_token_ids)


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from m2serve.frontend.tokenizer import Tokenizer

    return Tokenizer.from_dir(tiny_model_dir)


@pytest.mark.parametrize("input_len,output_len,ratio,prefix", [(50, 8, 0.0, 0), (40, 10, 0.5, 12), (7, 3, 0.9, 0)])
def test_random_prompts_encode_to_exact_lengths(tok, input_len, output_len, ratio, prefix):
    reqs = sample_random(tok, 40, input_len, output_len, ratio, prefix, seed=3)
    in_low, in_high = length_bounds(input_len, ratio, minimum=0 if prefix else 1)
    out_low, out_high = length_bounds(output_len, ratio, minimum=1)
    assert (in_low, in_high) == (max(math.floor(input_len * (1 - ratio)), 0 if prefix else 1),
                                 math.ceil(input_len * (1 + ratio)))
    special = special_token_ids(tok)
    for r in reqs:
        ids = tok.encode(r.prompt)
        assert len(ids) == r.prompt_len                      # the text re-encodes to exactly its count
        assert in_low + prefix <= r.prompt_len <= in_high + prefix
        assert out_low <= r.expected_output_len <= out_high
        assert not special & set(ids)
    if ratio == 0.0:
        assert {r.prompt_len for r in reqs} == {input_len + prefix}
        assert {r.expected_output_len for r in reqs} == {output_len}
    else:
        assert len({r.prompt_len for r in reqs}) > 1     # lengths really vary
    if prefix:
        shared = os.path.commonprefix([r.prompt for r in reqs])
        assert len(shared) >= len(tok.decode(reqs[0].prompt_token_ids[:prefix], skip_special_tokens=False)) - 4


def test_random_is_seeded_and_token_ids_only(tok):
    a = sample_random(tok, 5, 20, 4, 0.3, 0, seed=1)
    b = sample_random(tok, 5, 20, 4, 0.3, 0, seed=1)
    assert [r.prompt for r in a] == [r.prompt for r in b]
    assert [r.prompt for r in a] != [r.prompt for r in sample_random(tok, 5, 20, 4, 0.3, 0, seed=2)]
    ids_only = sample_random(None, 4, 16, 2, 0.0, 0, seed=0, token_ids_only=True, vocab_size=100)
    assert all(r.prompt is None and len(r.prompt_token_ids) == 16 and max(r.prompt_token_ids) < 100
               for r in ids_only)


def test_range_ratio_forms():
    assert parse_range_ratio("0.25") == (0.25, 0.25)
    assert parse_range_ratio('{"input": 0.1, "output": 0.5}') == (0.1, 0.5)
    assert length_bounds(200, 0.25) == (150, 250)
    assert length_bounds(3, 0.9, minimum=1) == (1, 6)
    for bad in ("1.0", "-0.1", '{"inputs": 0.1}'):
        with pytest.raises(ValueError):
            parse_range_ratio(bad)


def test_sharegpt_and_custom_files(tok, tmp_path):
    long = "weather in Paris is sunny " * 10
    data = [{"conversations": [{"from": "human", "value": long}, {"from": "gpt", "value": long}]},
            {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": long}]},   # prompt < 4
            {"conversations": [{"from": "human", "value": long}]}]                                   # one turn
    path = tmp_path / "sg.json"
    path.write_text(json.dumps(data))
    reqs = sample_sharegpt(tok, path, 3, seed=0)
    assert len(reqs) == 3 and {r.prompt for r in reqs} == {long}           # the one usable entry, oversampled
    assert reqs[0].expected_output_len == len(tok.encode(long)) and reqs[0].prompt_len == len(tok.encode(long))
    assert sample_sharegpt(tok, path, 1, output_len=2)[0].expected_output_len == 2
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"prompt": "hello there"}\n\n{"prompt": "the weather"}\n')
    reqs = sample_custom(tok, jsonl, 2, output_len=5)
    assert [r.prompt for r in reqs] == ["hello there", "the weather"] and reqs[1].expected_output_len == 5
    templated = sample_custom(tok, jsonl, 1, apply_chat_template=True)[0]
    assert templated.prompt.endswith(tok.apply_chat_template([{"role": "user", "content": "hello there"}])[-10:])
    assert templated.prompt_len > reqs[0].prompt_len
