"""`m2serve quantize` output loaded with quantization="ascend" equals an independent reference built from the
same integer tensors (checks a and e of issue 7), and the layout follows the spec."""
import json

import pytest
import torch
from safetensors import safe_open

from m2serve import LLM, SamplingParams
from m2serve.errors import ConfigError
from m2serve.models.arch import MiniMaxM2Arch
from m2serve.models.loader import load_model
from tests.quant.helpers import engine_logits
from tests.quant.reference import QuantReference

PROMPT = [(37 * i + 5) % 500 for i in range(11)]
DECODE = [7, 99, 250, 3, 411]
# Engine vs reference: fp32 vs float64 around exact integer products. Measured ~1.5e-6 on logits of max ~3.6;
# the quantization error itself (quantized vs float model) is ~0.2 there, five orders of magnitude above.
TOL = 1e-4

COMBOS = [("w8a8_dynamic", False, False), ("w8a8_dynamic", True, True), ("w8a8", False, True), ("w8a8", True, False)]


def load(path, dtype=torch.float32):
    return load_model(path, MiniMaxM2Arch.from_dir(path), dtype, show_progress=False, quantization="ascend")


@pytest.mark.parametrize("scheme,quarot,kv_c8", COMBOS)
def test_quantized_logits_match_the_integer_reference(quantized, scheme, quarot, kv_c8):
    path = quantized(scheme, quarot, kv_c8)
    model = load(path)
    got, cache = engine_logits(model, PROMPT, DECODE)
    ref = QuantReference(path).logits(PROMPT, DECODE)
    err = (got.double() - ref).abs().max().item()
    assert err < TOL * ref.abs().max().item(), err
    assert cache.dtype == (torch.int8 if kv_c8 else torch.float32)
    expected = {"W8A8_DYNAMIC"} if scheme == "w8a8_dynamic" else {"W8A8"}
    assert {m.quant_method.name for layer in model.model.layers
            for m in (layer.self_attn.q_proj, layer.self_attn.o_proj)} == expected
    assert all(layer.mlp.experts.quant_method.name == "W8A8_DYNAMIC" for layer in model.model.layers)


def test_layout_follows_the_spec(quantized, tiny_model_dir):
    path = quantized("w8a8", True, True)
    desc = json.loads((path / "quant_model_description.json").read_text())
    assert desc["version"] == "1.0.0" and desc["model_quant_type"] == "W8A8" and desc["group_size"] == 0
    assert desc["kv_cache_type"] == desc["kv_quant_type"] == "C8" and desc["metadata"] == {}
    assert desc["optional"] == {"quarot": {"rotation_map": {"global_rotation": "optional/quarot.safetensors"}}}
    with safe_open(str(path / "quant_model_weights.safetensors"), "pt") as f:
        names = set(f.keys())
        assert names == {k for k in desc if k not in ("version", "model_quant_type", "group_size", "metadata",
                                                          "optional", "kv_cache_type", "kv_quant_type")}
        p = "model.layers.1.self_attn.q_proj"
        assert f.get_tensor(p + ".weight").dtype == torch.int8 and desc[p + ".weight"] == "W8A8"
        assert f.get_tensor(p + ".quant_bias").dtype == torch.int32
        assert f.get_tensor(p + ".deq_scale").dtype == torch.float32
        assert f.get_tensor(p + ".input_scale").shape == (1,) and p + ".weight_scale" not in names
        e = "model.layers.1.block_sparse_moe.experts.3.w2"
        assert f.get_tensor(e + ".weight").shape == (64, 32) and f.get_tensor(e + ".weight_scale").shape == (64, 1)
        assert not f.get_tensor(e + ".weight_offset").any() and desc[e + ".weight"] == "W8A8_DYNAMIC"
        assert f.get_tensor("model.layers.0.block_sparse_moe.gate.weight").dtype == torch.float32
        assert desc["model.layers.0.block_sparse_moe.gate.weight"] == "FLOAT"
        assert desc["model.layers.2.self_attn.v_proj.kv_cache_scale"] == "C8"
        assert f.get_tensor("model.layers.2.self_attn.v_proj.kv_cache_scale").shape == (32,)   # 2 kv heads x 16
        assert (f.get_tensor("model.layers.0.input_layernorm.weight") == 1).all()            # folded by QuaRot
    cfg = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["torch_dtype"] == "float32"
    for name in ("tokenizer.json", "generation_config.json", "chat_template.jinja"):
        assert (path / name).read_bytes() == (tiny_model_dir / name).read_bytes()


