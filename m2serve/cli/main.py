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
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve.run(args, serve_parser) or 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
