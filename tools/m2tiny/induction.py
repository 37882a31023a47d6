"""Random-token copy batches: the induction warm-up of the m2-tiny trainer.

Why: trained on the corpus alone, m2-tiny learns formats and topics but never to copy (tools/m2tiny/sweeps/
README.md): the corpus can be fitted well enough by memorising its distribution, so the "find the earlier
occurrence, copy what follows" circuit (induction heads) never forms, and a tool call cannot take its function
name from the schema or its arguments from the request. On sequences of random tokens nothing but copying
lowers the loss. The trainer runs up to --copy-steps of these first (ending early once the copy loss is below
--copy-until) and then keeps one in every --copy-every steps, so the circuit is there before the corpus needs it
and stays there.

A sequence is [noise | x | noise' | x] where x (the span to copy, 6-16 tokens) and the noise (0-24 tokens each)
are independent token draws; only the second x is supervised, from its second token on (its first token cannot
be predicted). The lengths are drawn per sequence, so the distance between the copies varies within a batch:
with a fixed distance a head that looks a fixed number of positions back solves the task, and the mini shape
learns that in 250 steps without learning to copy (measured: copy accuracy 0.95 at a fixed distance of 13;
0.00 after 750 steps once the distance varies). Real copying (an induction head: match the current token to an
earlier occurrence, predict what followed it) appears after a plateau: about 1,300 steps of 32 sequences for
the mini shape, abruptly (copy accuracy 0.01 at step 1,200, 0.61 at 1,400, rope_theta 1e4 and 100 alike).

The draws come from the corpus's own non-special tokens: during the warm-up uniformly from its 1024 most
frequent, afterwards from all of them with weights count ** 0.5. Why a small vocabulary first: with untied
embeddings the output half of a copy (the unembedding of the same token) is learned token by token, and over
the whole vocabulary each token gets few updates (m2-tiny shape, uniform over all ~6,100 ids: copy loss still at
the sampling entropy after 320 steps).
"""

from __future__ import annotations

import numpy as np


class CopyBatches:
    def __init__(self, token_ids: np.ndarray, seed: int, batch_tokens: int, max_span: int = 16,
                 max_noise: int = 24, weights: np.ndarray | None = None) -> None:
        self.vocab = np.asarray(token_ids, dtype=np.int64)                 # ids a span may use
        w = np.ones(len(self.vocab)) if weights is None else np.asarray(weights, dtype=np.float64)
        self.cdf = np.cumsum(w / w.sum())
        self.rng = np.random.default_rng(seed)
        self.batch_tokens, self.max_span, self.max_noise = batch_tokens, max_span, max_noise

    def _sequence(self) -> tuple[np.ndarray, np.ndarray]:
        r = self.rng
        span = self._draw(r.integers(6, self.max_span + 1))
        noise = [self._draw(r.integers(0, self.max_noise + 1)) for _ in range(2)]
        ids = np.concatenate([noise[0], span, noise[1], span])
        mask = np.zeros(len(ids), dtype=bool)
        mask[len(ids) - len(span) + 1:] = True                             # the second copy, after its first token
        return ids, mask

    def _draw(self, n: int) -> np.ndarray:
        i = np.searchsorted(self.cdf, self.rng.random(n), side="right")
        return self.vocab[np.minimum(i, len(self.vocab) - 1)]

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Right-padded (ids [b, T] int64, supervised mask [b, T], valid [b, T]) with b*T <= batch_tokens."""
        seqs, T = [], 0
        while True:
            s = self._sequence()
            grown = max(T, len(s[0]))
            if seqs and grown * (len(seqs) + 1) > self.batch_tokens:
                break
            seqs.append(s)
            T = grown
        ids = np.zeros((len(seqs), T), dtype=np.int64)
        mask = np.zeros((len(seqs), T), dtype=bool)
        valid = np.zeros((len(seqs), T), dtype=bool)
        for i, (x, m) in enumerate(seqs):
            ids[i, :len(x)], mask[i, :len(x)], valid[i, :len(x)] = x, m, True
        return ids, mask, valid

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def corpus_token_ids(ids: np.ndarray, num_special: int, power: float = 0.5,
                     top: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The non-special token ids that occur in the encoded corpus (only the `top` most frequent if top > 0), and
    their counts ** power (sampling weights; power 0 is uniform)."""
    used, counts = np.unique(ids.astype(np.int64), return_counts=True)
    keep = used >= num_special
    used, counts = used[keep], counts[keep]
    if top:
        best = np.sort(np.argsort(-counts, kind="stable")[:top])
        used, counts = used[best], counts[best]
    return used, counts.astype(np.float64) ** power
