"""`m2serve bench compare`: the same checkpoint and workload on m2serve and on each peer engine on this machine.

Servers (m2serve, vLLM's CPU build, llama.cpp through llama-cpp-python's server) are started one at a time as
subprocesses, waited for, driven by `m2serve bench serve`'s client (called in process, so the prompts, the
streaming client, the metric definitions and the saved JSON are the same for every engine), then stopped.
transformers has no server: its batched greedy `generate` runs offline on the same prompt token ids, with the
concurrency as the batch size; TTFT is a batch's prefill and TPOT its per-token decode step (marked "offline").

One run writes a folder under --result-dir: the raw result JSON of every engine, its server log, `compare.md`
(the table, the machine, the checkpoint, the exact command and each engine's command line and settings) and
`compare.json` (the same, machine-readable).
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import platform
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from m2serve.cli.args import add, size_arg

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
PEERS = ("m2serve", "vllm", "llama.cpp", "transformers")
BASELINE = "m2serve"
DISPLAY = {"m2serve": "m2serve", "vllm": "vLLM (CPU)", "llama.cpp": "llama.cpp", "transformers": "transformers"}
VLLM_SETUP = "benchmarks/peers/setup_vllm_cpu.sh"
LLAMA_SETUP = "benchmarks/peers/setup_llama_cpp.sh"
# The workload when none is given: small enough for a 2-core machine, large enough to batch.
WORKLOAD_DEFAULTS = {"dataset_name": "random", "random_input_len": 200, "random_output_len": 128, "num_prompts": 64,
                     "max_concurrency": 16, "ignore_eos": True}
# Flags of `bench serve` that compare sets itself (endpoint, file names) and does not expose.
_SERVE_GROUPS = ("dataset", "traffic", "sampling", "results")
_SERVE_SKIP = {"--save-result", "--append-result", "--result-dir", "--result-filename", "--label"}


# ---- command line ----------------------------------------------------------------------------------------------
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


# ---- machine, checkpoint, versions -----------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:                                  # not Linux
        return list(range(os.cpu_count() or 1))


def cpu_ranges(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (the list syntax of VLLM_CPU_OMP_THREADS_BIND)."""
    parts, start = [], None
    for i, c in enumerate(cpus):
        if start is None:
            start = c
        if i + 1 == len(cpus) or cpus[i + 1] != c + 1:
            parts.append(str(start) if start == c else f"{start}-{c}")
            start = None
    return ",".join(parts)


