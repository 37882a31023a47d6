"""Small text helpers shared by the parsers."""
from __future__ import annotations

import uuid


def partial_tag_len(text: str, *tags: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of one of `tags` (0 if none): the part of
    a streamed text that must be held back because the next delta may complete it into a tag. Every tag starts
    with `<`."""
    longest = max(len(t) for t in tags) - 1
    i = text.find("<", max(0, len(text) - longest))
    while i >= 0:
        suffix = text[i:]
        for tag in tags:
            if len(suffix) < len(tag) and tag.startswith(suffix):
                return len(suffix)
        i = text.find("<", i + 1)
    return 0


def new_tool_call_id() -> str:
    """`call_` + 24 lowercase hex digits."""
    return "call_" + uuid.uuid4().hex[:24]
