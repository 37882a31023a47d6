"""`m2serve quantize SRC DST --scheme w8a8_dynamic|w8a8 [--quarot] [--kv-c8] [--calib-data FILE]`."""
from __future__ import annotations

import argparse
import json
import logging

from m2serve import envs
from m2serve.cli.args import add
from m2serve.quantize.convert import SCHEMES, QuantizeOptions, quantize_checkpoint
from m2serve.quantize.quarot import DEFAULT_SEED


def make_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="m2serve quantize")
    p.description = ("Quantize a float (fp32/bf16) or block-FP8 MiniMax-M2 folder to msModelSlim's AscendV1 layout; "
                     "serve the result with --quantization ascend.")
    p.add_argument("src", metavar="SRC", help="source model folder (Hugging Face layout)")
    p.add_argument("dst", metavar="DST", help="output folder")
    add(p, "--scheme", choices=SCHEMES, default="w8a8_dynamic",
        help="w8a8_dynamic: attention and experts W8A8_DYNAMIC; w8a8: attention static W8A8 (calibrated), "
             "experts W8A8_DYNAMIC")
    add(p, "--quarot", action="store_true", help="fold the norms and fuse a seeded Hadamard rotation first")
    add(p, "--kv-c8", action="store_true", help="calibrate per-channel int8 KV-cache scales (C8)")
    add(p, "--calib-data", default=None,
        help="calibration text: a .jsonl of {\"text\": ...} lines or a text file split at blank lines "
             "(default: a small built-in text)")
    add(p, "--num-calib-samples", type=int, default=64)
    add(p, "--max-calib-len", type=int, default=512, help="tokens per calibration sample at most")
    add(p, "--seed", type=int, default=DEFAULT_SEED, help="seed of the QuaRot rotation signs")
    add(p, "--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
        help="dtype of the tensors kept in float (default: the source's)")
    add(p, "--part-file-size", type=float, default=4.0, help="GB per safetensors shard")
    add(p, "--skip-validation", action="store_true",
        help="do not reload the result to compare its logits with the float model's")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    logging.basicConfig(level=envs.log_level(), format="%(levelname)s %(asctime)s [%(name)s] %(message)s")
    opts = QuantizeOptions(scheme=args.scheme, quarot=args.quarot, kv_c8=args.kv_c8, calib_data=args.calib_data,
                           num_calib_samples=args.num_calib_samples, max_calib_len=args.max_calib_len,
                           seed=args.seed, dtype=args.dtype, part_file_size=args.part_file_size,
                           validate=not args.skip_validation)
    try:
        report = quantize_checkpoint(args.src, args.dst, opts)
    except (ValueError, RuntimeError) as e:           # ConfigError / CheckpointError name the problem
        if parser is not None:
            parser.exit(2, f"m2serve quantize: error: {e}\n")
        raise
    print(json.dumps(report, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    return run(parser.parse_args(argv), parser)
