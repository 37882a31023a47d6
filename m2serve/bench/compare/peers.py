"""The engines compare knows, how they are named on the command line and in the table, and whether each is
runnable here (files only: a missing peer is a row in the table, not an error)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from m2serve.bench.compare.machine import REPO_ROOT, venv_package_version

PEERS = ("m2serve", "vllm", "llama.cpp", "transformers")
BASELINE = "m2serve"
DISPLAY = {"m2serve": "m2serve", "vllm": "vLLM (CPU)", "llama.cpp": "llama.cpp", "transformers": "transformers"}
VLLM_SETUP = "benchmarks/peers/setup_vllm_cpu.sh"
LLAMA_SETUP = "benchmarks/peers/setup_llama_cpp.sh"


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
