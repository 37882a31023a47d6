"""Reasoning parsers for MiniMax-M2 (spec minimax-m2.md §7): `minimax_m2` (separates reasoning from content)
and `minimax_m2_append_think` (no separation: content = `<think>` + the whole output).

The chat template's generation prompt ends with `<think>\\n`, so the output normally starts *inside* the
reasoning, has no `<think>`, and looks like `reasoning\\n</think>\\n\\nanswer` or
`reasoning\\n</think>\\n\\n<minimax:tool_call>...`.
Both parsers work on text that keeps the think and tool-call tags (m2serve's detokenizer keeps them).

`minimax_m2` rules (non-streaming and streaming give the same result for any chunking; tests check it):
* a leading `<think>` (only whitespace before it) is dropped with that whitespace (vLLM #38212: M2.5 outputs
  and clients without the `<think>` prefill); a `<think>` anywhere else is ordinary text.
* reasoning = the text up to the first `</think>`, or up to the first `<minimax:tool_call>` if that comes first
  (the model sometimes omits `</think>`, MiniMax-M2.1#10: the call still reaches the tool parser);
  neither: everything is reasoning (truncated thinking), content None.
* content = the text after `</think>` (or from `<minimax:tool_call>` on, tag included), raw, with every further
  `</think>` removed (`reasoning</think>A</think>B` -> content `AB`).
* empty strings are reported as None.

`reasoning_ended` (after stream()) tells the server when content, and so tool parsing, has begun.
`is_reasoning_end(text_or_ids)` is the prompt/history check of spec §7: scan backwards, the first think tag met
decides (`</think>` -> True, `<think>` -> False, none -> False); it does not look at tool-call tags (the
template's `<think>\\n` prefill is after any earlier call).

Reasoning tokens (usage.completion_tokens_details.reasoning_tokens): `count_reasoning_tokens(output_ids)` =
the number of output tokens before the first `</think>` (or `<minimax:tool_call>`) token; all of them if there is
neither. Ids default to the real vocabulary (200050..200052); pass the tokenizer's ids for other vocabularies.
"""
from __future__ import annotations

from collections.abc import Sequence

from m2serve.parsers._text import partial_tag_len
from m2serve.parsers.types import DeltaMessage

THINK_START = "<think>"
THINK_END = "</think>"
TOOL_CALL_START = "<minimax:tool_call>"

THINK_START_ID = 200050
THINK_END_ID = 200051
TOOL_CALL_START_ID = 200052


def is_reasoning_end_text(text: str) -> bool:
    """Scanning `text` backwards, the first think tag met is `</think>` (False if there is none)."""
    return text.rfind(THINK_END) > text.rfind(THINK_START)


def is_reasoning_end_ids(token_ids: Sequence[int], think_start_id: int = THINK_START_ID,
                         think_end_id: int = THINK_END_ID) -> bool:
    """Scanning `token_ids` backwards, the first think token met is `</think>` (False if there is none)."""
    for tid in reversed(token_ids):
        if tid == think_end_id:
            return True
        if tid == think_start_id:
            return False
    return False


def count_reasoning_tokens(token_ids: Sequence[int], think_end_id: int = THINK_END_ID,
                           tool_call_start_id: int | None = TOOL_CALL_START_ID) -> int:
    """Output tokens before the first `</think>` (or `<minimax:tool_call>`) token; all of them if neither."""
    for i, tid in enumerate(token_ids):
        if tid == think_end_id or tid == tool_call_start_id:
            return i
    return len(token_ids)


def _message(reasoning: str, content: str) -> DeltaMessage | None:
    if not reasoning and not content:
        return None
    return DeltaMessage(content=content or None, reasoning=reasoning or None)


class _ReasoningParserBase:
    def __init__(self, think_start_id: int = THINK_START_ID, think_end_id: int = THINK_END_ID,
                 tool_call_start_id: int = TOOL_CALL_START_ID):
        self.think_start_id = think_start_id
        self.think_end_id = think_end_id
        self.tool_call_start_id = tool_call_start_id

    def is_reasoning_end(self, text_or_ids: str | Sequence[int]) -> bool:
        """Spec §7: scan backwards; `</think>` met first -> True; `<think>` first or neither -> False. Takes the
        text or the token ids (of the prompt, or of prompt + output)."""
        if isinstance(text_or_ids, str):
            return is_reasoning_end_text(text_or_ids)
        return is_reasoning_end_ids(text_or_ids, self.think_start_id, self.think_end_id)

    def count_reasoning_tokens(self, output_token_ids: Sequence[int]) -> int:
        return count_reasoning_tokens(output_token_ids, self.think_end_id, self.tool_call_start_id)


