"""m2serve's compiled CPU kernels (layers/csrc/cpu_gemv.cpp) against torch: few-row linear and SwiGLU experts, fp32
and bf16 weights, row counts across the 4-row groups, K not a multiple of the SIMD width, empty experts, rows
routed elsewhere; and that each row's result does not depend on the rows beside it."""
import os

import pytest
import torch
import torch.nn.functional as F

from m2serve.layers import cpu_kernels

pytestmark = pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
                                reason="the kernels need AVX2")


@pytest.fixture(scope="module")
def kernel():
    k = cpu_kernels.get()
    assert k is not None, "the CPU kernels failed to build on an AVX2 machine (see the warning in the log)"
    return k


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 7, 8, 16])
@pytest.mark.parametrize("K", [64, 100])
def test_linear_matches_torch(kernel, dtype, rows, K):
    g = torch.Generator().manual_seed(rows * 131 + K)
    x = torch.randn(rows, K, generator=g)
    w = torch.randn(37, K, generator=g).to(dtype)
    y = kernel.linear(x, w)
    assert y.dtype == torch.float32 and y.shape == (rows, 37)
    torch.testing.assert_close(y, x @ w.float().T, rtol=1e-5, atol=1e-4)


def test_linear_row_independent_of_batch(kernel):
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(11, 96, generator=g), torch.randn(50, 96, generator=g)
    full = kernel.linear(x, w)
    for i in range(11):
        assert torch.equal(kernel.linear(x[i:i + 1], w)[0], full[i])
        assert torch.equal(kernel.linear(x[i:i + 3], w)[0], full[i])


