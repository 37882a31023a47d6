"""Recipe sweep: train several corpus/model recipes side by side and evaluate each on the held-out sets.

    python -m tools.m2tiny.sweep --recipes tools/m2tiny/sweeps/copy.json --workdir build/sweep \\
        --device cuda --parallel 6 --eval-limit 200

Why: the shipped build trains for 90 minutes on 2 CPU cores, so trying a corpus idea costs an afternoon. On a GPU
the same recipe, at the same token budget (--max-tokens, token-based LR schedule, the CPU build's batch size),
takes a minute or two, and several recipes share one card. The sweep only ranks recipes; the model that ships is
still trained by `tools.m2tiny.build` on CPU within the issue's budget.

A recipe is a JSON object: name, and optionally n (training records), mix ("kind=weight,..."), random_names,
max_tokens, batch_tokens, lr, preset, minutes (wall cap), seed. Every recipe uses the tokenizer given by
--tokenizer (default: the bundled model's), so recipes differ only in what they say they differ in.
Each recipe writes WORKDIR/NAME/result.json; the launcher prints one table and writes WORKDIR/sweep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import DEFAULT_OUT

DEFAULTS = {"n": 40000, "mix": "", "random_names": 0.0, "max_tokens": 8_000_000, "batch_tokens": 8192,
            "lr": 1.5e-3, "preset": "m2-tiny", "minutes": 3.5, "seed": 1234}
METRICS = ["tool_call", "tool_call (unseen_entity)", "tool_call (unseen_tool)", "tool_result_key_value",
           "gsm8k_completion", "gsm8k_chat", "seed_call", "seed_guide_call"]


def run_one(recipe: dict, workdir: Path, tokenizer_dir: Path, device: str, eval_limit: int, threads: int) -> dict:
    from . import corpus, data, evaluate, export, tokenizer, train

    r = {**DEFAULTS, **recipe}
    work = workdir / r["name"]
    t0 = time.time()
    stats = corpus.write_corpus(work / "corpus", r["n"], r["seed"], mix=corpus.parse_mix(r["mix"]),
                                random_names=r["random_names"])
    enc = data.encode_file(work / "corpus" / "train.jsonl", tokenizer.load_tokenizer(tokenizer_dir),
                           work / "train.npz")
    t_data = time.time() - t0
    targs = train.parser().parse_args(
        ["--data", str(work / "train.npz"), "--ckpt-dir", str(work / "ckpt"), "--preset", r["preset"],
         "--minutes", str(r["minutes"]), "--max-tokens", str(r["max_tokens"]), "--threads", str(threads),
         "--seed", str(r["seed"]), "--lr", str(r["lr"]), "--batch-tokens", str(r["batch_tokens"]),
         "--device", device, "--log-every", "100", "--ckpt-minutes", "1000"])
    summary = train.train(targs)
    export.export_checkpoint(work / "ckpt" / "last.pt", tokenizer_dir, work / "model")
    t1 = time.time()
    backend = evaluate.TransformersBackend(work / "model", threads, device=device)
    ev = evaluate.evaluate(backend, work / "corpus" / "eval", eval_limit, log=lambda s: None)
    out = {"recipe": r, "corpus": stats, "encode": enc, "train": summary, "rows": ev["rows"],
           "examples": ev["examples"][:3], "seconds": {"data": round(t_data, 1), "eval": round(time.time() - t1, 1),
                                                      "total": round(time.time() - t0, 1)}}
    (work / "result.json").write_text(json.dumps(out, ensure_ascii=False, indent=1))
    return out


def table(results: list) -> str:
    head = f"{'recipe':22s} {'tokens':>7s} {'min':>5s} {'loss':>6s} " + " ".join(f"{m[:14]:>14s}" for m in METRICS)
    lines = [head, "-" * len(head)]
    for res in results:
        if "error" in res:
            lines.append(f"{res['name']:22s} ERROR {res['error'][-200:]}")
            continue
        tr = res["train"]
        cells = " ".join(f"{res['rows'].get(m, {}).get('score', float('nan')):14.3f}" for m in METRICS)
        lines.append(f"{res['recipe']['name']:22s} {tr['tokens'] / 1e6:6.1f}M {tr['minutes']:5.1f} "
                     f"{tr['final_loss_ema']:6.3f} {cells}")
    return "\n".join(lines)


def launch(recipes: list, a) -> list:
    workdir = Path(a.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    def one(recipe):
        log = workdir / f"{recipe['name']}.log"
        cmd = [sys.executable, "-m", "tools.m2tiny.sweep", "--one", json.dumps(recipe), "--workdir", str(workdir),
               "--tokenizer", a.tokenizer, "--device", a.device, "--eval-limit", str(a.eval_limit),
               "--threads", str(a.threads)]
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "PYTHONUNBUFFERED": "1"}
        with open(log, "w") as f:
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        res_path = workdir / recipe["name"] / "result.json"
        if rc != 0 or not res_path.exists():
            return {"name": recipe["name"], "error": f"rc={rc}: " + log.read_text()[-2000:]}
        res = json.loads(res_path.read_text())
        if a.results_jsonl:  # appended as each recipe ends, so a run stopped at a time limit keeps what finished
            with open(a.results_jsonl, "a") as f:
                f.write(json.dumps({k: res[k] for k in ("recipe", "train", "rows", "examples", "seconds")},
                                   ensure_ascii=False) + "\n")
        print(f"[sweep {time.strftime('%H:%M:%S')}] {recipe['name']} done: "
              f"tool_call {res['rows']['tool_call']['score']:.3f}", flush=True)
        return res

    with ThreadPoolExecutor(a.parallel) as pool:
        results = list(pool.map(one, recipes))
    (workdir / "sweep.json").write_text(json.dumps(results, ensure_ascii=False, indent=1))
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", help="JSON file: a list of recipe objects")
    ap.add_argument("--only", default="", help="comma-separated recipe names to run (default: all)")
    ap.add_argument("--one", help="run one recipe given as JSON, in this process (the launcher uses it)")
    ap.add_argument("--workdir", default="build/sweep")
    ap.add_argument("--tokenizer", default=str(DEFAULT_OUT), help="folder with tokenizer.json + tokenizer_config.json")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--parallel", type=int, default=4, help="recipes trained at once")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per recipe")
    ap.add_argument("--eval-limit", type=int, default=200)
    ap.add_argument("--results-jsonl", help="also append each finished recipe's result to this file")
    a = ap.parse_args(argv)
    if a.one:
        run_one(json.loads(a.one), Path(a.workdir), Path(a.tokenizer), a.device, a.eval_limit, a.threads)
        return
    if not a.recipes:
        ap.error("--recipes is required")
    recipes = json.loads(Path(a.recipes).read_text())
    if a.only:
        keep = set(a.only.split(","))
        recipes = [r for r in recipes if r["name"] in keep]
    results = launch(recipes, a)
    print(table(results), flush=True)


if __name__ == "__main__":
    main()
