"""Byte-level BPE tokenizer for m2-tiny (HF `tokenizers`), English + Chinese, vocabulary <= 8192.

Ids 0..7 are MiniMax-M2's control tokens with the real strings (common.SPECIAL_TOKENS), each a single special
token. Pre-tokenization: a Qwen2-style split regex with digits split one by one (helps arithmetic) and every Han
character its own piece (so merges never glue whole synthetic Chinese phrases into one token), then GPT-2
byte-level mapping, so any UTF-8 text (unseen Chinese characters included) encodes without an unknown token.

Split patterns (`--split`): `glued` glues one leading space or punctuation character to a word (GPT-2/Qwen2:
" Springfield" is one piece), `bare` keeps every word bare and the space its own piece. A tool call copies its
argument values from the request, and in MiniMax-M2's format a value follows `">` with no space
(`<parameter name="city">Springfield</parameter>`) while in the request it follows a space: with `glued` the
first (and, by induction, the second) token of the value differs from the request's, so the model cannot copy
it; with `bare` a word's tokens are the same wherever it stands. `bare` costs about 23% more tokens on the corpus.
No BOS is added automatically: the chat template writes `]~!b[` itself (specs/minimax-m2.md section 4).
"""

from __future__ import annotations

import json
from pathlib import Path

from .common import BOS, EOS, PAD, SPECIAL_TOKENS

VOCAB_SIZE = 8192
SPLIT_PATTERNS = {
    "glued": (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|\p{Han}|[^\r\n\p{L}\p{N}]?(?:(?!\p{Han})\p{L})+|\p{N}"
              r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "bare": (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|\p{Han}|(?:(?!\p{Han})\p{L})+|\p{N}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
    # exactly Qwen2's regex (llama.cpp's `qwen2` pre-tokenizer), for benchmark checkpoints llama.cpp must reproduce
    # (benchmarks/peers/qwen2_tokenizer.py); no model is trained with it
    "qwen2": (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+"),
}
DEFAULT_SPLIT = "glued"


def new_tokenizer(split: str = DEFAULT_SPLIT):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERNS[split]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def train_tokenizer(texts, vocab_size: int = VOCAB_SIZE, split: str = DEFAULT_SPLIT):
    """Train on an iterable of strings; returns a tokenizers.Tokenizer."""
    from tokenizers import pre_tokenizers, trainers

    tok = new_tokenizer(split)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


def tokenizer_config(model_max_length: int) -> dict:
    return {
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                     "special": True}
            for i, s in enumerate(SPECIAL_TOKENS)
        },
        "bos_token": BOS,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS,
        "model_max_length": model_max_length,
        "pad_token": PAD,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }


def save_tokenizer(tok, out_dir, model_max_length: int = 4096):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    with open(out / "tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(model_max_length), f, indent=2, ensure_ascii=False)
        f.write("\n")


def load_tokenizer(path):
    from tokenizers import Tokenizer

    p = Path(path)
    return Tokenizer.from_file(str(p / "tokenizer.json" if p.is_dir() else p))