def _experts_ref(x, counts, w13, w2):
    out, start = [], 0
    for e, n in enumerate(counts.tolist()):
        gate, up = (x[start:start + n] @ w13[e].float().T).chunk(2, dim=-1)
        out.append((F.silu(gate) * up) @ w2[e].float().T)
        start += n
    out.append(torch.zeros(x.shape[0] - start, x.shape[1]))
    return torch.cat(out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_experts_match_torch(kernel, dtype):
    g = torch.Generator().manual_seed(1)
    E, H, I = 6, 64, 40
    w13 = (torch.randn(E, 2 * I, H, generator=g) / 8).to(dtype)
    w2 = (torch.randn(E, H, I, generator=g) / 6).to(dtype)
    counts = torch.tensor([3, 0, 1, 6, 2, 0])
    x = torch.randn(int(counts.sum()) + 2, H, generator=g)       # 2 trailing rows belong to no local expert
    y = kernel.experts(x, counts, w13, w2)
    torch.testing.assert_close(y, _experts_ref(x, counts, w13, w2), rtol=1e-5, atol=1e-4)
    assert torch.equal(y[-2:], torch.zeros(2, H))


def test_experts_reject_bad_counts(kernel):
    w13, w2 = torch.zeros(2, 8, 16), torch.zeros(2, 16, 4)
    with pytest.raises(RuntimeError, match="counts sum to"):
        kernel.experts(torch.zeros(3, 16), torch.tensor([2, 2]), w13, w2)
    with pytest.raises(RuntimeError, match="counts sum to"):
        kernel.experts_mm(torch.zeros(3, 16), torch.tensor([2, 2]), w13, w2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_experts_mm_matches_torch(kernel, dtype):
    """The prefill-sized pass (MKL per expert on weights widened one expert at a time, SwiGLU in place): many rows,
    empty experts, I not a multiple of 8, rows routed to no local expert."""
    g = torch.Generator().manual_seed(2)
    E, H, I = 5, 64, 44
    w13 = (torch.randn(E, 2 * I, H, generator=g) / 8).to(dtype)
    w2 = (torch.randn(E, H, I, generator=g) / 6).to(dtype)
    counts = torch.tensor([40, 0, 1, 97, 23])
    x = torch.randn(int(counts.sum()) + 3, H, generator=g)
    y = kernel.experts_mm(x, counts, w13, w2)
    torch.testing.assert_close(y, _experts_ref(x, counts, w13, w2), rtol=1e-5, atol=1e-4)
    assert torch.equal(y[-3:], torch.zeros(3, H))
    assert torch.equal(w13, w13.clone()) and w13.dtype == dtype                  # weights untouched


@pytest.mark.parametrize("top_k", [1, 2, 8])
def test_moe_combine_equals_scale_scatter_sum(kernel, top_k):
    """Bitwise what the torch ops compute (each product rounded, then summed over k in order)."""
    g = torch.Generator().manual_seed(top_k)
    T, H = 33, 72
    y_sorted = torch.randn(T * top_k, H, generator=g)
    order = torch.randperm(T * top_k, generator=g)
    w = torch.rand(T, top_k, generator=g)
    pos = torch.empty_like(order).scatter_(0, order, torch.arange(T * top_k))
    y = torch.empty(T * top_k, H)
    y[order] = y_sorted * w.flatten()[order][:, None]
    want = y.view(T, top_k, H)[:, 0].clone()
    for k in range(1, top_k):
        want += y.view(T, top_k, H)[:, k]
    assert torch.equal(kernel.moe_combine(y_sorted, pos.view(T, top_k), w), want)
    with pytest.raises(RuntimeError, match="pos out of range"):
        kernel.moe_combine(y_sorted, torch.full((T, top_k), T * top_k), w)


def test_disabled_by_env(monkeypatch):
    monkeypatch.setenv("M2SERVE_CPU_KERNELS", "0")
    cpu_kernels.get.cache_clear()
    try:
        assert cpu_kernels.get() is None
    finally:
        monkeypatch.delenv("M2SERVE_CPU_KERNELS")
        cpu_kernels.get.cache_clear()


# (blocks in the pool, block size, kv heads, query heads, seq_lens): an odd query group (3) with short blocks that
# 8-token groups straddle, and M2's group of 4 in 16-token blocks past the kernel's prefetch distance.
LAYOUTS = [(12, 4, 2, 6, [5, 1, 13]), (40, 16, 2, 8, [33, 16, 70, 7])]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("d", [64, 20])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_decode_attention_matches_gathered_softmax(kernel, dtype, d, layout):
    g = torch.Generator().manual_seed(d)
    NB, bs, nkv, nh, lens = layout
    cache = torch.randn(2, NB, bs, nkv, d, generator=g).to(dtype)
    k_cache, v_cache = cache[0], cache[1]
    seq_lens = torch.tensor(lens)
    width = -(-max(lens) // bs)
    tables = torch.stack([torch.randperm(NB, generator=g)[:width] for _ in lens])    # [B, width] blocks each
    q = torch.randn(len(lens), nh, d, generator=g)
    out = kernel.decode_attention(q, k_cache, v_cache, tables, seq_lens, d ** -0.5)
    for b, L in enumerate(seq_lens.tolist()):
        keys = k_cache[tables[b]].reshape(-1, nkv, d)[:L].float()          # [L, nkv, d]
        vals = v_cache[tables[b]].reshape(-1, nkv, d)[:L].float()
        kv_head = torch.arange(nh) // (nh // nkv)
        scores = torch.einsum("hd,lhd->hl", q[b], keys[:, kv_head]) * d ** -0.5
        ref = torch.einsum("hl,lhd->hd", scores.softmax(-1), vals[:, kv_head])
        torch.testing.assert_close(out[b], ref, rtol=1e-5, atol=1e-5)


def test_stale_build_lock_is_removed(monkeypatch, tmp_path):
    # A build killed part way leaves torch's `lock` behind and every later load would wait on it forever.
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    lock = tmp_path / "m2serve_cpu_test" / "lock"
    lock.parent.mkdir()
    lock.touch()
    assert not cpu_kernels.clear_stale_lock("m2serve_cpu_test") and lock.exists()    # fresh: a build may be running
    old = lock.stat().st_mtime - cpu_kernels.STALE_LOCK_S - 60
    os.utime(lock, (old, old))
    assert cpu_kernels.clear_stale_lock("m2serve_cpu_test") and not lock.exists()
    assert not cpu_kernels.clear_stale_lock("m2serve_cpu_test")                       # no lock: nothing to do


def test_decode_attention_rejects_out_of_range_lengths(kernel):
    cache = torch.zeros(2, 4, 4, 1, 8)
    with pytest.raises(RuntimeError, match="out of range"):
        kernel.decode_attention(torch.zeros(1, 2, 8), cache[0], cache[1], torch.zeros(1, 2, dtype=torch.long),
                                torch.tensor([9]), 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_experts_whole_expert_order_equals_split_order(kernel, dtype):
    """With >= 2 routed experts per thread each thread runs whole experts; with fewer, every expert's rows are
    split over the threads. The two orders must agree bitwise (same code for every output)."""
    g = torch.Generator().manual_seed(7)
    E, H, I = 8, 64, 48
    w13 = (torch.randn(E, 2 * I, H, generator=g) / 8).to(dtype)
    w2 = (torch.randn(E, H, I, generator=g) / 6).to(dtype)
    counts = torch.tensor([2, 5, 0, 1, 3, 1, 6, 2])                   # 7 routed experts, 1-6 rows each
    x = torch.randn(int(counts.sum()), H, generator=g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        whole = kernel.experts(x, counts, w13, w2)                     # 7 >= 2 * 1: whole experts
        torch.set_num_threads(8)
        split = kernel.experts(x, counts, w13, w2)                     # 7 < 2 * 8: split passes
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(whole, split)
    torch.testing.assert_close(whole, _experts_ref(x, counts, w13, w2), rtol=1e-5, atol=1e-4)