class MiniMaxM2ReasoningParser(_ReasoningParserBase):
    """`minimax_m2`: reasoning separated from content. Per-request instance (stream() is stateful)."""

    name = "minimax_m2"

    _START, _REASONING, _CONTENT = "start", "reasoning", "content"

    def __init__(self, **ids: int):
        super().__init__(**ids)
        self._phase = self._START
        self._pending = ""          # text held back: leading whitespace / a possible partial tag

    # ---- non-streaming --------------------------------------------------------------------------------------
    def extract(self, text: str) -> tuple[str | None, str | None]:
        """(reasoning, content) of a complete output."""
        stripped = text.lstrip()
        if stripped.startswith(THINK_START):
            text = stripped[len(THINK_START):]
        end, tool = text.find(THINK_END), text.find(TOOL_CALL_START)
        if end >= 0 and (tool < 0 or end < tool):
            reasoning, content = text[:end], text[end + len(THINK_END):]
        elif tool >= 0:
            reasoning, content = text[:tool], text[tool:]
        else:
            return text or None, None
        return reasoning or None, content.replace(THINK_END, "") or None

    # ---- streaming ------------------------------------------------------------------------------------------
    @property
    def reasoning_ended(self) -> bool:
        """True once the stream has left the reasoning (after `</think>` or at `<minimax:tool_call>`)."""
        return self._phase == self._CONTENT

    def stream(self, delta_text: str) -> DeltaMessage | None:
        if not delta_text:
            return None
        text, self._pending = self._pending + delta_text, ""
        reasoning, content = [], []
        if self._phase == self._START:
            stripped = text.lstrip()
            if not stripped or (len(stripped) < len(THINK_START) and THINK_START.startswith(stripped)):
                self._pending = text         # maybe a leading <think>: wait
                return None
            self._phase = self._REASONING
            if stripped.startswith(THINK_START):
                text = stripped[len(THINK_START):]
        if self._phase == self._REASONING:
            end, tool = text.find(THINK_END), text.find(TOOL_CALL_START)
            if end >= 0 and (tool < 0 or end < tool):
                reasoning.append(text[:end])
                text = text[end + len(THINK_END):]
                self._phase = self._CONTENT
            elif tool >= 0:
                reasoning.append(text[:tool])
                text = text[tool:]
                self._phase = self._CONTENT
            else:
                keep = partial_tag_len(text, THINK_END, TOOL_CALL_START)
                reasoning.append(text[:len(text) - keep])
                self._pending = text[len(text) - keep:]
                text = ""
        if self._phase == self._CONTENT and text:
            # drop every further </think>; hold back a possible partial one
            keep = partial_tag_len(text, THINK_END)
            content.append(text[:len(text) - keep].replace(THINK_END, ""))
            self._pending = text[len(text) - keep:]
        return _message("".join(reasoning), "".join(content))

    def finish(self) -> DeltaMessage | None:
        """End of the stream: release held-back text (it did not become a tag)."""
        rest, self._pending = self._pending, ""
        if self._phase == self._CONTENT:
            return _message("", rest)
        return _message(rest, "")


class MiniMaxM2AppendThinkReasoningParser(_ReasoningParserBase):
    """`minimax_m2_append_think`: no separation. content = `<think>` + the whole output, reasoning never set
    (MiniMax's recommended mode: clients resend the content verbatim and the template re-splits it).

    Deviation from the plain rule, to avoid `<think><think>`: an output that already starts with `<think>`
    (after optional whitespace) is returned unchanged. An empty output gives (None, None) and streams nothing.
    `reasoning_ended` turns True at `</think>` or `<minimax:tool_call>` (the model sometimes omits `</think>`,
    MiniMax-M2.1#10); the server may feed all content to the tool parser anyway: a call inside an unterminated
    think block is then still found."""

    name = "minimax_m2_append_think"

    def __init__(self, **ids: int):
        super().__init__(**ids)
        self._started = False       # the <think> prefix decision has been made
        self._pending = ""          # leading text held until that decision
        self._tail = ""             # last characters, to find end tags split across deltas
        self._ended = False

    def extract(self, text: str) -> tuple[str | None, str | None]:
        if not text:
            return None, None
        if text.lstrip().startswith(THINK_START):
            return None, text
        return None, THINK_START + text

    @property
    def reasoning_ended(self) -> bool:
        return self._ended

    def stream(self, delta_text: str) -> DeltaMessage | None:
        if not delta_text:
            return None
        if not self._ended:
            window = self._tail + delta_text
            self._ended = THINK_END in window or TOOL_CALL_START in window
            self._tail = window[-(len(TOOL_CALL_START) - 1):]
        if self._started:
            return DeltaMessage(content=delta_text)
        text = self._pending + delta_text
        stripped = text.lstrip()
        if not stripped or (len(stripped) < len(THINK_START) and THINK_START.startswith(stripped)):
            self._pending = text
            return None
        self._started, self._pending = True, ""
        return DeltaMessage(content=text if stripped.startswith(THINK_START) else THINK_START + text)

    def finish(self) -> DeltaMessage | None:
        if self._started or not self._pending:
            return None
        self._started, rest, self._pending = True, self._pending, ""
        return DeltaMessage(content=THINK_START + rest)
