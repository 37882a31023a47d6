"""The tokenizer of a model folder: HF `tokenizers` byte-level BPE plus the chat template and stop ids.

Files read (specs/minimax-m2.md §4): tokenizer.json (required); tokenizer_config.json (added tokens, special
token names, chat_template); chat_template.jinja (preferred over tokenizer_config's chat_template);
generation_config.json (eos_token_id, int or list: the stop ids) and config.json (bos/eos, last resort only:
its ids are stale in some MiniMax copies).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken
from tokenizers import Tokenizer as HFTokenizer

from m2serve.errors import ConfigError
from m2serve.frontend.chat_template import render_chat_template

PAD_TOKEN = "]!p~["
ROLE_TOKEN = "]~b]"          # role-turn prefix (followed by plain text system / user / ai / tool)
EOS_TOKEN = "[e~["           # end of turn: the stop token
BOS_TOKEN = "]~!b["          # start of document
THINK_TOKENS = ("<think>", "</think>")
TOOL_CALL_TOKENS = ("<minimax:tool_call>", "</minimax:tool_call>")
# Decoded away from output text with skip_special_tokens=True; the think and tool-call tags are always kept,
# the reasoning and tool parsers need them (spec §4).
STRIPPED_SPECIAL_TOKENS = (EOS_TOKEN, ROLE_TOKEN, BOS_TOKEN, PAD_TOKEN)
# Stops on top of generation_config's eos: the model must never run past a turn or document boundary.
DEFENSIVE_STOP_TOKENS = (EOS_TOKEN, ROLE_TOKEN, BOS_TOKEN)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None


def _token_name(value: Any) -> str | None:
    """A special-token entry of tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _as_id_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


class Tokenizer:
    def __init__(
        self,
        backend: HFTokenizer,
        *,
        chat_template: str | None = None,
        eos_token_ids: Sequence[int] = (),
        bos_token_id: int | None = None,
        pad_token_id: int | None = None,
        generation_config: dict | None = None,
        path: str | Path | None = None,
    ):
        self.backend = backend
        self.chat_template = chat_template
        self.bos_token_id = bos_token_id
        self.pad_token_id = pad_token_id
        self.generation_config = dict(generation_config or {})
        self.path = Path(path) if path is not None else None
        eos = list(dict.fromkeys(eos_token_ids))
        for token in DEFENSIVE_STOP_TOKENS:
            tid = self.token_to_id(token)
            if tid is not None and tid not in eos:
                eos.append(tid)
        self.eos_token_ids: list[int] = eos
        stripped = {self.token_to_id(t) for t in STRIPPED_SPECIAL_TOKENS}
        if pad_token_id is not None:
            stripped.add(pad_token_id)
        stripped.discard(None)
        self.stripped_special_ids: frozenset[int] = frozenset(stripped)
        self._vocab_size = backend.get_vocab_size(with_added_tokens=True)

    # ---- loading --------------------------------------------------------------------------------------------
    @classmethod
    def from_dir(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        tok_file = path / "tokenizer.json"
        if not tok_file.is_file():
            raise ConfigError(f"{path} has no tokenizer.json")
        try:
            backend = HFTokenizer.from_file(str(tok_file))
        except Exception as e:  # the tokenizers library raises plain Exception subclasses
            raise ConfigError(f"cannot load {tok_file}: {e}") from None
        tok_config = _read_json(path / "tokenizer_config.json")
        gen_config = _read_json(path / "generation_config.json")
        model_config = _read_json(path / "config.json")

        # Added tokens declared only in tokenizer_config.json (normally tokenizer.json has them already): add
        # those whose declared id is the next free id; any other would get a wrong id, so it is left out.
        declared = tok_config.get("added_tokens_decoder") or {}
        for tid, entry in sorted(((int(k), v) for k, v in declared.items()), key=lambda kv: kv[0]):
            content = entry.get("content") if isinstance(entry, dict) else None
            if content and backend.token_to_id(content) is None and tid == backend.get_vocab_size(True):
                backend.add_special_tokens([AddedToken(content, special=bool(entry.get("special", True)),
                                                       normalized=bool(entry.get("normalized", False)))])

        def named_id(key: str) -> int | None:
            name = _token_name(tok_config.get(key))
            return backend.token_to_id(name) if name is not None else None

        eos = _as_id_list(gen_config.get("eos_token_id"))
        if not eos:
            named = named_id("eos_token")
            eos = [named] if named is not None else _as_id_list(model_config.get("eos_token_id"))
        bos = named_id("bos_token")
        if bos is None:
            bos = backend.token_to_id(BOS_TOKEN)
        pad = named_id("pad_token")
        if pad is None:
            pad = backend.token_to_id(PAD_TOKEN)

        template_file = path / "chat_template.jinja"
        if template_file.is_file():
            chat_template = template_file.read_text(encoding="utf-8")
        else:
            chat_template = tok_config.get("chat_template")
            if isinstance(chat_template, list):  # [{"name": "default", "template": ...}, ...]
                by_name = {t.get("name"): t.get("template") for t in chat_template if isinstance(t, dict)}
                chat_template = by_name.get("default") or next(iter(by_name.values()), None)
        return cls(backend, chat_template=chat_template, eos_token_ids=eos, bos_token_id=bos, pad_token_id=pad,
                   generation_config=gen_config, path=path)

    # ---- vocabulary -----------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of token ids the tokenizer knows (base vocabulary + added tokens); the model's embedding may be
        larger (MiniMax-M2: 200064 rows)."""
        return self._vocab_size

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    # ---- encode / decode ------------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`. Control-token strings in the text become their single ids (the chat template
        writes them as text). Rendered chat prompts are encoded with add_special_tokens=False."""
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`. skip_special_tokens drops only `stripped_special_ids` ([e~[, ]~b], ]~!b[, pad): the think
        and tool-call tags stay. Ids outside the tokenizer's vocabulary (padding rows of the embedding) decode to
        nothing."""
        if skip_special_tokens:
            skip = self.stripped_special_ids
            ids = [i for i in ids if i not in skip and 0 <= i < self._vocab_size]
        else:
            ids = [i for i in ids if 0 <= i < self._vocab_size]
        return self.backend.decode(ids, skip_special_tokens=False)

    # ---- chat -----------------------------------------------------------------------------------------------
    def apply_chat_template(
        self,
        messages: list,
        tools: list | None = None,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        chat_template: str | None = None,
        **template_kwargs: Any,
    ) -> str:
        """The prompt text of an OpenAI-format conversation (see m2serve.frontend.chat_template)."""
        template = chat_template if chat_template is not None else self.chat_template
        if template is None:
            raise ConfigError("the model folder has no chat template (chat_template.jinja or "
                              "tokenizer_config.json) and none was given")
        return render_chat_template(template, messages, tools=tools, add_generation_prompt=add_generation_prompt,
                                    continue_final_message=continue_final_message, **template_kwargs)

    def __repr__(self) -> str:
        return f"Tokenizer(path={str(self.path)!r}, vocab_size={self.vocab_size}, eos_token_ids={self.eos_token_ids})"
