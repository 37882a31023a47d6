"""oneDNN-prepacked bf16 weights (layers/prepack.py): same results as F.linear, used by the loaded model."""
import pytest
import torch
import torch.nn.functional as F

from m2serve.layers.prepack import can_prepack, cpu_supports_packed_bf16, packed_linear, prepack

packing = pytest.mark.skipif(not cpu_supports_packed_bf16(),
                             reason="oneDNN bf16 linear needs AVX-512 or AVX-NE-CONVERT")


def test_unsupported_cpu_keeps_plain_weights(tiny_model_dir, monkeypatch):
    """Where the CPU cannot run oneDNN's bf16 kernels (plain AVX2), nothing is packed and a bf16 model loads."""
    import m2serve.layers.prepack as pp
    from m2serve import LLM, SamplingParams

    monkeypatch.setattr(pp, "cpu_supports_packed_bf16", lambda: False)
    assert prepack(torch.zeros(4, 4, dtype=torch.bfloat16)) is None
    llm = LLM(str(tiny_model_dir), dtype="bfloat16", kv_cache_memory_bytes=16 << 20, show_progress=False)
    layer = llm.engine.runner.model.model.layers[0]
    assert layer.self_attn.q_proj.packed_weight is None and layer.mlp.experts.packed_experts is None
    out = llm.generate([{"prompt_token_ids": [3, 4, 5]}], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True),
                       use_tqdm=False)
    assert len(out[0].outputs[0].token_ids) == 4


@packing
@pytest.mark.parametrize("rows", [1, 2, 5, 16, 37])
def test_packed_linear_matches_f_linear(rows):
    g = torch.Generator().manual_seed(rows)
    w = (torch.randn(96, 64, generator=g) * 0.1).bfloat16()
    x = torch.randn(rows, 64, generator=g).bfloat16()
    packed = prepack(w)
    assert packed is not None
    got, want = packed_linear(x, packed), F.linear(x, w)
    assert got.shape == want.shape and got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), rtol=1e-2, atol=1e-2)


@packing
def test_only_bf16_cpu_weights_are_packed(monkeypatch):
    assert not can_prepack(torch.zeros(4, 4))                       # fp32 stays on F.linear
    assert can_prepack(torch.zeros(4, 4, dtype=torch.bfloat16))
    monkeypatch.setenv("M2SERVE_CPU_WEIGHT_PREPACK", "0")
    assert prepack(torch.zeros(4, 4, dtype=torch.bfloat16)) is None


@packing
def test_bf16_model_uses_packed_weights_and_matches_unpacked(tiny_model_dir, monkeypatch):
    from m2serve import LLM, SamplingParams

    # bf16 activations through oneDNN (not the bf16-weights / fp32-math mode of CPUs without native bf16).
    monkeypatch.setenv("M2SERVE_CPU_BF16_WEIGHTS", "0")
    prompts = [{"prompt_token_ids": list(range(3, 3 + n))} for n in (1, 7, 20)]
    greedy = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True, logprobs=0)
    packed = LLM(str(tiny_model_dir), dtype="bfloat16", kv_cache_memory_bytes=16 << 20, show_progress=False)
    layer = packed.engine.runner.model.model.layers[0]
    assert layer.self_attn.q_proj.packed_weight is not None and layer.mlp.experts.packed_experts is not None
    a = packed.generate(prompts, greedy, use_tqdm=False)
    monkeypatch.setenv("M2SERVE_CPU_WEIGHT_PREPACK", "0")
    plain = LLM(str(tiny_model_dir), dtype="bfloat16", kv_cache_memory_bytes=16 << 20, show_progress=False)
    assert plain.engine.runner.model.model.layers[0].self_attn.q_proj.packed_weight is None
    b = plain.generate(prompts, greedy, use_tqdm=False)
    for x, y in zip(a, b):
        # Same first token; logprobs of the chosen tokens agree to bf16 precision.
        assert x.outputs[0].token_ids[0] == y.outputs[0].token_ids[0]
        lx = x.outputs[0].logprobs[0][x.outputs[0].token_ids[0]].logprob
        ly = y.outputs[0].logprobs[0][y.outputs[0].token_ids[0]].logprob
        assert abs(lx - ly) < 0.05
