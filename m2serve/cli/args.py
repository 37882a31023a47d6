"""Helpers for vLLM-style flags: both --kebab-case and --snake_case spellings, JSON-valued options."""
from __future__ import annotations

import argparse
import json


def add(parser: argparse.ArgumentParser, *names: str, **kw) -> argparse.Action:
    """Register a flag under its dash and underscore spellings (the seed writes --speculative_config)."""
    spellings: list[str] = []
    for name in names:
        spellings.append(name)
        if name.startswith("--"):
            alt = "--" + name[2:].replace("-", "_")
            if alt != name:
                spellings.append(alt)
    return parser.add_argument(*spellings, **kw)


def add_bool(parser: argparse.ArgumentParser, name: str, default: bool, help: str) -> None:
    """--flag / --no-flag, both spellings."""
    dest = name[2:].replace("-", "_")
    add(parser, name, dest=dest, action="store_true", default=default, help=help)
    add(parser, "--no-" + name[2:], dest=dest, action="store_false", help=argparse.SUPPRESS)


def json_arg(flag: str):
    def parse(text: str):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"{flag} must be JSON: {e.msg} in {text!r}") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{flag} must be a JSON object, got {text!r}")
        return value
    parse.__name__ = "JSON"
    return parse


def compilation_arg(text: str):
    """--compilation-config / -O: a JSON object, or a bare level (vLLM's -O3, -O 0)."""
    if text.strip().lstrip("-").isdigit():
        return int(text)
    return json_arg("--compilation-config")(text)


compilation_arg.__name__ = "JSON or level"


def size_arg(text: str) -> int:
    """Integers with k/m/g suffixes (vLLM accepts --max-model-len 32k)."""
    t = text.strip().lower()
    mult = {"k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}
    for suffix in sorted(mult, key=len, reverse=True):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult[suffix])
    return int(t)
