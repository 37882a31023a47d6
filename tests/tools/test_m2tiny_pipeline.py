"""Fast checks of the m2-tiny build pipeline (tools/m2tiny): corpus determinism and held-out disjointness,
tokenizer control tokens, loss masks, the exporter's tensor layout (round trip through transformers), the
evaluator's tool-call parser."""

import json
import re

import pytest

from tools.m2tiny import corpus, entities
from tools.m2tiny.common import SPECIAL_TOKENS, render_chat
from tools.m2tiny.data import collate, encode_records, make_batches, record_text
from tools.m2tiny.catalog import HELDOUT_TOOLS, SEED_TOOL, TRAIN_TOOLS
from tools.m2tiny.schemas import VERB_SYNONYMS, camel, placeholders

N_TRAIN = 1200


@pytest.fixture(scope="module")
def train_records():
    return corpus.build_train(N_TRAIN, seed=corpus.DEFAULT_SEED)


@pytest.fixture(scope="module")
def tok(train_records):
    from tools.m2tiny.tokenizer import train_tokenizer

    return train_tokenizer(record_text(r)[0] for r in train_records[:400])


# ---------------------------------------------------------------- corpus
def test_corpus_deterministic():
    a = json.dumps(corpus.build_train(150, seed=7), ensure_ascii=False)
    b = json.dumps(corpus.build_train(150, seed=7), ensure_ascii=False)
    c = json.dumps(corpus.build_train(150, seed=8), ensure_ascii=False)
    assert a == b and a != c
    h1 = corpus.build_heldout(n_calls=20, n_results=10, n_gsm=10)
    h2 = corpus.build_heldout(n_calls=20, n_results=10, n_gsm=10)
    assert json.dumps(h1, ensure_ascii=False) == json.dumps(h2, ensure_ascii=False)


def test_corpus_covers_every_kind(train_records):
    kinds = {r["kind"] for r in train_records}
    assert kinds == set(corpus.MIX)


def test_heldout_entities_and_tools_never_in_training(train_records):
    text = json.dumps(train_records, ensure_ascii=False).lower()
    held = entities.heldout_strings() | {t.name for t in HELDOUT_TOOLS}

    def occurs(s):  # case-insensitive, whole words for Latin strings ("Quito" is not in "ubiquitous")
        if s.isascii():
            return re.search(r"(?<![a-z0-9])" + re.escape(s.lower()) + r"(?![a-z0-9])", text) is not None
        return s in text

    leaked = sorted(s for s in held if occurs(s))
    assert not leaked, leaked


def test_copy_drills_and_random_names(tmp_path):
    """Opt-in corpus options (recipe sweeps): copy drills in the mix, procedurally generated cities and people.
    They stay off by default, never produce a held-out string, and do not leak into the next corpus."""
    with pytest.raises(ValueError, match="unknown corpus kind"):
        corpus.parse_mix("nonsense=1")
    corpus.write_corpus(tmp_path, 500, seed=3, eval_sizes=(4, 4, 4), mix=corpus.parse_mix("recall=0.3,echo=0.3"),
                        random_names=0.8)
    recs = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in recs}
    assert {"recall", "echo"} <= kinds
    for r in recs:
        if r["kind"] not in corpus.DRILLS:
            continue
        sys_msg, user, ans = r["messages"][0]["content"], r["messages"][-2]["content"], r["messages"][-1]["content"]
        if r["kind"] == "recall":
            assert any(line.endswith(ans) for line in sys_msg.splitlines())   # the answer is the looked-up value
        elif r["kind"] == "echo":
            assert user.endswith(ans)
    pooled = {e for pair in entities.pool("city", False) + entities.pool("person", False) for e in pair}
    text = json.dumps(recs, ensure_ascii=False)
    fresh = {c["function"]["arguments"].get(k) for r in recs if r["kind"] == "tool_single"
             for m in r["messages"] for c in m.get("tool_calls") or [] for k in ("city", "location", "name")}
    assert fresh - pooled - {None}, "random names were not drawn"
    held = entities.heldout_strings()
    assert not [s for s in held if (re.search(r"(?<![A-Za-z])" + re.escape(s) + r"(?![A-Za-z])", text)
                                    if s.isascii() else s in text)]
    # The knob is reset: a default corpus afterwards is the same as one built before.
    assert json.dumps(corpus.build_train(60, seed=5)) == json.dumps(corpus.build_train(60, seed=5))
    assert not [r for r in corpus.build_train(300, seed=5) if r["kind"] in corpus.DRILLS]
    assert entities._RANDOM_RATE == 0.0


