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

from .common import BOS, EOS, ROLE, SPECIAL_TOKENS, THINK_OPEN, read_jsonl, render_chat

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


def split_pieces(ids: np.ndarray, mask: np.ndarray, tokenizer, p: float, rng: np.random.Generator):
    """Seeded BPE-dropout: each token (not a control token) is, with probability p, replaced by the tokens of its
    two halves cut at a random character, and each half again with probability p. Returns (ids, mask); the
    decoded text is unchanged, pieces keep their token's mask.

    Why: the tokenizer is trained on the same corpus, so its merges cover every training word whole, and about a
    quarter of the vocabulary (intermediate merges, lone letters, the bytes of Chinese characters) never occurs
    in the encoded corpus. A held-out name is spelled with exactly those pieces: 25% of the held-out argument-value
    tokens had never been trained (their embeddings stay at init, so no circuit can match or emit them). With
    p = 0.1, 0.1% (sweeps/README.md, stop 14). Inference encodes without dropout, as BPE-dropout prescribes.
    """
    pick = np.flatnonzero((rng.random(len(ids)) < p) & (ids >= len(SPECIAL_TOKENS)))
    if len(pick) == 0:
        return ids, mask
    cache: dict = {}          # half (byte-level string) -> its token ids

    def split(s: str) -> list:  # the tokens of s cut in two at a random character; each again with probability p
        cut = int(rng.integers(1, len(s)))
        out = []
        for half in (s[:cut], s[cut:]):
            if half not in cache:
                cache[half] = [t.id for t in tokenizer.model.tokenize(half)]
            for t in cache[half]:
                piece = tokenizer.id_to_token(t)
                out += split(piece) if len(piece) > 1 and rng.random() < p else [t]
        return out

    new_ids, new_mask, last = [], [], 0
    for i in pick:
        s = tokenizer.id_to_token(int(ids[i]))
        if len(s) < 2:
            continue
        rep = split(s)
        new_ids += [ids[last:i], np.asarray(rep, dtype=ids.dtype)]
        new_mask += [mask[last:i], np.full(len(rep), mask[i], dtype=mask.dtype)]
        last = i + 1
    new_ids.append(ids[last:])
    new_mask.append(mask[last:])
    return np.concatenate(new_ids), np.concatenate(new_mask)


def encode_records(records, tokenizer, max_len=2048, template_path=None, bpe_dropout: float = 0.0, seed: int = 0):
    """Returns (ids int16 flat, mask uint8 flat, offsets int64 [n+1]) and the number of dropped records.
    bpe_dropout > 0: training encodings get split_pieces (seeded by `seed`)."""
    texts, spans = [], []
    for r in records:
        t, s = record_text(r, template_path)
        texts.append(t)
        spans.append(s)
    encs = tokenizer.encode_batch(texts, add_special_tokens=False)
    ids_parts, mask_parts, offsets, dropped = [], [], [0], 0
    rng = np.random.default_rng(seed)
    for enc, sp in zip(encs, spans):
        n = len(enc.ids)
        if n > max_len or n < 2:
            dropped += 1
            continue
        starts = np.fromiter((o[0] for o in enc.offsets), dtype=np.int64, count=n)
        m = np.zeros(n, dtype=np.uint8)
        for a, b in sp:
            m |= ((starts >= a) & (starts < b)).astype(np.uint8)
        ids = np.asarray(enc.ids, dtype=np.int16)
        if bpe_dropout > 0:
            ids, m = split_pieces(ids, m, tokenizer, bpe_dropout, rng)
            if len(ids) > max_len:
                dropped += 1
                continue
        ids_parts.append(ids)
        mask_parts.append(m)
        offsets.append(offsets[-1] + len(ids))
    return (np.concatenate(ids_parts), np.concatenate(mask_parts), np.asarray(offsets, dtype=np.int64)), dropped


def save_encoded(path, ids, mask, offsets):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, ids=ids, mask=mask, offsets=offsets)


def load_encoded(path):
    z = np.load(path)
    return z["ids"], z["mask"], z["offsets"]


def encode_file(jsonl_path, tokenizer, out_path, max_len=2048, template_path=None, bpe_dropout=0.0, seed=0):
    recs = read_jsonl(jsonl_path)
    (ids, mask, offsets), dropped = encode_records(recs, tokenizer, max_len, template_path, bpe_dropout, seed)
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
