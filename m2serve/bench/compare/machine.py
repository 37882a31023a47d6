"""What the report records about where it ran: the CPUs, memory, load, versions, git revision and checkpoint (a
number means little without the machine it was measured on)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


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


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
