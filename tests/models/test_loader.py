"""Checkpoint loader: both on-disk layouts, sharding, block-FP8, errors that name the tensor, TP/EP shards."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from m2serve.distributed.parallel_state import ParallelContext
from m2serve.errors import CheckpointError, ConfigError
from m2serve.models import loader
from m2serve.models.arch import MiniMaxM2Arch
from m2serve.models.loader import load_model, resolve_dtype
from tests.helpers.tiny_model import make_tiny_model

SMALL = dict(num_hidden_layers=2, num_local_experts=4, vocab_size=128)


@pytest.fixture(scope="module")
def original_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("orig"), **SMALL)


@pytest.fixture(scope="module")
def reference_state(original_dir) -> dict[str, torch.Tensor]:
    return load_state(original_dir)


def load_state(path: Path, dtype=torch.float32, parallel=None) -> dict[str, torch.Tensor]:
    model = load_model(path, MiniMaxM2Arch.from_dir(path), dtype, parallel=parallel, show_progress=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def variant(src: Path, dst: Path, edit=None, config_edit=None) -> Path:
    """Copy a checkpoint folder, letting `edit` change its tensor dict and `config_edit` its config."""
    dst.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((src / "config.json").read_text())
    if config_edit:
        config_edit(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
    tensors = load_file(src / "model.safetensors")
    if edit:
        edit(tensors)
    save_file(tensors, dst / "model.safetensors")
    return dst


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_original_and_transformers_layouts_load_identically(tmp_path, reference_state):
    v5 = make_tiny_model(tmp_path / "v5", layout="transformers", **SMALL)      # same seed, other layout
    names = load_file(v5 / "model.safetensors").keys()
    assert "model.layers.0.mlp.experts.gate_up_proj" in names and "model.layers.0.mlp.gate.weight" in names
    assert_same_state(load_state(v5), reference_state)
    # w13 rows: gate (w1) first, then up (w3), as in the checkpoint's experts.E.w1 / w3.
    gate_up = load_file(v5 / "model.safetensors")["model.layers.1.mlp.experts.gate_up_proj"]   # [E, 2I, H]
    assert torch.equal(reference_state["model.layers.1.mlp.experts.w13_weight"], gate_up)


def test_original_layout_expert_mapping(original_dir, reference_state):
    t = load_file(original_dir / "model.safetensors")
    w13 = reference_state["model.layers.0.mlp.experts.w13_weight"]
    I = w13.shape[1] // 2
    p = "model.layers.0.block_sparse_moe."
    assert torch.equal(w13[3, :I], t[p + "experts.3.w1.weight"])
    assert torch.equal(w13[3, I:], t[p + "experts.3.w3.weight"])
    assert torch.equal(reference_state["model.layers.0.mlp.experts.w2_weight"][3], t[p + "experts.3.w2.weight"])
    assert torch.equal(reference_state["model.layers.0.mlp.e_score_correction_bias"], t[p + "e_score_correction_bias"])
    assert torch.equal(reference_state["model.layers.0.mlp.gate.weight"], t[p + "gate.weight"])


@pytest.mark.parametrize("name", ["model.layers.1.self_attn.k_norm.weight", "lm_head.weight",
                                  "model.layers.1.block_sparse_moe.experts.2.w3.weight",
                                  "model.layers.0.block_sparse_moe.e_score_correction_bias"])
def test_missing_tensor_is_named(tmp_path, original_dir, name):
    bad = variant(original_dir, tmp_path / "m", edit=lambda t: t.pop(name))
    with pytest.raises(CheckpointError, match="missing.*" + name.replace(".", r"\.")):
        load_state(bad)


def test_missing_stacked_experts_are_named(tmp_path):
    v5 = make_tiny_model(tmp_path / "v5", layout="transformers", **SMALL)
    bad = variant(v5, tmp_path / "m", edit=lambda t: t.pop("model.layers.1.mlp.experts.down_proj"))
    with pytest.raises(CheckpointError, match=r"model\.layers\.1\.mlp\.experts\.down_proj"):
        load_state(bad)


def test_wrong_shape_is_named_with_shapes(tmp_path, original_dir):
    name = "model.layers.0.self_attn.q_proj.weight"

    def edit(t):
        t[name] = t[name][:, :-1].contiguous()                                # [64, 63]
    bad = variant(original_dir, tmp_path / "s", edit=edit)
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.") + r".*\(64, 63\).*\(64, 64\)"):
        load_state(bad)

    expert = "model.layers.1.block_sparse_moe.experts.0.w2.weight"
    bad = variant(original_dir, tmp_path / "s2", edit=lambda t: t.update({expert: t[expert].T.contiguous()}))
    with pytest.raises(CheckpointError, match=expert.replace(".", r"\.")):
        load_state(bad)


def test_wrong_stacked_shape_is_named(tmp_path):
    v5 = make_tiny_model(tmp_path / "v5", layout="transformers", **SMALL)
    name = "model.layers.0.mlp.experts.gate_up_proj"
    bad = variant(v5, tmp_path / "s", edit=lambda t: t.update({name: t[name][:3].contiguous()}))
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.") + r".*\[3, 64, 64\].*\[4, 64, 64\]"):
        load_state(bad)


def test_unexpected_tensor_is_named(tmp_path, original_dir):
    name = "model.layers.0.self_attn.sinks"
    bad = variant(original_dir, tmp_path / "u", edit=lambda t: t.update({name: torch.zeros(4)}))
    with pytest.raises(CheckpointError, match="unexpected.*" + name.replace(".", r"\.")):
        load_state(bad)


def test_inv_freq_and_mtp_layers_are_skipped(tmp_path, original_dir, reference_state):
    def edit(t):
        t["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)
        t["model.layers.2.self_attn.q_proj.weight"] = torch.ones(3, 3)        # MTP layer (>= num_hidden_layers)
    assert_same_state(load_state(variant(original_dir, tmp_path / "x", edit=edit)), reference_state)


def test_sharded_checkpoint_loads_identically(tmp_path, original_dir, reference_state):
    tensors = load_file(original_dir / "model.safetensors")
    dst = tmp_path / "sharded"
    dst.mkdir()
    shutil.copy(original_dir / "config.json", dst / "config.json")
    names = sorted(tensors)
    weight_map = {}
    for i in range(3):
        part = names[i::3]
        fname = f"model-{i + 1:05d}-of-00003.safetensors"
        save_file({n: tensors[n] for n in part}, dst / fname)
        weight_map.update({n: fname for n in part})
    (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert_same_state(load_state(dst), reference_state)


# ---------------------------------------------------------------- block FP8 ----------------------------------

FP8_MAX = 448.0                                           # largest finite float8_e4m3fn


def quantize_block_fp8(w: torch.Tensor, block: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Per 128x128 block: scale = amax/448, q = fp8(w / scale); returns (q, scale_inv = scale)."""
    out, inn = w.shape
    go, gi = -(-out // block), -(-inn // block)
    wf = w.float()
    scale = torch.empty(go, gi)
    for i in range(go):
        for j in range(gi):
            blk = wf[i * block:(i + 1) * block, j * block:(j + 1) * block]
            scale[i, j] = blk.abs().max().clamp(min=1e-12) / FP8_MAX
    expanded = scale.repeat_interleave(block, 0)[:out].repeat_interleave(block, 1)[:, :inn]
    return (wf / expanded).to(torch.float8_e4m3fn), scale


def is_fp8_target(name: str, t: torch.Tensor) -> bool:
    # Like the official release: every linear weight except the router gate and lm_head (and no embeddings).
    return t.dim() == 2 and name.startswith("model.layers.") and ".gate." not in name


@pytest.fixture(scope="module")
def fp8_dirs(tmp_path_factory):
    """A bf16 source whose dims straddle 128 (200, 192, 136, 96: not multiples) and its FP8 quantization."""
    root = tmp_path_factory.mktemp("fp8")
    src = make_tiny_model(root / "bf16", dtype=torch.bfloat16, hidden_size=200, head_dim=48,
                          intermediate_size=136, **SMALL)
    scales = {}

    def edit(t):
        for name in [n for n in t if is_fp8_target(n, t[n])]:
            t[name], t[name + "_scale_inv"] = quantize_block_fp8(t[name])
            scales[name] = t[name + "_scale_inv"]

    def cfg(c):
        c["quantization_config"] = {"quant_method": "fp8", "fmt": "float8_e4m3fn", "activation_scheme": "dynamic",
                                    "weight_block_size": [128, 128],
                                    "modules_to_not_convert": ["gate", "e_score_correction_bias", "lm_head"]}
    q = variant(src, root / "fp8", edit=edit, config_edit=cfg)
    return src, q, scales


def test_fp8_block_checkpoint_dequantizes_within_fp8_error(fp8_dirs):
    src, q, scales = fp8_dirs
    bf16 = load_file(src / "model.safetensors")
    fp8 = load_file(q / "model.safetensors")
    assert fp8["model.layers.0.self_attn.q_proj.weight"].dtype == torch.float8_e4m3fn
    assert tuple(fp8["model.layers.0.self_attn.q_proj.weight_scale_inv"].shape) == (2, 2)   # [192, 200]
    got = load_state(q)
    ref = load_state(src)
    n_quantized = 0
    for name, w in bf16.items():
        target = name.replace(".block_sparse_moe.", ".mlp.")
        if name not in scales:
            if ".experts." not in name:
                assert torch.equal(got[target], ref[target]), name             # not quantized: untouched
            continue
        n_quantized += 1
        if ".experts." in name:
            continue                                                            # checked through w13/w2 below
        s = scales[name].repeat_interleave(128, 0)[:w.shape[0]].repeat_interleave(128, 1)[:, :w.shape[1]]
        # Exact: the loader multiplies the fp8 value by its block's scale_inv.
        assert torch.equal(got[target], fp8[name].float() * s), name
        # Bound vs the bf16 source: e4m3 has 3 mantissa bits, so round-to-nearest is off by at most 2^-4 of
        # the value for normal numbers, and by at most half the smallest subnormal step (2^-10) times the block
        # scale for values that land in the subnormal range.
        err = (got[target] - w.float()).abs()
        assert (err <= w.float().abs() * 2 ** -4 + s * 2 ** -10).all(), name
        assert err.max() > 0                                                    # it really went through FP8
    assert n_quantized == 2 * (4 + 3 * 4)                                        # q,k,v,o + 4 experts x 3 per layer
    for layer in range(2):                                                      # experts, through the stacks
        w13 = got[f"model.layers.{layer}.mlp.experts.w13_weight"]
        for e in range(4):
            for rows, shard in ((slice(0, 136), "w1"), (slice(136, 272), "w3")):
                name = f"model.layers.{layer}.block_sparse_moe.experts.{e}.{shard}.weight"
                s = scales[name].repeat_interleave(128, 0)[:136].repeat_interleave(128, 1)[:, :200]
                assert torch.equal(w13[e, rows], fp8[name].float() * s), name


def test_fp8_missing_or_bad_scale_is_named(tmp_path, fp8_dirs):
    _, q, _ = fp8_dirs
    name = "model.layers.1.self_attn.o_proj.weight_scale_inv"
    bad = variant(q, tmp_path / "a", edit=lambda t: t.pop(name))
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_state(bad)
    bad = variant(q, tmp_path / "b", edit=lambda t: t.update({name: torch.ones(1, 1)}))
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.") + r".*\(1, 1\).*\(2, 2\)"):
        load_state(bad)


def test_other_quant_formats_are_refused_by_name(tmp_path, original_dir):
    awq = variant(original_dir, tmp_path / "awq", config_edit=lambda c: c.update(
        quantization_config={"quant_method": "awq", "bits": 4}))
    with pytest.raises(ConfigError, match="awq"):
        load_state(awq)
    packed = "model.layers.0.self_attn.q_proj.weight_packed"
    nvfp4 = variant(original_dir, tmp_path / "nvfp4", edit=lambda t: t.update({packed: torch.zeros(2, 2)}))
    with pytest.raises(CheckpointError, match=packed.replace(".", r"\.") + ".*NVFP4"):
        load_state(nvfp4)


# ---------------------------------------------------------------- config / dtype -----------------------------

def test_rotary_disagreement_is_a_config_error(tmp_path, original_dir):
    bad = variant(original_dir, tmp_path / "r", config_edit=lambda c: c.update(rotary_dim=4))  # factor 0.5 -> 8
    with pytest.raises(ConfigError, match="rotary"):
        MiniMaxM2Arch.from_dir(bad)


def test_resolve_dtype(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype("float32", "bfloat16", cuda) is torch.float32
    assert resolve_dtype("bfloat16", None, cpu) is torch.bfloat16
    assert resolve_dtype("float16", None, cpu) is torch.float16
    assert resolve_dtype("auto", "float16", cuda) is torch.float16
    assert resolve_dtype("auto", None, cuda) is torch.bfloat16
    monkeypatch.setattr(loader, "cpu_has_amx", lambda: True)
    assert resolve_dtype("auto", "float32", cpu) is torch.bfloat16
    monkeypatch.setattr(loader, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(loader, "wants_cpu_bf16_weights", lambda dtype, device: False)
    assert resolve_dtype("auto", "bfloat16", cpu) is torch.float32
    monkeypatch.setattr(loader, "wants_cpu_bf16_weights", lambda dtype, device: True)   # bf16 weights, fp32 math
    assert resolve_dtype("auto", "bfloat16", cpu) is torch.bfloat16
    assert resolve_dtype("auto", "float32", cpu) is torch.float32
    with pytest.raises(ConfigError, match="'int8'"):
        resolve_dtype("int8", None, cpu)


# ---------------------------------------------------------------- TP / EP shards -----------------------------

def test_tensor_parallel_shards_slice_the_full_weights(original_dir, reference_state):
    shards = [load_state(original_dir, parallel=ParallelContext(tp_rank=r, tp_size=2)) for r in range(2)]
    p = "model.layers.1."
    for name, dim in (("self_attn.q_proj.weight", 0), ("self_attn.k_proj.weight", 0), ("self_attn.o_proj.weight", 1),
                      ("self_attn.q_norm.weight", 0), ("self_attn.k_norm.weight", 0), ("mlp.experts.w2_weight", 2)):
        assert torch.equal(torch.cat([s[p + name] for s in shards], dim), reference_state[p + name]), name
    full, I = reference_state[p + "mlp.experts.w13_weight"], 16                 # intermediate 32 split in two
    for r, s in enumerate(shards):
        w13 = s[p + "mlp.experts.w13_weight"]
        assert torch.equal(w13[:, :I], full[:, r * I:(r + 1) * I])              # this rank's gate rows
        assert torch.equal(w13[:, I:], full[:, 32 + r * I:32 + (r + 1) * I])    # and up rows
        assert torch.equal(s["lm_head.weight"], reference_state["lm_head.weight"])


def test_expert_parallel_ranks_hold_disjoint_experts_that_sum_to_the_moe(original_dir, reference_state):
    arch = MiniMaxM2Arch.from_dir(original_dir)
    full = load_model(original_dir, arch, torch.float32, show_progress=False)
    ranks = [load_model(original_dir, arch, torch.float32, parallel=ParallelContext(ep_rank=r, ep_size=2),
                        show_progress=False) for r in range(2)]
    w13 = reference_state["model.layers.0.mlp.experts.w13_weight"]
    assert torch.equal(ranks[1].model.layers[0].mlp.experts.w13_weight, w13[2:])
    moe = full.model.layers[0].mlp
    x = torch.randn(9, arch.hidden_size, generator=torch.Generator().manual_seed(0))
    ids, weights = moe.route(x)
    partial = sum(r.model.layers[0].mlp.experts(x, ids, weights) for r in ranks)
    torch.testing.assert_close(partial.to(x.dtype), moe(x), atol=1e-6, rtol=0)


def test_multithread_load_is_identical(original_dir, reference_state):
    model = load_model(original_dir, MiniMaxM2Arch.from_dir(original_dir), torch.float32, show_progress=False,
                       num_threads=4)
    assert_same_state({k: v for k, v in model.state_dict().items()}, reference_state)


def test_model_loader_extra_config_is_checked():
    from m2serve.config import _load_threads
    assert _load_threads(None) == 1 and _load_threads({"enable_multithread_load": False, "num_threads": 8}) == 1
    assert _load_threads({"enable_multithread_load": True, "num_threads": 16}) == 16
    with pytest.raises(ConfigError, match="num_thread"):
        _load_threads({"enable_multithread_load": True, "num_thread": 16})
    with pytest.raises(ConfigError, match="positive integer"):
        _load_threads({"enable_multithread_load": True, "num_threads": 0})
