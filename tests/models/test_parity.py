"""m2serve's MiniMax-M2 vs transformers' native implementation on a tiny random fp32 checkpoint.

m2serve runs with a small hand-built paged KV cache (block size 4, shuffled block ids so block-table bugs show);
the reference is a full, uncached transformers forward over the whole sequence, so cached decode and chunked
prefill are both checked against attention recomputed from scratch.
"""
from __future__ import annotations

import pytest
import torch

from m2serve.layers.attention_metadata import AttentionMetadata
from m2serve.models.arch import MiniMaxM2Arch
from m2serve.models.loader import load_model
from tests.helpers.tiny_model import load_hf_reference, make_tiny_model

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = make_tiny_model(tmp_path_factory.mktemp("tiny-parity"))   # 4 layers, 8 experts top-2, GQA 4/2
    arch = MiniMaxM2Arch.from_dir(path)
    assert arch.rotary_dim == arch.head_dim // 2 and arch.num_hidden_layers >= 4
    model = load_model(path, arch, torch.float32, show_progress=False)
    ref = load_hf_reference(path)
    assert any(layer.mlp.e_score_correction_bias.abs().min() > 0 for layer in ref.model.layers)
    return arch, model, ref


class PagedKV:
    """A tiny paged KV cache and block allocator; builds the AttentionMetadata of a step."""

    def __init__(self, model, arch: MiniMaxM2Arch, num_blocks: int = 64, block_size: int = 4, seed: int = 0):
        self.block_size = block_size
        self.cache = torch.zeros(arch.num_hidden_layers, 2, num_blocks, block_size, arch.num_key_value_heads,
                                 arch.head_dim)
        model.bind_kv_cache(self.cache)
        self.free = torch.randperm(num_blocks, generator=torch.Generator().manual_seed(seed)).tolist()
        self.tables: dict[str, list[int]] = {}
        self.lens: dict[str, int] = {}

    def step(self, parts: list[tuple[str, list[int]]]) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata]:
        """parts: (sequence, new token ids) in row order, decodes (one token) first."""
        ids, positions, slots, qsl, seq_lens, tables = [], [], [], [0], [], []
        num_decodes = 0
        for seq, new in parts:
            start = self.lens.get(seq, 0)
            end = start + len(new)
            table = self.tables.setdefault(seq, [])
            while len(table) * self.block_size < end:
                table.append(self.free.pop())
            if len(new) == 1 and start > 0 and num_decodes == len(seq_lens):
                num_decodes += 1
            for pos in range(start, end):
                slots.append(table[pos // self.block_size] * self.block_size + pos % self.block_size)
            ids += new
            positions += range(start, end)
            qsl.append(qsl[-1] + len(new))
            seq_lens.append(end)
            tables.append(table)
            self.lens[seq] = end
        width = max(len(t) for t in tables)
        block_tables = torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=torch.int64)
        meta = AttentionMetadata(slot_mapping=torch.tensor(slots, dtype=torch.int64), query_start_loc=qsl,
                                 seq_lens=seq_lens, block_tables=block_tables, num_decodes=num_decodes,
                                 block_size=self.block_size)
        return torch.tensor(ids, dtype=torch.int64), torch.tensor(positions, dtype=torch.int64), meta


def run_step(model, kv: PagedKV, parts):
    ids, positions, meta = kv.step(parts)
    with torch.no_grad():
        return model.compute_logits(model(ids, positions, meta))            # [T, V] fp32


def ref_logits(ref, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return ref(torch.tensor([tokens])).logits[0].float()                # [len, V]


def prompt(n: int, seed: int) -> list[int]:
    return torch.randint(3, 512, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_prefill_then_20_decode_steps_match_transformers(tiny):
    arch, model, ref = tiny
    kv = PagedKV(model, arch)
    tokens = prompt(11, seed=1)                                             # not a multiple of the block size
    logits = run_step(model, kv, [("a", tokens)])
    expected = ref_logits(ref, tokens)
    assert (logits - expected).abs().max().item() < TOL
    assert len(set(expected.argmax(-1).tolist())) > 3                       # the model is not degenerate

    for step in range(20):
        nxt = int(logits[-1].argmax())
        tokens.append(nxt)
        logits = run_step(model, kv, [("a", [nxt])])                        # one decode row
        expected = ref_logits(ref, tokens)[-1:]
        err = (logits - expected).abs().max().item()
        assert err < TOL, f"decode step {step}: max abs diff {err}"
        assert int(logits[-1].argmax()) == int(expected[-1].argmax())


def test_mixed_step_equals_separate_steps(tiny):
    """Two decodes (different lengths) + a prefill chunk over a cached prefix in one step, vs one at a time."""
    arch, model, ref = tiny
    a, b, c = prompt(9, seed=2), prompt(13, seed=3), prompt(6, seed=4)
    a_next, c_next, b_chunk = 7, 11, prompt(7, seed=5)

    # Mixed: prefill a, c and b's first 6 tokens; then one step: a and c decode, b prefills 7 more tokens.
    kv = PagedKV(model, arch, seed=1)
    run_step(model, kv, [("a", a), ("c", c)])
    run_step(model, kv, [("b", b[:6])])
    mixed = run_step(model, kv, [("a", [a_next]), ("c", [c_next]), ("b", b[6:] + b_chunk)])
    assert mixed.shape[0] == 2 + 7 + 7

    # Separately, on a fresh cache with other block ids.
    kv2 = PagedKV(model, arch, seed=2)
    run_step(model, kv2, [("a", a)])
    run_step(model, kv2, [("c", c)])
    run_step(model, kv2, [("b", b[:6])])
    sep_a = run_step(model, kv2, [("a", [a_next])])
    sep_b = run_step(model, kv2, [("b", b[6:] + b_chunk)])
    sep_c = run_step(model, kv2, [("c", [c_next])])
    torch.testing.assert_close(mixed[0:1], sep_a, atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[1:2], sep_c, atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[2:], sep_b, atol=1e-5, rtol=0)

    # And both agree with transformers.
    assert (mixed[0] - ref_logits(ref, a + [a_next])[-1]).abs().max() < TOL
    assert (mixed[1] - ref_logits(ref, c + [c_next])[-1]).abs().max() < TOL
    assert (mixed[2:] - ref_logits(ref, b + b_chunk)[6:]).abs().max() < TOL


def test_aux_hidden_states_are_layer_inputs(tiny):
    arch, model, ref = tiny
    kv = PagedKV(model, arch)
    tokens = prompt(10, seed=6)
    ids, positions, meta = kv.step([("a", tokens)])
    with torch.no_grad():
        hidden, aux = model(ids, positions, meta, aux_layer_ids=(3, 0, 1))
        out = ref(torch.tensor([tokens]), output_hidden_states=True)
    # transformers' hidden_states[i] is the input of layer i (index 0: the embeddings).
    for got, i in zip(aux, (3, 0, 1)):
        assert got.shape == (len(tokens), arch.hidden_size)
        assert (got - out.hidden_states[i][0]).abs().max() < TOL
    with pytest.raises(ValueError):
        model(ids, positions, meta, aux_layer_ids=(arch.num_hidden_layers + 1,))