def test_c8_decode_uses_the_dequantized_cache(quantized):
    """e: decode over the int8 cache equals the reference that dequantizes K/V; the prefill (no cached prefix)
    attends over float K/V, so only the decode rows differ from a float-KV model with the same weights."""
    c8, fkv = quantized("w8a8_dynamic", False, True), quantized("w8a8_dynamic", False, False)
    got, cache = engine_logits(load(c8), PROMPT, DECODE)
    reference = QuantReference(c8)
    ref = reference.logits(PROMPT, DECODE)
    assert (got.double() - ref).abs().max().item() < TOL * ref.abs().max().item()
    float_kv, _ = engine_logits(load(fkv), PROMPT, DECODE)
    n = len(PROMPT)
    assert torch.equal(got[:n], float_kv[:n])
    gap = (got[n:] - float_kv[n:]).abs().max().item()
    assert gap > 100 * TOL * ref.abs().max().item()                      # the int8 cache really is used
    # The cache holds round(k / s_k) of every token (K after norm and RoPE), at its slot.
    table = torch.randperm(32, generator=torch.Generator().manual_seed(0))          # engine_logits' block order
    pos = torch.arange(len(PROMPT) + len(DECODE))
    slots = table[pos // 4] * 4 + pos % 4
    for layer in (0, 3):
        s = reference.t[f"model.layers.{layer}.self_attn.k_proj.kv_cache_scale"].view(2, 16)
        want = torch.round(reference.keys[layer].float() / s).clamp(-128, 127)
        stored = cache[layer, 0].view(-1, 2, 16)[slots].float()
        assert cache.dtype == torch.int8 and (stored - want).abs().max() <= 1
        assert (stored != want).sum() <= 1                                 # fp32 vs fp64 K: a rounding tie at most


def test_llm_serves_the_quantized_folder_and_decodes_like_the_reference(quantized):
    path = quantized("w8a8_dynamic", True, True)
    llm = LLM(str(path), quantization="ascend", dtype="float32", kv_cache_memory_bytes=16 << 20, show_progress=False)
    out = llm.generate([{"prompt_token_ids": PROMPT}], SamplingParams(temperature=0, max_tokens=6, ignore_eos=True),
                       use_tqdm=False)[0].outputs[0].token_ids
    ref, tokens = QuantReference(path), []
    for _ in range(6):                                                   # the reference's own greedy decode
        tokens.append(int(ref.logits(PROMPT, tokens)[-1].argmax()))
    assert out == tokens
    assert llm.engine.runner.kv_cache.dtype == torch.int8
    with pytest.raises(ConfigError, match="quant_model_description.json"):
        LLM(str(path), dtype="float32", show_progress=False)


def test_weight_memory_is_about_a_quarter(quantized, tiny_model_dir):
    def nbytes(m, part):
        return sum(p.numel() * p.element_size() for n, p in m.named_parameters() if part in n)
    arch = MiniMaxM2Arch.from_dir(tiny_model_dir)
    f = load_model(tiny_model_dir, arch, torch.float32, show_progress=False)
    q = load(quantized("w8a8_dynamic", False, False))
    ratio = nbytes(q, "experts") / nbytes(f, "experts")
    assert 0.25 < ratio < 0.32, ratio                                     # int8 + one fp32 scale/offset per row


def test_quantized_engine_is_batch_invariant_with_the_flag(quantized):
    """Integer products are exact and every scale is per row or per tensor, so the W8A8 layers need no tiling:
    with batch_invariant=True a request's logprobs are bitwise the same alone and in a batch (C8 cache too)."""
    path = quantized("w8a8", True, True)
    llm = LLM(str(path), quantization="ascend", dtype="float32", batch_invariant=True,
              kv_cache_memory_bytes=16 << 20, show_progress=False)
    sp = SamplingParams(temperature=0, max_tokens=5, ignore_eos=True, logprobs=0)
    prompts = [{"prompt_token_ids": PROMPT}, {"prompt_token_ids": [3, 4, 5, 6, 7, 8, 9]},
               {"prompt_token_ids": DECODE * 3}]

    def run(ps):
        return [(o.outputs[0].token_ids, [{t: lp.logprob for t, lp in d.items()} for d in o.outputs[0].logprobs])
                for o in llm.generate(ps, sp, use_tqdm=False)]
    alone = [run([p])[0] for p in prompts]
    assert run(prompts) == alone


def test_sharded_output_loads_like_the_single_file(quantized, tiny_model_dir, tmp_path):
    from m2serve.quantize import QuantizeOptions, quantize_checkpoint
    dst = tmp_path / "sharded"
    quantize_checkpoint(tiny_model_dir, dst, QuantizeOptions(scheme="w8a8_dynamic", part_file_size=2e-4,
                                                             validate=False, show_progress=False))
    index = json.loads((dst / "quant_model_weights.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and shards[0] == f"quant_model_weights-00001-of-{len(shards):05d}.safetensors"
    assert not (dst / "quant_model_weights.safetensors").exists()
    a, _ = engine_logits(load(dst), PROMPT)
    b, _ = engine_logits(load(quantized("w8a8_dynamic", False, False)), PROMPT)
    assert torch.equal(a, b)
