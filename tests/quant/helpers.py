"""Run a loaded m2serve model over one sequence through its paged KV cache: a prefill, then decode steps."""
from __future__ import annotations

import torch

from m2serve.layers.attention_metadata import AttentionMetadata
from m2serve.layers.batch_invariant import set_batch_invariant


@torch.inference_mode()
def engine_logits(model, prompt: list[int], decode: list[int] = (), block_size: int = 4,
                  num_blocks: int = 32) -> torch.Tensor:
    """(logits [len(prompt) + len(decode), V] fp32, the KV cache); blocks are handed out in a shuffled order.
    Runs the engine's default numerics (not batch-invariant, whatever an earlier test's engine left set)."""
    set_batch_invariant(False)
    arch = model.arch
    cache = torch.zeros(arch.num_hidden_layers, 2, num_blocks, block_size, arch.num_key_value_heads, arch.head_dim,
                        dtype=model.kv_cache_dtype)
    model.bind_kv_cache(cache)
    table = torch.randperm(num_blocks, generator=torch.Generator().manual_seed(0))
    out, start = [], 0
    for chunk in [list(prompt)] + [[t] for t in decode]:
        n = len(chunk)
        pos = torch.arange(start, start + n)
        slots = table[pos // block_size] * block_size + pos % block_size
        L = start + n
        meta = AttentionMetadata(slot_mapping=slots, query_start_loc=[0, n], seq_lens=[L],
                                 block_tables=table[None, :], num_decodes=int(n == 1 and start > 0),
                                 block_size=block_size)
        out.append(model.compute_logits(model(torch.tensor(chunk), pos, meta)))
        start = L
    return torch.cat(out), cache