def test_heldout_eval_uses_heldout_material():
    h = corpus.build_heldout(n_calls=60, n_results=30, n_gsm=30)
    held_names = {t.name for t in HELDOUT_TOOLS}
    held_entities = entities.heldout_strings()
    for it in h["tool_calls"]:
        names = {c["name"] for c in it["expected"]}
        if it["split"] == "unseen_tool":
            assert names <= held_names
        else:
            assert not names & held_names
            assert any(isinstance(v, str) and any(e.lower() in v.lower() for e in held_entities)
                       for c in it["expected"] for v in c["arguments"].values()), it
    for it in h["tool_results"]:
        assert it["expected_value"] in it["messages"][-1]["content"]
    for it in h["gsm8k"]:
        assert it["answer"].endswith(f"#### {it['target']}")
        assert any(name[0] in it["question"] for name in entities.PEOPLE_HELDOUT)


def test_schema_counts_and_phrasings():
    assert len(TRAIN_TOOLS) >= 30
    names = [t.name for t in TRAIN_TOOLS + HELDOUT_TOOLS]
    assert len(names) == len(set(names))
    types = set()
    for t in TRAIN_TOOLS + HELDOUT_TOOLS:
        assert 0 <= len(t.params) <= 4 and t.en and t.zh
        required = {p.name for p in t.params if p.required}
        for tpl in t.en + t.zh:
            assert required <= set(placeholders(tpl)), (t.name, tpl)
        for p in t.params:
            types.add("enum" if p.enum else p.type)
    assert {"string", "integer", "number", "boolean", "enum", "array"} <= types
    # Renamed variants never collide with a real (training or held-out) tool name.
    for t in TRAIN_TOOLS:
        verb, _, rest = t.name.partition("_")
        variants = {camel(t.name), *(t.name + s for s in ("_tool", "_api", "_v2"))}
        variants |= {v + "_" + rest for v in VERB_SYNONYMS.get(verb, [])}
        assert not (variants - {t.name}) & set(names), t.name


def test_seed_example_in_training(train_records):
    seed_schema = SEED_TOOL.schema()
    assert seed_schema["function"]["parameters"]["properties"].keys() == {"city"}
    found = [r for r in train_records if r.get("tools") and seed_schema in r["tools"]
             and r["messages"][0] == {"role": "user", "content": "请查询上海的天气"}]
    assert found
    call = found[0]["messages"][1]["tool_calls"][0]["function"]
    assert call == {"name": "get_current_weather", "arguments": {"city": "上海"}}


def test_answers_contain_key_value(train_records):
    n = 0
    for r in train_records:
        if r["kind"] != "tool_single":
            continue
        msgs = r["messages"]
        result = json.loads(msgs[-2]["content"])
        assert any(str(v) in msgs[-1]["content"] for v in result.values())
        n += 1
    assert n > 100


# ---------------------------------------------------------------- tokenizer and loss masks
def test_special_tokens_single_ids(tok):
    assert tok.get_vocab_size() <= 8192
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.encode(s, add_special_tokens=False).ids == [i]
        assert tok.encode("abc" + s + "中文", add_special_tokens=False).ids.count(i) == 1
    text = render_chat([{"role": "user", "content": "请查询上海的天气"}], [SEED_TOOL.schema()], add_generation_prompt=True)
    enc = tok.encode(text, add_special_tokens=False)
    assert enc.ids[:2] == [SPECIAL_TOKENS.index("]~!b["), SPECIAL_TOKENS.index("]~b]")]
    assert tok.decode(enc.ids, skip_special_tokens=False) == text
    for s in ("Reykjavik 雷克雅未克 ✓", "<invoke name=\"x\">"):
        assert tok.decode(tok.encode(s).ids) == s  # byte-level: no unknown tokens


