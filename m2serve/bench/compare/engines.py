"""The server command line of each engine, with the settings chosen to make the engines comparable (same dtype,
context, KV bytes, threads, greedy outputs to full length) recorded next to it."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from m2serve.bench.compare.gguf import gguf_dtype
from m2serve.bench.compare.machine import cpu_ranges, usable_cpus
from m2serve.bench.compare.peers import Peer
from m2serve.bench.compare.server import ServerSpec, free_port


def m2serve_spec(args, model: Path, name: str, dtype: str, max_model_len: int, kv_bytes: int) -> ServerSpec:
    port = free_port()
    cmd = [sys.executable, "-m", "m2serve.cli.main", "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
           "--served-model-name", name, "--dtype", dtype, "--max-model-len", str(max_model_len),
           "--kv-cache-memory-bytes", str(kv_bytes), "--seed", str(args.seed), *shlex.split(args.m2serve_args)]
    return ServerSpec("m2serve", cmd, {"PYTHONUNBUFFERED": "1"}, port, "/health", dtype,
                      settings={"kv_cache_memory_bytes": kv_bytes, "max_model_len": max_model_len,
                                "threads": "torch default (every usable CPU)"})


def vllm_spec(args, peer: Peer, model: Path, name: str, dtype: str, max_model_len: int,
              kv_bytes: int) -> ServerSpec:
    port = free_port()
    bind = args.vllm_omp_threads_bind
    if bind == "all":
        bind = cpu_ranges(usable_cpus())
    cmd = [peer.detail["vllm"], "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
           "--dtype", dtype, "--served-model-name", name, "--max-model-len", str(max_model_len),
           "--kv-cache-memory-bytes", str(kv_bytes), "--seed", str(args.seed), *shlex.split(args.vllm_args)]
    env = {"VLLM_CPU_OMP_THREADS_BIND": bind, "VLLM_TARGET_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
    return ServerSpec("vllm", cmd, env, port, "/health", dtype,
                      settings={"kv_cache_memory_bytes": kv_bytes, "max_model_len": max_model_len,
                                "VLLM_CPU_OMP_THREADS_BIND": bind,
                                "note": "KV cache sized with --kv-cache-memory-bytes (same bytes as m2serve; "
                                        "VLLM_CPU_KVCACHE_SPACE, in GiB, is the older knob for the same thing)"})


def llama_spec(args, peer: Peer, model: Path, name: str, max_model_len: int, eos_ids: list[int]) -> ServerSpec:
    port = free_port()
    threads = args.threads or len(usable_cpus())
    cmd = [peer.detail["python"], "-m", "llama_cpp.server", "--model", peer.detail["gguf"], "--model_alias", name,
           "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads),
           "--n_ctx", str(max_model_len), "--seed", str(args.seed), "--interrupt_requests", "False",
           *shlex.split(args.llama_args)]
    # llama-cpp-python has no ignore_eos: ban the end-of-sequence ids instead, so outputs run to max_tokens like
    # on the other engines; and turn off its default repeat penalty (1.1), which the others do not apply.
    extra = {"repeat_penalty": 1.0}
    if args.ignore_eos and eos_ids:
        extra["logit_bias"] = {str(i): -1e9 for i in eos_ids}
    dtype = gguf_dtype(peer.detail["gguf"])
    return ServerSpec("llama.cpp", cmd, {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}, port, "/v1/models", dtype,
                      extra_body=extra, uuid_request_ids=True,
                      settings={"n_ctx": max_model_len, "n_threads": threads, "parallel_slots": 1,
                                "interrupt_requests": False,
                                "note": "llama_cpp.server has no parallel-slot option (llama.cpp's own llama-server "
                                        "has --parallel): one request runs at a time, the others queue; "
                                        "--interrupt_requests False keeps a new request from cutting the "
                                        "running stream short"})
