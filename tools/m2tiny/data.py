"""Render corpus records to token ids with a loss mask, and make length-bucketed batches.

Loss masking (the documented choice): only assistant output is trained. For a chat record the supervised
tokens of every assistant turn start right after the turn header `]~b]ai\\n` plus the `<think>\\n` that follows it
(at inference both come from the prompt: the generation prompt is `]~b]ai\\n<think>\\n`) and end with the turn's
`[e~[` (so the model learns to stop); the system prompt (with the tool schemas), user turns and tool results are
context only. Raw GSM8K-format documents are supervised everywhere except the optional leading `]~!b[`, and end
with `[e~[`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from .common import BOS, EOS, ROLE, THINK_OPEN, read_jsonl, render_chat

AI_HEADER = ROLE + "ai\n"
THINK_HEADER = THINK_OPEN + "\n"


def record_text(rec, template_path=None) -> tuple[str, list]:
    """Text of a record and its supervised character spans [(start, end), ...]."""
    if "text" in rec:
        prefix = BOS if rec.get("bos") else ""
        text = prefix + rec["text"] + EOS
        return text, [(len(prefix), len(text))]
    text = render_chat(rec["messages"], rec.get("tools"), template_path=template_path)
    spans = []
    pos = 0
    while True:
        i = text.find(AI_HEADER, pos)
        if i < 0:
            break
        start = i + len(AI_HEADER)
        if text.startswith(THINK_HEADER, start):
            start += len(THINK_HEADER)
        end = text.find(EOS, start)
        assert end >= 0, "assistant turn without end token"
        end += len(EOS)
        spans.append((start, end))
        pos = end
    return text, spans


def encode_records(records, tokenizer, max_len=2048, template_path=None):
    """Returns (ids int16 flat, mask uint8 flat, offsets int64 [n+1]) and the number of dropped records."""
    texts, spans = [], []
    for r in records:
        t, s = record_text(r, template_path)
        texts.append(t)
        spans.append(s)
    encs = tokenizer.encode_batch(texts, add_special_tokens=False)
    ids_parts, mask_parts, offsets, dropped = [], [], [0], 0
    for enc, sp in zip(encs, spans):
        n = len(enc.ids)
        if n > max_len or n < 2:
            dropped += 1
            continue
        starts = np.fromiter((o[0] for o in enc.offsets), dtype=np.int64, count=n)
        m = np.zeros(n, dtype=np.uint8)
        for a, b in sp:
            m |= ((starts >= a) & (starts < b)).astype(np.uint8)
        ids_parts.append(np.asarray(enc.ids, dtype=np.int16))
        mask_parts.append(m)
        offsets.append(offsets[-1] + n)
    return (np.concatenate(ids_parts), np.concatenate(mask_parts), np.asarray(offsets, dtype=np.int64)), dropped


def save_encoded(path, ids, mask, offsets):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, ids=ids, mask=mask, offsets=offsets)


def load_encoded(path):
    z = np.load(path)
    return z["ids"], z["mask"], z["offsets"]


def encode_file(jsonl_path, tokenizer, out_path, max_len=2048, template_path=None):
    recs = read_jsonl(jsonl_path)
    (ids, mask, offsets), dropped = encode_records(recs, tokenizer, max_len, template_path)
    save_encoded(out_path, ids, mask, offsets)
    return {"records": len(recs), "dropped_too_long": dropped, "tokens": int(len(ids)),
            "supervised_tokens": int(mask.sum())}


def make_batches(lengths, max_tokens: int, seed: int, epoch: int, group: int = 512) -> list:
    """Deterministic length-bucketed batches (lists of example indices) whose padded size <= max_tokens."""
    rng = random.Random(seed * 1_000_003 + epoch)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    batches = []
    for g in range(0, len(idx), group):
        chunk = sorted(idx[g:g + group], key=lambda i: lengths[i])
        cur, cur_max = [], 0
        for i in chunk:
            new_max = max(cur_max, lengths[i])
            if cur and new_max * (len(cur) + 1) > max_tokens:
                batches.append(cur)
                cur, new_max = [], lengths[i]
            cur.append(i)
            cur_max = new_max
        if cur:
            batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(ids, mask, offsets, batch, pad_id=0):
    """Right-padded numpy arrays (input ids [b, T], supervised mask [b, T])."""
    T = max(int(offsets[i + 1] - offsets[i]) for i in batch)
    x = np.full((len(batch), T), pad_id, dtype=np.int64)
    m = np.zeros((len(batch), T), dtype=bool)
    for r, i in enumerate(batch):
        a, b = offsets[i], offsets[i + 1]
        x[r, : b - a] = ids[a:b]
        m[r, : b - a] = mask[a:b].astype(bool)
    return x, m
