"""`m2serve bench compare`'s run: size the workload once, then start, drive and stop each engine in turn, and write
the raw results, compare.json and compare.md into one folder."""
from __future__ import annotations

import argparse
import copy
import json
import math
import shlex
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from m2serve.bench.compare.args import command_line, equivalent_command, normalize_workload
from m2serve.bench.compare.engines import llama_spec, m2serve_spec, vllm_spec
from m2serve.bench.compare.machine import _loadavg, checkpoint_info, git_revision, machine_info, usable_cpus
from m2serve.bench.compare.peers import DISPLAY, _resolve, detect_peers, parse_peers, peer_versions
from m2serve.bench.compare.report import render_markdown, workload_dict
from m2serve.bench.compare.server import ServerProcess, ServerSpec, format_env
from m2serve.bench.compare.table import TABLE_NOTES, Row, format_table
from m2serve.bench.compare.transformers_offline import run_transformers


def resolve_dtype_name(dtype: str) -> str:
    name = {"half": "float16", "float": "float32", "bf16": "bfloat16"}.get(dtype, dtype)
    if name != "auto":
        return name
    import torch

    from m2serve.models.loader import resolve_dtype
    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[
        resolve_dtype("auto", None, torch.device("cpu"))]


def serve_namespace(args, spec: ServerSpec, model: Path, name: str, run_dir: Path) -> argparse.Namespace:
    """`bench serve`'s arguments for one engine: its defaults, the workload flags given to compare, then the
    engine's endpoint, model name, result file and extra request fields."""
    from m2serve.bench import serve

    ns = serve.make_parser().parse_args([])
    for key, value in vars(args).items():
        if hasattr(ns, key):
            setattr(ns, key, copy.deepcopy(value))
    ns.backend, ns.endpoint, ns.host, ns.port = "openai", None, "127.0.0.1", spec.port
    ns.base_url = f"http://127.0.0.1:{spec.port}"
    ns.model, ns.served_model_name, ns.tokenizer = str(model), name, str(model)
    ns.save_result, ns.append_result = True, False
    ns.result_dir, ns.result_filename, ns.label = str(run_dir), f"{spec.engine}.json", spec.engine
    ns.metadata = list(args.metadata or []) + [f"engine={spec.engine}", f"dtype={spec.dtype}"]
    ns.extra_body = {**spec.extra_body, **(args.extra_body or {})}
    ns.request_id_uuid = spec.uuid_request_ids
    ns.header = None
    return ns


def default_max_model_len(requests, limit: int) -> int:
    longest = max(r.prompt_len + r.expected_output_len for r in requests) + 16
    return min(int(math.ceil(longest / 256) * 256), limit)


def eos_token_ids(model: Path, tokenizer) -> list[int]:
    ids = list(getattr(tokenizer, "eos_token_ids", []) or [])
    for name in ("generation_config.json", "config.json"):
        try:
            value = json.loads((model / name).read_text()).get("eos_token_id")
        except (OSError, ValueError):
            continue
        for v in value if isinstance(value, list) else [value]:
            if v is not None and int(v) not in ids:
                ids.append(int(v))
    return ids


