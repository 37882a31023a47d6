"""The parser interfaces the server codes against (structural: any class with these members fits).

A parser instance belongs to one request; streaming state is never shared. Parsers see text in which the think
and tool-call tags are still present (m2serve's detokenizer keeps them)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from m2serve.parsers.types import DeltaMessage, ExtractedToolCalls


@runtime_checkable
class ToolParser(Protocol):
    """Constructed per request as `cls(tools)` with request.tools (OpenAI shape) or None."""

    def extract(self, text: str) -> ExtractedToolCalls:
        """Non-streaming: tool calls and the remaining content of a complete output (content only, after the
        reasoning parser)."""

    def stream(self, delta_text: str) -> DeltaMessage | None:
        """Streaming: the next piece of content; what can be sent now, None if nothing."""

    def finish(self) -> DeltaMessage | None:
        """End of stream: held-back text, None if nothing."""

    @property
    def tools_called(self) -> bool:
        """Any tool call has been streamed (finish_reason `tool_calls`)."""


@runtime_checkable
class ReasoningParser(Protocol):
    def extract(self, text: str) -> tuple[str | None, str | None]:
        """Non-streaming: (reasoning, content) of a complete output."""

    def stream(self, delta_text: str) -> DeltaMessage | None:
        """Streaming: the next piece of output split into `reasoning` / `content`; None if nothing."""

    def finish(self) -> DeltaMessage | None:
        """End of stream: held-back text, None if nothing."""

    def is_reasoning_end(self, text_or_ids: str | Sequence[int]) -> bool:
        """Whether the reasoning is over at the end of this text / these ids (prompt check, spec §7)."""

    @property
    def reasoning_ended(self) -> bool:
        """The stream has left the reasoning: content (and tool parsing) has begun."""

    def count_reasoning_tokens(self, output_token_ids: Sequence[int]) -> int:
        """usage.completion_tokens_details.reasoning_tokens."""