def machine_info() -> dict:
    info = {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "usable_cpus": cpu_ranges(usable_cpus()),
            "num_usable_cpus": len(usable_cpus()), "platform": platform.platform(), "hostname": platform.node(),
            "python": platform.python_version()}
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        info["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    try:
        from m2serve.models.loader import cpu_has_amx
        info["amx"] = cpu_has_amx()
    except Exception:
        pass
    try:
        import torch
        info["torch"] = torch.__version__
    except Exception:
        pass
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


def git_revision() -> str | None:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def checkpoint_info(model: Path) -> dict:
    info: dict = {"path": str(model)}
    with_suffix = sorted(model.glob("*.safetensors"))
    info["safetensors_bytes"] = sum(p.stat().st_size for p in with_suffix)
    try:
        cfg = json.loads((model / "config.json").read_text())
        for key in ("model_type", "architectures", "num_hidden_layers", "hidden_size", "num_local_experts",
                    "num_experts_per_tok", "vocab_size", "torch_dtype", "dtype"):
            if key in cfg:
                info[key] = cfg[key]
    except (OSError, ValueError):
        pass
    return info


def venv_package_version(python: Path, dist: str) -> str | None:
    """A distribution's version inside another venv (reads metadata only; imports nothing heavy)."""
    try:
        out = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# ---- GGUF ------------------------------------------------------------------------------------------------------
# llama.cpp's LLAMA_FTYPE values for general.file_type.
GGUF_FILE_TYPES = {0: "float32", 1: "float16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1",
                   10: "q2_k", 11: "q3_k_s", 14: "q4_k_s", 15: "q4_k_m", 16: "q5_k_s", 17: "q5_k_m", 18: "q6_k",
                   32: "bfloat16"}
_GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_metadata(path: str | Path, wanted: set[str]) -> dict:
    """The `wanted` keys of a GGUF file's metadata (stops reading once all are found). Raises ValueError when the
    file is not GGUF."""
    found: dict = {}
    with open(path, "rb") as f:
        def read(fmt):
            size = struct.calcsize(fmt)
            data = f.read(size)
            if len(data) != size:
                raise ValueError(f"{path}: truncated GGUF header")
            return struct.unpack(fmt, data)[0]

        def read_str() -> str:
            n = read("<Q")
            return f.read(n).decode("utf-8", "replace")

        def read_value(kind):
            if kind in _GGUF_SCALAR:
                return read(_GGUF_SCALAR[kind])
            if kind == _GGUF_STRING:
                return read_str()
            if kind == _GGUF_ARRAY:
                elem, n = read("<I"), read("<Q")
                if elem in _GGUF_SCALAR:                 # skip scalar arrays without decoding them
                    f.seek(n * struct.calcsize(_GGUF_SCALAR[elem]), os.SEEK_CUR)
                    return None
                for _ in range(n):
                    read_value(elem)
                return None
            raise ValueError(f"{path}: unknown GGUF value type {kind}")

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version = read("<I")
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is too old")
        read("<Q")                                       # tensor count
        for _ in range(read("<Q")):
            key = read_str()
            value = read_value(read("<I"))
            if key in wanted:
                found[key] = value
                if len(found) == len(wanted):
                    break
    return found


def gguf_dtype(path: str | Path) -> str:
    try:
        ftype = gguf_metadata(path, {"general.file_type"}).get("general.file_type")
    except (OSError, ValueError):
        return "gguf"
    return GGUF_FILE_TYPES.get(ftype, f"gguf ftype {ftype}") if ftype is not None else "gguf"


# ---- peers -----------------------------------------------------------------------------------------------------
@dataclass
class Peer:
    name: str
    available: bool
    reason: str = ""                         # why not available
    detail: dict = field(default_factory=dict)


def parse_peers(text: str) -> list[str]:
    names = []
    for raw in str(text).split(","):
        name = raw.strip().lower()
        if not name:
            continue
        name = {"llama": "llama.cpp", "llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "hf": "transformers",
                "vllm-cpu": "vllm"}.get(name, name)
        if name not in PEERS:
            raise ValueError(f"--peers: unknown engine {raw.strip()!r}; choose from {', '.join(PEERS)}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("--peers: no engine given")
    return names


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else (Path.cwd() / p)


def _resolve_peer_path(path: str | Path) -> Path:
    """A peer's venv or GGUF: relative paths from the current folder, else from the repository root (where the
    setup scripts put them when run from there)."""
    p = _resolve(path)
    if not p.exists() and not Path(path).is_absolute() and (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    return p


def default_gguf(model: Path) -> Path:
    return Path("build/peers") / f"{model.name}.gguf"


def detect_peer(name: str, args, model: Path) -> Peer:
    """Is `name` runnable here? Looks at files only (no engine is imported or started)."""
    if name == "m2serve":
        return Peer(name, True, detail={"python": sys.executable})
    if name == "vllm":
        venv = _resolve_peer_path(args.vllm_venv)
        exe = venv / "bin" / "vllm"
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            return Peer(name, False, f"not installed (run {VLLM_SETUP})", {"venv": str(venv)})
        return Peer(name, True, detail={"venv": str(venv), "vllm": str(exe)})
    if name == "llama.cpp":
        venv = _resolve_peer_path(args.llama_venv)
        py = venv / "bin" / "python"
        gguf = _resolve_peer_path(args.gguf or default_gguf(model))
        if not (py.is_file() and os.access(py, os.X_OK)):
            return Peer(name, False, f"not installed (run {LLAMA_SETUP} {model})", {"venv": str(venv)})
        if not gguf.is_file():
            return Peer(name, False, f"not installed: no GGUF at {gguf} (run {LLAMA_SETUP} {model})",
                        {"venv": str(venv), "gguf": str(gguf)})
        return Peer(name, True, detail={"venv": str(venv), "python": str(py), "gguf": str(gguf)})
    if name == "transformers":
        import importlib.util
        if importlib.util.find_spec("transformers") is None:
            return Peer(name, False, "not installed (pip install 'transformers>=5')")
        return Peer(name, True)
    raise ValueError(name)


def detect_peers(names: list[str], args, model: Path) -> dict[str, Peer]:
    return {n: detect_peer(n, args, model) for n in names}


# ---- servers ---------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerSpec:
    engine: str
    cmd: list[str]
    env: dict[str, str]                      # set on top of this process's environment (recorded)
    port: int
    ready_path: str                          # GET returns 200 once the server takes requests
    dtype: str
    extra_body: dict = field(default_factory=dict)   # merged into every request body
    settings: dict = field(default_factory=dict)     # recorded choices (threads, KV, slots, ...)


class ServerProcess:
    """One server in its own process group (vLLM forks workers), output to a log file; stop() ends the group."""

    def __init__(self, spec: ServerSpec, log_path: Path):
        self.spec, self.log_path = spec, log_path
        self.base_url = f"http://127.0.0.1:{spec.port}"
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def start(self, timeout: float) -> None:
        import httpx

        env = dict(os.environ, **self.spec.env)
        self._log = open(self.log_path, "w")
        self._log.write("$ " + format_env(self.spec.env) + shlex.join(self.spec.cmd) + "\n")
        self._log.flush()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.spec.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        url = self.base_url + self.spec.ready_path
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.engine} server exited with status {self.proc.returncode} during "
                                   f"startup: {last_error_line(self.log_path)}\n--- last lines of "
                                   f"{self.log_path} ---\n{tail(self.log_path)}")
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{self.spec.engine} server not ready after {timeout:.0f} s\n--- last lines of "
                                   f"{self.log_path} ---\n{tail(self.log_path)}")
            time.sleep(0.5)
        self.startup_s = time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)    # the group this Popen created (start_new_session)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc is not None and _group_members(self.proc.pid):
            # Workers of this server's group that outlived its leader.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if getattr(self, "_log", None) is not None:
            self._log.close()


