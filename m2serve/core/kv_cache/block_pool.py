"""The pool of KV-cache blocks: reference counts, a free list with LRU eviction, and the prefix-cache map.

A block with ref_cnt 0 sits in the free list; if it also has a hash it stays findable in the cache map until
it is handed out again (evicted). Freed blocks go to the tail and allocation takes from the head, so the
least recently used cached block is evicted first.
"""
from __future__ import annotations

from collections import OrderedDict


class KVBlock:
    __slots__ = ("block_id", "ref_cnt", "block_hash")

    def __init__(self, block_id: int):
        self.block_id = block_id
        self.ref_cnt = 0
        self.block_hash: bytes | None = None

    def __repr__(self) -> str:
        return f"KVBlock({self.block_id}, ref={self.ref_cnt}, cached={self.block_hash is not None})"


class BlockPool:
    def __init__(self, num_blocks: int, enable_caching: bool = True):
        if num_blocks < 1:
            raise ValueError(f"num_blocks={num_blocks} must be at least 1")
        self.num_blocks = num_blocks
        self.enable_caching = enable_caching
        self.blocks = [KVBlock(i) for i in range(num_blocks)]
        self.free_list: OrderedDict[int, KVBlock] = OrderedDict((b.block_id, b) for b in self.blocks)
        self.cached: dict[bytes, KVBlock] = {}
        # Prefix-cache statistics (queries and hits in tokens, as vLLM's metrics count them).
        self.prefix_queries = 0
        self.prefix_hits = 0

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_list)

    @property
    def usage(self) -> float:
        return 1.0 - self.num_free_blocks / self.num_blocks

    def get_cached_block(self, block_hash: bytes) -> KVBlock | None:
        return self.cached.get(block_hash) if self.enable_caching else None

    def allocate(self, n: int) -> list[KVBlock]:
        if n > len(self.free_list):
            raise RuntimeError(f"asked for {n} blocks, {len(self.free_list)} free")
        out = []
        for _ in range(n):
            _, block = self.free_list.popitem(last=False)
            self._evict(block)
            block.ref_cnt = 1
            out.append(block)
        return out

    def touch(self, blocks: list[KVBlock]) -> None:
        """Take a reference on blocks found in the prefix cache (pulling idle ones out of the free list)."""
        for block in blocks:
            if block.ref_cnt == 0:
                del self.free_list[block.block_id]
            block.ref_cnt += 1

    def free(self, blocks: list[KVBlock]) -> None:
        """Drop one reference on each block. Pass blocks tail-first: the tail of a sequence is evicted first."""
        for block in blocks:
            assert block.ref_cnt > 0, f"double free of {block}"
            block.ref_cnt -= 1
            if block.ref_cnt == 0:
                self.free_list[block.block_id] = block

    def cache_block(self, block: KVBlock, block_hash: bytes) -> None:
        """Register a full block under its chained hash. The first block with a hash keeps the entry."""
        if not self.enable_caching or block.block_hash is not None:
            return
        if block_hash in self.cached:
            return
        block.block_hash = block_hash
        self.cached[block_hash] = block

    def _evict(self, block: KVBlock) -> None:
        if block.block_hash is not None:
            if self.cached.get(block.block_hash) is block:
                del self.cached[block.block_hash]
            block.block_hash = None

    def reset_prefix_cache(self) -> bool:
        """Forget every cached hash; refused (False) while any block is in use."""
        if self.num_free_blocks != self.num_blocks:
            return False
        for block in self.blocks:
            block.block_hash = None
        self.cached.clear()
        return True

    def check_invariants(self) -> None:
        """Assert the pool's invariants (tests call this after every operation)."""
        assert len(self.free_list) <= self.num_blocks
        for block in self.blocks:
            assert block.ref_cnt >= 0, block
            assert (block.ref_cnt == 0) == (block.block_id in self.free_list), block
        for bid, block in self.free_list.items():
            assert block.block_id == bid and self.blocks[bid] is block
        for h, block in self.cached.items():
            assert block.block_hash == h, (block, h)
        hashed = [b for b in self.blocks if b.block_hash is not None]
        assert len(hashed) == len(self.cached), "a hashed block is missing from the cache map"
