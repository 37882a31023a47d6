"""Per-step attention metadata, built by the model runner and read by the attention backend.

A step's tokens are laid out request after request (T tokens in all, B requests). Request i owns the query
rows query_start_loc[i]:query_start_loc[i+1]; its context after this step is seq_lens[i] tokens, the new ones
being the last (query_len) of them, so the first new token sits at position seq_lens[i] - query_len. Decode
requests (exactly one new token) come first: rows 0..num_decodes-1 are one token each.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor       # [T] int64: block_id * block_size + offset where each new token's K/V go
    query_start_loc: list[int]       # [B+1] python ints
    seq_lens: list[int]              # [B] context length after this step (cached + new)
    block_tables: torch.Tensor       # [B, max_blocks_per_req] int64, padded with 0 (never read past seq_len)
    num_decodes: int                 # requests 0..num_decodes-1 have query_len == 1
    block_size: int
    _seq_lens_t: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def seq_lens_tensor(self, n: int) -> torch.Tensor:
        """seq_lens[:n] as an int64 CPU tensor, made once per step (every layer reads it)."""
        if self._seq_lens_t is None:
            self._seq_lens_t = torch.tensor(self.seq_lens, dtype=torch.int64)
        return self._seq_lens_t[:n]

    @property
    def num_reqs(self) -> int:
        return len(self.seq_lens)

    @property
    def num_tokens(self) -> int:
        return self.query_start_loc[-1]
