"""compare.md: the table with everything needed to reproduce or judge it (machine, checkpoint, workload, exact
command, and each engine's command line and settings)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from m2serve.bench.compare.peers import DISPLAY
from m2serve.bench.compare.table import TABLE_NOTES, Row, format_table


def workload_dict(args, num_requests: int, max_model_len: int, kv_bytes: int) -> dict:
    keys = ("dataset_name", "dataset_path", "num_prompts", "random_input_len", "random_output_len",
            "random_range_ratio", "random_prefix_len", "request_rate", "burstiness", "max_concurrency", "seed",
            "ignore_eos", "temperature", "num_warmups")
    w = {k: getattr(args, k, None) for k in keys}
    w["request_rate"] = "inf" if math.isinf(args.request_rate) else args.request_rate
    w.update(requests=num_requests, max_model_len=max_model_len, kv_cache_memory_bytes=kv_bytes)
    return w


def render_markdown(summary: dict, rows: list[Row]) -> str:
    m, ck, w = summary["machine"], summary["checkpoint"], summary["workload"]
    lines = [f"# m2serve bench compare: {Path(ck['path']).name}", "",
             f"- Date: {summary['date']} (finished {summary['finished']})",
             f"- Machine: {m['cpu_model']}, {m['num_usable_cpus']} usable CPUs ({m['usable_cpus']}) of "
             f"{m['cpu_count']}" + (f", {m['memory_gib']} GiB RAM" if "memory_gib" in m else "")
             + (f", AMX: {'yes' if m['amx'] else 'no'}" if "amx" in m else "")
             + (f", load average at start {m['load_average']}" if "load_average" in m else ""),
             f"- Checkpoint: `{ck['path']}`" + (f" ({ck.get('model_type')}, {ck.get('num_hidden_layers')} layers, "
                                               f"{ck.get('num_local_experts')} experts)" if "model_type" in ck else ""),
             f"- dtype: {summary['dtype']}; m2serve revision: {summary['m2serve_revision']}",
             f"- Command: `{summary['command']}`",
             f"- Workload: {w['dataset_name']}, input {w['random_input_len']}, output {w['random_output_len']}, "
             f"{w['num_prompts']} prompts, max concurrency {w['max_concurrency']}, request rate {w['request_rate']}, "
             f"temperature {w['temperature']}, ignore_eos {w['ignore_eos']}, seed {w['seed']}; max-model-len "
             f"{w['max_model_len']}, KV cache {w['kv_cache_memory_bytes']} bytes",
             f"- Client: {summary['client']}", "",
             format_table(rows, markdown=True), "", TABLE_NOTES, "", "## Engines", ""]
    for name, e in summary["engines"].items():
        head = f"- **{DISPLAY.get(name, name)}**: {e.get('status')}"
        if e.get("version"):
            head += f"; version {e['version']}"
        if e.get("startup_s") is not None:
            head += f"; ready after {e['startup_s']} s"
        lines.append(head)
        if e.get("command"):
            lines.append(f"  - command: `{e['command']}`")
        for k, v in (e.get("settings") or {}).items():
            lines.append(f"  - {k}: {v}")
        if e.get("extra_request_fields"):
            lines.append(f"  - extra request fields: `{json.dumps(e['extra_request_fields'])}`")
        for k in ("mode", "batch_size", "threads", "transformers", "attn_implementation", "load_average_before",
                  "result_file", "log", "warning"):
            if e.get(k) is not None:
                lines.append(f"  - {k}: {e[k]}")
    lines += ["", "## Files", "", "- `compare.json`: this report, machine-readable",
              "- `<engine>.json`: the raw result of each engine (`bench serve`'s JSON; transformers: offline keys)",
              "- `<engine>.log`: each server's output", ""]
    return "\n".join(lines)
