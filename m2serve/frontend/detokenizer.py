"""Incremental detokenization with stop strings.

Byte-level BPE can split one character over several tokens, so text is produced with the prefix/read offset
method: decode the ids from `prefix_offset` (a few ids of context) with and without the new ids; the
difference is new text, emitted only when it does not end in U+FFFD (an incomplete UTF-8 sequence). Invalid
bytes in the middle of the text stay U+FFFD, as in a full decode; an incomplete tail is released by flush().

Stop strings are searched in the final text, so they are found when they span tokens. While streaming, the
longest tail of the text that is still the beginning of a stop string is held back (at most len(longest)-1
characters; nothing is held with include_stop_str_in_output, where all text up to the stop's end is output).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from m2serve.frontend.tokenizer import Tokenizer

_CONTEXT_IDS = 5        # prompt ids kept as decoding context for the first output ids
_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    def __init__(
        self,
        tokenizer: Tokenizer,
        prompt_token_ids: Sequence[int],
        skip_special_tokens: bool = True,
        stop: list[str] | None = None,
        include_stop_str_in_output: bool = False,
    ):
        self.tokenizer = tokenizer
        self._skip = tokenizer.stripped_special_ids if skip_special_tokens else frozenset()
        self._stops = [s for s in (stop or []) if s]
        self._include_stop = include_stop_str_in_output
        self._max_stop = max((len(s) for s in self._stops), default=0)

        context = [i for i in list(prompt_token_ids)[-_CONTEXT_IDS:] if i not in self._skip]
        if context and self._decode(context).endswith(_REPLACEMENT):
            context = []  # the prompt ends inside a character: no context rather than a misaligned one
        self._ids: list[int] = context       # context + kept output ids
        self._prefix_offset = 0
        self._read_offset = len(context)

        self._pending = ""                   # final text held back: could be the start of a stop string
        self._chunks: list[str] = []         # everything returned so far
        self.stop_reason: str | None = None  # the stop string that ended the output

    # ---- public ---------------------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The output text returned so far (the concatenation of every add() and flush() result)."""
        if len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks)]
        return self._chunks[0] if self._chunks else ""

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def add(self, new_token_ids: Iterable[int]) -> str:
        """Feed newly generated ids; returns the text that became final. After a stop string, returns ""."""
        if self.stop_reason is not None:
            return ""
        self._ids.extend(i for i in new_token_ids if i not in self._skip)
        return self._release(self._decode_new(final=False), final=False)

    def flush(self) -> str:
        """End of output: release the held text (an incomplete character decodes as U+FFFD)."""
        if self.stop_reason is not None:
            return ""
        return self._release(self._decode_new(final=True), final=True)

    # ---- internals ------------------------------------------------------------------------------------------
    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _decode_new(self, final: bool) -> str:
        if len(self._ids) == self._read_offset:
            return ""
        prefix_text = self._decode(self._ids[self._prefix_offset:self._read_offset])
        full_text = self._decode(self._ids[self._prefix_offset:])
        if not final and (len(full_text) <= len(prefix_text) or full_text.endswith(_REPLACEMENT)):
            return ""  # an incomplete UTF-8 sequence at the end: wait for the next ids
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        if len(self._ids) > 4 * _CONTEXT_IDS:  # keep the id list short: only the window is ever decoded
            drop = self._prefix_offset
            del self._ids[:drop]
            self._prefix_offset -= drop
            self._read_offset -= drop
        return full_text[len(prefix_text):]

    def _emit(self, text: str) -> str:
        if text:
            self._chunks.append(text)
        return text

    def _release(self, new_text: str, final: bool) -> str:
        if not self._stops:
            return self._emit(new_text)
        # With include_stop_str_in_output nothing is held, so a stop string may begin in text already returned.
        tail = self.text[-(self._max_stop - 1):] if self._include_stop and self._max_stop > 1 else ""
        window = tail + self._pending + new_text
        match = self._find_stop(window)
        if match is not None:
            start, stop = match
            end = start + len(stop) if self._include_stop else start
            self.stop_reason = stop
            self._pending = ""
            return self._emit(window[len(tail):max(end, len(tail))])
        text = self._pending + new_text
        held = 0 if (final or self._include_stop) else self._held_length(text)
        self._pending = text[len(text) - held:] if held else ""
        return self._emit(text[:len(text) - held])

    def _find_stop(self, text: str) -> tuple[int, str] | None:
        """The stop string that starts first in `text` (ties: the first listed)."""
        best: tuple[int, str] | None = None
        for stop in self._stops:
            i = text.find(stop)
            if i >= 0 and (best is None or i < best[0]):
                best = (i, stop)
        return best

    def _held_length(self, text: str) -> int:
        """Length of the longest tail of `text` that is a proper prefix of some stop string."""
        for n in range(min(len(text), self._max_stop - 1), 0, -1):
            tail = text[-n:]
            if any(len(s) > n and s.startswith(tail) for s in self._stops):
                return n
        return 0
