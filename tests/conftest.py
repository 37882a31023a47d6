import os

import pytest
import torch

# Two cores on CI: keep intra-op threads bounded and deterministic.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def cpu_kernels_built():
    """Build m2serve's CPU kernels once, up front (about a minute on a fresh machine), so the first server a test
    starts does not spend its startup timeout compiling them."""
    from m2serve.layers import cpu_kernels

    return cpu_kernels.get()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random transformers MiniMax-M2 (fp32, random routing bias, partial RoPE, GQA) with a tiny tokenizer."""
    from tests.helpers.tiny_model import make_tiny_model
    from tests.helpers.tiny_tokenizer import build_tiny_tokenizer

    path = tmp_path_factory.mktemp("tiny-m2")
    make_tiny_model(path)
    build_tiny_tokenizer(path)
    return path


@pytest.fixture(scope="session")
def tiny_llm(tiny_model_dir):
    from m2serve import LLM

    return LLM(str(tiny_model_dir), dtype="float32", kv_cache_memory_bytes=64 << 20, show_progress=False)
