"""Do `m2serve bench serve` and `vllm bench serve` measure the same throughput against one server?

    python benchmarks/client_agreement.py --model /tmp/m110 --vllm build/peers/vllm/bin/vllm --pairs 6

One `m2serve serve` (prefix caching off, so a client never reuses the other's prompts), then pairs of runs of
the same workload, the two clients alternating which goes first. On a small machine the client shares cores with
the server, so by default the server is pinned to the first --server-cores and each client to the rest
(`taskset`): the clients then compete with each other for nothing and with the server for nothing. Prints every
pair, the means and the ratio; writes the raw result JSONs under --result-dir.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def wait_healthy(url: str, proc, timeout: float = 300.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    sys.exit("server did not become healthy")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--vllm", default="build/peers/vllm/bin/vllm", help="vllm executable (benchmarks/peers)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--port", type=int, default=8321)
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--num-prompts", type=int, default=64)
    ap.add_argument("--max-concurrency", type=int, default=16)
    ap.add_argument("--input-len", type=int, default=200)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--server-cores", default="0", help="taskset list for the server ('' = no pinning)")
    ap.add_argument("--client-cores", default="1", help="taskset list for the clients ('' = no pinning)")
    ap.add_argument("--result-dir", default="benchmarks/results/client_agreement")
    a = ap.parse_args(argv)

    out = Path(a.result_dir)
    out.mkdir(parents=True, exist_ok=True)
    pin = lambda cores: ["taskset", "-c", cores] if cores else []  # noqa: E731
    url = f"http://127.0.0.1:{a.port}"
    env = {**os.environ, "OMP_NUM_THREADS": str(len(a.server_cores.split(",")) if a.server_cores else os.cpu_count())}
    server = subprocess.Popen(pin(a.server_cores) + [sys.executable, "-m", "m2serve.cli.main", "serve", a.model,
                                                      "--port", str(a.port), "--dtype", a.dtype,
                                                      "--no-enable-prefix-caching", "--served-model-name", "bench"],
                              stdout=open(out / "server.log", "w"), stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(url, server)
        common = ["bench", "serve", "--base-url", url, "--model", a.model, "--served-model-name", "bench",
                  "--dataset-name", "random", "--random-input-len", str(a.input_len), "--random-output-len",
                  str(a.output_len), "--num-prompts", str(a.num_prompts), "--max-concurrency", str(a.max_concurrency),
                  "--ignore-eos", "--save-result", "--result-dir", str(out), "--disable-tqdm"]
        clients = {"m2serve": [sys.executable, "-m", "m2serve.cli.main"], "vllm": [a.vllm]}
        cenv = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
        rows = []
        for i in range(a.pairs):
            order = ["m2serve", "vllm"] if i % 2 == 0 else ["vllm", "m2serve"]
            row = {"seed": i + 1}
            for name in order:
                fn = f"{name}-seed{i + 1}.json"
                cmd = pin(a.client_cores) + clients[name] + common + ["--seed", str(i + 1), "--result-filename", fn]
                subprocess.run(cmd, check=True, env=cenv, stdout=open(out / f"{name}-seed{i + 1}.log", "w"),
                               stderr=subprocess.STDOUT)
                row[name] = json.loads((out / fn).read_text())["output_throughput"]
            rows.append(row)
            print(f"seed {row['seed']} (first: {order[0]:7s}) m2serve {row['m2serve']:7.1f}  vllm {row['vllm']:7.1f} "
                  f"tok/s  ratio {row['m2serve'] / row['vllm']:.3f}", flush=True)
    finally:
        server.terminate()
        server.wait(30)
    m = statistics.mean(r["m2serve"] for r in rows)
    v = statistics.mean(r["vllm"] for r in rows)
    ratios = [r["m2serve"] / r["vllm"] for r in rows]
    summary = {"pairs": rows, "mean_m2serve": m, "mean_vllm": v, "ratio_of_means": m / v,
               "pair_ratio_min": min(ratios), "pair_ratio_max": max(ratios), "args": vars(a)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"means: m2serve {m:.1f}  vllm {v:.1f} tok/s  ratio {m / v:.3f}  "
          f"(pairs {min(ratios):.3f}-{max(ratios):.3f}); within 10%: {abs(m / v - 1) <= 0.10}")


if __name__ == "__main__":
    main()
