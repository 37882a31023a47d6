"""`m2serve bench offline`: `LLM.generate` throughput on random prompts (vLLM's `bench throughput`, random dataset).

Prints requests/s, input / output / total tokens/s, then the roofline view of the run: bytes moved and FLOPs done
(estimated per engine step from the architecture, the experts actually routed to and the KV context read), as
achieved GB/s and GFLOP/s and their fraction of this machine's measured bandwidth and matmul throughput.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from m2serve.cli.args import add, add_bool, compilation_arg, size_arg
from m2serve.config import KV_CACHE_DTYPE_CHOICES


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """The LLM(...) options shared by bench offline and bench latency (vLLM's engine flag names)."""
    g = p.add_argument_group("engine")
    add(g, "--model", default=None, help="model folder (default: the bundled models/m2-tiny)")
    add(g, "--tokenizer", default=None, help="tokenizer folder (default: the model folder)")
    add(g, "--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16", "half", "float", "bf16"])
    add(g, "--kv-cache-dtype", default="auto", choices=KV_CACHE_DTYPE_CHOICES)
    add(g, "--max-model-len", type=size_arg, default=None)
    add(g, "--max-num-seqs", type=int, default=256)
    add(g, "--max-num-batched-tokens", type=size_arg, default=None)
    add(g, "--kv-cache-memory-bytes", type=size_arg, default=None)
    add(g, "--num-gpu-blocks-override", type=int, default=None)
    add(g, "--gpu-memory-utilization", type=float, default=0.9)
    add(g, "--block-size", type=int, default=16)
    add_bool(g, "--enable-prefix-caching", True, "reuse KV blocks of shared prompt prefixes")
    add(g, "--batch-invariant", action="store_true", default=None, help="batch-invariant numerics (slower)")
    add(g, "--async-scheduling", action="store_true", help="schedule step N+1 while step N runs")
    add(g, "--compilation-config", "-O", type=compilation_arg, default=None,
        help="torch.compile the decoder layers (a level 0-3 or vLLM's JSON)")
    add(g, "--enforce-eager", action="store_true", help="never compile the model")
    add(g, "--device", default="auto", help="auto | cpu | cuda[:N]")
    add(g, "--seed", type=int, default=0)
    add(g, "--trust-remote-code", action="store_true", help="accepted; no remote code is run")
    add(g, "--disable-roofline", action="store_true", help="skip the machine probe and the roofline numbers")
    add(g, "--output-json", default=None, help="write the results to this JSON file")


def build_llm(args):
    from m2serve import LLM

    dtype = {"half": "float16", "float": "float32", "bf16": "bfloat16"}.get(args.dtype, args.dtype)
    return LLM(args.model, tokenizer=args.tokenizer, dtype=dtype, max_model_len=args.max_model_len,
               max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
               kv_cache_memory_bytes=args.kv_cache_memory_bytes, num_gpu_blocks_override=args.num_gpu_blocks_override,
               gpu_memory_utilization=args.gpu_memory_utilization, block_size=args.block_size,
               enable_prefix_caching=args.enable_prefix_caching, batch_invariant=args.batch_invariant,
               device=args.device, seed=args.seed, async_scheduling=args.async_scheduling,
               compilation_config=args.compilation_config, enforce_eager=args.enforce_eager,
               kv_cache_dtype=args.kv_cache_dtype, show_progress=False)


def random_token_prompts(llm, num: int, input_len: int, output_len: int, range_ratio=0.0, prefix_len: int = 0,
                         seed: int = 0):
    """Random prompts as token ids (exact lengths; special ids left out when the model has a tokenizer)."""
    from m2serve.bench.datasets import sample_random

    return sample_random(llm.get_tokenizer(), num, input_len, output_len, range_ratio, prefix_len, seed,
                         token_ids_only=True, vocab_size=llm.config.model.arch.vocab_size)


def machine_limits(llm):
    from m2serve.bench.roofline import probe

    device = llm.engine.runner.device
    print("Probing this machine's memory bandwidth and matmul throughput...")
    limits = probe(str(device))
    print(f"Machine: {limits.describe()}")
    return limits


def make_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="m2serve bench offline")
    add_engine_args(p)
    g = p.add_argument_group("workload")
    add(g, "--input-len", type=int, default=1024, help="prompt tokens per request")
    add(g, "--output-len", type=int, default=128, help="generated tokens per request (ignore_eos)")
    add(g, "--num-prompts", type=int, default=1000)
    add(g, "--random-range-ratio", default="0.0", help="per-request length range, as in bench serve")
    add(g, "--random-prefix-len", type=int, default=0)
    add(g, "--disable-tqdm", action="store_true")
    return p


def run(args: argparse.Namespace) -> dict:
    from m2serve import SamplingParams
    from m2serve.bench.roofline import report
    from m2serve.bench.steps import StepRecorder

    print(args)
    llm = build_llm(args)
    requests = random_token_prompts(llm, args.num_prompts, args.input_len, args.output_len, args.random_range_ratio,
                                    args.random_prefix_len, args.seed)
    prompts = [{"prompt_token_ids": r.prompt_token_ids} for r in requests]
    params = [SamplingParams(n=1, temperature=1.0, top_p=1.0, ignore_eos=True, max_tokens=r.expected_output_len)
              for r in requests]
    recorder = None if args.disable_roofline else StepRecorder(llm)
    try:
        start = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=not args.disable_tqdm)
        elapsed = time.perf_counter() - start
    finally:
        if recorder is not None:
            recorder.close()
    n_in = sum(len(o.prompt_token_ids) for o in outputs)
    n_out = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    result = {"elapsed_time": elapsed, "num_requests": len(outputs), "total_num_tokens": n_in + n_out,
              "total_input_tokens": n_in, "total_output_tokens": n_out,
              "requests_per_second": len(outputs) / elapsed, "tokens_per_second": (n_in + n_out) / elapsed,
              "input_tokens_per_second": n_in / elapsed, "output_tokens_per_second": n_out / elapsed}
    print(f"Throughput: {result['requests_per_second']:.2f} requests/s, {result['tokens_per_second']:.2f} total "
          f"tokens/s, {result['output_tokens_per_second']:.2f} output tokens/s")
    print(f"Input token throughput: {result['input_tokens_per_second']:.2f} tokens/s")
    print(f"Total num prompt tokens:  {n_in}")
    print(f"Total num output tokens:  {n_out}")
    if recorder is not None and recorder.steps:
        limits = machine_limits(llm)
        _, cost = recorder.total()
        whole = report(elapsed, cost, limits, recorder.dtype)
        print("\n".join(whole.lines("Whole run")))
        result["machine"] = {"device": limits.device, "memory_gb_per_s": limits.bandwidth_gbs,
                             "matmul_gflop_per_s": dict(limits.matmul_gflops)}
        result["roofline"] = whole.as_dict()
        decode = [s for s in recorder.steps if s.is_decode]
        if decode:
            t, c = recorder.total(decode)
            dec = report(t, c, limits, recorder.dtype)
            print("\n".join(dec.lines(f"Decode steps ({len(decode)} of {len(recorder.steps)})")))
            result["roofline_decode"] = dec.as_dict()
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(result, indent=4))
        print(f"Results saved to {args.output_json}")
    return result
