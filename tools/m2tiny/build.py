"""Rebuild m2-tiny from scratch: corpus -> tokenizer -> encode -> train -> export -> evaluate.

    python -m tools.m2tiny.build --minutes 90                # the shipped model (about 100 min on 2 cores)
    python -m tools.m2tiny.build --minutes 90 --resume       # continue an interrupted run from its checkpoint
    python -m tools.m2tiny.build --preset smoke --minutes 1 --n 600 --workdir /tmp/m2s/work --out /tmp/m2s/model

Intermediate files go to --workdir (default build/m2tiny, git-ignored): corpus/train.jsonl, corpus/eval/*.jsonl,
tokenizer/, data/train.npz, ckpt/last.pt (+ train_log.jsonl), eval_results.json. The model folder (--out, default
models/m2-tiny) gets config.json, generation_config.json, tokenizer.json, tokenizer_config.json,
chat_template.jinja, model.safetensors and eval/ (the held-out JSONL files).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from . import tokenizer
from .common import DEFAULT_OUT, DEFAULT_WORKDIR, read_jsonl

EXAMPLES_PER_MINUTE = 450  # corpus size per training minute: about one epoch at the expected throughput


def log(msg):
    print(f"[m2tiny {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=90.0, help="training time budget")
    ap.add_argument("--n", type=int, default=0, help=f"training records (default {EXAMPLES_PER_MINUTE} x minutes)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--heldout-seed", type=int, default=987654321)
    ap.add_argument("--preset", default="m2-tiny")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--resume", action="store_true", help="reuse corpus/tokenizer/data and resume training")
    ap.add_argument("--eval-limit", type=int, default=100, help="items per held-out set in the final evaluation")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--split", default=tokenizer.DEFAULT_SPLIT, choices=sorted(tokenizer.SPLIT_PATTERNS),
                    help="tokenizer pre-split: bare keeps words free of a leading space so values copy (tokenizer.py)")
    ap.add_argument("--bpe-dropout", type=float, default=0.0,
                    help="seeded BPE-dropout on the training encodings (data.split_pieces): trains the pieces held-out "
                         "names are spelled with")
    ap.add_argument("--max-len", type=int, default=2048, help="drop training records longer than this")
    ap.add_argument("--train-arg", action="append", default=[],
                    help="extra trainer flag, e.g. --train-arg=--lr=1e-3 (see python -m tools.m2tiny.train -h)")
    a = ap.parse_args(argv)
    if a.minutes <= 0:
        ap.error("--minutes must be > 0")

    from . import corpus, data, evaluate, export, train
    from .modelcfg import PRESETS, param_count

    work = Path(a.workdir)
    out = Path(a.out)
    n = a.n or int(EXAMPLES_PER_MINUTE * a.minutes)
    t_start = time.time()
    corpus_dir, tok_dir, data_path = work / "corpus", work / "tokenizer", work / "data" / "train.npz"
    fresh = not a.resume

    if fresh or not (corpus_dir / "train.jsonl").exists():
        log(f"corpus: {n} training records, seed {a.seed}; held-out seed {a.heldout_seed}")
        log(json.dumps(corpus.write_corpus(corpus_dir, n, a.seed, a.heldout_seed)))
    if fresh or not (tok_dir / "tokenizer.json").exists():
        log(f"tokenizer: training byte-level BPE ({a.split} words)")
        records = read_jsonl(corpus_dir / "train.jsonl")
        tok = tokenizer.train_tokenizer((data.record_text(r)[0] for r in records), split=a.split)
        tokenizer.save_tokenizer(tok, tok_dir, PRESETS[a.preset]["max_position_embeddings"])
        log(f"tokenizer: {tok.get_vocab_size()} tokens")
    if fresh or not data_path.exists():
        log("encode: rendering with the chat template and tokenizing")
        tok = tokenizer.load_tokenizer(tok_dir)
        log(json.dumps(data.encode_file(corpus_dir / "train.jsonl", tok, data_path, a.max_len,
                                        bpe_dropout=a.bpe_dropout, seed=a.seed)))
    if fresh and (work / "ckpt").exists():
        log(f"removing the previous checkpoint {work / 'ckpt'} (use --resume to continue it instead)")
        shutil.rmtree(work / "ckpt")

    pc = param_count(PRESETS[a.preset])
    log(f"train: preset {a.preset}, {pc['total'] / 1e6:.2f} M params ({pc['active_per_token'] / 1e6:.2f} M active), "
        f"{a.minutes} min, {a.threads} threads")
    targs = train.parser().parse_args(
        ["--data", str(data_path), "--ckpt-dir", str(work / "ckpt"), "--preset", a.preset,
         "--minutes", str(a.minutes), "--threads", str(a.threads), "--seed", str(a.seed)]
        + (["--resume"] if a.resume else []) + a.train_arg)
    summary = train.train(targs)

    log(f"export -> {out}")
    log(json.dumps(export.export_checkpoint(work / "ckpt" / "last.pt", tok_dir, out)))
    (out / "eval").mkdir(parents=True, exist_ok=True)
    for f in (corpus_dir / "eval").glob("*.jsonl"):
        shutil.copyfile(f, out / "eval" / f.name)

    result = {"train": summary}
    if not a.skip_eval:
        log(f"evaluate: {a.eval_limit} items per set")
        backend = evaluate.TransformersBackend(out, a.threads)
        ev = evaluate.evaluate(backend, out / "eval", a.eval_limit, log=log)
        print(evaluate.format_table(ev["rows"]), flush=True)
        result["eval"] = ev
    result["total_minutes"] = round((time.time() - t_start) / 60, 1)
    (work / "build_result.json").write_text(json.dumps(result, ensure_ascii=False, indent=1))
    log(f"done in {result['total_minutes']} min; summary in {work / 'build_result.json'}")
    return result


if __name__ == "__main__":
    main()
