"""d: QuaRot keeps the float function (so the rotation math is right); the Hadamard construction is orthogonal;
the exported rotation is the one fused into the weights."""
import pytest
import torch
from safetensors.torch import load_file

from m2serve.models.arch import MiniMaxM2Arch
from m2serve.models.loader import load_model
from m2serve.quantize.hadamard import hadamard_matrix, random_hadamard
from m2serve.quantize.quarot import apply_quarot
from tests.helpers.tiny_model import make_tiny_model
from tests.quant.helpers import engine_logits

PROMPT = [(11 * i + 2) % 500 for i in range(9)]


@pytest.mark.parametrize("n", [1, 2, 8, 64, 12, 24, 48, 768, 20, 28, 36, 40, 60, 76, 108, 136, 140, 160, 200])
def test_hadamard_matrices(n):
    H = hadamard_matrix(n)
    assert H is not None and set(H.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(H @ H.T, n * torch.eye(n, dtype=torch.float64))
    R = random_hadamard(n, torch.Generator().manual_seed(0))
    torch.testing.assert_close(R @ R.T, torch.eye(n, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.allclose(R.abs(), torch.full_like(R, n ** -0.5))


def test_minimax_hidden_size_is_had12_times_walsh256():
    H = hadamard_matrix(3072)                                         # rows 0..63 against all: cheap, same check
    assert H.shape == (3072, 3072) and torch.equal(H[:64] @ H.T, 3072 * torch.eye(3072, dtype=torch.float64)[:64])
    assert torch.equal(H[:12, :12] @ H[:12, :12].T, 12 * torch.eye(12, dtype=torch.float64))   # the had12 block


def test_orders_without_a_construction_fall_back_to_an_orthogonal_rotation():
    assert hadamard_matrix(52) is None
    R = random_hadamard(52, torch.Generator().manual_seed(0))
    torch.testing.assert_close(R @ R.T, torch.eye(52, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kv_heads", [2, 4])                                  # GQA and plain MHA
def test_rotated_float_model_keeps_its_logits(tmp_path, kv_heads):
    path = make_tiny_model(tmp_path / "m", num_key_value_heads=kv_heads, num_hidden_layers=3)
    arch = MiniMaxM2Arch.from_dir(path)
    model = load_model(path, arch, torch.float32, show_progress=False)
    before, _ = engine_logits(model, PROMPT, [5, 17, 301])
    Q, Rh = apply_quarot(model, seed=1234)
    after, _ = engine_logits(model, PROMPT, [5, 17, 301])
    assert (after - before).abs().max() < 1e-4 * before.abs().max()
    assert not torch.allclose(model.lm_head.weight, load_model(path, arch, torch.float32, show_progress=False)
                              .lm_head.weight)                               # the weights did change
    for layer in model.model.layers:
        assert (layer.input_layernorm.weight == 1).all() and (layer.post_attention_layernorm.weight == 1).all()
    assert (model.model.norm.weight == 1).all()
    torch.testing.assert_close(Q @ Q.T, torch.eye(arch.hidden_size), rtol=0, atol=1e-5)
    torch.testing.assert_close(Rh @ Rh.T, torch.eye(arch.head_dim), rtol=0, atol=1e-5)


def test_exported_rotation_is_the_fused_one(quantized, tiny_model_dir):
    path = quantized("w8a8_dynamic", True, True)
    Q = load_file(str(path / "optional/quarot.safetensors"))["global_rotation"]
    arch = MiniMaxM2Arch.from_dir(tiny_model_dir)
    assert Q.shape == (arch.hidden_size, arch.hidden_size) and Q.dtype == torch.float32
    src = load_file(str(tiny_model_dir / "model.safetensors"))
    got = load_file(str(path / "quant_model_weights.safetensors"))
    E = src["model.embed_tokens.weight"].double()
    torch.testing.assert_close(got["model.embed_tokens.weight"].double(), E @ Q.double(), rtol=0, atol=1e-5)
    g = src["model.norm.weight"].double()
    torch.testing.assert_close(got["lm_head.weight"].double(), (src["lm_head.weight"].double() * g) @ Q.double(),
                               rtol=0, atol=1e-5)
    # Undoing the rotation of the embedding gives the original back (what an EAGLE3 draft would do).
    torch.testing.assert_close(got["model.embed_tokens.weight"].double() @ Q.double().T, E, rtol=0, atol=1e-5)