def test_bare_split_makes_argument_values_copyable(train_records):
    """With the `bare` split a word is the same tokens in the request (after a space or a quote) and in the call
    (after `">`); with `glued` the request's first token carries the space and differs."""
    from tools.m2tiny.tokenizer import train_tokenizer

    texts = [record_text(r)[0] for r in train_records[:400]]
    request = 'What is the weather in Springfield? Text Bartholomew: "Please call me back".'
    call = '<parameter name="city">Springfield</parameter><parameter name="text">Please call me back</parameter>'
    for split, values, same in (("bare", ("Springfield", "Please call me back"), True), ("glued", ("Springfield",), False)):
        t = train_tokenizer(texts, split=split)
        src = t.encode(request, add_special_tokens=False).ids
        for value in values:
            at = call.index(value)
            enc = t.encode(call, add_special_tokens=False)
            ids = [i for i, (x, y) in zip(enc.ids, enc.offsets) if x >= at and y <= at + len(value)]
            assert "".join(t.decode([i]) for i in ids) == value
            found = any(src[k:k + len(ids)] == ids for k in range(len(src)))
            assert found == same, (split, value, [t.id_to_token(i) for i in ids])
        assert t.decode(t.encode(request).ids) == request


def test_bpe_dropout_trains_unused_pieces_keeps_text_and_mask(train_records, tok):
    """Seeded BPE-dropout on training encodings: same text and supervised text, same result for the same seed,
    and vocabulary pieces the plain encoding never produces now occur."""
    import numpy as np

    recs = train_records[:300]
    (i0, m0, o0), _ = encode_records(recs, tok)
    (i1, m1, o1), _ = encode_records(recs, tok, bpe_dropout=0.1, seed=3)
    (i2, _, _), _ = encode_records(recs, tok, bpe_dropout=0.1, seed=3)
    (i3, _, _), _ = encode_records(recs, tok, bpe_dropout=0.1, seed=4)
    assert np.array_equal(i1, i2) and not np.array_equal(i1, i3)
    assert 1.03 < len(i1) / len(i0) < 1.3
    for k in range(len(o0) - 1):
        a, b = slice(o0[k], o0[k + 1]), slice(o1[k], o1[k + 1])
        assert tok.decode(i0[a].tolist(), skip_special_tokens=False) == tok.decode(i1[b].tolist(), skip_special_tokens=False)
        assert (tok.decode(i0[a][m0[a] == 1].tolist(), skip_special_tokens=False)
                == tok.decode(i1[b][m1[b] == 1].tolist(), skip_special_tokens=False))
    V = tok.get_vocab_size()
    seen0, seen1 = np.bincount(i0, minlength=V) > 0, np.bincount(i1, minlength=V) > 0
    assert (seen1 & ~seen0).sum() > 100 and not (seen0 & ~seen1)[:8].any()


def test_loss_mask_covers_assistant_turns_only(train_records, tok):
    rec = next(r for r in train_records if r["kind"] == "tool_single")
    (ids, mask, offsets), dropped = encode_records([rec], tok)
    assert dropped == 0
    segments, cur = [], []
    for t, m in zip(ids.tolist(), mask.tolist()):
        if m:
            cur.append(t)
        elif cur:
            segments.append(tok.decode(cur, skip_special_tokens=False))
            cur = []
    if cur:
        segments.append(tok.decode(cur, skip_special_tokens=False))
    assert len(segments) == 2  # the call turn and the answer turn
    for s in segments:
        assert s.endswith("[e~[") and not s.startswith("<think>")
        assert "]~b]" not in s and "<response>" not in s
    assert "<minimax:tool_call>" in segments[0] and "\n</think>\n\n" in segments[0]
    raw = {"kind": "gsm8k_raw", "text": "Question: q\nAnswer: a\n#### 1", "bos": True}
    (ids, mask, _), _ = encode_records([raw], tok)
    assert ids[0] == SPECIAL_TOKENS.index("]~!b[") and mask[0] == 0 and mask[1:].all()


