"""A tiny MiniMax-M2-style tokenizer for tests: byte-level BPE trained in well under a second.

`build_tiny_tokenizer(path)` writes a model folder's tokenizer files (tokenizer.json, tokenizer_config.json,
generation_config.json, chat_template.jinja) and returns `m2serve.frontend.tokenizer.Tokenizer.from_dir(path)`.
The control tokens carry MiniMax-M2's real strings and sit at the top of the vocabulary, after the trained
byte-level BPE (the real tokenizer has them from id 200000 up), so every id is < vocab_size.
"""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from m2serve.frontend.tokenizer import Tokenizer

PAD, ROLE, EOS, BOS = "]!p~[", "]~b]", "[e~[", "]~!b["
THINK, END_THINK = "<think>", "</think>"
TOOL_CALL, END_TOOL_CALL = "<minimax:tool_call>", "</minimax:tool_call>"
# Same order as the real ids (200000, 200019, 200020, 200034, 200050..200053).
CONTROL_TOKENS = [PAD, ROLE, EOS, BOS, THINK, END_THINK, TOOL_CALL, END_TOOL_CALL]

REFERENCE_TEMPLATE = "shared/reference/minimax_m2_chat_template.jinja"
# Line 132 of the reference template (1-based): the "Fix by ochafik" comment that adds a stray "\n" after
# every tool-call block (see shared/reference/README.md). Checked by content before it is removed.
_OCHAFIK_LINE = 132

_CORPUS = """\
The quick brown fox jumps over the lazy dog. A serving engine schedules requests, batches tokens and samples
the next token from the logits. The weather in Paris is sunny today, with a temperature of 18 degrees celsius.
You are a helpful assistant. What's the weather in Paris? Use celsius. Please answer in one short sentence.
The user wants to know the weather, so I should call the get_weather tool with the location and the unit.
Hello! How can I help you today? I can search the web, read files, and write small programs in Python.
def add(a, b):
    return a + b
for i in range(10):
    print(i, i * i)
{"location": "Paris", "unit": "celsius", "days": 1, "temperature": 18, "condition": "sunny"}
<invoke name="get_weather">
<parameter name="location">Paris</parameter>
</invoke>
<response>{"temperature": 18}</response>
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 2025-06-01.
今天天气很好，我们去公园散步吧。北京是中国的首都，上海是一个国际化的大城市。
你好！我是一个人工智能助手，可以回答问题、写代码和翻译文本。
模型会先思考，然后给出答案。请用中文回答这个问题。温度是十八摄氏度，天气晴朗。
机器学习和深度学习正在改变世界。推理引擎负责调度请求并生成文本。
"""


def find_reference_template() -> Path | None:
    """The reference MiniMax-M2 template: the repo's copy in tests/data, else shared/reference beside the repo."""
    here = Path(__file__).resolve()
    local = here.parent.parent / "data" / "minimax_m2_chat_template.jinja"
    if local.is_file():
        return local
    for parent in here.parents:
        candidate = parent / REFERENCE_TEMPLATE
        if candidate.is_file():
            return candidate
    return None


def reference_template_text(drop_ochafik_line: bool = True) -> str:
    """The reference MiniMax-M2 chat template, by default with line 132 removed (renders like spec §5.1)."""
    path = find_reference_template()
    if path is None:
        raise FileNotFoundError(f"{REFERENCE_TEMPLATE} not found in any parent folder of {Path(__file__).parent}")
    text = path.read_text(encoding="utf-8")
    if not drop_ochafik_line:
        return text
    lines = text.splitlines(keepends=True)
    assert "ochafik" in lines[_OCHAFIK_LINE - 1], "reference template changed: line 132 is not the ochafik comment"
    del lines[_OCHAFIK_LINE - 1]
    return "".join(lines)


def _chat_template_text() -> str:
    """The reference template; where shared/ is absent (a bare checkout), the bundled m2-tiny template, which
    renders the same prompt format (spec §5) with its own default system identity."""
    try:
        return reference_template_text()
    except FileNotFoundError:
        bundled = Path(__file__).resolve().parents[2] / "models" / "m2-tiny" / "chat_template.jinja"
        if bundled.is_file():
            return bundled.read_text(encoding="utf-8")
        raise


_TRAINED: dict[int, str] = {}  # vocab_size -> tokenizer.json text (training is deterministic; do it once per process)


def _train(vocab_size: int) -> str:
    if vocab_size in _TRAINED:
        return _TRAINED[vocab_size]
    if vocab_size < 256 + len(CONTROL_TOKENS):
        raise ValueError(f"vocab_size must be at least {256 + len(CONTROL_TOKENS)}, got {vocab_size}")
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(CONTROL_TOKENS),
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines(keepends=True) * 4, trainer=trainer)
    tok.add_special_tokens(CONTROL_TOKENS)  # appended after the BPE vocabulary, like the real tokenizer
    assert tok.get_vocab_size(with_added_tokens=True) <= vocab_size
    _TRAINED[vocab_size] = tok.to_str()
    return _TRAINED[vocab_size]


def build_tiny_tokenizer(path: str | Path, vocab_size: int = 512) -> Tokenizer:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok_json = _train(vocab_size)
    (path / "tokenizer.json").write_text(tok_json, encoding="utf-8")
    backend = HFTokenizer.from_str(tok_json)
    ids = {t: backend.token_to_id(t) for t in CONTROL_TOKENS}

    tokenizer_config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
        "added_tokens_decoder": {
            str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": True}
            for t, i in ids.items()
        },
    }
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")

    gen_path = path / "generation_config.json"
    if gen_path.exists():  # written by the model helper: keep its values, only point eos at [e~[
        gen = json.loads(gen_path.read_text(encoding="utf-8"))
        gen["eos_token_id"] = ids[EOS]
    else:  # the real file's bos is ]~b] (200019), eos [e~[ (200020)
        gen = {"bos_token_id": ids[ROLE], "eos_token_id": ids[EOS]}
    gen_path.write_text(json.dumps(gen, indent=2), encoding="utf-8")

    (path / "chat_template.jinja").write_text(_chat_template_text(), encoding="utf-8")
    return Tokenizer.from_dir(path)
