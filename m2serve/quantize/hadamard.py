"""Random Hadamard rotations for QuaRot (spec A4, "Hadamard construction").

    R = H_n · diag(s) / sqrt(n),   s in {-1, +1}^n drawn from a seeded generator,   R R^T = I

H_n = Walsh(n / k) ⊗ had_k: a Sylvester (Walsh) matrix times a Hadamard matrix of order k, k being the largest
order of msModelSlim's list (12, 20, 28, ...) with n / k a power of two, or k = 1 when n is a power of two
(3072 = 12 · 256). The order-k matrices are built here by Paley's constructions (I: q prime, q ≡ 3 mod 4, order
q + 1; II: q prime, q ≡ 1 mod 4, order 2(q + 1)) or by doubling, not copied from tables, so for k > 1 the
matrix differs from msModelSlim's stored one; any orthogonal Q is equally valid and the one used is exported.
Sizes none of this reaches (orders 52, 156, 172 need prime-power fields) fall back to a seeded random
orthogonal matrix (QR of a Gaussian), with a warning.
"""
from __future__ import annotations

import functools
import logging

import torch

logger = logging.getLogger(__name__)

HADAMARD_ORDERS = (12, 20, 28, 36, 40, 52, 60, 76, 108, 136, 140, 156, 160, 172, 200)


def _is_prime(q: int) -> bool:
    return q >= 2 and all(q % p for p in range(2, int(q ** 0.5) + 1))


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _quadratic_character(q: int) -> torch.Tensor:
    """chi[a] for a in 0..q-1: 0 at 0, +1 on quadratic residues mod q, -1 otherwise."""
    chi = -torch.ones(q, dtype=torch.float64)
    chi[0] = 0
    for x in range(1, q):
        chi[x * x % q] = 1
    return chi


def _jacobsthal(q: int) -> torch.Tensor:
    idx = torch.arange(q)
    return _quadratic_character(q)[(idx[None, :] - idx[:, None]) % q]       # Q[i, j] = chi(j - i)


def _paley1(q: int) -> torch.Tensor:
    """Order q + 1 for a prime q ≡ 3 (mod 4): H = I + S, S skew with S[0, 1:] = 1, S[1:, 0] = -1, S[1:, 1:] = Q."""
    S = torch.zeros(q + 1, q + 1, dtype=torch.float64)
    S[0, 1:], S[1:, 0], S[1:, 1:] = 1, -1, _jacobsthal(q)
    return torch.eye(q + 1, dtype=torch.float64) + S


def _paley2(q: int) -> torch.Tensor:
    """Order 2(q + 1) for a prime q ≡ 1 (mod 4), from the symmetric conference matrix C of order q + 1."""
    C = torch.zeros(q + 1, q + 1, dtype=torch.float64)
    C[0, 1:], C[1:, 0], C[1:, 1:] = 1, 1, _jacobsthal(q)
    a = torch.tensor([[1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    return torch.kron(C, a) + torch.kron(torch.eye(q + 1, dtype=torch.float64), b)


@functools.lru_cache(maxsize=None)
def _base(k: int) -> torch.Tensor | None:
    """A ±1 Hadamard matrix of order k, or None when none of the constructions here reaches k."""
    if k == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    H = None
    if _is_prime(k - 1) and (k - 1) % 4 == 3:
        H = _paley1(k - 1)
    elif k % 2 == 0 and _is_prime(k // 2 - 1) and (k // 2 - 1) % 4 == 1:
        H = _paley2(k // 2 - 1)
    elif k % 2 == 0 and (half := _base(k // 2)) is not None:
        H = torch.kron(torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64), half)
    if H is not None:
        assert torch.equal(H @ H.T, k * torch.eye(k, dtype=torch.float64)), f"not a Hadamard matrix of order {k}"
    return H


def walsh(n: int) -> torch.Tensor:
    """Sylvester's Hadamard matrix of order n (a power of two)."""
    if not _is_pow2(n):
        raise ValueError(f"walsh({n}): n must be a power of two")
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.shape[0] < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H


def hadamard_matrix(n: int) -> torch.Tensor | None:
    """±1 H_n with H_n H_n^T = n I (float64), or None if n is out of reach."""
    ks = [k for k in sorted(HADAMARD_ORDERS, reverse=True) if n % k == 0 and _is_pow2(n // k)]
    if _is_pow2(n):
        ks.append(1)
    for k in ks:
        base = _base(k)
        if base is not None:
            return torch.kron(walsh(n // k), base)
    return None


def random_hadamard(n: int, generator: torch.Generator) -> torch.Tensor:
    """Orthogonal R [n, n] float64: H_n diag(s) / sqrt(n) with random signs s (seeded random orthogonal if no H_n)."""
    signs = torch.randint(0, 2, (n,), generator=generator).to(torch.float64) * 2 - 1
    H = hadamard_matrix(n)
    if H is None:
        logger.warning("no Hadamard matrix of order %d is built here: using a seeded random orthogonal rotation", n)
        q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
        return q * torch.sign(torch.diagonal(r))[None, :]
    return H * signs[None, :] / n ** 0.5
