"""Greedy generation through the whole engine equals transformers `generate`, token for token."""
import random

import pytest
import torch

from m2serve import LLM, SamplingParams
from tests.helpers.tiny_model import load_hf_reference, make_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("gen-parity"), seed=3)


@pytest.fixture(scope="module")
def hf(model_dir):
    return load_hf_reference(model_dir)


@pytest.fixture(scope="module")
def llm(model_dir):
    return LLM(str(model_dir), dtype="float32", num_gpu_blocks_override=16, show_progress=False)


@pytest.mark.parametrize("prompt_len", [1, 5, 16, 37])
def test_greedy_matches_transformers_generate(hf, llm, prompt_len):
    rng = random.Random(prompt_len)
    prompt = [rng.randrange(3, 512) for _ in range(prompt_len)]
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, eos_token_id=None,
                          pad_token_id=0)[0, prompt_len:].tolist()
    out = llm.generate({"prompt_token_ids": prompt}, SamplingParams(temperature=0, max_tokens=20, ignore_eos=True),
                       use_tqdm=False)[0]
    assert out.outputs[0].token_ids == ref
