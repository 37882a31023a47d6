"""`m2serve bench {serve,offline,latency,compare}`: registered on the `m2serve` parser by m2serve/cli/main.py."""
from __future__ import annotations

import argparse


def make_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from m2serve.bench import compare, latency, offline, serve

    sub = parser.add_subparsers(dest="bench_command", metavar="BENCH")
    serve.make_parser(sub.add_parser("serve", help="load-test an OpenAI-compatible server (vllm bench serve)"))
    offline.make_parser(sub.add_parser("offline", help="LLM.generate throughput on random prompts"))
    latency.make_parser(sub.add_parser("latency", help="end-to-end latency of one batch, decode step roofline"))
    compare.make_parser(sub.add_parser("compare", help="the same checkpoint and workload on m2serve and peer engines"))
    return parser


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from m2serve.bench import compare, latency, offline, serve

    commands = {"serve": serve.run, "offline": offline.run, "latency": latency.run, "compare": compare.run}
    if args.bench_command not in commands:
        parser.print_help()
        return 2
    try:
        commands[args.bench_command](args)
    except (ValueError, RuntimeError, OSError) as e:
        parser.exit(1, f"m2serve bench {args.bench_command}: error: {e}\n")
    return 0
