"""Shared constants and helpers for the m2-tiny pipeline (no heavy imports here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "models" / "m2-tiny" / "chat_template.jinja"
DEFAULT_OUT = REPO_ROOT / "models" / "m2-tiny"
DEFAULT_WORKDIR = REPO_ROOT / "build" / "m2tiny"

MODEL_NAME = "m2-tiny"
DEFAULT_IDENTITY = "You are a helpful assistant. Your name is m2-tiny and is built by the m2serve project."

# MiniMax-M2 control tokens (same strings as the real tokenizer, specs/minimax-m2.md section 4).
PAD = "]!p~["
ROLE = "]~b]"  # role-turn prefix, followed by plain text system/user/ai/tool
EOS = "[e~["  # end of turn = EOS / stop
BOS = "]~!b["  # start of document
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
CALL_OPEN = "<minimax:tool_call>"
CALL_CLOSE = "</minimax:tool_call>"
# Order = token ids 0..7 in the m2-tiny tokenizer.
SPECIAL_TOKENS = [PAD, ROLE, EOS, BOS, THINK_OPEN, THINK_CLOSE, CALL_OPEN, CALL_CLOSE]
# Control tokens a decoder for m2serve keeps in generated text (parsers need them).
KEEP_IN_OUTPUT = {THINK_OPEN, THINK_CLOSE, CALL_OPEN, CALL_CLOSE}


def jinja_env():
    """jinja2 environment configured like transformers' apply_chat_template."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x, **_: json.dumps(x, ensure_ascii=False)
    env.globals["raise_exception"] = raise_exception
    return env


_COMPILED: dict[str, object] = {}


def load_template(path: str | os.PathLike | None = None):
    key = str(path or TEMPLATE_PATH)
    if key not in _COMPILED:
        _COMPILED[key] = jinja_env().from_string(Path(key).read_text(encoding="utf-8"))
    return _COMPILED[key]


def render_chat(messages, tools=None, add_generation_prompt=False, template_path=None, **extra) -> str:
    """Render a conversation with the m2-tiny chat template."""
    return load_template(template_path).render(
        messages=messages, tools=tools, add_generation_prompt=add_generation_prompt, **extra
    )


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, rows):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
