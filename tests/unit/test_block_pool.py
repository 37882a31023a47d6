"""Block pool and KV-cache manager invariants under long random operation sequences."""
import random

import pytest

from m2serve.core.kv_cache.block_pool import BlockPool
from m2serve.core.kv_cache.hashing import hash_block, update_block_hashes
from m2serve.core.kv_cache.manager import KVCacheManager
from m2serve.core.request import Request
from m2serve.sampling import SamplingParams


def test_random_allocate_free_cache_10k_ops():
    rng = random.Random(1234)
    pool = BlockPool(64)
    held: list[list] = []          # groups of blocks we hold a reference to
    expected_ref: dict[int, int] = {}
    hashes = [hash_block(None, [i]) for i in range(200)]
    for step in range(12000):
        op = rng.random()
        if op < 0.35 and pool.num_free_blocks:
            n = rng.randint(1, min(8, pool.num_free_blocks))
            before = pool.num_free_blocks
            got = pool.allocate(n)
            assert pool.num_free_blocks == before - n
            for b in got:
                assert b.block_hash is None and b.ref_cnt == 1
                expected_ref[b.block_id] = 1
            held.append(got)
        elif op < 0.6 and held:
            group = held.pop(rng.randrange(len(held)))
            pool.free(list(reversed(group)))
            for b in group:
                expected_ref[b.block_id] -= 1
        elif op < 0.8 and held:
            group = rng.choice(held)
            b = rng.choice(group)
            h = rng.choice(hashes)
            had = pool.cached.get(h)
            pool.cache_block(b, h)
            if had is None and b.block_hash == h:
                assert pool.get_cached_block(h) is b
        elif pool.cached:
            # Prefix hit: take another reference on a cached block (possibly idle in the free list).
            h = rng.choice(list(pool.cached))
            b = pool.get_cached_block(h)
            pool.touch([b])
            expected_ref[b.block_id] = expected_ref.get(b.block_id, 0) + 1
            held.append([b])
        pool.check_invariants()
        for bid, ref in expected_ref.items():
            assert pool.blocks[bid].ref_cnt == ref, (step, bid)
    for group in held:
        pool.free(group)
    pool.check_invariants()
    assert pool.num_free_blocks == pool.num_blocks


def test_lru_eviction_order_and_double_free():
    pool = BlockPool(4)
    a = pool.allocate(2)
    pool.cache_block(a[0], b"h0")
    pool.cache_block(a[1], b"h1")
    pool.free(list(reversed(a)))          # tail first: a[1] is evicted before a[0]
    got = pool.allocate(3)                # the two never-used blocks, then a[1]
    assert a[1] in got and a[0] not in got
    assert pool.get_cached_block(b"h1") is None and pool.get_cached_block(b"h0") is a[0]
    with pytest.raises(AssertionError):
        pool.free([a[1], a[1], a[1]])


def _req(rid, tokens, max_tokens=8):
    return Request(rid, tokens, SamplingParams(max_tokens=max_tokens), eos_token_ids=[], max_model_len=10_000)


def test_manager_prefix_hits_and_random_lifecycle():
    rng = random.Random(7)
    mgr = KVCacheManager(num_blocks=40, block_size=4)
    prefixes = [[rng.randrange(100) for _ in range(rng.randint(4, 20))] for _ in range(5)]
    live = {}
    for step in range(3000):
        if live and rng.random() < 0.45:
            rid = rng.choice(list(live))
            mgr.free(live.pop(rid))
        else:
            toks = rng.choice(prefixes) + [rng.randrange(100) for _ in range(rng.randint(1, 9))]
            req = _req(f"r{step}", toks)
            hits, n_hit = mgr.get_computed_blocks(req)
            assert n_hit % 4 == 0 and n_hit < len(toks)
            # Every hit block really holds this prompt's prefix.
            expect = []
            update_block_hashes(expect, toks, 4)
            assert [b.block_hash for b in hits] == expect[:len(hits)]
            if mgr.allocate_slots(req, len(toks) - n_hit, hits) is not None:
                req.num_computed_tokens = len(toks)
                live[req.request_id] = req
                assert len(mgr.block_ids(req.request_id)) == -(-len(toks) // 4)
        mgr.pool.check_invariants()
        in_use = sum(len(mgr.req_blocks[r]) for r in live)
        distinct = len({b.block_id for r in live for b in mgr.req_blocks[r]})
        assert distinct <= in_use and mgr.pool.num_blocks - mgr.pool.num_free_blocks == distinct
    for req in list(live.values()):
        mgr.free(req)
    assert mgr.pool.num_free_blocks == 40


def test_full_prompt_hit_leaves_last_token_to_compute():
    mgr = KVCacheManager(num_blocks=10, block_size=4)
    a = _req("a", list(range(8)))
    mgr.allocate_slots(a, 8)
    b = _req("b", list(range(8)))
    hits, n = mgr.get_computed_blocks(b)
    assert n == 4 and len(hits) == 1       # the second block would leave nothing to compute