def _group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid` (Linux /proc; empty elsewhere)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def last_error_line(path: Path) -> str:
    """The last `SomeError: ...` / `ERROR ...` line of a log (the cause of a failed startup), else its last line."""
    import re

    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    for line in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception)\b", line) or line.startswith("ERROR"):
            return line
    return lines[-1] if lines else "(empty log)"


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def format_env(env: dict[str, str]) -> str:
    return "".join(f"{k}={shlex.quote(v)} " for k, v in env.items())


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
                      extra_body=extra,
                      settings={"n_ctx": max_model_len, "n_threads": threads, "parallel_slots": 1,
                                "interrupt_requests": False,
                                "note": "llama_cpp.server has no parallel-slot option (llama.cpp's own llama-server "
                                        "has --parallel): one request runs at a time, the others queue; "
                                        "--interrupt_requests False keeps a new request from cutting the "
                                        "running stream short"})


# ---- transformers offline --------------------------------------------------------------------------------------
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


# ---- table -----------------------------------------------------------------------------------------------------
@dataclass
class Row:
    engine: str
    dtype: str = "-"
    mode: str = "serve"                       # serve (HTTP, client-timed) | offline (transformers generate)
    status: str = "ok"                        # ok | not installed (...) | failed: ...
    completed: int | None = None
    num_prompts: int | None = None
    output_tok_s: float | None = None
    mean_ttft_ms: float | None = None
    p99_ttft_ms: float | None = None
    mean_tpot_ms: float | None = None
    p99_tpot_ms: float | None = None
    result_file: str | None = None

    @classmethod
    def from_result(cls, engine: str, dtype: str, result: dict, mode: str = "serve",
                    result_file: str | None = None) -> "Row":
        return cls(engine=engine, dtype=dtype, mode=mode, completed=result.get("completed"),
                   num_prompts=result.get("num_prompts"), output_tok_s=result.get("output_throughput"),
                   mean_ttft_ms=result.get("mean_ttft_ms"), p99_ttft_ms=result.get("p99_ttft_ms"),
                   mean_tpot_ms=result.get("mean_tpot_ms"), p99_tpot_ms=result.get("p99_tpot_ms"),
                   result_file=result_file)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


COLUMNS = ("engine", "dtype", "mode", "ok", "output tok/s", "mean TTFT ms", "P99 TTFT ms", "mean TPOT ms",
           "P99 TPOT ms", "tok/s vs m2serve", "TTFT vs m2serve", "TPOT vs m2serve")


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or not math.isfinite(value) or not math.isfinite(base) or base <= 0:
        return None
    return value / base


def fmt_num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def table_cells(rows: list[Row], baseline: str = BASELINE) -> list[list[str]]:
    """One list of cells per row, in COLUMNS order. Ratios are engine / baseline (m2serve); offline cells carry
    an "(offline)" mark; engines that did not run get their status in place of the numbers."""
    base = next((r for r in rows if r.engine == baseline and r.ok), None)
    out = []
    for r in rows:
        name = DISPLAY.get(r.engine, r.engine)
        if not r.ok:
            out.append([name, r.dtype, r.mode, r.status] + ["-"] * (len(COLUMNS) - 4))
            continue
        mark = " (offline)" if r.mode == "offline" else ""
        ok = f"{r.completed}/{r.num_prompts}" if r.completed is not None and r.num_prompts is not None else "-"
        numbers = [fmt_num(r.output_tok_s, 1), fmt_num(r.mean_ttft_ms), fmt_num(r.p99_ttft_ms),
                   fmt_num(r.mean_tpot_ms), fmt_num(r.p99_tpot_ms)]
        numbers = [n + mark if n != "-" else n for n in numbers]
        ratios = [fmt_ratio(ratio(getattr(r, key), getattr(base, key) if base else None))
                  for key in ("output_tok_s", "mean_ttft_ms", "mean_tpot_ms")]
        ratios = [x + mark if x != "n/a" and r.engine != baseline else x for x in ratios]
        out.append([name, r.dtype, r.mode, ok] + numbers + ratios)
    return out


def format_table(rows: list[Row], markdown: bool = False, baseline: str = BASELINE) -> str:
    cells = table_cells(rows, baseline)
    if markdown:
        esc = [[c.replace("|", "\\|") for c in row] for row in cells]
        lines = ["| " + " | ".join(COLUMNS) + " |",
                 "|" + "|".join(["---"] * 3 + ["---:"] * (len(COLUMNS) - 3)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in esc]
        return "\n".join(lines)
    # Plain text: the status of a missing engine spans the numeric columns.
    widths = [len(c) for c in COLUMNS]
    for row, r in zip(cells, rows):
        for i, c in enumerate(row):
            if r.ok or i < 3:
                widths[i] = max(widths[i], len(c))
    right = set(range(3, len(COLUMNS)))

    def line(row, ok=True):
        if not ok:
            return "  ".join(c.ljust(widths[i]) for i, c in enumerate(row[:3])) + "  " + row[3]
        return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row))

    text = [line(list(COLUMNS)), "  ".join("-" * w for w in widths)]
    text += [line(row, r.ok).rstrip() for row, r in zip(cells, rows)]
    return "\n".join(text)


TABLE_NOTES = ("Ratios are engine / m2serve: above 1.00x is faster for tok/s, slower for TTFT and TPOT. "
               "serve rows: `m2serve bench serve`'s client over HTTP (vllm bench serve's metric definitions). "
               "(offline) rows: transformers `generate` in process, batched with the concurrency as batch size: "
               "TTFT is the batch's prefill time, TPOT its per-token decode step, no HTTP or queueing.")


# ---- the run ---------------------------------------------------------------------------------------------------
def resolve_dtype_name(dtype: str) -> str:
    name = {"half": "float16", "float": "float32", "bf16": "bfloat16"}.get(dtype, dtype)
    if name != "auto":
        return name
    import torch

    from m2serve.models.loader import resolve_dtype
    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[
        resolve_dtype("auto", None, torch.device("cpu"))]


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


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def peer_versions(name: str, peer: Peer) -> dict:
    if name == "m2serve":
        import m2serve
        return {"version": getattr(m2serve, "__version__", None)}
    if name == "vllm":
        return {"version": venv_package_version(Path(peer.detail["venv"]) / "bin" / "python", "vllm-cpu")}
    if name == "llama.cpp":
        return {"version": venv_package_version(Path(peer.detail["python"]), "llama_cpp_python"),
                "gguf": peer.detail["gguf"]}
    return {}


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
