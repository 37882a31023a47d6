"""The `m2serve bench compare` command line: its own engine flags plus `bench serve`'s workload flags (so a workload
reads the same in both commands), the workload rules applied once for every engine, and the command to print in
the report."""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from pathlib import Path

from m2serve.bench.compare.peers import LLAMA_SETUP, PEERS, VLLM_SETUP
from m2serve.cli.args import add, size_arg

# The workload when none is given: small enough for a 2-core machine, large enough to batch.
WORKLOAD_DEFAULTS = {"dataset_name": "random", "random_input_len": 200, "random_output_len": 128, "num_prompts": 64,
                     "max_concurrency": 16, "ignore_eos": True}
# Flags of `bench serve` that compare sets itself (endpoint, file names) and does not expose.
_SERVE_GROUPS = ("dataset", "traffic", "sampling", "results")
_SERVE_SKIP = {"--save-result", "--append-result", "--result-dir", "--result-filename", "--label"}


def make_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    from m2serve.bench import serve

    p = p or argparse.ArgumentParser(prog="m2serve bench compare")
    p.description = ("Serve one checkpoint with m2serve and each peer engine installed here, drive each with "
                     "`m2serve bench serve`'s client on the same workload, and print / save one table.")
    g = p.add_argument_group("engines")
    add(g, "--model", default=None, help="model folder (default: the bundled models/m2-tiny)")
    add(g, "--peers", default=",".join(PEERS),
        help=f"comma list of engines to run, from {','.join(PEERS)} (default: all; missing ones are reported)")
    add(g, "--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16", "half", "float", "bf16"],
        help="one dtype for every engine; auto: m2serve's choice on this machine (bf16 with AMX, else fp32)")
    add(g, "--max-model-len", type=size_arg, default=None,
        help="context limit of every server (default: the longest request + 16, rounded up to 256)")
    add(g, "--kv-cache-memory-bytes", type=size_arg, default=None,
        help="KV cache of m2serve and vLLM (default: concurrency x max-model-len tokens of this model's KV, +10%%)")
    add(g, "--m2serve-args", default="", help="extra `m2serve serve` flags, one shell-quoted string")
    add(g, "--vllm-args", default="", help="extra `vllm serve` flags, one shell-quoted string")
    add(g, "--llama-args", default="", help="extra `python -m llama_cpp.server` flags, one shell-quoted string")
    add(g, "--vllm-venv", default="build/peers/vllm", help=f"vLLM CPU venv (made by {VLLM_SETUP})")
    add(g, "--vllm-omp-threads-bind", default="all",
        help="VLLM_CPU_OMP_THREADS_BIND for vLLM: all (every CPU this process may use, as m2serve and llama.cpp "
             "get), auto (vLLM's choice: one core kept for its frontend), nobind, or a list like 0-1")
    add(g, "--llama-venv", default="build/peers/llama", help=f"llama-cpp-python venv (made by {LLAMA_SETUP})")
    add(g, "--gguf", default=None, help="GGUF of the checkpoint (default: build/peers/<model folder name>.gguf)")
    add(g, "--threads", type=int, default=None,
        help="CPU threads of llama.cpp and transformers (default: every CPU this process may use)")
    add(g, "--startup-timeout", type=float, default=900.0, help="seconds to wait for a server to become ready")

    tmp = serve.make_parser(argparse.ArgumentParser(add_help=False))
    for group in tmp._action_groups:
        if group.title not in _SERVE_GROUPS:
            continue
        target = p.add_argument_group(f"workload: {group.title} (as in `m2serve bench serve`)")
        for action in group._group_actions:
            if not set(action.option_strings) & _SERVE_SKIP and not any(
                    s.replace("_", "-") in _SERVE_SKIP for s in action.option_strings):
                target._add_action(action)
    g = p.add_argument_group("output")
    add(g, "--result-dir", default="benchmarks/results",
        help="a folder per run is made in it: <date>-<model>/ with compare.md, compare.json and the raw JSONs")
    p.set_defaults(**WORKLOAD_DEFAULTS)
    return p


def normalize_workload(args) -> None:
    """`bench serve`'s aliases and rules, applied once so every engine sees the same values."""
    if args.input_len is not None:
        args.random_input_len = args.input_len
    if args.output_len is not None:
        args.random_output_len = args.sharegpt_output_len = args.custom_output_len = args.output_len
    args.input_len = args.output_len = None
    if args.dataset_name == "random":
        args.ignore_eos = True
    if args.temperature is None:
        args.temperature = 0.0               # greedy everywhere unless asked otherwise
    pct = [p.strip() for p in str(args.metric_percentiles).split(",") if p.strip()]
    if not any(float(p) == 99 for p in pct):
        pct.append("99")
    args.metric_percentiles = ",".join(pct)
    metrics = [m.strip() for m in (args.percentile_metrics or "ttft,tpot,itl").split(",") if m.strip()]
    for m in ("ttft", "tpot"):
        if m not in metrics:
            metrics.append(m)
    args.percentile_metrics = ",".join(metrics)


def equivalent_command(args) -> str:
    """`m2serve bench compare` with every flag whose parsed value differs from its default (call before
    normalize_workload, which fills in derived values)."""
    p = make_parser(argparse.ArgumentParser(prog="m2serve bench compare", add_help=False))
    defaults = p.parse_args([])
    parts = ["m2serve", "bench", "compare"]
    for action in p._actions:
        if not action.option_strings:
            continue
        value, default = getattr(args, action.dest, None), getattr(defaults, action.dest, None)
        if value == default or (isinstance(value, float) and isinstance(default, float)
                                and math.isnan(value) and math.isnan(default)):
            continue
        flag = action.option_strings[0]
        if action.nargs == 0:
            if value:
                parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [flag, *(str(v) for v in value)]
        elif isinstance(value, dict):
            parts += [flag, json.dumps(value)]
        elif isinstance(value, str) and value.startswith("-"):
            parts.append(f"{flag}={value}")
        elif value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def command_line(args) -> str:
    """The command as typed when this process is `m2serve bench compare ...` (or `python -m m2serve.cli.main
    bench compare ...`); otherwise (called from Python) the equivalent command line."""
    argv = list(sys.argv)
    if argv[1:3] == ["bench", "compare"]:
        if Path(argv[0]).name == "m2serve":
            return shlex.join(["m2serve", *argv[1:]])
        if argv[0].endswith(os.path.join("m2serve", "cli", "main.py")):
            return shlex.join([Path(sys.executable).name, "-m", "m2serve.cli.main", *argv[1:]])
    return equivalent_command(args)
