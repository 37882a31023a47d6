"""Chained block hashes for prefix caching.

Block i's hash covers its parent's hash and its own token ids, so equal hashes mean equal whole prefixes.
sha256 keeps collisions out of reach (a collision would silently reuse another prompt's KV).
"""
from __future__ import annotations

import hashlib
from array import array

ROOT_HASH = b"m2serve-prefix-root"


def hash_block(parent: bytes | None, token_ids: list[int] | tuple[int, ...]) -> bytes:
    h = hashlib.sha256(parent or ROOT_HASH)
    h.update(array("q", token_ids).tobytes())
    return h.digest()


def update_block_hashes(block_hashes: list[bytes], token_ids: list[int], block_size: int) -> None:
    """Extend block_hashes in place to cover every full block of token_ids."""
    for start in range(len(block_hashes) * block_size, len(token_ids) - block_size + 1, block_size):
        parent = block_hashes[-1] if block_hashes else None
        block_hashes.append(hash_block(parent, token_ids[start:start + block_size]))
