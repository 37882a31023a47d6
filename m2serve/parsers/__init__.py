"""Tool-call and reasoning parsers (`--tool-call-parser`, `--reasoning-parser`), text based.

* `TOOL_PARSERS` / `get_tool_parser(name)`: `minimax_m2` -> `MiniMaxM2ToolParser(tools)`.
* `REASONING_PARSERS` / `get_reasoning_parser(name)`: `minimax_m2` (separate reasoning, the default mode) and
  `minimax_m2_append_think` (content = `<think>` + output, no reasoning field).
* `OutputParser(reasoning_parser, tool_parser)`: both in the server's order, streaming and non-streaming.

Parsers are classes: create one instance per request.
"""
from __future__ import annotations

from m2serve.parsers.base import ReasoningParser, ToolParser
from m2serve.parsers.minimax_m2_reasoning_parser import (
    MiniMaxM2AppendThinkReasoningParser,
    MiniMaxM2ReasoningParser,
    count_reasoning_tokens,
    is_reasoning_end_ids,
    is_reasoning_end_text,
)
from m2serve.parsers.minimax_m2_tool_parser import MiniMaxM2ToolParser
from m2serve.parsers.pipeline import OutputParser, ParsedOutput
from m2serve.parsers.types import DeltaMessage, DeltaToolCall, ExtractedToolCalls, ToolCall

TOOL_PARSERS: dict[str, type] = {
    "minimax_m2": MiniMaxM2ToolParser,
}

REASONING_PARSERS: dict[str, type] = {
    "minimax_m2": MiniMaxM2ReasoningParser,
    "minimax_m2_append_think": MiniMaxM2AppendThinkReasoningParser,
}


def _lookup(registry: dict[str, type], kind: str, name: str) -> type:
    try:
        return registry[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {kind} parser {name!r}; known: {', '.join(sorted(registry))}") from None


def get_tool_parser(name: str) -> type:
    """The tool parser class registered as `name`; ValueError naming the known ones otherwise."""
    return _lookup(TOOL_PARSERS, "tool call", name)


def get_reasoning_parser(name: str) -> type:
    """The reasoning parser class registered as `name`; ValueError naming the known ones otherwise."""
    return _lookup(REASONING_PARSERS, "reasoning", name)


__all__ = [
    "TOOL_PARSERS", "REASONING_PARSERS", "get_tool_parser", "get_reasoning_parser",
    "MiniMaxM2ToolParser", "MiniMaxM2ReasoningParser", "MiniMaxM2AppendThinkReasoningParser",
    "OutputParser", "ParsedOutput", "ToolParser", "ReasoningParser",
    "ToolCall", "DeltaToolCall", "DeltaMessage", "ExtractedToolCalls",
    "count_reasoning_tokens", "is_reasoning_end_ids", "is_reasoning_end_text",
]