def run(args: argparse.Namespace) -> dict:
    from m2serve.bench import serve
    from m2serve.bench.datasets import get_samples
    from m2serve.bench.roofline import kv_bytes_per_token
    from m2serve.config import BUNDLED_MODEL
    from m2serve.frontend.tokenizer import Tokenizer
    from m2serve.models.arch import MiniMaxM2Arch

    model = _resolve(args.model) if args.model else BUNDLED_MODEL
    if not (model / "config.json").is_file():
        hint = " (the bundled m2-tiny is made by tools/m2tiny)" if args.model is None else ""
        raise ValueError(f"model folder {model} has no config.json{hint}")
    if args.max_concurrency is not None and args.max_concurrency <= 0:
        raise ValueError("--max-concurrency must be greater than 0")
    names = parse_peers(args.peers)
    command, equivalent = command_line(args), equivalent_command(args)
    normalize_workload(args)
    dtype = resolve_dtype_name(args.dtype)
    started = datetime.now(timezone.utc)
    machine = machine_info()
    peers = detect_peers(names, args, model)

    tokenizer = Tokenizer.from_dir(model)
    requests = get_samples(args, tokenizer)                  # the prompts bench serve will send (same seed)
    arch = MiniMaxM2Arch.from_dir(model)
    max_model_len = args.max_model_len or default_max_model_len(requests, arch.max_position_embeddings)
    concurrency = args.max_concurrency or args.num_prompts
    elem = 4 if dtype == "float32" else 2
    kv_bytes = args.kv_cache_memory_bytes or max(
        64 << 20, int(math.ceil(kv_bytes_per_token(arch, elem) * concurrency * max_model_len * 1.1 / 2**20)) << 20)
    served_name = model.name or "model"

    run_dir = _resolve(args.result_dir) / f"{started.strftime('%Y%m%d-%H%M%S')}-{served_name}"
    run_dir.mkdir(parents=True, exist_ok=False)
    print(f"bench compare: {model} dtype={dtype} engines={','.join(names)} -> {run_dir}")
    print(f"Machine: {machine['cpu_model']}, {machine['num_usable_cpus']} usable CPUs of {machine['cpu_count']}")

    rows: list[Row] = []
    engines: dict[str, dict] = {}
    for name in names:
        peer = peers[name]
        if not peer.available:
            print(f"\n=== {DISPLAY[name]}: {peer.reason} ===")
            rows.append(Row(name, status=peer.reason, mode="offline" if name == "transformers" else "serve"))
            engines[name] = {"status": peer.reason, **peer.detail}
            continue
        print(f"\n=== {DISPLAY[name]} ===")
        load = _loadavg()
        if name == "transformers":
            threads = args.threads or len(usable_cpus())
            try:
                result = run_transformers(model, dtype, requests, concurrency, threads, args.seed)
            except Exception as e:                            # a broken peer must not lose the other rows
                rows.append(Row(name, dtype, "offline", status=f"failed: {type(e).__name__}: {e}"[:300]))
                engines[name] = {"status": rows[-1].status, "load_average_before": load}
                continue
            path = run_dir / "transformers.json"
            path.write_text(json.dumps(serve._jsonable(result), indent=2))
            print(f"transformers offline: {result['output_throughput']:.1f} output tok/s, batch prefill "
                  f"{result['mean_ttft_ms']:.1f} ms, decode step {result['mean_tpot_ms']:.2f} ms")
            rows.append(Row.from_result(name, dtype, result, "offline", path.name))
            engines[name] = {"status": "ok", "mode": "offline batched generate", "batch_size": concurrency,
                             "threads": threads, "transformers": result["transformers_version"],
                             "attn_implementation": result["attn_implementation"], "load_average_before": load,
                             "result_file": path.name}
            continue
        if name == "m2serve":
            spec = m2serve_spec(args, model, served_name, dtype, max_model_len, kv_bytes)
        elif name == "vllm":
            spec = vllm_spec(args, peer, model, served_name, dtype, max_model_len, kv_bytes)
        else:
            spec = llama_spec(args, peer, model, served_name, max_model_len, eos_token_ids(model, tokenizer))
            if spec.dtype not in (dtype, "gguf"):
                print(f"WARNING: the GGUF holds {spec.dtype} weights, the other engines run {dtype}")
        info = {"command": format_env(spec.env) + shlex.join(spec.cmd), "env": spec.env, "dtype": spec.dtype,
                "settings": spec.settings, "extra_request_fields": spec.extra_body, "load_average_before": load,
                "log": f"{spec.engine}.log"}
        info.update(peer_versions(name, peer))
        engines[name] = info
        server = ServerProcess(spec, run_dir / f"{spec.engine}.log")
        try:
            print(f"$ {info['command']}")
            server.start(args.startup_timeout)
            info["startup_s"] = round(server.startup_s, 1)
            print(f"{DISPLAY[name]} ready in {server.startup_s:.1f} s")
            result = serve.run(serve_namespace(args, spec, model, served_name, run_dir))
            rows.append(Row.from_result(name, spec.dtype, result, "serve", f"{spec.engine}.json"))
            info["status"] = "ok"
            info["result_file"] = f"{spec.engine}.json"
            warning = output_length_warning(args, requests, result)
            if warning:
                print(f"WARNING: {DISPLAY[name]}: {warning}")
                info["warning"] = warning
        except (Exception, SystemExit) as e:
            msg = getattr(e, "message", None) or str(e) or type(e).__name__
            first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
            status = f"failed: {first} (see {spec.engine}.log)"[:300]
            print(f"{DISPLAY[name]} {status}\n{msg}")
            rows.append(Row(name, spec.dtype, "serve", status=status))
            info["status"] = status
            info["error"] = msg[-4000:]
        finally:
            server.stop()

    finished = datetime.now(timezone.utc)
    summary = {
        "date": started.strftime("%Y-%m-%d %H:%M:%S UTC"), "finished": finished.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": machine, "m2serve_revision": git_revision(), "checkpoint": checkpoint_info(model),
        "command": command, "equivalent_command": equivalent, "argv": list(sys.argv), "dtype": dtype,
        "workload": workload_dict(args, len(requests), max_model_len, kv_bytes),
        "client": "m2serve bench serve (in process): vllm bench serve's client, metrics and JSON keys",
        "rows": [asdict(r) for r in rows], "engines": engines, "table_notes": TABLE_NOTES,
    }
    (run_dir / "compare.json").write_text(json.dumps(serve._jsonable(summary), indent=2))
    (run_dir / "compare.md").write_text(render_markdown(summary, rows))
    print("\n" + "=" * 30 + " bench compare " + "=" * 30)
    print(format_table(rows))
    print(TABLE_NOTES)
    print(f"Results: {run_dir}")
    summary["result_dir"] = str(run_dir)
    failed = [r for r in rows if r.status.startswith("failed")]
    if failed:
        raise RuntimeError(f"{', '.join(DISPLAY[r.engine] for r in failed)} failed; the table and logs are in "
                           f"{run_dir}")
    return summary


def output_length_warning(args, requests, result: dict) -> str | None:
    """With ignore_eos every completed request must return its full output length; say so when it did not (an
    engine that stopped early would look faster per request and slower per second)."""
    if not args.ignore_eos or not result.get("completed"):
        return None
    expected = sum(r.expected_output_len for r in requests)
    got = result.get("total_output_tokens")
    if result.get("failed"):
        return f"{result['failed']} of {result.get('num_prompts')} requests failed"
    if got is not None and got != expected:
        return (f"{got} output tokens counted, {expected} requested (outputs stopped early, or the client counted "
                "by re-tokenizing the text)")
    return None
