"""`m2serve eval`: lm-evaluation-harness `local-completions` against a running server, on the shipped tasks.

    m2serve eval --base-url http://127.0.0.1:8000/v1 --tasks m2tiny_gsm8k,m2tiny_gsm8k_mc

Generation tasks send text prompts (tokenized_requests=False, as the seed's lm_eval command does);
loglikelihood tasks send token ids with echo + logprobs, as lm_eval requires.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from m2serve.cli.args import add
from m2serve.config import BUNDLED_MODEL

LOGLIKELIHOOD_TASKS = {"m2tiny_gsm8k_mc"}


def make_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add(p, "--base-url", default="http://127.0.0.1:8000/v1", help="the server's /v1 URL")
    add(p, "--model", default=None, help="served model name (default: the server's first model)")
    add(p, "--tokenizer", default=str(BUNDLED_MODEL), help="local tokenizer folder (never downloaded)")
    add(p, "--tasks", default="m2tiny_gsm8k,m2tiny_gsm8k_mc")
    add(p, "--eval-dir", default=str(BUNDLED_MODEL / "eval"), help="folder with the held-out gsm8k.jsonl")
    add(p, "--limit", type=int, default=None, help="documents per task")
    add(p, "--num-concurrent", type=int, default=8)
    add(p, "--max-gen-toks", type=int, default=256)
    add(p, "--output-path", default=None, help="write lm_eval's results JSON here")
    return p


def _served_model(base_url: str) -> str:
    import httpx
    return httpx.get(base_url.rstrip("/") + "/models", timeout=30).json()["data"][0]["id"]


def run(args: argparse.Namespace) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from m2serve.evals.tasks import write_tasks

    model = args.model or _served_model(args.base_url)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    results = {}
    with tempfile.TemporaryDirectory(prefix="m2serve-tasks-") as tmp:
        manager = TaskManager(include_path=str(write_tasks(tmp, args.eval_dir, args.max_gen_toks)))
        for task in tasks:
            tokenized = task in LOGLIKELIHOOD_TASKS
            model_args = (f"model={model},base_url={args.base_url.rstrip('/')}/completions,"
                          f"num_concurrent={args.num_concurrent},max_retries=1,tokenized_requests={tokenized},"
                          f"tokenizer={args.tokenizer},tokenizer_backend=huggingface")
            out = lm_eval.simple_evaluate(model="local-completions", model_args=model_args, tasks=[task],
                                          task_manager=manager, limit=args.limit, log_samples=False)
            results[task] = out["results"][task]
            from lm_eval.utils import make_table
            print(make_table(out))
    if args.output_path:
        Path(args.output_path).write_text(json.dumps(results, indent=1, default=str))
    return results
