"""The sampler: one token per row of a logits matrix, with vLLM's sampling semantics.

Order (vLLM v1):
1. logprobs, if asked, of the RAW distribution: log_softmax of the logits as given (vLLM's raw_logprobs);
2. logit_bias; min_tokens (eos and stop ids banned while fewer than min_tokens were generated);
3. repetition, frequency and presence penalties;
4. greedy rows (temperature < 1e-5): argmax of these logits (of the logits as given when no step above applies);
5. other rows: divide by temperature, min_p, then top_k and top_p, then sample.

Sampling is the exponential-race form of a categorical draw: token = argmax(probs / q), q ~ Exponential(1)
over the vocabulary. A row with a seed draws q only from its own generator, one [V] draw per step, so a
seeded request gives the same tokens alone or in any batch at any position. Unseeded rows share one draw
from the engine generator. Every transform is row-local and applied only to the rows that ask for it, so a
row's result never depends on its neighbours.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from m2serve.sampling.params import SamplingParams
from m2serve.sampling.penalties import apply_logit_bias, apply_penalties, ban_tokens


@dataclass
class SamplingRow:
    """One row of the logits matrix: one request sampling one token."""
    params: SamplingParams                 # resolved: no None sampling field
    prompt_token_ids: Sequence[int] = ()
    output_token_ids: Sequence[int] = ()   # generated so far (penalties, min_tokens)
    generator: torch.Generator | None = None  # the request's own generator (params.seed set), on the logits device
    stop_token_ids: Sequence[int] = ()     # eos ids + params.stop_token_ids: banned while output < min_tokens


# What each row asks of the steps before the choice (module doc, steps 1-3): one predicate each, shared by the
# steps and by the plain-greedy shortcut, so a new step cannot be skipped by it unnoticed.
def _wants_logprobs(row: SamplingRow) -> bool:
    return row.params.logprobs is not None


def _bans_stop_ids(row: SamplingRow) -> bool:
    return len(row.output_token_ids) < row.params.min_tokens and len(row.stop_token_ids) > 0


def _penalised(row: SamplingRow) -> bool:
    p = row.params
    return p.repetition_penalty != 1.0 or bool(p.frequency_penalty) or bool(p.presence_penalty)


def _plain_greedy(row: SamplingRow) -> bool:
    """Greedy with nothing that changes the logits or asks for their log-probs."""
    return (row.params.greedy and not _wants_logprobs(row) and not row.params.logit_bias
            and not _bans_stop_ids(row) and not _penalised(row))


def _argmax(logits: torch.Tensor) -> torch.Tensor:
    """[n, V] -> [n] int64, the first index of each row's maximum (NaN counts as the maximum), as argmax.
    `max(dim)` gives the same indices; on CPU argmax's reduction was 5-7x slower at [16, 8192]."""
    return logits.max(dim=-1).indices


@dataclass
class TokenLogprobs:
    token_id: int
    logprob: float
    rank: int                              # 1 = most likely (ties count against the token, as in vLLM)
    top: list[tuple[int, float]] = field(default_factory=list)  # params.logprobs best (token, logprob), best first


@dataclass
class SamplerOutput:
    token_ids: torch.Tensor                # [B] int64
    logprobs: list[TokenLogprobs | None]   # None for rows that did not ask


