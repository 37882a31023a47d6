"""transformers has no server: its batched `generate` runs in this process on the same prompt token ids, timed per
batch, and returns `bench serve`-shaped keys so it can share the table (marked "offline")."""
from __future__ import annotations

import gc
import time
from pathlib import Path


def run_transformers(model: Path, dtype: str, requests, batch_size: int, threads: int | None = None,
                     seed: int = 0) -> dict:
    """Batched greedy `generate` over the prompts' token ids, `batch_size` at a time (left-padded), each batch to
    its longest output length with EOS suppressed (min_new_tokens). Per batch: TTFT = time to the first logits
    (the prefill), TPOT = (last step - first step) / (steps - 1). Output tokens counted are the requested ones."""
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    try:
        hf = AutoModelForCausalLM.from_pretrained(str(model), dtype=torch_dtype)
    except TypeError:                                         # transformers 4.x spelling
        hf = AutoModelForCausalLM.from_pretrained(str(model), torch_dtype=torch_dtype)
    hf.eval()
    gen_cfg = hf.generation_config
    eos = gen_cfg.eos_token_id
    pad = gen_cfg.pad_token_id if gen_cfg.pad_token_id is not None else (
        (eos[0] if isinstance(eos, list) else eos) if eos is not None else 0)

    class Clock(LogitsProcessor):
        def __init__(self):
            self.times: list[float] = []

        def __call__(self, input_ids, scores):
            self.times.append(time.perf_counter())
            return scores

    def generate(batch, new_tokens: int, clock=None):
        width = max(len(r.prompt_token_ids) for r in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):
            n = len(r.prompt_token_ids)
            ids[i, width - n:] = torch.tensor(r.prompt_token_ids, dtype=torch.long)
            mask[i, width - n:] = 1
        procs = LogitsProcessorList([clock] if clock is not None else [])
        with torch.inference_mode():
            return hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                               min_new_tokens=new_tokens, do_sample=False, logits_processor=procs,
                               pad_token_id=pad)

    generate(requests[:1], 2)                                 # warm-up (allocations, lazy init)
    ttfts, tpots, batch_s, per_req_ttft, per_req_tpot = [], [], [], [], []
    total_in = total_out = 0
    wall0 = time.perf_counter()
    for start in range(0, len(requests), batch_size):
        batch = requests[start:start + batch_size]
        new_tokens = max(r.expected_output_len for r in batch)
        clock = Clock()
        t0 = time.perf_counter()
        generate(batch, new_tokens, clock)
        t1 = time.perf_counter()
        ttft = clock.times[0] - t0
        tpot = (clock.times[-1] - clock.times[0]) / (len(clock.times) - 1) if len(clock.times) > 1 else 0.0
        ttfts.append(ttft)
        tpots.append(tpot)
        batch_s.append(t1 - t0)
        per_req_ttft += [ttft] * len(batch)
        per_req_tpot += [tpot] * len(batch)
        total_in += sum(len(r.prompt_token_ids) for r in batch)
        total_out += sum(r.expected_output_len for r in batch)
    duration = time.perf_counter() - wall0
    attn = getattr(hf.config, "_attn_implementation", None)
    del hf
    gc.collect()

    def ms(values, fn):
        return float(fn(np.asarray(values))) * 1000 if values else 0.0

    return {
        "engine": "transformers", "mode": "offline", "transformers_version": transformers.__version__,
        "dtype": dtype, "attn_implementation": attn, "num_threads": torch.get_num_threads(),
        "batch_size": batch_size, "num_batches": len(batch_s), "num_prompts": len(requests), "completed": len(requests),
        "failed": 0, "duration": duration, "total_input_tokens": total_in, "total_output_tokens": total_out,
        "output_throughput": total_out / duration if duration > 0 else 0.0,
        "total_token_throughput": (total_in + total_out) / duration if duration > 0 else 0.0,
        "mean_ttft_ms": ms(per_req_ttft, np.mean), "median_ttft_ms": ms(per_req_ttft, np.median),
        "p99_ttft_ms": ms(per_req_ttft, lambda v: np.percentile(v, 99)),
        "mean_tpot_ms": ms(per_req_tpot, np.mean), "median_tpot_ms": ms(per_req_tpot, np.median),
        "p99_tpot_ms": ms(per_req_tpot, lambda v: np.percentile(v, 99)),
        "batch_prefill_ms": [t * 1000 for t in ttfts], "batch_decode_step_ms": [t * 1000 for t in tpots],
        "batch_seconds": batch_s,
        "definitions": "offline: TTFT = prefill of the request's batch (time to its first logits); TPOT = that "
                       "batch's mean decode step; output tok/s = requested output tokens / total generate time",
    }
