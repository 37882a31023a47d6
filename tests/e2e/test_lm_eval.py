"""lm-evaluation-harness `local-completions` against a real server: a generate_until task (gsm8k recipe) and a
loglikelihood task (echo + logprobs over token ids), through `m2serve eval`."""
import json
import subprocess
import sys

import pytest

pytest.importorskip("lm_eval")


def test_m2serve_eval_runs_both_task_kinds(server, tiny_model_dir, tmp_path):
    rows = [{"question": f"Ann has {a} apples and buys {b} more. How many apples does she have?",
             "answer": f"Ann has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}", "target": str(a + b)}
            for a, b in [(3, 4), (10, 5), (7, 8)]]
    (tmp_path / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "results.json"
    r = subprocess.run([sys.executable, "-m", "m2serve.cli.main", "eval", "--base-url", server.url + "/v1",
                        "--model", "tiny", "--tokenizer", str(tiny_model_dir), "--eval-dir", str(tmp_path),
                        "--max-gen-toks", "16", "--output-path", str(out)],
                       capture_output=True, text=True, timeout=600, env={"HF_HUB_OFFLINE": "1", **__import__("os").environ})
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(out.read_text())
    gen = results["m2tiny_gsm8k"]
    assert "exact_match,strict-match" in gen and "exact_match,flexible-extract" in gen
    assert 0.0 <= results["m2tiny_gsm8k_mc"]["acc,none"] <= 1.0
    assert "exact_match" in r.stdout
