"""`m2serve bench compare`: the same checkpoint and workload on m2serve and on each peer engine on this machine.

Servers (m2serve, vLLM's CPU build, llama.cpp through llama-cpp-python's server) are started one at a time as
subprocesses, waited for, driven by `m2serve bench serve`'s client (called in process, so the prompts, the
streaming client, the metric definitions and the saved JSON are the same for every engine), then stopped.
transformers has no server: its batched greedy `generate` runs offline on the same prompt token ids, with the
concurrency as the batch size; TTFT is a batch's prefill and TPOT its per-token decode step (marked "offline").

One run writes a folder under --result-dir: the raw result JSON of every engine, its server log, `compare.md`
(the table, the machine, the checkpoint, the exact command and each engine's command line and settings) and
`compare.json` (the same, machine-readable).

- `args.py`     the command line (engine flags + `bench serve`'s workload flags), workload rules, the command
- `peers.py`    the engines, their names, and whether each is installed here
- `machine.py`  the machine, checkpoint, versions and git revision recorded with the numbers
- `gguf.py`     the GGUF metadata reader (llama.cpp's weight dtype)
- `server.py`   one server subprocess: start, wait until ready, stop its process group
- `engines.py`  each engine's server command line and recorded settings
- `transformers_offline.py`  transformers' batched `generate`, timed like a server run
- `table.py`    rows, ratios to m2serve and the text / markdown table
- `report.py`   compare.md
- `runner.py`   `run`: every engine in turn, then compare.json and compare.md
"""
from m2serve.bench.compare.args import (WORKLOAD_DEFAULTS, command_line, equivalent_command, make_parser,
                                        normalize_workload)
from m2serve.bench.compare.engines import llama_spec, m2serve_spec, vllm_spec
from m2serve.bench.compare.gguf import GGUF_FILE_TYPES, gguf_dtype, gguf_metadata
from m2serve.bench.compare.machine import (REPO_ROOT, checkpoint_info, cpu_model, cpu_ranges, git_revision,
                                           machine_info, usable_cpus, venv_package_version)
from m2serve.bench.compare.peers import (BASELINE, DISPLAY, LLAMA_SETUP, PEERS, VLLM_SETUP, Peer, default_gguf,
                                         detect_peer, detect_peers, parse_peers, peer_versions)
from m2serve.bench.compare.report import render_markdown, workload_dict
from m2serve.bench.compare.runner import (default_max_model_len, eos_token_ids, output_length_warning,
                                          resolve_dtype_name, run, serve_namespace)
from m2serve.bench.compare.server import ServerProcess, ServerSpec, format_env, free_port, last_error_line, tail
from m2serve.bench.compare.table import COLUMNS, TABLE_NOTES, Row, fmt_num, fmt_ratio, format_table, ratio, table_cells
from m2serve.bench.compare.transformers_offline import run_transformers

__all__ = [
    "BASELINE", "COLUMNS", "DISPLAY", "GGUF_FILE_TYPES", "LLAMA_SETUP", "PEERS", "REPO_ROOT", "TABLE_NOTES",
    "VLLM_SETUP", "WORKLOAD_DEFAULTS", "Peer", "Row", "ServerProcess", "ServerSpec", "checkpoint_info",
    "command_line", "cpu_model", "cpu_ranges", "default_gguf", "default_max_model_len", "detect_peer", "detect_peers",
    "eos_token_ids", "equivalent_command", "fmt_num", "fmt_ratio", "format_env", "format_table", "free_port",
    "gguf_dtype", "gguf_metadata", "git_revision", "last_error_line", "llama_spec", "m2serve_spec", "machine_info",
    "make_parser", "normalize_workload", "output_length_warning", "parse_peers", "peer_versions", "ratio",
    "render_markdown", "resolve_dtype_name", "run", "run_transformers", "serve_namespace", "table_cells", "tail",
    "usable_cpus", "venv_package_version", "vllm_spec", "workload_dict",
]
