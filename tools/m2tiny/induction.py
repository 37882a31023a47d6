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

The plateau is the problem (sweeps/README.md): on the m2-tiny shape it outlasted 1,500-2,100 CPU warm-up steps.
Two things remove it. HeadSupervision adds a loss on where two chosen heads attend on copy batches (layer 0:
the previous token; layer 1: the token after the earlier occurrence), so the two halves of the circuit form
directly instead of waiting for each other; init_copy_heads starts their output projections as copies of what
they read, and the trainer's --lm-head-from-embed starts the unembedding equal to the embeddings, so a head
that attends to the right token already predicts it, for every id. corpus_sources gives the induction head
the same supervision in corpus batches, where a supervised token continues the only earlier occurrence of
the current token (names and numbers copied from a request into a call).

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

    def _sequence(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = self.rng
        span = self._draw(r.integers(6, self.max_span + 1))
        noise = [self._draw(r.integers(0, self.max_noise + 1)) for _ in range(2)]
        ids = np.concatenate([noise[0], span, noise[1], span])
        mask = np.zeros(len(ids), dtype=bool)
        mask[len(ids) - len(span) + 1:] = True                             # the second copy, after its first token
        # Where an induction head at each position should look: from the k-th token of the second copy to the
        # (k+1)-th of the first (the token that followed the earlier occurrence); -1 elsewhere.
        first, second = len(noise[0]), len(ids) - len(span)
        source = np.full(len(ids), -1, dtype=np.int64)
        source[second:len(ids) - 1] = np.arange(first + 1, first + len(span))
        return ids, mask, source

    def _draw(self, n: int) -> np.ndarray:
        i = np.searchsorted(self.cdf, self.rng.random(n), side="right")
        return self.vocab[np.minimum(i, len(self.vocab) - 1)]

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Right-padded (ids [b, T] int64, supervised mask [b, T], valid [b, T]) with b*T <= batch_tokens."""
        return self.next_with_sources()[:3]

    def next_with_sources(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """next() and the induction sources [b, T] (the key position an induction head should attend; -1: none)."""
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
        source = np.full((len(seqs), T), -1, dtype=np.int64)
        for i, (x, m, src) in enumerate(seqs):
            ids[i, :len(x)], mask[i, :len(x)], valid[i, :len(x)], source[i, :len(x)] = x, m, True, src
        return ids, mask, valid, source

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


class HeadSupervision:
    """Teach chosen heads where to look on copy batches: an auxiliary loss on their attention pattern.

    Why: induction needs two heads that only help together (one in an early layer that attends to the previous
    token and writes it into the residual stream, one later that matches the current token against those
    previous tokens and attends to what followed), so from a random start neither gets a gradient until the
    other exists, and the m2-tiny shape sat on that plateau for 1,500-2,100 CPU warm-up steps
    (sweeps/README.md). Supervising the two attention patterns directly (cross-entropy of each head's attention
    row against the known target position: i-1, and the copy source) makes both form in a few hundred steps;
    the output half (value/output/unembedding) then learns from the ordinary copy loss.

    The heads' logits are recomputed from the hidden states a forward pre-hook captures, the same q/k
    projections, QK norms and RoPE as the layer, so any attention implementation (sdpa) can run the forward.
    """

    def __init__(self, model, prev_layer: int, induction_layer: int, heads: list[int]) -> None:
        if not prev_layer < induction_layer < len(model.model.layers):
            raise ValueError(f"head supervision needs prev layer {prev_layer} < induction layer {induction_layer} "
                             f"< {len(model.model.layers)} layers")
        self.prev_layer, self.induction_layer, self.heads = prev_layer, induction_layer, heads
        self.head_dim = model.model.layers[induction_layer].self_attn.head_dim
        self.captured: dict = {}
        self.active = False
        for layer in (prev_layer, induction_layer):
            model.model.layers[layer].self_attn.register_forward_pre_hook(self._hook(layer), with_kwargs=True)
        self.o_proj = model.model.layers[induction_layer].self_attn.o_proj
        self.unembed = model.lm_head
        self.o_proj.register_forward_pre_hook(self._capture_heads)

    def _capture_heads(self, module, args):
        if self.active:
            self.captured["heads_out"] = args[0]          # [b, T, heads * head_dim]: the heads' outputs before o_proj

    def _hook(self, layer):
        def pre(module, args, kwargs):
            if self.active:
                hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
                self.captured[layer] = (module, hidden, kwargs["position_embeddings"])
        return pre

    def _log_attention(self, layer: int):
        """log softmax of the supervised heads' causal attention logits: [b, heads, T, T] (heads in self.heads
        order). q and k are projected once for the layer; only the supervised heads are scored."""
        import torch
        from transformers.models.minimax_m2.modeling_minimax_m2 import apply_rotary_pos_emb

        attn, hidden, (cos, sin) = self.captured[layer]
        b, T, _ = hidden.shape
        q = attn.q_norm(attn.q_proj(hidden)).view(b, T, -1, attn.head_dim).transpose(1, 2)   # [b, heads, T, d]
        k = attn.k_norm(attn.k_proj(hidden)).view(b, T, -1, attn.head_dim).transpose(1, 2)   # [b, kv_heads, T, d]
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        group = q.shape[1] // k.shape[1]
        heads = torch.tensor(self.heads, device=q.device)
        scores = (q[:, heads] @ k[:, heads // group].transpose(-1, -2)) * attn.scaling         # [b, h, T, T]
        causal = torch.ones(T, T, dtype=torch.bool, device=scores.device).tril()
        return scores.float().masked_fill(~causal, float("-inf")).log_softmax(-1)

    def loss(self, valid, source):
        """Mean over the heads of (prev-token head CE + induction head CE). valid/source: [b, T] tensors."""
        import torch

        T = valid.shape[1]
        prev = (torch.arange(T, device=valid.device) - 1).clamp(min=0).expand_as(source)
        has_prev = valid.clone()
        has_prev[:, 0] = False
        has_source = source >= 0

        def target_nll(layer, target, where):      # per-head mean -log p(target), summed over the heads
            lp = self._log_attention(layer)                                                      # [b, h, T, T]
            picked = lp.gather(-1, target[:, None, :, None].expand(-1, lp.shape[1], -1, 1)).squeeze(-1)
            return -picked.transpose(0, 1)[:, where].mean(-1).sum()                              # [h, n] -> ()

        total = target_nll(self.prev_layer, prev, has_prev)
        if has_source.any():
            total = total + target_nll(self.induction_layer, source.clamp(min=0), has_source)
        return total / len(self.heads)

    def ov_loss(self, ids, source, stale=None, max_positions: int = 512):
        """Cross-entropy of the induction heads' direct write, read through the unembedding, against the token at
        their source (the token to copy). ids/source: [b, T] tensors. 0 when no position has a source.

        Why: attention supervision teaches where to look, and the value/output half was left to the ordinary
        loss. Measured on the 36-minute probe (build 5): on held-out values the head's strongest attention is on
        the source 70% of the time (mean mass 0.64), yet its direct write ranks the right token first only 11% of
        the time, and the copy loss on random tokens stayed at chance (6.8 nats against ln 1024 = 6.93) through
        the whole warm-up. This loss trains the write itself: W_v, W_o and the unembedding, so that what the
        heads carry forward is the identity of the token they attend to. The write is not normalised, so the loss
        also grows it until it outweighs the rest of the residual stream.

        stale [b, T] (corpus_sources(stale=True)), where given: positions whose earlier occurrence was followed by
        another token than now; the loss adds -log(1 - p(that stale token)) of the same read-out there, so the
        write stops carrying a copy where the source and the target part ways (build 6 without it looped:
        tools/m2tiny/sweeps/README.md, stop 15).
        """
        import torch
        import torch.nn.functional as F

        total = torch.zeros((), device=ids.device)
        logits, target = self._direct_logits(ids, source, max_positions)
        if logits is not None:
            total = total + F.cross_entropy(logits, target)
        if stale is not None:
            logits, old = self._direct_logits(ids, stale, max_positions)
            if logits is not None:
                p_old = logits.log_softmax(-1).gather(-1, old[:, None]).squeeze(-1).exp()   # [n]
                total = total - torch.log1p(-p_old.clamp(max=1 - 1e-6)).mean()
        return total

    def _direct_logits(self, ids, at, max_positions):
        """The supervised heads' summed write at positions where at >= 0, read through the unembedding:
        (logits [n, vocab] fp32, the token at each position's `at` [n]), or (None, None)."""
        import torch

        where = (at >= 0).nonzero()                                                      # [n, 2] (row, position)
        if len(where) == 0:
            return None, None
        if len(where) > max_positions:
            where = where[torch.randperm(len(where), device=ids.device)[:max_positions]]
        out = self.captured["heads_out"][where[:, 0], where[:, 1]]                       # [n, heads * d]
        d = self.head_dim
        cols = torch.cat([torch.arange(h * d, (h + 1) * d, device=out.device) for h in self.heads])
        write = out[:, cols] @ self.o_proj.weight[:, cols].T                              # [n, hidden]
        return self.unembed(write).float(), ids[where[:, 0], at[where[:, 0], where[:, 1]]]

    def clear(self) -> None:
        self.captured.clear()


def init_copy_heads(model, prev_layer: int, induction_layer: int, heads: list[int], prev_scale: float = 0.05,
                    induction_scale: float = 1.0) -> None:
    """Start the supervised heads' output projections as the pseudo-inverse of their value projections.

    Why: with value W_v (d x hidden) and output W_o = s * pinv(W_v) a head adds s times the projection of its
    source token's (normalised) residual onto a d-dim subspace, so once it attends to the right token it already
    writes that token forward. Together with lm_head starting as the embeddings (`--lm-head-from-embed`) the
    induction head predicts the token it attends to from the first step, for every id, and the copy loss falls
    as soon as the attention supervision has taught it where to look (instead of learning the output half
    token by token). prev_scale keeps the previous-token head's write near the embeddings' size, so the current
    token stays readable for the induction head's query.
    """
    import torch

    with torch.no_grad():
        for layer, scale in ((prev_layer, prev_scale), (induction_layer, induction_scale)):
            attn = model.model.layers[layer].self_attn
            d = attn.head_dim
            group = attn.config.num_attention_heads // attn.config.num_key_value_heads
            for head in heads:
                kv = head // group
                w_v = attn.v_proj.weight[kv * d:(kv + 1) * d]                        # [d, hidden]
                attn.o_proj.weight[:, head * d:(head + 1) * d] = scale * torch.linalg.pinv(w_v.float())


def corpus_sources(ids: np.ndarray, mask: np.ndarray, valid: np.ndarray, min_id: int, stale: bool = False):
    """Induction sources in corpus batches: [b, T] key positions (-1: none).

    A position i whose next token is supervised gets source p+1 when its token occurred exactly once before (at
    p, an id >= min_id, not a special token) and the token after that occurrence is the one to predict: the
    unambiguous "continue what followed the earlier occurrence" cases (a name or number copied from the request
    into a call, a passage quoted back). Ambiguous matches (the token seen several times) are left unsupervised:
    the head cannot know which occurrence continues correctly, so pointing it at the right one would teach
    nothing it can use.

    stale=True also returns the opposite cases, [b, T] positions (-1: none): the current token occurred exactly
    once before, but what follows it now differs from what followed it then (the end of a copied name, the `"`
    after a value). There the induction write should not carry the earlier continuation (HeadSupervision.ov_loss).
    """
    b, T = ids.shape
    source = np.full((b, T), -1, dtype=np.int64)
    stale_at = np.full((b, T), -1, dtype=np.int64)
    for r in range(b):
        row = ids[r]
        seen: dict[int, int] = {}       # token -> its only earlier position (-2 once seen twice)
        for i in range(T - 1):
            if not valid[r, i]:
                break
            t = int(row[i])
            p = seen.get(t)
            if p is not None and p >= 0 and mask[r, i + 1] and p + 1 < i:
                if row[p + 1] == row[i + 1]:
                    source[r, i] = p + 1
                else:
                    stale_at[r, i] = p + 1
            if t >= min_id:
                seen[t] = i if p is None else -2
    return (source, stale_at) if stale else source
