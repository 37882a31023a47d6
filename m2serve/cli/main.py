"""`m2serve` command line: vLLM-compatible subcommands."""
from __future__ import annotations

import argparse
import sys

import m2serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="m2serve", description="Serve MiniMax-M2 family models.")
    parser.add_argument("--version", action="version", version=f"m2serve {m2serve.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from m2serve.cli import serve
    serve_parser = sub.add_parser("serve", help="start the OpenAI-compatible server")
    serve.make_parser(serve_parser)
    from m2serve.quantize import cli as quantize
    quantize_parser = sub.add_parser("quantize", help="write an msModelSlim W8A8 / W8A8_DYNAMIC / C8 checkpoint")
    quantize.make_parser(quantize_parser)
    from m2serve.bench import cli as bench
    bench_parser = sub.add_parser("bench", help="benchmark a server (serve) or the engine (offline, latency)")
    bench.make_parser(bench_parser)
    from m2serve.cli import eval as eval_cli
    eval_parser = sub.add_parser("eval", help="lm-evaluation-harness on the shipped tasks against a server")
    eval_cli.make_parser(eval_parser)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve.run(args, serve_parser) or 0
    if args.command == "quantize":
        return quantize.run(args, quantize_parser)
    if args.command == "bench":
        return bench.run(args, bench_parser)
    if args.command == "eval":
        eval_cli.run(args)
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
