"""Batch-invariant elementwise ops (layers/batch_invariant.rowwise): a row's sigmoid does not depend on how many
rows share its tensor. Without the padding, CPU SIMD loops send a batch-size-dependent tail of elements through
scalar libm instead of SLEEF, and the router's weights then differ in the last bit between alone and batched."""
import torch

from m2serve.layers import batch_invariant


def test_rowwise_sigmoid_is_batch_invariant():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 8, generator=g) * 4                              # a router's [T, E] logits
    batch_invariant.set_batch_invariant(True)
    try:
        alone = [batch_invariant.rowwise(torch.sigmoid, x[i:i + 1]) for i in range(x.shape[0])]
        for T in range(1, x.shape[0] + 1):
            got = batch_invariant.rowwise(torch.sigmoid, x[:T])
            for i in range(T):
                assert torch.equal(got[i], alone[i][0]), (T, i)
    finally:
        batch_invariant.set_batch_invariant(False)


def test_rowwise_is_plain_when_off():
    x = torch.randn(5, 8)
    assert torch.equal(batch_invariant.rowwise(torch.sigmoid, x), torch.sigmoid(x))
