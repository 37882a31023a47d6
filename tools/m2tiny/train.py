"""Train m2-tiny (transformers' native MiniMaxM2ForCausalLM) on the encoded corpus, on CPU.

    python -m tools.m2tiny.train --data build/m2tiny/data/train.npz --ckpt-dir build/m2tiny/ckpt \\
        --minutes 90 --threads 2 [--resume]

* Time budget: --minutes is the training time (checkpoint writes excluded). The LR schedule runs on the fraction
  of the budget used (linear warm-up, cosine decay to 10%), so a run always ends on schedule. --max-steps switches
  the schedule to steps (bit-for-bit repeatable runs; the time budget still stops the run).
* Resumable: every --ckpt-minutes the model, optimizer, data position, RNG and clock go to CKPT_DIR/last.pt
  (written atomically); --resume continues from it with the same data order.
* Seeded: weights init, data order (length-bucketed batches reshuffled per epoch) and everything else derive from
  --seed.
* Loss: next-token cross-entropy on supervised tokens only (assistant turns, see data.py); lm_head is applied only
  at those positions.
* Router bias: e_score_correction_bias is a buffer, not a parameter. It is trained with the auxiliary-loss-free
  balancing update of DeepSeek-V3: after each step, per layer, bias_e += gamma * sign(mean_load - load_e), load_e =
  number of (non-pad) tokens routed to expert e in the step. It only changes which experts are chosen, never the
  mixing weights (exactly how MiniMax-M2 uses it); no auxiliary loss is added.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np


def build_model(arch: dict, experts_implementation: str = "grouped_mm", seed: int = 0, qk_norm_init: float = 1.0):
    import torch
    from transformers import MiniMaxM2ForCausalLM

    from .modelcfg import hf_config

    torch.manual_seed(seed)
    model = MiniMaxM2ForCausalLM(hf_config(arch))
    if qk_norm_init != 1.0:
        # The full-width QK RMSNorms fix |q| and |k|, so at init a head's logits stay near N(0, 1) and sharp
        # (copying) attention waits for the norm weights to grow; a larger start scales the logits by its square.
        for layer in model.model.layers:
            for norm in (layer.self_attn.q_norm, layer.self_attn.k_norm):
                torch.nn.init.constant_(norm.weight, qk_norm_init)
    try:
        model.set_experts_implementation(experts_implementation)
    except Exception as e:  # pragma: no cover - depends on the torch build
        print(f"experts_implementation={experts_implementation} unavailable ({e}); using eager")
        model.set_experts_implementation("eager")
    return model


def ensure_experts_run(model, device) -> str:
    """Fall back to eager experts when the chosen implementation fails on this device (a GPU's grouped_mm may not
    take fp32); probed with one tiny forward and backward. Returns the implementation in use."""
    import torch

    impl = getattr(model.config, "experts_implementation", None) or getattr(model.config, "_experts_implementation", "")
    try:
        x = torch.ones(1, 8, dtype=torch.long, device=device)
        model(input_ids=x, use_cache=False).logits.float().sum().backward()
        model.zero_grad(set_to_none=True)
        return str(impl)
    except Exception as e:  # pragma: no cover - depends on the torch build and device
        print(f"experts implementation {impl!r} failed on {device} ({type(e).__name__}: {e}); using eager", flush=True)
        model.zero_grad(set_to_none=True)
        model.set_experts_implementation("eager")
        return "eager"


def step_loss(model, ids, mask):
    """Mean cross-entropy over positions whose NEXT token is supervised. ids/mask: [b, T] tensors."""
    import torch.nn.functional as F

    h = model.model(input_ids=ids, use_cache=False).last_hidden_state
    sel = mask[:, 1:]
    logits = model.lm_head(h[:, :-1][sel]).float()
    target = ids[:, 1:][sel]
    return F.cross_entropy(logits, target), int(target.numel())


class RouterBalancer:
    """Collects each layer's expert choices and applies the sign-based bias update after a step."""

    def __init__(self, model, gamma: float):
        self.gamma = gamma
        self.valid = None
        self.counts = {}
        self.blocks = []
        for i, layer in enumerate(model.model.layers):
            self.blocks.append(layer.mlp)
            layer.mlp.gate.register_forward_hook(self._hook(i))

    def _hook(self, i):
        import torch

        def hook(module, inputs, output):
            top_k_index = output[2]
            with torch.no_grad():
                idx = top_k_index
                if self.valid is not None:
                    idx = idx[self.valid]
                self.counts[i] = torch.bincount(idx.reshape(-1), minlength=module.num_experts).float()
        return hook

    def update(self):
        import torch

        stats = []
        with torch.no_grad():
            for i, block in enumerate(self.blocks):
                load = self.counts.get(i)
                if load is None or load.sum() == 0:
                    continue
                block.e_score_correction_bias += self.gamma * torch.sign(load.mean() - load)
                stats.append((load.max() / load.mean()).item())
        self.counts = {}
        return max(stats) if stats else float("nan")


