"""`m2serve bench latency`: end-to-end latency of one batch (vLLM's `bench latency`), plus the decode step.

Each iteration generates --output-len tokens (ignore_eos) for --batch-size random prompts of --input-len tokens;
each iteration draws new prompts, so prefix caching never skips a prefill. Prints the mean and percentile
latencies, the prefill and decode step times, and the decode step's roofline: bytes per step over the measured
bandwidth, FLOPs per step over the measured matmul throughput, and the measured step time over that bound.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from m2serve.bench.offline import add_engine_args, build_llm, machine_limits, random_token_prompts
from m2serve.cli.args import add

PERCENTILES = (10, 25, 50, 75, 90, 99)


def make_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="m2serve bench latency")
    add_engine_args(p)
    g = p.add_argument_group("workload")
    add(g, "--input-len", type=int, default=32)
    add(g, "--output-len", type=int, default=128)
    add(g, "--batch-size", type=int, default=8)
    add(g, "--n", type=int, default=1, help="samples per prompt")
    add(g, "--num-iters-warmup", type=int, default=10)
    add(g, "--num-iters", type=int, default=30)
    add(g, "--disable-tqdm", action="store_true")
    return p


def run(args: argparse.Namespace) -> dict:
    from tqdm.auto import tqdm

    from m2serve import SamplingParams
    from m2serve.bench.roofline import report
    from m2serve.bench.steps import StepRecorder

    print(args)
    if args.batch_size < 1 or args.output_len < 1 or args.num_iters < 1:
        raise ValueError("--batch-size, --output-len and --num-iters must be at least 1")
    llm = build_llm(args)
    params = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, ignore_eos=True, max_tokens=args.output_len)
    seed = iter(range(args.seed, args.seed + 1_000_000))

    def run_once() -> float:
        reqs = random_token_prompts(llm, args.batch_size, args.input_len, args.output_len, seed=next(seed))
        prompts = [{"prompt_token_ids": r.prompt_token_ids} for r in reqs]
        t0 = time.perf_counter()
        llm.generate(prompts, params, use_tqdm=False)
        return time.perf_counter() - t0

    for _ in tqdm(range(args.num_iters_warmup), desc="Warmup iterations", disable=args.disable_tqdm):
        run_once()
    recorder = None if args.disable_roofline else StepRecorder(llm)
    latencies, prefill_s, decode_steps = [], [], []
    try:
        for _ in tqdm(range(args.num_iters), desc="Profiling iterations", disable=args.disable_tqdm):
            if recorder is not None:
                recorder.clear()
            latencies.append(run_once())
            if recorder is not None:
                steps = recorder.steps
                first_decode = next((i for i, s in enumerate(steps) if s.is_decode), len(steps))
                prefill_s.append(sum(s.seconds for s in steps[:first_decode]))
                decode_steps += [s for s in steps[first_decode:]
                                 if s.is_decode and len(s.seqs) == args.batch_size * args.n]
    finally:
        if recorder is not None:
            recorder.close()
    lat = np.array(latencies)
    percentiles = {str(p): float(np.percentile(lat, p)) for p in PERCENTILES}
    print(f"Avg latency: {lat.mean()} seconds")
    for p in PERCENTILES:
        print(f"{p}% percentile latency: {percentiles[str(p)]} seconds")
    result = {"avg_latency": float(lat.mean()), "latencies": lat.tolist(), "percentiles": percentiles}
    if recorder is not None:
        result["avg_prefill_s"] = float(np.mean(prefill_s))
        print(f"Prefill (to the first token of all {args.batch_size * args.n} sequences): "
              f"{1000 * result['avg_prefill_s']:.3f} ms")
        if decode_steps:
            t = np.array([s.seconds for s in decode_steps])
            result.update(decode_steps=len(decode_steps), mean_decode_step_ms=float(t.mean() * 1000),
                          median_decode_step_ms=float(np.median(t) * 1000),
                          p99_decode_step_ms=float(np.percentile(t, 99) * 1000))
            print(f"Decode step (batch {len(decode_steps[0].seqs)}, {len(decode_steps)} steps): mean "
                  f"{result['mean_decode_step_ms']:.3f} ms, median {result['median_decode_step_ms']:.3f} ms, "
                  f"P99 {result['p99_decode_step_ms']:.3f} ms")
            limits = machine_limits(llm)
            total_t, cost = recorder.total(decode_steps)
            n = len(decode_steps)
            per_step = report(total_t / n, _scaled(cost, 1 / n), limits, recorder.dtype)
            experts = [s.distinct_experts for s in decode_steps if s.distinct_experts is not None]
            if experts:
                print(f"Distinct experts per layer per decode step: {np.mean(experts):.2f} of "
                      f"{recorder.arch.num_local_experts} (top-{recorder.arch.num_experts_per_tok})")
            print("\n".join(per_step.lines("Decode step roofline")))
            result["machine"] = {"device": limits.device, "memory_gb_per_s": limits.bandwidth_gbs,
                                 "matmul_gflop_per_s": dict(limits.matmul_gflops)}
            result["roofline_decode_step"] = per_step.as_dict()
        else:
            print("No full-batch decode step was recorded (--output-len 1?)")
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(result, indent=4))
        print(f"Results saved to {args.output_json}")
    return result


def _scaled(cost, factor: float):
    from m2serve.bench.roofline import StepCost

    return StepCost(cost.weight_bytes * factor, cost.kv_read_bytes * factor, cost.kv_write_bytes * factor,
                    cost.flops * factor)