# ---- masks (in place on float logits [n, V]; masked entries become -inf) --------------------------------------
def apply_min_p(logits: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    """Mask tokens whose probability is below min_p * (probability of the most likely token). min_p: [n]."""
    probs = torch.softmax(logits, dim=-1)
    threshold = probs.amax(dim=-1, keepdim=True) * min_p.unsqueeze(1)
    return logits.masked_fill_(probs < threshold, float("-inf"))


def apply_top_k(logits: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Keep the k largest logits of each row (ties with the k-th kept). k: [n] int64 in [1, V]."""
    kmax = int(k.max())
    top = torch.topk(logits, kmax, dim=-1).values
    kth = top.gather(1, (k - 1).unsqueeze(1))
    return logits.masked_fill_(logits < kth, float("-inf"))


def apply_top_k_top_p(logits: torch.Tensor, k: torch.Tensor | None, p: torch.Tensor) -> torch.Tensor:
    """top_k (k: [n] in [1, V], or None) then top_p (p: [n] in (0, 1]): keep the smallest set of most likely
    tokens whose probability (after top_k) sums to at least p; the most likely token is always kept."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
    vocab = logits.shape[1]
    if k is not None:
        kth = sorted_logits.gather(1, (vocab - k).unsqueeze(1))
        sorted_logits.masked_fill_(sorted_logits < kth, float("-inf"))
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    drop = cumulative <= (1.0 - p).unsqueeze(1)
    drop[:, -1] = False
    sorted_logits.masked_fill_(drop, float("-inf"))
    return logits.scatter_(1, order, sorted_logits)


def _tensor(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)


class Sampler:
    def __init__(self, seed: int | None = None):
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def generator(self, device: torch.device) -> torch.Generator:
        """The engine-wide generator on `device`, for rows without a seed."""
        device = torch.device(device)
        gen = self._generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            if self.seed is None:
                gen.seed()
            else:
                gen.manual_seed(self.seed)
            self._generators[device] = gen
        return gen

    def __call__(self, logits: torch.Tensor, rows: list[SamplingRow]) -> SamplerOutput:
        assert logits.dim() == 2 and logits.shape[0] == len(rows), (tuple(logits.shape), len(rows))
        batch, vocab = logits.shape
        device = logits.device
        if all(_plain_greedy(r) for r in rows):
            # Nothing to transform: the argmax of the logits as given, without the private copy and row gathers
            # (at decode batch 16 these were 0.3-0.5 ms of a ~19 ms CPU step).
            return SamplerOutput(token_ids=_argmax(logits), logprobs=[None] * batch)
        # A private float32 copy: the caller's logits are never modified.
        logits = logits.clone() if logits.dtype == torch.float32 else logits.to(torch.float32)

        lp_rows = [i for i, r in enumerate(rows) if _wants_logprobs(r)]
        raw_logprobs = torch.log_softmax(logits[lp_rows], dim=-1) if lp_rows else None

        bias_rows = [i for i, r in enumerate(rows) if r.params.logit_bias]
        if bias_rows:
            apply_logit_bias(logits, bias_rows, [rows[i].params.logit_bias for i in bias_rows])
        ban_rows = [i for i, r in enumerate(rows) if _bans_stop_ids(r)]
        if ban_rows:
            ban_tokens(logits, ban_rows, [rows[i].stop_token_ids for i in ban_rows])
        self._penalise(logits, rows)

        token_ids = torch.empty(batch, dtype=torch.int64, device=device)
        greedy = [i for i, r in enumerate(rows) if r.params.greedy]
        if greedy:
            idx = _tensor(greedy, torch.int64, device)
            token_ids[idx] = _argmax(logits[idx])
        random = [i for i, r in enumerate(rows) if not r.params.greedy]
        if random:
            idx = _tensor(random, torch.int64, device)
            token_ids[idx] = self._sample(logits[idx], [rows[i] for i in random])

        logprobs: list[TokenLogprobs | None] = [None] * batch
        if lp_rows:
            self._gather_logprobs(raw_logprobs, token_ids, lp_rows, rows, logprobs)
        return SamplerOutput(token_ids=token_ids, logprobs=logprobs)

    # ---- steps ----------------------------------------------------------------------------------------------
    @staticmethod
    def _penalise(logits: torch.Tensor, rows: list[SamplingRow]) -> None:
        sel = [i for i, r in enumerate(rows) if _penalised(r)]
        if not sel:
            return
        device = logits.device
        idx = _tensor(sel, torch.int64, device)
        sub = logits[idx]
        apply_penalties(
            sub,
            [rows[i].prompt_token_ids for i in sel],
            [rows[i].output_token_ids for i in sel],
            _tensor([float(rows[i].params.repetition_penalty) for i in sel], torch.float32, device),
            _tensor([float(rows[i].params.frequency_penalty) for i in sel], torch.float32, device),
            _tensor([float(rows[i].params.presence_penalty) for i in sel], torch.float32, device),
        )
        logits[idx] = sub

    def _sample(self, logits: torch.Tensor, rows: list[SamplingRow]) -> torch.Tensor:
        """Sample one token per row of `logits` [n, V] (no greedy row among them)."""
        n, vocab = logits.shape
        device = logits.device
        logits = logits / _tensor([float(r.params.temperature) for r in rows], torch.float32, device).unsqueeze(1)

        def subset(pred) -> list[int]:
            return [j for j, r in enumerate(rows) if pred(r.params)]

        def top_k_of(p: SamplingParams) -> int:
            k = p.top_k or 0
            return vocab if k <= 0 or k >= vocab else k

        sel = subset(lambda p: p.min_p > 0.0)
        if sel:
            idx = _tensor(sel, torch.int64, device)
            logits[idx] = apply_min_p(logits[idx], _tensor([rows[j].params.min_p for j in sel], torch.float32, device))
        sel = subset(lambda p: p.top_p < 1.0)
        if sel:
            idx = _tensor(sel, torch.int64, device)
            ks = [top_k_of(rows[j].params) for j in sel]
            k = _tensor(ks, torch.int64, device) if any(x < vocab for x in ks) else None
            ps = _tensor([float(rows[j].params.top_p) for j in sel], torch.float32, device)
            logits[idx] = apply_top_k_top_p(logits[idx], k, ps)
        sel = subset(lambda p: p.top_p >= 1.0 and top_k_of(p) < vocab)
        if sel:
            idx = _tensor(sel, torch.int64, device)
            logits[idx] = apply_top_k(logits[idx], _tensor([top_k_of(rows[j].params) for j in sel], torch.int64, device))

        probs = torch.softmax(logits, dim=-1)
        noise = torch.empty_like(probs)
        unseeded = []
        for j, r in enumerate(rows):
            if r.generator is not None:
                noise[j].exponential_(generator=r.generator)
            else:
                unseeded.append(j)
        if unseeded:
            draw = torch.empty(len(unseeded), vocab, dtype=probs.dtype, device=device)
            draw.exponential_(generator=self.generator(device))
            noise[_tensor(unseeded, torch.int64, device)] = draw
        noise.clamp_(min=torch.finfo(noise.dtype).tiny)
        return (probs / noise).argmax(dim=-1)

    @staticmethod
    def _gather_logprobs(raw: torch.Tensor, token_ids: torch.Tensor, lp_rows: list[int], rows: list[SamplingRow],
                         out: list[TokenLogprobs | None]) -> None:
        chosen = token_ids[_tensor(lp_rows, torch.int64, raw.device)]
        for i, lp in zip(lp_rows, gather_logprobs(raw, chosen, [rows[i].params.logprobs for i in lp_rows])):
            out[i] = lp


def gather_logprobs(logprobs: torch.Tensor, token_ids: torch.Tensor, ks: list[int]) -> list[TokenLogprobs]:
    """Per row: the logprob and rank of token_ids[row] and the ks[row] best (token, logprob).
    logprobs: [n, V] log-softmaxed; token_ids: [n] int64."""
    chosen = token_ids.unsqueeze(1)
    chosen_lp = logprobs.gather(1, chosen)
    ranks = (logprobs >= chosen_lp).sum(dim=-1)
    kmax = min(max(ks, default=0), logprobs.shape[1])
    top_ids = top_lp = None
    if kmax > 0:
        top = torch.topk(logprobs, kmax, dim=-1)
        top_lp, top_ids = top.values.tolist(), top.indices.tolist()
    chosen_l, chosen_lp_l, ranks_l = chosen.squeeze(1).tolist(), chosen_lp.squeeze(1).tolist(), ranks.tolist()
    out = []
    for j, k in enumerate(ks):
        k = min(k, kmax)
        out.append(TokenLogprobs(token_id=chosen_l[j], logprob=chosen_lp_l[j], rank=ranks_l[j],
                                 top=list(zip(top_ids[j][:k], top_lp[j][:k])) if k > 0 else []))
    return out
