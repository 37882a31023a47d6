"""Benchmark prompts: `random` (synthetic, exact token counts), `sharegpt` (JSON file), `custom` (JSONL file).

Random dataset (specs/openai-api.md §5.1): per request the input length is a uniform integer in
[floor(L·(1−r)), ceil(L·(1+r))] where L = --random-input-len minus the tokens the tokenizer adds by itself, and the
output length likewise (at least 1). The prompt is a shared random prefix (--random-prefix-len tokens) followed by
consecutive vocabulary ids starting at a random offset per request, special ids left out; it is decoded to text and
re-encoded, truncated or topped up until the text encodes to exactly prefix + input tokens.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class SampleRequest:
    prompt: str | None                 # the text sent (None: token ids only, offline benchmarks)
    prompt_len: int
    expected_output_len: int
    prompt_token_ids: list[int] | None = None


# ---- tokenizer helpers (m2serve.frontend.tokenizer.Tokenizer) --------------------------------------------------
def special_token_ids(tokenizer) -> set[int]:
    """Ids never drawn into a random prompt: every added (control) token and the tokenizer's stop/pad/bos ids."""
    ids: set[int] = set()
    backend = getattr(tokenizer, "backend", None)
    if backend is not None and hasattr(backend, "get_added_tokens_decoder"):
        ids.update(int(i) for i in backend.get_added_tokens_decoder())
    for name in ("eos_token_ids", "stripped_special_ids"):
        ids.update(int(i) for i in getattr(tokenizer, name, ()) or ())
    for name in ("bos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            ids.add(int(value))
    return ids


def allowed_token_ids(tokenizer) -> np.ndarray:
    vocab = tokenizer.vocab_size
    excluded = special_token_ids(tokenizer)
    allowed = np.array([t for t in range(vocab) if t not in excluded], dtype=np.int64)
    return allowed if len(allowed) else np.arange(vocab, dtype=np.int64)


def num_special_tokens_to_add(tokenizer) -> int:
    """Tokens the tokenizer adds around any text by itself (a BOS, ...); 0 for MiniMax-M2's tokenizer."""
    try:
        return len(tokenizer.encode("", add_special_tokens=True))
    except TypeError:
        return 0


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def _decode(tokenizer, ids) -> str:
    return tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def clean_token_ids(tokenizer, allowed: np.ndarray) -> np.ndarray:
    """The allowed ids that decode, alone, to whole characters and re-encode to themselves: safe to append (a
    byte-fragment token would decode to U+FFFD and re-encode to other tokens)."""
    key = (id(tokenizer), len(allowed))
    if key not in _CLEAN_CACHE:
        ids = [int(t) for t in allowed]
        backend = getattr(tokenizer, "backend", None)
        if backend is not None and hasattr(backend, "decode_batch"):
            texts = backend.decode_batch([[t] for t in ids], skip_special_tokens=False)
            encs = [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
        else:
            texts = [_decode(tokenizer, [t]) for t in ids]
            encs = [_encode(tokenizer, x) for x in texts]
        clean = [t for t, x, e in zip(ids, texts, encs) if x and "\ufffd" not in x and e == [t]]
        _CLEAN_CACHE[key] = np.array(clean, dtype=np.int64) if clean else allowed
    return _CLEAN_CACHE[key]


_CLEAN_CACHE: dict = {}


def decode_to_target_len(tokenizer, token_ids: list[int], target: int, rng: np.random.Generator,
                         allowed: np.ndarray, max_retry: int = 10) -> tuple[str, list[int], int]:
    """Text whose encoding has exactly `target` tokens, from the ids `token_ids`: decode and re-encode (a byte-level
    BPE merges or splits across the seams of arbitrary ids), then truncate at a character boundary or top up with
    random whole-character ids and repeat. Returns (text, its ids, len(ids) - target); the mismatch is 0 unless
    `max_retry` rounds did not converge."""
    text = _decode(tokenizer, token_ids)
    ids = _encode(tokenizer, text)
    for _ in range(max_retry):
        diff = len(ids) - target
        if diff == 0:
            break
        if diff > 0:
            # Cut at `target` tokens, backing off while the cut splits a multi-byte character.
            for k in range(target, max(target - 4, 0) - 1, -1):
                text = _decode(tokenizer, ids[:k])
                if _encode(tokenizer, text) == ids[:k]:
                    break
            else:
                text = _decode(tokenizer, ids[:target])
        else:
            extra = rng.choice(clean_token_ids(tokenizer, allowed), size=-diff)
            text = text + _decode(tokenizer, [int(t) for t in extra])
        ids = _encode(tokenizer, text)
    return text, ids, len(ids) - target


# ---- random ----------------------------------------------------------------------------------------------------
def parse_range_ratio(value: Any) -> tuple[float, float]:
    """--random-range-ratio: a float for both, or JSON {"input": r1, "output": r2}; each in [0, 1)."""
    if isinstance(value, (int, float)):
        r_in = r_out = float(value)
    else:
        text = str(value).strip()
        if text.startswith("{"):
            d = json.loads(text)
            unknown = set(d) - {"input", "output"}
            if unknown:
                raise ValueError(f"--random-range-ratio: unknown keys {sorted(unknown)} (use 'input' and 'output')")
            r_in, r_out = float(d.get("input", 0.0)), float(d.get("output", 0.0))
        else:
            r_in = r_out = float(text)
    for r in (r_in, r_out):
        if not 0.0 <= r < 1.0:
            raise ValueError(f"--random-range-ratio must be in [0, 1), got {value!r}")
    return r_in, r_out


def length_bounds(length: int, ratio: float, minimum: int = 0) -> tuple[int, int]:
    """[floor(L·(1−r)), ceil(L·(1+r))], both at least `minimum`."""
    low = max(math.floor(length * (1 - ratio)), minimum)
    high = max(math.ceil(length * (1 + ratio)), minimum)
    return low, high


def sample_random(tokenizer, num_requests: int, input_len: int = 1024, output_len: int = 128,
                  range_ratio: Any = 0.0, prefix_len: int = 0, seed: int = 0, token_ids_only: bool = False,
                  vocab_size: int | None = None) -> list[SampleRequest]:
    """`num_requests` random prompts. With token_ids_only (offline benchmarks) the ids are used as they are, no text
    round trip; `tokenizer` may then be None (ids drawn from [0, vocab_size))."""
    if input_len < 0 or output_len < 1 or prefix_len < 0 or num_requests < 1:
        raise ValueError(f"random dataset: input_len={input_len}, output_len={output_len}, prefix_len={prefix_len}, "
                         f"num_prompts={num_requests}: lengths must be >= 0 (output >= 1) and num_prompts >= 1")
    r_in, r_out = parse_range_ratio(range_ratio)
    rng = np.random.default_rng(seed)
    if tokenizer is not None:
        allowed = allowed_token_ids(tokenizer)
        real_input_len = max(input_len - num_special_tokens_to_add(tokenizer), 0)
    else:
        allowed = np.arange(vocab_size, dtype=np.int64)
        real_input_len = input_len
    prefix = [int(t) for t in rng.choice(allowed, size=prefix_len)] if prefix_len else []
    in_low, in_high = length_bounds(real_input_len, r_in, minimum=0 if prefix_len else 1)
    out_low, out_high = length_bounds(output_len, r_out, minimum=1)
    input_lens = rng.integers(in_low, in_high + 1, size=num_requests)
    output_lens = rng.integers(out_low, out_high + 1, size=num_requests)
    offsets = rng.integers(0, len(allowed), size=num_requests)
    requests: list[SampleRequest] = []
    mismatched = 0
    for i in range(num_requests):
        n = int(input_lens[i])
        inner = allowed[(int(offsets[i]) + i + np.arange(n)) % len(allowed)].tolist()
        ids = prefix + inner
        target = prefix_len + n
        if token_ids_only:
            requests.append(SampleRequest(None, target, int(output_lens[i]), ids))
            continue
        text, ids, diff = decode_to_target_len(tokenizer, ids, target, rng, allowed)
        mismatched += diff != 0
        requests.append(SampleRequest(text, len(ids), int(output_lens[i]), ids))
    if mismatched:
        print(f"WARNING: {mismatched} of {num_requests} random prompts did not re-encode to their exact length")
    return requests


# ---- ShareGPT --------------------------------------------------------------------------------------------------
def is_valid_sequence(prompt_len: int, output_len: int, min_len: int = 4, max_prompt_len: int = 1024,
                      max_total_len: int = 2048, fixed_output_len: bool = False) -> bool:
    if prompt_len < min_len or (not fixed_output_len and output_len < min_len):
        return False
    return prompt_len <= max_prompt_len and prompt_len + output_len <= max_total_len


def _oversample(requests: list[SampleRequest], num_requests: int, seed: int, name: str) -> list[SampleRequest]:
    if not requests:
        raise ValueError(f"the {name} dataset has no usable entry")
    if len(requests) < num_requests:
        extra = random.Random(seed).choices(requests, k=num_requests - len(requests))
        print(f"WARNING: {name}: {len(requests)} usable entries for {num_requests} prompts; "
              f"{len(extra)} repeated at random")
        requests = requests + extra
    return requests


def sample_sharegpt(tokenizer, path: str | Path, num_requests: int, output_len: int | None = None,
                    seed: int = 0) -> list[SampleRequest]:
    """ShareGPT JSON: a list of {"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}, ...]}.
    The first two turns are the prompt and the reference answer (its token count is the output length unless
    --sharegpt-output-len); pairs with prompt < 4 or answer < 4 tokens, prompt > 1024 or sum > 2048 are dropped."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    entries = [e for e in data if len(e.get("conversations", e.get("conversation", []))) >= 2]
    random.Random(seed).shuffle(entries)
    requests: list[SampleRequest] = []
    for entry in entries:
        if len(requests) >= num_requests:
            break
        turns = entry.get("conversations", entry.get("conversation"))
        prompt, answer = turns[0]["value"], turns[1]["value"]
        prompt_ids = _encode(tokenizer, prompt)
        out_len = output_len if output_len is not None else len(_encode(tokenizer, answer))
        if not is_valid_sequence(len(prompt_ids), out_len, fixed_output_len=output_len is not None):
            continue
        requests.append(SampleRequest(prompt, len(prompt_ids), out_len, prompt_ids))
    return _oversample(requests, num_requests, seed, "sharegpt")


# ---- custom JSONL ----------------------------------------------------------------------------------------------
def sample_custom(tokenizer, path: str | Path, num_requests: int, output_len: int = 256, seed: int = 0,
                  apply_chat_template: bool = False) -> list[SampleRequest]:
    """One JSON object per line with a "prompt" string (vLLM's custom dataset); output length --custom-output-len.
    With apply_chat_template the prompt is wrapped as one user turn in the model's chat template (completions)."""
    requests: list[SampleRequest] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise ValueError(f"{path}:{lineno}: each line must be a JSON object with a 'prompt' string")
            prompt = row["prompt"]
            if apply_chat_template:
                prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                       add_generation_prompt=True)
            ids = _encode(tokenizer, prompt)
            requests.append(SampleRequest(prompt, len(ids), output_len, ids))
            if len(requests) >= num_requests:
                break
    return _oversample(requests, num_requests, seed, "custom")


def get_samples(args, tokenizer) -> list[SampleRequest]:
    """The requests of `m2serve bench serve` from its parsed flags."""
    name = args.dataset_name
    if name == "random":
        if args.dataset_path is not None:
            raise ValueError("--dataset-name random takes no --dataset-path (use sharegpt or custom for a file)")
        return sample_random(tokenizer, args.num_prompts, args.random_input_len, args.random_output_len,
                             args.random_range_ratio, args.random_prefix_len, args.seed)
    if args.dataset_path is None:
        raise ValueError(f"--dataset-name {name} needs --dataset-path")
    if name == "sharegpt":
        return sample_sharegpt(tokenizer, args.dataset_path, args.num_prompts, args.sharegpt_output_len, args.seed)
    if name == "custom":
        return sample_custom(tokenizer, args.dataset_path, args.num_prompts, args.custom_output_len, args.seed,
                             apply_chat_template=not args.skip_chat_template and args.backend != "openai-chat")
    raise ValueError(f"--dataset-name {name!r}: m2serve supports random, sharegpt and custom")
