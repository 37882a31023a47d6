"""The engine on a CUDA GPU agrees with the engine on CPU. Skipped where torch sees no GPU (CI); run on a GPU
machine with `pytest tests/engine/test_cuda.py` (the rest of tests/engine and tests/models then also run on the
GPU: LLM's device defaults to cuda when one is present)."""
from pathlib import Path

import pytest
import torch

from m2serve import LLM, SamplingParams

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

M2_TINY = Path(__file__).resolve().parents[2] / "models" / "m2-tiny"
PROMPTS = ["Hello, who are you?", "Question: Tom has 3 apples and buys 4 more. How many apples does he have?\nAnswer:",
           "Copy the following text exactly:\n\nThe river runs past the old mill in Paris.", "请查询上海的天气"]
GREEDY = SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)


def _tokens(device, dtype, **kw):
    llm = LLM(str(M2_TINY), device=device, dtype=dtype, kv_cache_memory_bytes=64 << 20, show_progress=False, **kw)
    return [o.outputs[0].token_ids for o in llm.generate(PROMPTS, GREEDY, use_tqdm=False)]


@pytest.fixture(scope="module")
def cpu_fp32():
    return _tokens("cpu", "float32")


def test_cuda_fp32_matches_cpu(cpu_fp32):
    torch.backends.cuda.matmul.allow_tf32 = False
    assert _tokens("cuda", "float32") == cpu_fp32


def test_cuda_bf16_chat_identity():
    # bf16 rounding flips near-ties (on a raw, untemplated prompt even the first token), so bf16 is checked on what
    # the model was trained to answer firmly: its self-introduction, through the chat template, ending on EOS.
    llm = LLM(str(M2_TINY), device="cuda", dtype="bfloat16", kv_cache_memory_bytes=64 << 20, show_progress=False)
    out = llm.chat([{"role": "user", "content": "Hello, who are you?"}], SamplingParams(temperature=0, max_tokens=120),
                   use_tqdm=False)[0].outputs[0]
    assert "m2-tiny" in out.text and out.finish_reason == "stop"


def test_cuda_batch_invariant_alone_equals_batched():
    llm = LLM(str(M2_TINY), device="cuda", dtype="float32", batch_invariant=True, kv_cache_memory_bytes=64 << 20,
              show_progress=False)
    batched = [o.outputs[0].token_ids for o in llm.generate(PROMPTS, GREEDY, use_tqdm=False)]
    alone = [llm.generate([p], GREEDY, use_tqdm=False)[0].outputs[0].token_ids for p in PROMPTS]
    assert batched == alone
