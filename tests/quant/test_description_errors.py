"""c: inconsistent descriptions are refused naming the layer; the flag and the folder must agree."""
import json
import shutil
import subprocess
import sys

import pytest

from m2serve.cli.serve import StartupError, build_server_config, make_parser
from m2serve.config import EngineConfig
from m2serve.errors import CheckpointError, ConfigError
from tests.quant.test_quantized_model import load


@pytest.fixture(scope="module")
def base(quantized):
    return quantized("w8a8_dynamic", False, True)


def variant(base, tmp_path, edit):
    dst = tmp_path / "v"
    shutil.copytree(base, dst)
    desc = json.loads((dst / "quant_model_description.json").read_text())
    edit(desc)
    (dst / "quant_model_description.json").write_text(json.dumps(desc))
    return dst


def set_prefix(prefix, kind):
    def edit(desc):
        for k in desc:
            if k.startswith(prefix + "."):
                desc[k] = kind
    return edit


@pytest.mark.parametrize("edit,named", [
    (set_prefix("model.layers.1.self_attn.k_proj", "FLOAT"),
     r"layer model\.layers\.1\.self_attn has q_proj/k_proj/v_proj"),
    (set_prefix("model.layers.2.block_sparse_moe.experts.5.w2", "FLOAT"),
     r"layer model\.layers\.2\.block_sparse_moe\.experts\.5 has w1/w2/w3"),
    (lambda d: [set_prefix(f"model.layers.0.block_sparse_moe.experts.3.{w}", "FLOAT")(d) for w in ("w1", "w2", "w3")],
     r"layer model\.layers\.0\.block_sparse_moe\.experts mixes types"),
    (lambda d: d.pop("model.layers.3.self_attn.o_proj.weight"),
     r"no entry for model\.layers\.3\.self_attn\.o_proj\.weight"),
    (lambda d: d.pop("model.layers.2.block_sparse_moe.experts.0.w1.weight"),
     r"no entry for model\.layers\.2\.block_sparse_moe\.experts\.0\.w1\.weight"),
    (set_prefix("model.layers.1.block_sparse_moe.experts", "W8A8"),
     r"model\.layers\.1\.block_sparse_moe\.experts has type W8A8 \(static W8A8 has no MoE scheme"),
    (set_prefix("model.layers.0.self_attn.o_proj", "W4A8_DYNAMIC"),
     r"model\.layers\.0\.self_attn\.o_proj has type W4A8"),
    (lambda d: d.pop("model.layers.2.self_attn.v_proj.kv_cache_scale"),
     r"C8 but layer model\.layers\.2\.self_attn has no entry"),
    (lambda d: (d.pop("kv_cache_type"), d.pop("kv_quant_type")), r"kv_cache_scale entries .* but no kv_cache_type"),
    (set_prefix("lm_head", "W8A8_DYNAMIC"), r"lm_head\.weight is W8A8_DYNAMIC"),
])
def test_inconsistent_description_is_refused_naming_the_layer(base, tmp_path, edit, named):
    with pytest.raises(CheckpointError, match=named):
        load(variant(base, tmp_path, edit))


def test_description_type_must_match_the_stored_dtype(base, tmp_path):
    """The description says FLOAT for a layer whose tensors are int8: the int8 weight cannot load as float."""
    bad = variant(base, tmp_path, set_prefix("model.layers.1.self_attn.o_proj", "FLOAT"))
    with pytest.raises(CheckpointError, match=r"model\.layers\.1\.self_attn\.o_proj\.weight"):
        load(bad)


def test_the_flag_is_required_and_names_the_file(base, tiny_model_dir):
    with pytest.raises(ConfigError, match=r"quant_model_description\.json is present.*--quantization ascend"):
        EngineConfig.create(str(base))
    with pytest.raises(ConfigError, match=r"needs .*quant_model_description\.json"):
        EngineConfig.create(str(tiny_model_dir), quantization="ascend")
    with pytest.raises(ConfigError, match="'awq'"):
        EngineConfig.create(str(base), quantization="awq")
    assert EngineConfig.create(str(base), quantization="ascend").model.quantization == "ascend"


def test_serve_flag(base, tiny_model_dir):
    cfg = build_server_config(make_parser().parse_args([str(base), "--quantization", "ascend"]))
    assert cfg.engine.model.quantization == "ascend"
    cases = ((base, "awq", "--quantization awq"), (tiny_model_dir, "ascend", "--quantization ascend"))
    for model, flag, named in cases:
        with pytest.raises(StartupError) as e:
            build_server_config(make_parser().parse_args([str(model), "--quantization", flag]))
        assert named in e.value.message


def test_quantize_cli_process(tiny_model_dir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "m2serve.cli.main", "quantize", str(tiny_model_dir), str(tmp_path / "o"),
                        "--scheme", "w8a8_dynamic"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["quantized_top1_agreement"] > 0.5 and report["quantized_logits_rel_err"] < 0.5
    r = subprocess.run([sys.executable, "-m", "m2serve.cli.main", "quantize", str(tmp_path / "o"), str(tmp_path / "p")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "already quantized" in r.stderr
