"""Measure training throughput (tokens/s) of a model shape on this machine, on random tokens.

    python -m tools.m2tiny.bench --preset m2-tiny --threads 2 --steps 6 --experts grouped_mm
    python -m tools.m2tiny.bench --preset m2-tiny --set num_hidden_layers=6 --set intermediate_size=384

One step = forward + backward + AdamW on --batch-tokens tokens (sequences of --seq), the loss taken on half of the
positions like the assistant-only masking of the real corpus. The first step (warm-up) is not timed.
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="m2-tiny")
    ap.add_argument("--set", action="append", default=[], help="override a shape field, e.g. hidden_size=320")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--experts", default="grouped_mm", help="experts_implementation: grouped_mm | eager | batched_mm")
    a = ap.parse_args(argv)

    import torch

    from .modelcfg import PRESETS, param_count
    from .train import build_model, step_loss

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    arch = dict(PRESETS[a.preset])
    for kv in a.set:
        k, v = kv.split("=")
        arch[k] = type(arch[k])(float(v)) if isinstance(arch[k], (int, float)) else v
    model = build_model(arch, a.experts, seed=0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    b = max(1, a.batch_tokens // a.seq)
    ids = torch.randint(8, arch["vocab_size"], (b, a.seq))
    mask = torch.rand(b, a.seq) < 0.5
    times = []
    for i in range(a.steps + 1):
        t = time.perf_counter()
        loss, _ = step_loss(model, ids, mask)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t)
    dt = sum(times) / len(times)
    pc = param_count(arch)
    print(json.dumps({"preset": a.preset, "overrides": a.set, "threads": a.threads, "experts": a.experts,
                      "params_total_M": round(pc["total"] / 1e6, 2), "active_M": round(pc["active_per_token"] / 1e6, 2),
                      "step_s": round(dt, 3), "tokens_per_s": round(b * a.seq / dt, 1)}))


if __name__ == "__main__":
    main()