def lr_at(progress, peak, warmup=0.03, floor=0.1):
    if progress < warmup:
        return peak * max(progress / warmup, 0.01)
    p = min(1.0, (progress - warmup) / (1 - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def save_checkpoint(path, model, opt, state, arch, args):
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state, "arch": arch,
                "args": args, "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


def train(args) -> dict:
    import torch

    from .common import SPECIAL_TOKENS
    from .data import collate, load_encoded, make_batches
    from .induction import CopyBatches, HeadSupervision, corpus_sources, corpus_token_ids, init_copy_heads
    from .modelcfg import PRESETS

    if args.minutes <= 0:
        raise ValueError("--minutes must be > 0")
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    ckpt_dir = Path(args.ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = ckpt_dir / "last.pt"
    log_path = ckpt_dir / "train_log.jsonl"

    ids, mask, offsets = load_encoded(args.data)
    lengths = (offsets[1:] - offsets[:-1]).tolist()
    arch = dict(PRESETS[args.preset])
    for kv in args.arch:
        key, _, value = kv.partition("=")
        if key not in arch:
            raise ValueError(f"--arch {kv!r}: unknown field; known: {sorted(arch)}")
        arch[key] = type(arch[key])(float(value)) if isinstance(arch[key], (int, float)) else value
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # recipe sweeps (tools/m2tiny/sweep.py), not the shipped build
    model = build_model(arch, args.experts, args.seed, args.qk_norm_init).to(device)
    if args.lm_head_from_embed:
        # Untied, but starting equal: the unembedding of a token then already points at its embedding, so a head
        # that moves a token's embedding forward predicts that token for every id, not only the ids the copy
        # batches happened to show.
        with torch.no_grad():
            model.lm_head.weight.copy_(model.model.embed_tokens.weight)
    if device.type != "cpu":
        ensure_experts_run(model, device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    state = {"epoch": 0, "batch": 0, "step": 0, "seconds": 0.0, "tokens": 0, "supervised": 0, "done": False,
             "loss_ema": None}
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        arch = ck["arch"]
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        torch.set_rng_state(ck["torch_rng"])
        print(f"resumed from {ckpt_path}: step {state['step']}, epoch {state['epoch']}, "
              f"{state['seconds'] / 60:.1f} min trained")
        # A finished run resumed with a larger --minutes budget trains on (the LR schedule follows the new budget).
        if state["seconds"] < args.minutes * 60.0:
            state["done"] = False
    elif args.resume:
        print(f"--resume: no checkpoint at {ckpt_path}; starting fresh")
    if args.init and not (args.resume and ckpt_path.exists()):
        # Curriculum stages: weights from an earlier run, fresh optimizer, schedule and data position.
        ck = torch.load(args.init, map_location="cpu", weights_only=False)
        if ck["arch"] != arch:
            raise ValueError(f"--init {args.init}: its shape {ck['arch']} is not this run's {arch}")
        model.load_state_dict(ck["model"])
        print(f"initialised from {args.init} (step {ck['state']['step']}, {ck['state']['tokens']} tokens)")
    # Copy batches (induction.py): the warm-up over the most frequent tokens, the refresher over all of them.
    warmup_copies = copies = None
    if args.copy_steps or args.copy_every:
        vocab, weights = corpus_token_ids(ids, len(SPECIAL_TOKENS), power=0.0, top=args.copy_warmup_vocab)
        warmup_copies = CopyBatches(vocab, args.seed, args.copy_batch_tokens, weights=weights)
        vocab, weights = corpus_token_ids(ids, len(SPECIAL_TOKENS), power=0.5)
        copies = CopyBatches(vocab, args.seed + 1, args.copy_batch_tokens, weights=weights)
        for c, key in ((warmup_copies, "copy_warmup_rng"), (copies, "copy_rng")):
            if state.get(key):
                c.set_state(state[key])
    supervision = None
    if args.copy_attn_loss or args.corpus_attn_loss:
        prev_layer, induction_layer = (int(v) for v in args.copy_attn_layers.split(","))
        n_heads, n_kv = arch["num_attention_heads"], arch["num_key_value_heads"]
        # auto: the first query head of every kv head (distinct values, so the copied token gets n_kv * head_dim
        # dims instead of one head's)
        heads = ([kv * (n_heads // n_kv) for kv in range(n_kv)] if args.copy_attn_heads == "auto"
                 else [int(h) for h in args.copy_attn_heads.split(",")])
        if not all(0 <= h < n_heads for h in heads):
            raise ValueError(f"--copy-attn-heads {args.copy_attn_heads}: this shape has {n_heads} heads")
        supervision = HeadSupervision(model, prev_layer, induction_layer, heads)
        if args.copy_ov_init and not (args.resume and ckpt_path.exists()) and not args.init:
            init_copy_heads(model, prev_layer, induction_layer, heads, induction_scale=args.copy_ov_scale)
    model.train()
    balancer = RouterBalancer(model, args.bias_gamma)
    budget = args.minutes * 60.0
    log_every = args.log_every
    last_ckpt = time.time()
    window_t, window_tok = time.time(), 0
    argd = vars(args)

    def progress():
        p = state["seconds"] / budget
        if args.max_steps:
            p = max(p, state["step"] / args.max_steps)
        if args.max_tokens:
            p = max(p, state["tokens"] / args.max_tokens)
        return p

    while not state["done"]:
        batches = make_batches(lengths, args.batch_tokens, args.seed, state["epoch"])
        while state["batch"] < len(batches):
            if progress() >= 1.0:
                state["done"] = True
                break
            t0 = time.time()
            lr = lr_at(progress(), args.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            warmup = state["step"] < args.copy_steps and not state.get("copy_warmup_done")
            copy_step = warmup or bool(args.copy_every and state["step"] % args.copy_every == 0)
            if copy_step:                                # induction warm-up / refresher (induction.py)
                source = warmup_copies if warmup else copies
                x, m, valid, sources = source.next_with_sources()
                state["copy_warmup_rng" if warmup else "copy_rng"] = source.state()
            else:
                x, m = collate(ids, mask, offsets, batches[state["batch"]])
                valid = np.zeros_like(m)
                for r, i in enumerate(batches[state["batch"]]):
                    valid[r, : lengths[i]] = True
            weight = args.copy_attn_loss if copy_step else args.corpus_attn_loss
            if supervision is not None:
                supervision.active = bool(weight)
                stale = None
                if weight and not copy_step:
                    sources, stale = corpus_sources(x, m, valid, len(SPECIAL_TOKENS), stale=True)
                    stale = stale if args.copy_ov_negatives else None
            n_tok = int(valid.sum())
            x, m = torch.from_numpy(x).to(device), torch.from_numpy(m).to(device)
            valid_t = torch.from_numpy(valid).to(device)
            balancer.valid = valid_t.reshape(-1)
            loss, n_sup = step_loss(model, x, m)
            attn_loss = ov_loss = None
            if supervision is not None and weight:
                sources_t = torch.from_numpy(sources).to(device)
                attn_loss = supervision.loss(valid_t, sources_t)
                total = loss + weight * attn_loss
                if args.copy_ov_loss:
                    ov_loss = supervision.ov_loss(x, sources_t, None if stale is None
                                                  else torch.from_numpy(stale).to(device))
                    total = total + args.copy_ov_loss * ov_loss
                supervision.clear()
                total.backward()
            else:
                loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            imbalance = balancer.update()
            state["step"] += 1
            state["batch"] += 0 if copy_step else 1
            state["copy_steps"] = state.get("copy_steps", 0) + int(copy_step)
            state["tokens"] += n_tok
            state["supervised"] += n_sup
            state["seconds"] += time.time() - t0
            window_tok += n_tok
            lv = loss.item()
            if copy_step:
                c = state.get("copy_loss")
                state["copy_loss"] = lv if c is None else 0.9 * c + 0.1 * lv
                if warmup and args.copy_until and state["copy_loss"] < args.copy_until:
                    state["copy_warmup_done"] = True       # the circuit is there: on to the corpus
                    print(json.dumps({"copy_warmup_done": state["step"], "copy_loss": round(state["copy_loss"], 4)}),
                          flush=True)
            else:
                ema = state.get("loss_ema")
                state["loss_ema"] = lv if ema is None else 0.95 * ema + 0.05 * lv
            loss_ema = state.get("loss_ema") or float("nan")
            if state["step"] % log_every == 0 or state["step"] == 1:
                now = time.time()
                rec = {"step": state["step"], "epoch": state["epoch"], "copy": copy_step, "loss": round(lv, 4),
                       "loss_ema": round(loss_ema, 4), "lr": round(lr, 7), "grad_norm": round(float(gnorm), 3),
                       "max_expert_load": round(imbalance, 2), "tok_per_s": round(window_tok / (now - window_t), 1),
                       "tokens": state["tokens"], "minutes": round(state["seconds"] / 60, 2)}
                if attn_loss is not None:
                    rec["attn_loss"] = round(attn_loss.item(), 4)
                if ov_loss is not None:
                    rec["ov_loss"] = round(ov_loss.item(), 4)
                if args.copy_steps or args.copy_every:
                    rec["copy_loss"] = round(state.get("copy_loss") or float("nan"), 4)
                print(json.dumps(rec), flush=True)
                with open(log_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                window_t, window_tok = now, 0
            if time.time() - last_ckpt >= args.ckpt_minutes * 60:
                save_checkpoint(ckpt_path, model, opt, state, arch, argd)
                last_ckpt = time.time()
        if not state["done"]:
            state["epoch"] += 1
            state["batch"] = 0
    save_checkpoint(ckpt_path, model, opt, state, arch, argd)
    summary = {"steps": state["step"], "epochs": state["epoch"] + state["batch"] / max(1, len(batches)),
               "tokens": state["tokens"], "supervised_tokens": state["supervised"],
               "minutes": round(state["seconds"] / 60, 2),
               "tokens_per_s": round(state["tokens"] / max(state["seconds"], 1e-9), 1),
               "final_loss_ema": state.get("loss_ema"), "copy_steps": state.get("copy_steps", 0),
               "final_copy_loss": state.get("copy_loss"), "checkpoint": str(ckpt_path)}
    print(json.dumps(summary), flush=True)
    return summary


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="encoded corpus (.npz from data.encode_file)")
    ap.add_argument("--ckpt-dir", required=True)
    ap.add_argument("--preset", default="m2-tiny", help="model shape in modelcfg.PRESETS")
    ap.add_argument("--arch", action="append", default=[], help="override one preset field, e.g. --arch rope_theta=10000")
    ap.add_argument("--minutes", type=float, default=90.0, help="training time budget")
    ap.add_argument("--max-steps", type=int, default=0, help="optional step budget (step-based LR schedule)")
    ap.add_argument("--max-tokens", type=int, default=0, help="optional token budget (token-based LR schedule)")
    ap.add_argument("--device", default="cpu", help="cpu (the shipped build) or cuda (recipe sweeps)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--batch-tokens", type=int, default=8192, help="padded tokens per batch")
    ap.add_argument("--bias-gamma", type=float, default=1e-2, help="router bias update speed (per step)")
    ap.add_argument("--experts", default="grouped_mm", help="experts_implementation (grouped_mm | eager)")
    ap.add_argument("--ckpt-minutes", type=float, default=10.0)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--qk-norm-init", type=float, default=1.0, help="initial q_norm/k_norm weight")
    ap.add_argument("--copy-steps", type=int, default=0,
                    help="induction warm-up: the first N steps train on random-token copies (induction.py)")
    ap.add_argument("--copy-until", type=float, default=0.0,
                    help="end the warm-up early once the copy loss (EMA) is below this")
    ap.add_argument("--copy-every", type=int, default=0, help="after the warm-up, one copy step in every N (0: none)")
    ap.add_argument("--copy-batch-tokens", type=int, default=1024, help="padded tokens per copy batch")
    ap.add_argument("--copy-warmup-vocab", type=int, default=1024,
                    help="the warm-up copies draw from this many most frequent corpus tokens")
    ap.add_argument("--copy-attn-loss", type=float, default=0.0,
                    help="weight of the attention supervision on copy steps (induction.HeadSupervision; 0: off)")
    ap.add_argument("--corpus-attn-loss", type=float, default=0.0,
                    help="weight of the same supervision on corpus steps (induction.corpus_sources; 0: off)")
    ap.add_argument("--copy-attn-layers", default="0,1", help="PREV,INDUCTION: layers of the supervised heads")
    ap.add_argument("--copy-attn-heads", default="auto",
                    help="query heads supervised in both layers (auto: the first of each kv head's group)")
    ap.add_argument("--copy-ov-init", action="store_true",
                    help="start the supervised heads' output projections as copies (induction.init_copy_heads)")
    ap.add_argument("--copy-ov-scale", type=float, default=1.0, help="induction heads' output scale at init")
    ap.add_argument("--copy-ov-loss", type=float, default=0.0,
                    help="weight of the supervised heads' direct-write copy loss wherever their attention is "
                         "supervised (induction.HeadSupervision.ov_loss; 0: off)")
    ap.add_argument("--copy-ov-negatives", action="store_true",
                    help="with --copy-ov-loss on corpus steps: also push the write away from a stale continuation "
                         "(induction.corpus_sources(stale=True))")
    ap.add_argument("--lm-head-from-embed", action="store_true",
                    help="start lm_head as a copy of the embeddings (still untied)")
    ap.add_argument("--init", help="start from this checkpoint's weights (a curriculum stage); optimizer starts fresh")
    return ap


def main(argv=None):
    train(parser().parse_args(argv))


if __name__ == "__main__":
    main()
