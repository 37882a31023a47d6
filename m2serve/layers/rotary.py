"""Partial NeoX-style rotary position embedding (spec minimax-m2.md §3).

Only the first `rotary_dim` dims of each head rotate (64 of 128 for MiniMax-M2); the rest pass through.
Within the rotated part, dim j pairs with dim j + rotary_dim/2 (rotate-half, not GPT-J interleaving):
    x1, x2 = x[:rd/2], x[rd/2:rd]
    out = (x1*cos - x2*sin, x2*cos + x1*sin)
which is `x*cos + rotate_half(x)*sin` with cos/sin tiled twice, written without the tiling.

The cos/sin table is computed once in fp32 for positions 0..max_position-1 and gathered per step; a position
past the table grows it (doubling), so long contexts work without precomputing everything up front.
"""
from __future__ import annotations

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, rotary_dim: int, max_position: int, base: float) -> None:
        super().__init__()
        if rotary_dim % 2 or not 0 < rotary_dim <= head_dim:
            raise ValueError(f"rotary_dim={rotary_dim} must be even and in (0, head_dim={head_dim}]")
        self.head_dim = head_dim
        self.rotary_dim = rotary_dim
        self.base = float(base)
        # inv_freq[i] = base^(-2i/rd), i = 0..rd/2-1
        inv_freq = 1.0 / (self.base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)          # [rd/2]
        self.register_buffer("cos_cache", torch.empty(0, rotary_dim // 2), persistent=False)
        self.register_buffer("sin_cache", torch.empty(0, rotary_dim // 2), persistent=False)
        self._build(max(int(max_position), 1))

    @property
    def max_position(self) -> int:
        return self.cos_cache.shape[0]

    def _build(self, n: int) -> None:
        t = torch.arange(n, dtype=torch.float32, device=self.inv_freq.device)  # [n]
        freqs = t[:, None] * self.inv_freq[None, :]                            # [n, rd/2] angle = pos*inv_freq
        self.cos_cache = freqs.cos()
        self.sin_cache = freqs.sin()

    def cos_sin(self, positions: torch.Tensor, max_position: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [T, rd/2] fp32 for positions [T].

        max_position (exclusive upper bound of the positions, e.g. max(seq_lens)) lets the caller skip the
        device sync needed to check the table size; without it positions.max() is read.
        """
        if positions.numel():
            need = max_position if max_position is not None else int(positions.max()) + 1
            if need > self.max_position:
                self._build(max(need, 2 * self.max_position))
        return self.cos_cache[positions], self.sin_cache[positions]

    def apply(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate x [T, n_heads, head_dim] with cos/sin [T, rd/2]; math in fp32, result in x.dtype."""
        half = self.rotary_dim // 2
        cos = cos[:, None, :]                                                 # [T, 1, rd/2] broadcast over heads
        sin = sin[:, None, :]
        x1 = x[..., :half].float()                                            # [T, n, rd/2]
        x2 = x[..., half:self.rotary_dim].float()
        rotated = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)
        if self.rotary_dim == self.head_dim:
            return rotated
        return torch.cat((rotated, x[..., self.rotary_dim:]), dim=-1)          # pass-through dims unchanged

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                max_position: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self.cos_sin(positions, max_position)
        return self.apply(q, cos, sin), self.apply(k, cos, sin)
