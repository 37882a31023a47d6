"""The server's per-request composition of a reasoning parser and a tool parser (either may be absent).

Order (spec §7.1): the reasoning parser runs first; only its `content` goes to the tool parser. Non-streaming
and streaming give the same result (up to the tool parser's truncated-call exception; see
minimax_m2_tool_parser).

    parser = OutputParser(get_reasoning_parser("minimax_m2")(), get_tool_parser("minimax_m2")(request.tools))
    for delta_text in detokenized_deltas:
        msg = parser.stream(delta_text)       # DeltaMessage | None -> SSE chunk
    msg = parser.finish()                     # flush; then finish_reason = "tool_calls" if parser.tools_called
"""
from __future__ import annotations

from dataclasses import dataclass, field

from m2serve.parsers.base import ReasoningParser, ToolParser
from m2serve.parsers.types import DeltaMessage, ToolCall


@dataclass
class ParsedOutput:
    reasoning: str | None
    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)

    @property
    def tools_called(self) -> bool:
        return bool(self.tool_calls)


def _merge(into: DeltaMessage, other: DeltaMessage | None) -> None:
    if other is None:
        return
    if other.reasoning:
        into.reasoning = (into.reasoning or "") + other.reasoning
    if other.content:
        into.content = (into.content or "") + other.content
    for piece in other.tool_calls:
        same = next((p for p in into.tool_calls if p.index == piece.index), None)
        if same is None:
            into.tool_calls.append(piece)
        elif piece.arguments:
            same.arguments = (same.arguments or "") + piece.arguments


class OutputParser:
    def __init__(self, reasoning_parser: ReasoningParser | None = None, tool_parser: ToolParser | None = None):
        self.reasoning_parser = reasoning_parser
        self.tool_parser = tool_parser

    def extract(self, text: str) -> ParsedOutput:
        if self.reasoning_parser is not None:
            reasoning, content = self.reasoning_parser.extract(text)
        else:
            reasoning, content = None, text
        if self.tool_parser is None or content is None:
            return ParsedOutput(reasoning, content or None)
        result = self.tool_parser.extract(content)
        return ParsedOutput(reasoning, result.content or None, list(result.tool_calls) if result.tools_called else [])

    def stream(self, delta_text: str) -> DeltaMessage | None:
        if self.reasoning_parser is not None:
            split = self.reasoning_parser.stream(delta_text)
        else:
            split = DeltaMessage(content=delta_text) if delta_text else None
        return self._route(split, final=False)

    def finish(self) -> DeltaMessage | None:
        split = self.reasoning_parser.finish() if self.reasoning_parser is not None else None
        return self._route(split, final=True)

    def _route(self, split: DeltaMessage | None, final: bool) -> DeltaMessage | None:
        out = DeltaMessage()
        if split is not None:
            out.reasoning = split.reasoning
            if self.tool_parser is None:
                out.content = split.content
            elif split.content:
                _merge(out, self.tool_parser.stream(split.content))
        if final and self.tool_parser is not None:
            _merge(out, self.tool_parser.finish())
        return None if out.is_empty() else out

    @property
    def tools_called(self) -> bool:
        return self.tool_parser is not None and self.tool_parser.tools_called
