"""Logits processors that change which token is most likely: logit bias, min_tokens, and the penalties.

All work in place on a float32 logits matrix [B, V], vectorised over rows with scatter/index_put.
vLLM semantics: repetition penalty (HF/CTRL) over prompt + output tokens, positive logits divided and negative
ones multiplied; frequency and presence penalties (OpenAI) over output tokens only:
    logit -= frequency_penalty * count(token in output) + presence_penalty * (count > 0)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def _padded(token_lists: Sequence[Sequence[int]], pad: int) -> torch.Tensor:
    """[n, max_len] int64 on the CPU, padded with `pad` (a column index one past the vocabulary)."""
    longest = max((len(t) for t in token_lists), default=0)
    out = torch.full((len(token_lists), max(longest, 1)), pad, dtype=torch.int64)
    for i, tokens in enumerate(token_lists):  # one tensor copy per row, no per-token work in Python
        if len(tokens):
            out[i, :len(tokens)] = torch.as_tensor(tokens, dtype=torch.int64)
    return out


def token_counts(token_lists: Sequence[Sequence[int]], vocab_size: int, device: torch.device) -> torch.Tensor:
    """[n, V] int32: how often each token id occurs in each row's list (ids outside [0, V) ignored)."""
    ids = _padded(token_lists, vocab_size).to(device, non_blocking=True)
    ids = torch.where((ids < 0) | (ids > vocab_size), vocab_size, ids)
    counts = torch.zeros(ids.shape[0], vocab_size + 1, dtype=torch.int32, device=device)
    counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=torch.int32))
    return counts[:, :vocab_size]


def apply_penalties(
    logits: torch.Tensor,
    prompt_token_ids: Sequence[Sequence[int]],
    output_token_ids: Sequence[Sequence[int]],
    repetition_penalties: torch.Tensor,
    frequency_penalties: torch.Tensor,
    presence_penalties: torch.Tensor,
) -> torch.Tensor:
    """Apply the three penalties in place to every row of `logits` [n, V]; the penalty tensors are [n] float32."""
    n, vocab = logits.shape
    output_counts = token_counts(output_token_ids, vocab, logits.device)
    in_output = output_counts > 0
    rep = repetition_penalties.to(logits.device).unsqueeze(1)
    if bool((repetition_penalties != 1.0).any()):
        seen = in_output | (token_counts(prompt_token_ids, vocab, logits.device) > 0)
        penalised = torch.where(logits > 0, logits / rep, logits * rep)
        logits.copy_(torch.where(seen, penalised, logits))
    logits -= frequency_penalties.to(logits.device).unsqueeze(1) * output_counts.to(logits.dtype)
    logits -= presence_penalties.to(logits.device).unsqueeze(1) * in_output.to(logits.dtype)
    return logits


def apply_logit_bias(logits: torch.Tensor, rows: Sequence[int], biases: Sequence[dict[int, float]]) -> torch.Tensor:
    """logits[row, token] += bias for each (row, {token: bias}); token ids outside the vocabulary are ignored."""
    vocab = logits.shape[1]
    r, t, v = [], [], []
    for row, bias in zip(rows, biases):
        for token, value in bias.items():
            if 0 <= token < vocab:
                r.append(row)
                t.append(token)
                v.append(value)
    if r:
        dev = logits.device
        logits.index_put_((torch.tensor(r, device=dev), torch.tensor(t, device=dev)),
                          torch.tensor(v, dtype=logits.dtype, device=dev), accumulate=True)
    return logits


def ban_tokens(logits: torch.Tensor, rows: Sequence[int], token_ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """logits[row, token] = -inf for each token of each row (min_tokens: no stop token before the minimum)."""
    vocab = logits.shape[1]
    r = [row for row, tokens in zip(rows, token_ids) for tok in tokens if 0 <= tok < vocab]
    t = [tok for tokens in token_ids for tok in tokens if 0 <= tok < vocab]
    if r:
        dev = logits.device
        logits[torch.tensor(r, device=dev), torch.tensor(t, device=dev)] = float("-inf")
    return logits
