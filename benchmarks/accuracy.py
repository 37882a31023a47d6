"""Accuracy of m2-tiny through a running `m2serve serve`, unquantized and quantized, as one table.

    python benchmarks/accuracy.py [--variants bf16,w8a8_dynamic_quarot,w8a8_c8] [--limit 200] [--model DIR]

Each variant is served with the seed's parser flags (--enable-auto-tool-choice --tool-call-parser minimax_m2
--reasoning-parser minimax_m2), evaluated with tools/m2tiny/evaluate.py over HTTP (held-out tool calls, tool
results, GSM8K-format problems, identity, the seed's weather call) and with lm_eval via `m2serve eval`.
Quantized variants are made first with `m2serve quantize` (calibrated on rendered training conversations).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "m2-tiny"
WORK = ROOT / "build" / "accuracy"
VARIANTS = {
    "bf16": ([], None),
    "w8a8_dynamic_quarot": (["--quantization", "ascend"], ["--scheme", "w8a8_dynamic", "--quarot"]),
    "w8a8_c8": (["--quantization", "ascend"], ["--scheme", "w8a8", "--kv-c8"]),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def calibration_file() -> Path:
    """64 training conversations rendered with the chat template (in-distribution calibration text)."""
    out = WORK / "calib.jsonl"
    if out.exists():
        return out
    from m2serve.frontend.tokenizer import Tokenizer
    tok = Tokenizer.from_dir(MODEL)
    rows = []
    with open(ROOT / "build" / "m2tiny" / "corpus" / "train.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            if "messages" in rec:
                rows.append({"text": tok.apply_chat_template(rec["messages"], tools=rec.get("tools"),
                                                             add_generation_prompt=False)})
            if len(rows) == 64:
                break
    WORK.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return out


def model_for(name: str) -> Path:
    _, qargs = VARIANTS[name]
    if qargs is None:
        return MODEL
    dst = WORK / name
    if not (dst / "quant_model_description.json").exists():
        subprocess.run([sys.executable, "-m", "m2serve.cli.main", "quantize", str(MODEL), str(dst), *qargs,
                        "--calib-data", str(calibration_file())], check=True)
    return dst


def evaluate(name: str, limit: int) -> dict:
    serve_args, _ = VARIANTS[name]
    path = model_for(name)
    port = free_port()
    log = open(WORK / f"{name}.server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "m2serve.cli.main", "serve", str(path), "--port", str(port),
                             "--host", "127.0.0.1", "--served-model-name", "m2-tiny", "--enable-auto-tool-choice",
                             "--tool-call-parser", "minimax_m2", "--reasoning-parser", "minimax_m2",
                             "--max-model-len", "4096", *serve_args], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        sys.path.insert(0, str(ROOT))
        from tools.m2tiny import evaluate as ev
        t0 = time.time()
        out = ev.evaluate(ev.OpenAIBackend(url + "/v1", "m2-tiny"), MODEL / "eval", limit,
                          log=lambda s: print(f"[{name}] {s}", file=sys.stderr, flush=True), workers=16)
        rows = {k: v["score"] for k, v in out["rows"].items()}
        res_file = WORK / f"{name}.lm_eval.json"
        subprocess.run([sys.executable, "-m", "m2serve.cli.main", "eval", "--base-url", url + "/v1", "--model",
                        "m2-tiny", "--tokenizer", str(MODEL), "--eval-dir", str(MODEL / "eval"),
                        "--output-path", str(res_file)], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        lm = json.loads(res_file.read_text())
        rows["lm_eval gsm8k exact_match (strict)"] = lm["m2tiny_gsm8k"]["exact_match,strict-match"]
        rows["lm_eval gsm8k exact_match (flexible)"] = lm["m2tiny_gsm8k"]["exact_match,flexible-extract"]
        rows["lm_eval gsm8k_mc acc"] = lm["m2tiny_gsm8k_mc"]["acc,none"]
        rows["seconds"] = round(time.time() - t0)
        (WORK / f"{name}.json").write_text(json.dumps({"rows": rows, "examples": out["examples"]}, indent=1,
                                                      ensure_ascii=False))
        return rows
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    global MODEL
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--model", type=Path, default=MODEL, help="an m2-tiny build (default: the bundled one)")
    a = ap.parse_args()
    MODEL = a.model.resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    names = [v for v in a.variants.split(",") if v]
    results = {n: evaluate(n, a.limit) for n in names}
    metrics = list(next(iter(results.values())))
    print("| metric | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for m in metrics:
        print(f"| {m} | " + " | ".join(f"{results[n].get(m, float('nan')):.3f}" if m != "seconds"
                                       else str(results[n].get(m)) for n in names) + " |")


if __name__ == "__main__":
    main()
