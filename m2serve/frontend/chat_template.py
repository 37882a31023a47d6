"""Chat-template rendering, the way transformers' `apply_chat_template` does it, with vLLM's message clean-up.

Rendering: a Jinja2 `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with the
`loopcontrols` extension, a `tojson` filter that is `json.dumps(x, ensure_ascii=False)` (default separators,
unsorted keys), and the globals `raise_exception(msg)` (raises a jinja2 TemplateError) and `strftime_now(fmt)`.

Messages are cleaned before rendering (specs/minimax-m2.md §5):
* every message becomes plain dicts/lists/strings (pydantic models, msgspec structs, dataclasses accepted);
* content None becomes ""; for system/user/assistant (and developer) messages a list of content parts becomes
  the text of its text parts joined with no separator (non-text parts dropped); tool-message lists are kept,
  the template renders one `<response>` per item;
* `reasoning` (vLLM's newer name) or `thinking` fills `reasoning_content` when that is not already a string;
* an assistant message without a reasoning string whose content holds `</think>` is split into
  reasoning_content (text before the first `</think>`, after the last `<think>`, newlines stripped) and content
  (text after the last `</think>`, newlines stripped), the §5 rule (the Unsloth copy of the template fails to
  do this split in Jinja2, see shared/reference/README.md);
* each tool call's `function.arguments` JSON string becomes a dict (None or empty: {}), and an empty
  `tool_calls` list is dropped.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from m2serve.errors import InvalidRequestError

# Appended to the final message when continuing it, then the rendering is cut where it appears.
_CONTINUE_TAG = "<|m2serve:continue_final_message|>"
_TEXT_ROLES = ("system", "developer", "user", "assistant")


class ChatTemplateError(InvalidRequestError, jinja2.TemplateError):
    """A conversation the chat template refuses (its raise_exception) or cannot render: HTTP 400."""

    def __init__(self, message: str):
        InvalidRequestError.__init__(self, message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    @property
    def message(self) -> str:  # jinja2.TemplateError's attribute
        return str(self)


def _raise_exception(message: str):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys: bool = False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def compile_template(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)


def to_plain(value: Any) -> Any:
    """Plain JSON-like data (dict/list/str/number/bool/None) from messages given as objects."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if callable(getattr(value, "model_dump", None)):  # pydantic
        return to_plain(value.model_dump(exclude_none=False))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    try:
        import msgspec
        if isinstance(value, msgspec.Struct):
            return to_plain(msgspec.to_builtins(value))
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def _text_of_parts(parts: list) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
            out.append(part["text"])
    return "".join(out)


def _split_inline_think(content: str) -> tuple[str, str]:
    reasoning = content.split("</think>")[0].strip("\n").split("<think>")[-1].strip("\n")
    return reasoning, content.split("</think>")[-1].strip("\n")


def _prepare_tool_calls(tool_calls: list) -> list:
    prepared = []
    for call in tool_calls:
        call = dict(call)
        fn = call.get("function")
        if isinstance(fn, Mapping):
            fn = dict(fn)
            args = fn.get("arguments")
            if args is None or (isinstance(args, str) and not args.strip()):
                fn["arguments"] = {}
            elif isinstance(args, str):
                try:
                    fn["arguments"] = json.loads(args)
                except json.JSONDecodeError as e:
                    raise InvalidRequestError(
                        f"tool call arguments of {fn.get('name')!r} are not valid JSON: {e}") from None
            call["function"] = fn
        prepared.append(call)
    return prepared


def prepare_messages(messages: list) -> list[dict]:
    """Clean a conversation for the template (see the module docstring). Never mutates the input."""
    prepared = []
    for message in to_plain(list(messages)):
        if not isinstance(message, dict):
            raise InvalidRequestError(f"each chat message must be an object, got {message!r}")
        m = dict(message)
        role = m.get("role")
        content = m.get("content")
        if content is None:
            content = ""
        elif isinstance(content, list) and role in _TEXT_ROLES:
            content = _text_of_parts(content)
        m["content"] = content
        if role == "assistant":
            if not isinstance(m.get("reasoning_content"), str):
                m.pop("reasoning_content", None)
                for alias in ("reasoning", "thinking"):
                    if isinstance(m.get(alias), str):
                        m["reasoning_content"] = m[alias]
                        break
            if "reasoning_content" not in m and isinstance(content, str) and "</think>" in content:
                m["reasoning_content"], m["content"] = _split_inline_think(content)
            if m.get("tool_calls"):
                m["tool_calls"] = _prepare_tool_calls(m["tool_calls"])
            else:
                m.pop("tool_calls", None)
        prepared.append(m)
    return prepared


def render_chat_template(
    template: str,
    messages: list,
    tools: list | None = None,
    add_generation_prompt: bool = True,
    continue_final_message: bool = False,
    **template_kwargs: Any,
) -> str:
    """Render `messages` (OpenAI chat format) with a Jinja chat template; returns the prompt text."""
    if continue_final_message and add_generation_prompt:
        raise InvalidRequestError("Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
    msgs = prepare_messages(messages)
    if continue_final_message:
        if not msgs:
            raise InvalidRequestError("continue_final_message is set but the conversation is empty.")
        last = msgs[-1]
        if isinstance(last["content"], str):
            last["content"] += _CONTINUE_TAG
        else:
            parts = [p for p in last["content"] if isinstance(p, dict) and isinstance(p.get("text"), str)]
            if not parts:
                raise InvalidRequestError("continue_final_message is set but the final message has no text.")
            parts[-1]["text"] += _CONTINUE_TAG
    tools = to_plain(tools) if tools else None
    try:
        rendered = compile_template(template).render(
            messages=msgs, tools=tools, add_generation_prompt=add_generation_prompt, **to_plain(template_kwargs))
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template error: {e.message or e}") from e
    if continue_final_message:
        cut = rendered.rfind(_CONTINUE_TAG)
        if cut < 0:
            raise InvalidRequestError(
                "continue_final_message is set but the final message does not appear in the rendered prompt.")
        rendered = rendered[:cut]
    return rendered
