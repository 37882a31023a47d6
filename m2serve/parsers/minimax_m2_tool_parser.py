"""The `minimax_m2` tool-call parser (spec minimax-m2.md §6), non-streaming and streaming.

Input is the assistant *content* (after the reasoning parser), as text that still has the `<minimax:tool_call>` /
`</minimax:tool_call>` tags (m2serve's detokenizer keeps them, spec §4):

    Let me check.<minimax:tool_call>
    <invoke name="get_weather">
    <parameter name="city">Paris</parameter>
    <parameter name="days">2</parameter>
    </invoke>
    </minimax:tool_call>

Grammar (both modes; every search is for the *first* occurrence):
* a block runs from `<minimax:tool_call>` to the next `</minimax:tool_call>`, or to the end of the text
  (truncated block); several blocks may follow each other.
* in a block, an invoke runs from `<invoke name=` to the next `</invoke>`, or to the end of the block: a block end
  closes an invoke that lacks `</invoke>`; the end of the text does not (truncated invoke).
* the name is the text up to the first `>`, stripped and unquoted (`"x"`, `'x'` or `x`); a name containing `<`
  (no `>` before the next tag) or empty is malformed. With tools given, a name must be one of them (vLLM PR
  #37790); with no tools every name is accepted.
* parameters: each `<parameter name=K>V</parameter>` after the name, inside the invoke; K unquoted, V stripped
  and converted with the tool's schema (see `schema.py`); a parameter without `>` or `</parameter>` inside the
  invoke is ignored; a repeated name in one invoke: the first value wins (a streamed value cannot be taken back).
* arguments = `json.dumps(params, ensure_ascii=False)` in order of appearance; `"{}"` without parameters.

Results:
* a block is *effective* if it holds at least one invoke with a valid, complete name. Content is the text before
  the first effective block (None if empty); all text after it, between and after blocks, is dropped. A block
  without a valid name (only hallucinated tools, or no invoke) is plain text. No effective block: no tool calls,
  content = the whole text, returned as is (so `""` for an empty output, where the streamed content is empty
  too). Whitespace before a block is kept (`"\n\n"` after `</think>`): spec §6.2 takes the raw prefix.
* calls: every valid invoke of every block that is closed (by `</invoke>` or the block end), in order; index =
  position in that list.
* truncation: an invoke cut off by the end of the text is never returned as a call. If its name was complete and
  valid the streaming parser has already sent its header (and maybe some parameters), so for the same text
  non-streaming also treats its block as effective (content = text before it) but returns no call for it.

Streaming invariant (tests/unit/test_tool_parser.py checks it under random re-chunking): for any text and any
split of it into deltas, the concatenated streamed `content` equals `extract(text).content` (`""` for None),
and the streamed calls equal the extracted ones (count, order, names, and argument strings byte for byte; ids
differ), *except* when the text ends inside an invoke whose header was sent: then the streamed calls have one
more, last, call whose arguments are an unfinished JSON text (`in_truncated_call` is True; with max_tokens the
finish reason is `length`). Streaming never emits content after the first tool call, never a second header
for an index, and never a header for an unknown name.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from m2serve.parsers._text import new_tool_call_id, partial_tag_len
from m2serve.parsers.schema import ToolSchemas, clean_value, unquote_name
from m2serve.parsers.types import DeltaMessage, DeltaToolCall, ExtractedToolCalls, ToolCall

TOOL_CALL_START = "<minimax:tool_call>"
TOOL_CALL_END = "</minimax:tool_call>"
INVOKE_START = "<invoke name="
INVOKE_END = "</invoke>"
PARAM_START = "<parameter name="
PARAM_END = "</parameter>"

_PARAM_RE = re.compile(r"<parameter name=(.*?)</parameter>", re.DOTALL)
_LONGEST_END = max(len(TOOL_CALL_END), len(INVOKE_END), len(PARAM_END))

# streaming states
_CONTENT = "content"        # outside blocks
_BLOCK = "block"            # in a block, between invokes
_NAME = "name"              # after `<invoke name=`, waiting for `>`
_SKIP = "skip"              # in an invoke with a bad name, waiting for its end
_BODY = "body"              # in a valid invoke, between parameters
_PARAM = "param"            # after `<parameter name=`, waiting for `</parameter>`


def _find_first(text: str, tags: tuple[str, ...], start: int = 0) -> tuple[int, str | None]:
    """(position, tag) of the earliest occurrence of any of `tags` in text[start:], or (-1, None)."""
    best, which = -1, None
    for tag in tags:
        i = text.find(tag, start)
        if i >= 0 and (best < 0 or i < best):
            best, which = i, tag
    return best, which


def _parse_name(region: str) -> str | None:
    """The function/parameter name written before the first `>`, or None if malformed."""
    if "<" in region:
        return None
    name = unquote_name(region)
    return name or None


def _format_param(key: str, value: Any) -> str:
    return json.dumps(key, ensure_ascii=False) + ": " + json.dumps(value, ensure_ascii=False)


@dataclass
class _StreamedCall:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)
    closed: bool = False


class _Out:
    """What one stream()/finish() step produces, merged per tool index."""

    def __init__(self):
        self.content: list[str] = []
        self.tools: dict[int, DeltaToolCall] = {}

    def message(self) -> DeltaMessage | None:
        content = "".join(self.content)
        if not content and not self.tools:
            return None
        return DeltaMessage(content=content or None, tool_calls=list(self.tools.values()))


class MiniMaxM2ToolParser:
    """Per-request parser (never share an instance between requests). See the module docstring."""

    name = "minimax_m2"

    def __init__(self, tools: list | None = None):
        self._schemas = ToolSchemas(tools)
        # streaming state
        self._buf = ""                      # received text not consumed yet
        self._state = _CONTENT
        self._scan = 0                      # buf[:scan] already searched without success (search hint)
        self._held: list[str] | None = None  # block text that becomes content if the block has no valid call
        self._calls: list[_StreamedCall] = []
        self._keys: set[str] = set()        # parameter names sent for the current call

    # ---- public: non-streaming ------------------------------------------------------------------------------
    def extract(self, text: str) -> ExtractedToolCalls:
        """Tool calls and content of a complete model output (spec §6.2)."""
        calls: list[ToolCall] = []
        first_effective = -1
        pos = 0
        while True:
            start = text.find(TOOL_CALL_START, pos)
            if start < 0:
                break
            body_start = start + len(TOOL_CALL_START)
            end = text.find(TOOL_CALL_END, body_start)
            block_closed = end >= 0
            body = text[body_start:end] if block_closed else text[body_start:]
            if self._extract_block(body, block_closed, calls) and first_effective < 0:
                first_effective = start
            if not block_closed:
                break
            pos = end + len(TOOL_CALL_END)
        if first_effective < 0:
            return ExtractedToolCalls(tools_called=False, tool_calls=[], content=text)
        return ExtractedToolCalls(tools_called=bool(calls), tool_calls=calls, content=text[:first_effective] or None)

    def _extract_block(self, body: str, block_closed: bool, calls: list[ToolCall]) -> bool:
        """Append the block's complete valid calls to `calls`; True if it has a valid name (effective)."""
        effective = False
        pos = 0
        while True:
            start = body.find(INVOKE_START, pos)
            if start < 0:
                break
            span_start = start + len(INVOKE_START)
            end = body.find(INVOKE_END, span_start)
            span = body[span_start:end] if end >= 0 else body[span_start:]
            closed = end >= 0 or block_closed
            gt = span.find(">")
            name = _parse_name(span[:gt]) if gt >= 0 else None
            if name is not None and self._schemas.is_valid_name(name):
                effective = True
                if closed:
                    calls.append(ToolCall(id=new_tool_call_id(), name=name,
                                          arguments=self._extract_arguments(name, span, gt + 1)))
            if end < 0:
                break
            pos = end + len(INVOKE_END)
        return effective

    def _extract_arguments(self, function: str, span: str, start: int) -> str:
        params: dict[str, Any] = {}
        for m in _PARAM_RE.finditer(span, start):
            body = m.group(1)
            gt = body.find(">")
            key = _parse_name(body[:gt]) if gt >= 0 else None
            if key is None or key in params:
                continue
            params[key] = self._schemas.convert(function, key, clean_value(body[gt + 1:]))
        return json.dumps(params, ensure_ascii=False)

    # ---- public: streaming ----------------------------------------------------------------------------------
    def stream(self, delta_text: str) -> DeltaMessage | None:
        """Feed the next piece of content; returns what can be sent now (content and/or tool-call pieces)."""
        out = _Out()
        if delta_text:
            self._buf += delta_text
            self._run(out)
        return out.message()

    def finish(self) -> DeltaMessage | None:
        """End of the stream: flush held-back text that turned out not to be a tool call (a partial start tag,
        or a block without any valid call). An invoke cut off mid-way stays unfinished (never closed with a
        made-up `}`); see `in_truncated_call`."""
        out = _Out()
        rest, self._buf, self._scan = self._buf, "", 0
        if self._state == _CONTENT:
            self._emit_content(out, rest)
        elif self._state in (_BLOCK, _NAME, _SKIP):
            if self._held is not None:
                self._emit_content(out, "".join(self._held) + rest)
            self._held = None
            self._state = _CONTENT
        # _BODY / _PARAM: the current call is truncated; its state stays for in_truncated_call.
        return out.message()

    @property
    def tools_called(self) -> bool:
        """Whether any tool call (header) has been streamed: the server then reports finish_reason `tool_calls`
        (unless the request stopped for length)."""
        return bool(self._calls)

    @property
    def in_truncated_call(self) -> bool:
        """True if the text so far ends inside a streamed call (its arguments are not finished)."""
        return self._state in (_BODY, _PARAM)

    @property
    def streamed_tool_calls(self) -> list[ToolCall]:
        """The calls sent so far, with their arguments as concatenated from the deltas."""
        return [ToolCall(c.id, c.name, "".join(c.arguments)) for c in self._calls]

    # ---- streaming internals --------------------------------------------------------------------------------
    def _emit_content(self, out: _Out, text: str) -> None:
        if text and not self._calls:       # content ends with the first tool call
            out.content.append(text)

    def _take(self, n: int) -> str:
        """Consume buf[:n]; inside a block that may still be text, remember it."""
        piece, self._buf, self._scan = self._buf[:n], self._buf[n:], 0
        if self._held is not None and self._state != _CONTENT:
            self._held.append(piece)
        return piece

    def _hint(self, overlap: int) -> int:
        return max(0, self._scan - overlap + 1)

    def _run(self, out: _Out) -> None:
        while self._step(out):
            pass

    def _step(self, out: _Out) -> bool:
        """Advance over what the buffer allows; False when more text is needed."""
        buf, state = self._buf, self._state

        if state == _CONTENT:
            i = buf.find(TOOL_CALL_START)
            if i < 0:
                n = len(buf) - partial_tag_len(buf, TOOL_CALL_START)
                self._emit_content(out, self._take(n))
                return False
            self._emit_content(out, self._take(i))
            self._held = [] if not self._calls else None
            self._state = _BLOCK
            self._take(len(TOOL_CALL_START))
            return True

        if state == _BLOCK:
            i, tag = _find_first(buf, (INVOKE_START, TOOL_CALL_END), self._hint(len(TOOL_CALL_END)))
            if tag is None:
                self._scan = len(buf)
                return False
            if tag == TOOL_CALL_END:
                self._take(i + len(TOOL_CALL_END))
                if self._held is not None:     # no valid call in this block: it was text
                    self._emit_content(out, "".join(self._held))
                    self._held = None
                self._state = _CONTENT
                return True
            self._take(i + len(INVOKE_START))
            self._state = _NAME
            return True

        if state == _NAME:
            gt = buf.find(">", self._scan)
            if gt < 0:
                self._scan = len(buf)
                return False
            name = _parse_name(buf[:gt])
            if name is None or not self._schemas.is_valid_name(name):
                self._state = _SKIP           # search for the invoke end from the name on
                self._scan = 0
                return True
            self._take(gt + 1)
            self._held = None                 # the block is a tool call: its text is not content
            call = _StreamedCall(id=new_tool_call_id(), name=name)
            self._calls.append(call)
            self._keys = set()
            out.tools[len(self._calls) - 1] = DeltaToolCall(index=len(self._calls) - 1, id=call.id, name=name,
                                                            arguments="")
            self._state = _BODY
            return True

        if state == _SKIP:
            i, tag = _find_first(buf, (INVOKE_END, TOOL_CALL_END), self._hint(_LONGEST_END))
            if tag is None:
                self._scan = len(buf)
                return False
            self._take(i + len(INVOKE_END) if tag == INVOKE_END else i)
            self._state = _BLOCK
            return True

        if state == _BODY:
            start = self._hint(_LONGEST_END)
            p = buf.find(PARAM_START, start)
            e, tag = _find_first(buf, (INVOKE_END, TOOL_CALL_END), start)
            if p >= 0 and (e < 0 or p < e):
                self._take(p)
                self._state = _PARAM
                return True
            if tag is None:
                self._scan = len(buf)
                return False
            self._take(e + len(INVOKE_END) if tag == INVOKE_END else e)
            self._close_call(out)
            self._state = _BLOCK
            return True

        # _PARAM: buf starts with `<parameter name=`
        start = max(len(PARAM_START), self._hint(_LONGEST_END))
        q, tag = _find_first(buf, (PARAM_END, INVOKE_END, TOOL_CALL_END), start)
        if tag is None:
            self._scan = len(buf)
            return False
        if tag != PARAM_END:                  # the invoke ends inside the parameter: ignore the parameter
            self._take(q)
            self._state = _BODY
            return True
        body = self._take(q + len(PARAM_END))[len(PARAM_START):-len(PARAM_END)]
        self._state = _BODY
        gt = body.find(">")
        key = _parse_name(body[:gt]) if gt >= 0 else None
        if key is not None and key not in self._keys:
            call = self._calls[-1]
            value = self._schemas.convert(call.name, key, clean_value(body[gt + 1:]))
            self._send_args(out, ("{" if not self._keys else ", ") + _format_param(key, value))
            self._keys.add(key)
        return True

    def _send_args(self, out: _Out, text: str) -> None:
        index = len(self._calls) - 1
        self._calls[index].arguments.append(text)
        piece = out.tools.get(index)
        if piece is None:
            out.tools[index] = DeltaToolCall(index=index, arguments=text)
        else:
            piece.arguments = (piece.arguments or "") + text

    def _close_call(self, out: _Out) -> None:
        self._send_args(out, "}" if self._keys else "{}")
        self._calls[-1].closed = True
        self._keys = set()
