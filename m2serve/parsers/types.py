"""Plain result types shared by the tool-call and reasoning parsers (no pydantic: the server maps them to its
OpenAI protocol objects).

* `ToolCall`: one complete call of a non-streamed response. `arguments` is a JSON text (an object).
* `DeltaToolCall`: one piece of a streamed call. The first piece of call `index` carries `id` and `name`
  (and `arguments=""`); the server sends it as `{"index", "id", "type": "function", "function": {"name",
  "arguments"}}`: `type` is implied whenever `id` is set. Later pieces carry only `index` and `arguments`; the
  client concatenates `arguments` per index.
* `DeltaMessage`: what one streamed step produces: `content`, `reasoning` and/or `tool_calls`. A parser returns
  None instead of an empty DeltaMessage.
* `ExtractedToolCalls`: the non-streaming tool parser result.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str          # JSON text of the arguments object, e.g. '{"city": "Paris"}'


@dataclass
class DeltaToolCall:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str | None = None


@dataclass
class DeltaMessage:
    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[DeltaToolCall] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not self.content and not self.reasoning and not self.tool_calls


@dataclass
class ExtractedToolCalls:
    tools_called: bool
    tool_calls: list[ToolCall]
    content: str | None