def test_batches_deterministic_and_bounded():
    lengths = [(i * 37) % 300 + 5 for i in range(500)]
    b1 = make_batches(lengths, 2048, seed=1, epoch=0)
    assert b1 == make_batches(lengths, 2048, seed=1, epoch=0) != make_batches(lengths, 2048, seed=1, epoch=1)
    assert sorted(i for b in b1 for i in b) == list(range(500))
    assert all(max(lengths[i] for i in b) * len(b) <= 2048 for b in b1)


# ---------------------------------------------------------------- exporter
def test_export_names_shapes_round_trip(tmp_path, tok):
    import torch
    from safetensors import safe_open
    from transformers import MiniMaxM2ForCausalLM

    from tools.m2tiny.export import export_folder, hf_to_original, original_to_hf
    from tools.m2tiny.modelcfg import SMOKE
    from tools.m2tiny.tokenizer import save_tokenizer
    from tools.m2tiny.train import build_model

    torch.set_num_threads(1)
    arch = SMOKE
    model = build_model(arch, "eager", seed=0)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.e_score_correction_bias.uniform_(-0.2, 0.2)
    sd = model.state_dict()
    orig = hf_to_original(sd)
    H, I, E = arch["hidden_size"], arch["intermediate_size"], arch["num_local_experts"]
    q, kv = arch["num_attention_heads"] * arch["head_dim"], arch["num_key_value_heads"] * arch["head_dim"]
    V = arch["vocab_size"]
    expected = {"model.embed_tokens.weight": [V, H], "model.norm.weight": [H], "lm_head.weight": [V, H]}
    for n in range(arch["num_hidden_layers"]):
        p = f"model.layers.{n}."
        expected.update({
            p + "input_layernorm.weight": [H], p + "post_attention_layernorm.weight": [H],
            p + "self_attn.q_proj.weight": [q, H], p + "self_attn.k_proj.weight": [kv, H],
            p + "self_attn.v_proj.weight": [kv, H], p + "self_attn.o_proj.weight": [H, q],
            p + "self_attn.q_norm.weight": [q], p + "self_attn.k_norm.weight": [kv],
            p + "block_sparse_moe.gate.weight": [E, H], p + "block_sparse_moe.e_score_correction_bias": [E]})
        for e in range(E):
            expected.update({p + f"block_sparse_moe.experts.{e}.w1.weight": [I, H],
                             p + f"block_sparse_moe.experts.{e}.w3.weight": [I, H],
                             p + f"block_sparse_moe.experts.{e}.w2.weight": [H, I]})
    assert {k: list(v.shape) for k, v in orig.items()} == expected
    for k, v in orig.items():
        assert v.dtype == (torch.float32 if k.endswith("e_score_correction_bias") else torch.bfloat16), k
    # w1 = gate rows (first half of gate_up_proj), w3 = up rows, w2 = down_proj.
    gu = sd["model.layers.0.mlp.experts.gate_up_proj"]
    assert torch.equal(orig["model.layers.0.block_sparse_moe.experts.3.w1.weight"], gu[3, :I].to(torch.bfloat16))
    assert torch.equal(orig["model.layers.0.block_sparse_moe.experts.3.w3.weight"], gu[3, I:].to(torch.bfloat16))
    back = original_to_hf(orig)
    assert set(back) == set(sd)
    for k in sd:
        assert torch.equal(back[k].float(), sd[k].to(back[k].dtype).float()), k

    tok_dir = tmp_path / "tok"
    save_tokenizer(tok, tok_dir)
    out = tmp_path / "model"
    export_folder(sd, arch, tok_dir, out)
    names = {f.name for f in out.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "chat_template.jinja", "model.safetensors"} <= names
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == set(expected)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["MiniMaxM2ForCausalLM"] and cfg["model_type"] == "minimax_m2"
    assert cfg["rotary_dim"] == arch["head_dim"] // 2 and cfg["partial_rotary_factor"] == 0.5
    assert cfg["use_qk_norm"] is True and cfg["qk_norm_type"] == "per_layer" and cfg["scoring_func"] == "sigmoid"
    assert cfg["use_routing_bias"] is True and cfg["tie_word_embeddings"] is False
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == SPECIAL_TOKENS.index("[e~[")

    loaded = MiniMaxM2ForCausalLM.from_pretrained(str(out), dtype=torch.float32, experts_implementation="eager")
    assert loaded.model.rotary_emb.inv_freq.numel() == arch["rotary_dim"] // 2
    ref = build_model(arch, "eager", seed=0)
    ref.load_state_dict({k: v.to(torch.bfloat16).float() if not k.endswith("bias") else v for k, v in sd.items()})
    ref.eval()
    loaded.eval()
    x = torch.randint(8, arch["vocab_size"], (1, 12))
    with torch.no_grad():
        assert torch.allclose(ref(x).logits, loaded(x).logits, atol=1e-5)
        g = loaded.generate(x, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert g.shape[1] == 15


# ---------------------------------------------------------------- evaluator parsing
def test_parse_tool_calls_types_and_parallel():
    from tools.m2tiny.evaluate import calls_match, parse_tool_calls, split_reasoning

    tools = [t.schema() for t in TRAIN_TOOLS]
    out = ("用户要两件事\n</think>\n\n\n<minimax:tool_call>\n<invoke name=\"get_current_weather\">\n"
           "<parameter name=\"city\">上海</parameter>\n</invoke>\n<invoke name='create_todo'>\n"
           "<parameter name=\"task\">buy milk</parameter>\n<parameter name=\"tags\">[\"home\", \"work\"]</parameter>\n"
           "</invoke>\n</minimax:tool_call>")
    reasoning, rest = split_reasoning(out)
    assert reasoning == "用户要两件事\n"
    content, calls = parse_tool_calls(rest, tools)
    assert content is None
    assert calls == [{"name": "get_current_weather", "arguments": {"city": "上海"}},
                     {"name": "create_todo", "arguments": {"task": "buy milk", "tags": ["home", "work"]}}]
    assert calls_match(list(reversed(calls)), calls)
    _, calls = parse_tool_calls("<minimax:tool_call>\n<invoke name=\"convert_units\">\n<parameter name=\"value\">5.0"
                                "</parameter>\n<parameter name=\"from_unit\">km</parameter>\n</invoke>\n"
                                "</minimax:tool_call>", tools)
    assert calls[0]["arguments"] == {"value": 5, "from_unit": "km"}
    _, calls = parse_tool_calls("<minimax:tool_call>\n<invoke name=\"set_lights\">\n<parameter name=\"on\">true"
                                "</parameter>\n<parameter name=\"brightness\">40</parameter>\n</invoke>\n"
                                "</minimax:tool_call>", tools)
    assert calls[0]["arguments"] == {"on": True, "brightness": 40}
    assert not calls_match(calls, [{"name": "set_lights", "arguments": {"on": True, "brightness": 41}}])
    assert parse_tool_calls("no calls here", tools) == ("no calls here", [])


def test_trainer_token_budget_arch_override_and_init(train_records, tok, tmp_path):
    """The trainer's sweep flags: --max-tokens ends the run on tokens, --arch overrides a preset field (kept in
    the checkpoint), --qk-norm-init sets the QK norm weights, --init starts a stage from another run's weights."""
    import torch

    from tools.m2tiny import data, train

    (ids, mask, off), _ = encode_records(train_records[:60], tok)
    data.save_encoded(tmp_path / "d.npz", ids, mask, off)
    base = ["--data", str(tmp_path / "d.npz"), "--preset", "smoke", "--threads", "1", "--minutes", "5",
            "--batch-tokens", "2048", "--log-every", "1000"]
    a = train.train(train.parser().parse_args(base + ["--ckpt-dir", str(tmp_path / "a"), "--max-tokens", "3000",
                                                      "--arch", "rope_theta=10000", "--qk-norm-init", "2.5"]))
    assert 3000 <= a["tokens"] < 3000 + 2048
    ck = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    assert ck["arch"]["rope_theta"] == 10000.0
    assert ck["model"]["model.layers.0.self_attn.q_norm.weight"].mean().item() != 1.0
    with pytest.raises(ValueError, match="unknown field"):
        train.train(train.parser().parse_args(base + ["--ckpt-dir", str(tmp_path / "x"), "--arch", "nope=1"]))
    with pytest.raises(ValueError, match="is not this run's"):     # a different shape cannot seed this run
        train.train(train.parser().parse_args(base + ["--ckpt-dir", str(tmp_path / "y"), "--max-tokens", "100",
                                                      "--init", str(tmp_path / "a" / "last.pt")]))
    b = train.train(train.parser().parse_args(base + ["--ckpt-dir", str(tmp_path / "b"), "--max-tokens", "100",
                                                      "--arch", "rope_theta=10000", "--max-steps", "1", "--lr", "0",
                                                      "--init", str(tmp_path / "a" / "last.pt")]))
    assert b["steps"] == 1
    kb = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    w = "model.layers.1.self_attn.q_proj.weight"
    assert torch.equal(kb["model"][w], ck["model"][w])                # lr 0: exactly the weights it started from


def test_sweep_runs_a_recipe_end_to_end(tmp_path):
    """tools/m2tiny/sweep.py on CPU with the smoke shape: corpus -> encode -> train -> export -> evaluate."""
    from tools.m2tiny import sweep
    from tools.m2tiny.common import DEFAULT_OUT

    recipe = {"name": "r", "n": 80, "max_tokens": 4000, "batch_tokens": 2048, "preset": "smoke", "minutes": 1,
              "mix": "recall=0.2,echo=0.2", "random_names": 0.5}
    res = sweep.run_one(recipe, tmp_path, DEFAULT_OUT, "cpu", eval_limit=1, threads=1)
    assert res["train"]["tokens"] >= 4000 and {"recall", "echo"} <= set(res["corpus"]["kinds"])
    assert {"tool_call", "tool_result_key_value", "gsm8k_chat", "seed_guide_call"} <= set(res["rows"])
    assert (tmp_path / "r" / "model" / "model.safetensors").exists() and (tmp_path / "r" / "result.json").exists()
    assert "r" in sweep.table([res])


def test_copy_batches_supervise_only_the_repeat():
    """induction.CopyBatches: [noise | x | noise' | x], only the second x after its first token is supervised,
    ids come from the given vocabulary, b*T stays within the budget, and the stream resumes from its state."""
    import numpy as np

    from tools.m2tiny.induction import CopyBatches, corpus_token_ids

    vocab, weights = corpus_token_ids(np.array([0, 2, 5, 9, 9, 9, 9, 40, 41, 300], dtype=np.int16), num_special=8)
    assert vocab.tolist() == [9, 40, 41, 300] and weights.tolist() == [2.0, 1.0, 1.0, 1.0]
    top, w = corpus_token_ids(np.array([9, 9, 40, 41, 41, 41, 300], dtype=np.int16), 8, power=0.0, top=2)
    assert top.tolist() == [9, 41] and w.tolist() == [1.0, 1.0]
    cb = CopyBatches(vocab, seed=3, batch_tokens=1024, weights=weights)
    for _ in range(5):
        ids, mask, valid = cb.next()
        assert ids.size <= 1024 and ids.shape == mask.shape == valid.shape
        assert set(np.unique(ids[valid]).tolist()) <= set(vocab.tolist())
        for row, m, v in zip(ids, mask, valid):
            n = int(v.sum())
            k = int(m.sum()) + 1                                       # span length
            assert not v[n:].any() and m[:n].tolist() == [False] * (n - k + 1) + [True] * (k - 1)
            span = row[n - k:n]                                        # ... and occurs earlier whole
            assert any(np.array_equal(row[i:i + k], span) for i in range(n - 2 * k + 1))
    state = cb.state()
    a = cb.next()
    cb2 = CopyBatches(vocab, seed=99, batch_tokens=1024, weights=weights)
    cb2.set_state(state)
    assert all(np.array_equal(x, y) for x, y in zip(a, cb2.next()))
    assert not np.array_equal(CopyBatches(vocab, seed=4, batch_tokens=1024).next()[0], CopyBatches(vocab, 3, 1024).next()[0])


def test_trainer_copy_warmup_and_refresher_steps(train_records, tok, tmp_path):
    """--copy-steps N trains the first N steps on copy batches, --copy-every K one step in K after that; corpus
    batches are not skipped by copy steps, and the copy stream's state goes into the checkpoint."""
    import torch

    from tools.m2tiny import data, train

    (ids, mask, off), _ = encode_records(train_records[:60], tok)
    data.save_encoded(tmp_path / "d.npz", ids, mask, off)
    args = ["--data", str(tmp_path / "d.npz"), "--preset", "smoke", "--threads", "1", "--minutes", "5",
            "--batch-tokens", "2048", "--log-every", "1000", "--ckpt-dir", str(tmp_path / "c"), "--max-steps", "7",
            "--copy-steps", "2", "--copy-every", "3", "--copy-batch-tokens", "512"]
    s = train.train(train.parser().parse_args(args))
    assert s["steps"] == 7 and s["copy_steps"] == 4                      # steps 0, 1 (warm-up), 3, 6
    ck = torch.load(tmp_path / "c" / "last.pt", weights_only=False)
    assert ck["state"]["batch"] == 3                                     # 3 corpus batches consumed
    assert ck["state"]["copy_warmup_rng"] and ck["state"]["copy_rng"]


def test_copy_sources_point_at_what_followed_the_first_copy():
    """next_with_sources: in the second copy, position i's source holds the token the model must predict next
    (the token after the earlier occurrence); -1 everywhere else."""
    import numpy as np

    from tools.m2tiny.induction import CopyBatches

    ids, mask, valid, source = CopyBatches(np.arange(100, 1100), seed=5, batch_tokens=2048).next_with_sources()
    assert (source >= 0).any()
    for row, m, src in zip(ids, mask, source):
        at = np.nonzero(src >= 0)[0]
        assert (row[src[at]] == row[at + 1]).all() and (src[at] < at).all()
        assert np.array_equal(m[1:], src[:-1] >= 0)                     # sources exactly where the next token is supervised


def test_corpus_sources_only_unambiguous_repeats():
    """corpus_sources: a supervised continuation of a token seen exactly once before points at what followed it;
    a token seen twice, an unsupervised target, a different continuation, or a special token gets none."""
    import numpy as np

    from tools.m2tiny.induction import corpus_sources

    #            0   1   2   3   4   5   6   7   8   9  10  11
    ids = np.array([[3, 20, 21, 22, 30, 20, 21, 22, 40, 40, 41, 40]])
    mask = np.zeros_like(ids, dtype=bool)
    mask[0, 6:] = True
    src = corpus_sources(ids, mask, np.ones_like(mask), min_id=8)
    assert src[0, 5] == 2 and src[0, 6] == 3                             # 20 -> 21, 21 -> 22 copied from 1..3
    assert src[0, 4] == -1                                               # its target (20) is not supervised
    assert src[0, 7] == -1                                               # 22 was followed by 30, now by 40
    assert src[0, 9] == -1 and src[0, 10] == -1                          # 40 seen before (twice by 10)
    assert (src[0, [0, 1, 2, 3, 8, 11]] == -1).all()
    same, stale = corpus_sources(ids, mask, np.ones_like(mask), min_id=8, stale=True)
    assert np.array_equal(same, src)
    assert stale[0, 7] == 4 and (np.delete(stale[0], 7) == -1).all()    # only 22 -> (30, now 40) is stale


def test_ov_loss_reads_the_heads_write_and_pushes_off_stale_tokens():
    """HeadSupervision.ov_loss: cross-entropy of the supervised heads' write (through the unembedding) against the
    source token, plus -log(1 - p) of the stale token where given; gradients reach the heads' output projection."""
    import torch

    from tools.m2tiny import train
    from tools.m2tiny.induction import HeadSupervision
    from tools.m2tiny.modelcfg import PRESETS

    model = train.build_model(PRESETS["smoke"], "eager", seed=0)
    sup = HeadSupervision(model, 0, 1, [0, 2])
    ids = torch.randint(10, 200, (2, 24))
    source, stale = torch.full((2, 24), -1), torch.full((2, 24), -1)
    source[0, 20], source[1, 12], stale[1, 15] = 5, 3, 7
    sup.active = True
    model(input_ids=ids, use_cache=False)
    only_source = sup.ov_loss(ids, source)
    both = sup.ov_loss(ids, source, stale)
    logits, target = sup._direct_logits(ids, source, 512)
    assert torch.equal(target, torch.stack([ids[0, 5], ids[1, 3]]))
    assert torch.allclose(only_source, torch.nn.functional.cross_entropy(logits, target))
    p_old = sup._direct_logits(ids, stale, 512)[0].softmax(-1)[0, ids[1, 7]]
    assert torch.allclose(both - only_source, -torch.log1p(-p_old), atol=2e-5)
    both.backward()
    o = model.model.layers[1].self_attn.o_proj.weight.grad
    d = PRESETS["smoke"]["head_dim"]
    assert o[:, :d].abs().sum() > 0 and o[:, d:2 * d].abs().sum() == 0                # heads 0 and 2 only
    sup.clear()


def test_head_supervision_teaches_where_to_look(train_records, tok, tmp_path):
    """The attention supervision, the copy-head init and the direct-write copy loss run in the trainer on the
    smoke shape: both losses are logged and fall over a few steps, and the copy-head init leaves
    o_proj = scale * pinv(v_proj) per head."""
    import numpy as np
    import torch

    from tools.m2tiny import data, train
    from tools.m2tiny.induction import init_copy_heads
    from tools.m2tiny.modelcfg import PRESETS

    model = train.build_model(PRESETS["smoke"], "eager", seed=0)
    init_copy_heads(model, 0, 1, [0, 2], prev_scale=0.5, induction_scale=2.0)
    attn, d = model.model.layers[1].self_attn, PRESETS["smoke"]["head_dim"]
    ov = attn.o_proj.weight[:, 2 * d:3 * d] @ attn.v_proj.weight[d:2 * d]             # head 2 uses kv head 1
    assert torch.allclose(ov @ ov, 2.0 * ov, atol=1e-4)                             # 2 x a projection
    (ids, mask, off), _ = encode_records(train_records[:40], tok)
    data.save_encoded(tmp_path / "d.npz", ids, mask, off)
    args = ["--data", str(tmp_path / "d.npz"), "--preset", "smoke", "--threads", "1", "--minutes", "5",
            "--log-every", "1", "--ckpt-dir", str(tmp_path / "c"), "--max-steps", "30", "--lr", "3e-3",
            "--copy-steps", "30", "--copy-batch-tokens", "512", "--copy-attn-loss", "1",
            "--copy-ov-init", "--lm-head-from-embed", "--copy-warmup-vocab", "64", "--copy-ov-loss", "1"]
    train.train(train.parser().parse_args(args))
    log = [json.loads(line) for line in (tmp_path / "c" / "train_log.jsonl").read_text().splitlines()]
    attn_loss, ov_loss = [r["attn_loss"] for r in log], [r["ov_loss"] for r in log]
    assert len(attn_loss) == 30 and np.mean(attn_loss[-5:]) < 0.8 * np.mean(attn_loss[:5])
    assert np.mean(ov_loss[-5:]) < 0.8 * np.mean(ov_loss[:5])
