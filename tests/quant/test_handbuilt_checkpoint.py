"""b: a checkpoint written here straight from the published AscendV1 layout (not by `m2serve quantize`) loads and
matches the integer reference; it mixes what the format allows: static W8A8 attention (deq_scale in both its
fp32 and int64 forms, a non-zero zero point, the unused weight_scale/weight_offset present), W8A8_DYNAMIC,
a FLOAT layer, FLOAT experts in one layer, C8 scales as [1, n], two weight shards with an index."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from m2serve.errors import CheckpointError
from tests.quant.helpers import engine_logits
from tests.quant.reference import QuantReference
from tests.quant.test_quantized_model import DECODE, PROMPT, TOL, load

ATTN = {0: "W8A8", 1: "W8A8_DYNAMIC", 2: "FLOAT", 3: "W8A8_DYNAMIC"}
EXPERTS = {0: "W8A8_DYNAMIC", 1: "W8A8_DYNAMIC", 2: "FLOAT", 3: "W8A8_DYNAMIC"}


def per_channel(w):
    s = (w.abs().amax(1) / 127).clamp_min(torch.finfo(torch.float32).eps)
    return torch.round(w / s[:, None]).clamp(-128, 127).to(torch.int8), s


def build(src, dst):
    """The layout of spec A1/A2/A3, tensor by tensor."""
    w = load_file(str(src / "model.safetensors"))
    cfg = json.loads((src / "config.json").read_text())
    out, desc = {}, {}

    def add(name, t, kind):
        out[name], desc[name] = t.contiguous(), kind

    for name, t in w.items():
        parts = name.split(".")
        layer = int(parts[2]) if name.startswith("model.layers.") else None
        is_attn = ".self_attn." in name and name.endswith("_proj.weight")
        is_expert = ".experts." in name
        kind = ATTN[layer] if is_attn else EXPERTS[layer] if is_expert else "FLOAT"
        prefix = name.removesuffix(".weight")
        if kind == "FLOAT":
            add(name, t, "FLOAT")
        elif kind == "W8A8_DYNAMIC":
            q, s = per_channel(t)
            add(prefix + ".weight", q, kind)
            add(prefix + ".weight_scale", s[:, None], kind)
            add(prefix + ".weight_offset", torch.zeros(s.shape[0], 1), kind)
        else:                                                                # static W8A8
            q, s_w = per_channel(t)
            lo, hi = (-3.5, 4.5) if "o_proj" not in name else (-1.0, 1.5)
            s_x = (hi - lo) / 255
            o_x = round(-lo / s_x) - 128
            deq = (torch.tensor(s_x) * s_w).float()
            add(prefix + ".weight", q, kind)
            add(prefix + ".input_scale", torch.tensor([s_x], dtype=torch.float32), kind)
            add(prefix + ".input_offset", torch.tensor([float(o_x)]), kind)
            # fp16-model form (fp32 bits as int64) for q_proj, the bf16-model fp32 form elsewhere
            add(prefix + ".deq_scale", deq.view(torch.int32).to(torch.int64) if "q_proj" in name else deq, kind)
            add(prefix + ".quant_bias", (-o_x * q.long().sum(1)).to(torch.int32), kind)
            add(prefix + ".weight_scale", s_w[:, None], kind)                # unused by the runtime
            add(prefix + ".weight_offset", torch.zeros(s_w.shape[0], 1), kind)
    g = torch.Generator().manual_seed(3)
    for layer in range(4):
        for which in ("k", "v"):
            p = f"model.layers.{layer}.self_attn.{which}_proj"
            add(p + ".kv_cache_scale", (torch.rand(1, 32, generator=g) + 0.5) * 0.03, "C8")
            add(p + ".kv_cache_offset", torch.zeros(1, 32), "C8")
    names = sorted(out)
    half = len(names) // 2
    shards = {"quant_model_weights-00001-of-00002.safetensors": names[:half],
              "quant_model_weights-00002-of-00002.safetensors": names[half:]}
    dst.mkdir()
    for fname, keys in shards.items():
        save_file({k: out[k] for k in keys}, str(dst / fname))
    (dst / "quant_model_weights.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}))
    desc.update({"version": "1.0.0", "model_quant_type": "W8A8", "group_size": 0, "metadata": {}, "optional": {},
                 "kv_cache_type": "C8", "kv_quant_type": "C8"})
    (dst / "quant_model_description.json").write_text(json.dumps(desc))
    cfg.pop("quantization_config", None)
    (dst / "config.json").write_text(json.dumps(cfg))
    shutil.copy(src / "generation_config.json", dst)
    return dst


@pytest.fixture(scope="module")
def handbuilt(tiny_model_dir, tmp_path_factory):
    return build(tiny_model_dir, tmp_path_factory.mktemp("hand") / "m")


def test_handbuilt_checkpoint_matches_the_reference(handbuilt):
    model = load(handbuilt)
    layers = model.model.layers
    assert [layers[i].self_attn.k_proj.quant_method.name for i in range(4)] == [ATTN[i] for i in range(4)]
    assert [layers[i].mlp.experts.quant_method.name for i in range(4)] == [EXPERTS[i] for i in range(4)]
    assert layers[0].self_attn.q_proj.deq_scale.dtype == torch.float32
    got, cache = engine_logits(model, PROMPT, DECODE)
    ref = QuantReference(handbuilt).logits(PROMPT, DECODE)
    assert cache.dtype == torch.int8
    assert (got.double() - ref).abs().max().item() < TOL * ref.abs().max().item()


def test_nonzero_offsets_are_refused_naming_the_layer(handbuilt, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(handbuilt, bad)
    for f in bad.glob("quant_model_weights-*.safetensors"):
        t = load_file(str(f))
        key = "model.layers.1.block_sparse_moe.experts.2.w3.weight_offset"
        if key in t:
            t[key] = torch.ones_like(t[key])
            save_file(t, str(f))
    with pytest.raises(CheckpointError, match=r"model\.layers\.1\.block_sparse_moe\.experts.*weight_offset"):
        load(bad)
