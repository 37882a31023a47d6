"""Evaluate an m2-tiny model folder on the held-out sets and print a table.

    python -m tools.m2tiny.evaluate --model models/m2-tiny --eval-dir models/m2-tiny/eval --limit 50

Metrics (greedy decoding):
* tool_call: right function(s) with exactly the right arguments (the output's <minimax:tool_call> blocks parsed
  like specs/minimax-m2.md section 6.2, values typed from the request's schemas); parallel calls compared as a set.
* tool_result: after a tool result, the answer (content after </think>) contains the result's key value.
* gsm8k: "#### N" exact match, as raw completion ("Question: ...\\nAnswer:") and inside chat.
* identity: "Hello, who are you?" (no system message) gives a self-introduction naming m2-tiny that ends with
  the [e~[ stop token.
* seed: "请查询上海的天气" with get_current_weather(city) calls get_current_weather {"city": "上海"}.

Backends are swappable (--backend): `transformers` loads the folder with MiniMaxM2ForCausalLM and renders the
folder's chat_template.jinja itself; `openai` talks to an OpenAI-compatible server (e.g. `m2serve serve`) with the
openai client (--base-url, --served-model); both return the same ChatResult.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import CALL_CLOSE, CALL_OPEN, EOS, THINK_CLOSE, THINK_OPEN, read_jsonl

IDENTITY_PROMPT = "Hello, who are you?"
SEED_PROMPT = "请查询上海的天气"
SEED_EXPECTED = [{"name": "get_current_weather", "arguments": {"city": "上海"}}]
# The deployment guide's §6 request, verbatim: a terse schema the training corpus never shows as is.
SEED_GUIDE_PROMPT = "请查询上海的天气。"
SEED_GUIDE_TOOL = {"type": "function", "function": {
    "name": "get_current_weather", "description": "Get weather by city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}
GSM_STOPS = ["\n\nQuestion:", "Question:", "\n\n\n"]


# ---------------------------------------------------------------- output parsing (spec sections 6.2 and 7.1)
def _schema_types(schema) -> list:
    if not isinstance(schema, dict):
        return []
    types = []
    t = schema.get("type")
    if isinstance(t, str):
        types.append(t)
    elif isinstance(t, list):
        types += [x for x in t if isinstance(x, str)]
    for v in schema.get("enum") or []:
        types.append({type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string",
                      list: "array", dict: "object"}.get(type(v), "string"))
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key) or []:
            types += _schema_types(sub)
    return types


def convert_value(value: str, schema):
    """Typed value of a <parameter> body (vLLM minimax_m2 semantics)."""
    if value.lower() in ("null", "none", "nil"):
        return None
    types = _schema_types(schema) or ["string"]
    for kind in ("integer", "number", "boolean", "object", "string"):
        if kind == "object":
            if "object" not in types and "array" not in types:
                continue
        elif kind not in types:
            continue
        try:
            if kind == "integer":
                return int(value)
            if kind == "number":
                f = float(value)
                return int(f) if f.is_integer() else f
            if kind == "boolean":
                low = value.lower()
                if low in ("true", "1", "yes", "on"):
                    return True
                if low in ("false", "0", "no", "off"):
                    return False
                continue
            if kind == "object":
                return json.loads(value)
            return value
        except (ValueError, json.JSONDecodeError):
            continue
    try:
        return json.loads(value)
    except (ValueError, json.JSONDecodeError):
        return value


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        s = s[1:-1]
    return s


def parse_tool_calls(text: str, tools=None):
    """(content or None, [{"name", "arguments": dict}]) from model output after the reasoning."""
    if CALL_OPEN not in text:
        return text, []
    props = {}
    for t in tools or []:
        fn = t.get("function", t)
        props[fn.get("name")] = (fn.get("parameters") or {}).get("properties") or {}
    calls = []
    for block in re.findall(re.escape(CALL_OPEN) + r"(.*?)" + re.escape(CALL_CLOSE), text, re.S):
        for inv in re.findall(r"<invoke name=(.*?)</invoke>", block, re.S):
            raw_name, _, body = inv.partition(">")
            name = _unquote(raw_name)
            schema = props.get(name, {})
            args = {}
            for p in re.findall(r"<parameter name=(.*?)</parameter>", body, re.S):
                raw_pname, _, value = p.partition(">")
                pname = _unquote(raw_pname)
                value = value.strip()
                if value.startswith("\n"):
                    value = value[1:]
                if value.endswith("\n"):
                    value = value[:-1]
                args[pname] = convert_value(value, schema.get(pname))
            calls.append({"name": name, "arguments": args})
    if not calls:
        return text, []
    content = text.split(CALL_OPEN)[0]
    return (content if content.strip() else None), calls


def split_reasoning(text: str):
    """(reasoning, content) of an output generated after the `<think>\\n` prefill (section 7.1, plus the
    tool-call escape: a <minimax:tool_call> without </think> ends the reasoning)."""
    if THINK_OPEN in text:
        text = text.split(THINK_OPEN, 1)[1]
    if THINK_CLOSE in text:
        reasoning, content = text.split(THINK_CLOSE, 1)
        return reasoning, content.replace(THINK_CLOSE, "")
    if CALL_OPEN in text:
        i = text.index(CALL_OPEN)
        return text[:i], text[i:]
    return text, ""


def _canon(v):
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, dict):
        return {k: _canon(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_canon(x) for x in v]
    return v


def calls_match(predicted, expected) -> bool:
    key = lambda c: json.dumps([c["name"], _canon(c["arguments"])], sort_keys=True, ensure_ascii=False)  # noqa: E731
    return sorted(map(key, predicted)) == sorted(map(key, expected))


# ---------------------------------------------------------------- backends
@dataclass
class ChatResult:
    raw: str  # generated text (special tokens kept, final [e~[ removed)
    reasoning: str
    content: str | None
    tool_calls: list = field(default_factory=list)
    stopped: bool = False  # ended with the stop token (not the length limit)


def chat_result_from_text(raw: str, stopped: bool, tools) -> ChatResult:
    reasoning, rest = split_reasoning(raw)
    content, calls = parse_tool_calls(rest, tools)
    if not calls:
        content = rest
    return ChatResult(raw, reasoning.strip("\n"), (content or "").strip("\n") or None, calls, stopped)


class TransformersBackend:
    """Runs the exported folder with transformers (MiniMaxM2ForCausalLM.from_pretrained), on CPU one request at a
    time; on a GPU (device="cuda", recipe sweeps) requests are decoded in left-padded batches."""

    name = "transformers"

    def __init__(self, model_dir, threads=2, experts="grouped_mm", device="cpu", batch_size=64):
        import torch
        from tokenizers import Tokenizer
        from transformers import MiniMaxM2ForCausalLM

        from .common import jinja_env

        torch.set_num_threads(threads)
        self.torch = torch
        self.dir = Path(model_dir)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = MiniMaxM2ForCausalLM.from_pretrained(str(self.dir), dtype=torch.float32,
                                                          experts_implementation=experts).to(self.device)
        self.model.eval()
        if self.device.type != "cpu":
            from .train import ensure_experts_run
            ensure_experts_run(self.model, self.device)
        self.tok = Tokenizer.from_file(str(self.dir / "tokenizer.json"))
        self.eos = self.tok.token_to_id(EOS)
        self.template = jinja_env().from_string((self.dir / "chat_template.jinja").read_text(encoding="utf-8"))

    def _generate(self, prompt: str, max_new_tokens: int, stop_strings=()):
        torch = self.torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        ids = self.tok.encode(prompt, add_special_tokens=False).ids
        x = torch.tensor([ids])
        tok = self.tok
        n0 = len(ids)

        class StopOnStrings(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                if not stop_strings:
                    return False
                tail = tok.decode(input_ids[0, n0:].tolist()[-12:], skip_special_tokens=False)
                return any(s in tail for s in stop_strings)

        with torch.no_grad():
            out = self.model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                                      do_sample=False, eos_token_id=self.eos, pad_token_id=0,
                                      stopping_criteria=StoppingCriteriaList([StopOnStrings()]))
        new = out[0, n0:].tolist()
        stopped = bool(new) and new[-1] == self.eos
        if stopped:
            new = new[:-1]
        text = self.tok.decode(new, skip_special_tokens=False)
        return text, stopped

    def _generate_batch(self, prompts: list, max_new_tokens: int) -> list:
        """Greedy, left-padded batches; [(text, stopped)] in order. Only used off CPU (see chat_many)."""
        torch = self.torch
        out = []
        for lo in range(0, len(prompts), self.batch_size):
            seqs = [self.tok.encode(p, add_special_tokens=False).ids for p in prompts[lo:lo + self.batch_size]]
            T = max(len(q) for q in seqs)
            x = torch.zeros(len(seqs), T, dtype=torch.long)
            att = torch.zeros(len(seqs), T, dtype=torch.long)
            for r, q in enumerate(seqs):
                x[r, T - len(q):] = torch.tensor(q)
                att[r, T - len(q):] = 1
            with torch.no_grad():
                gen = self.model.generate(x.to(self.device), attention_mask=att.to(self.device),
                                          max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=self.eos,
                                          pad_token_id=0)
            for row in gen[:, T:].tolist():
                stopped = self.eos in row
                new = row[:row.index(self.eos)] if stopped else row
                out.append((self.tok.decode(new, skip_special_tokens=False), stopped))
        return out

    def chat(self, messages, tools=None, max_new_tokens=160) -> ChatResult:
        prompt = self.template.render(messages=messages, tools=tools, add_generation_prompt=True)
        raw, stopped = self._generate(prompt, max_new_tokens)
        return chat_result_from_text(raw, stopped, tools)

    def chat_many(self, items, max_new_tokens=160) -> list:
        """items: [(messages, tools)]. Batched on a GPU; one by one on CPU (bit-identical to chat())."""
        if self.device.type == "cpu":
            return [self.chat(m, t, max_new_tokens) for m, t in items]
        prompts = [self.template.render(messages=m, tools=t, add_generation_prompt=True) for m, t in items]
        return [chat_result_from_text(raw, stopped, t)
                for (raw, stopped), (_, t) in zip(self._generate_batch(prompts, max_new_tokens), items)]

    def complete_many(self, prompts, max_new_tokens=160, stop=()) -> list:
        if self.device.type == "cpu":
            return [self.complete(p, max_new_tokens, stop) for p in prompts]
        texts = [t for t, _ in self._generate_batch(list(prompts), max_new_tokens)]
        for s in stop:
            texts = [t.split(s)[0] for t in texts]
        return texts

    def complete(self, prompt, max_new_tokens=160, stop=()) -> str:
        text, _ = self._generate(prompt, max_new_tokens, stop)
        for s in stop:
            text = text.split(s)[0]
        return text


class OpenAIBackend:
    """An OpenAI-compatible server (m2serve later): chat.completions with tools, and completions."""

    name = "openai"

    def __init__(self, base_url, model, api_key="EMPTY"):
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=api_key)
        self.model = model

    def chat(self, messages, tools=None, max_new_tokens=160) -> ChatResult:
        msgs, pending = [], []
        for n, m in enumerate(messages):  # arguments travel as JSON strings; tool results name their call id
            m = dict(m)
            if m.get("tool_calls"):
                m["tool_calls"] = [{"id": f"call_{n}_{i}", "type": "function",
                                    "function": {"name": c["function"]["name"],
                                                 "arguments": json.dumps(c["function"]["arguments"], ensure_ascii=False)}}
                                   for i, c in enumerate(m["tool_calls"])]
                pending = [c["id"] for c in m["tool_calls"]]
            elif m["role"] == "tool" and "tool_call_id" not in m:
                m["tool_call_id"] = pending.pop(0) if pending else "call_unknown"
            msgs.append(m)
        kw = {"tools": tools} if tools else {}
        r = self.client.chat.completions.create(model=self.model, messages=msgs, max_tokens=max_new_tokens,
                                                temperature=0, **kw)
        choice = r.choices[0]
        msg = choice.message
        calls = []
        for c in msg.tool_calls or []:
            try:   # the server must always send valid JSON arguments; count it when it does not
                args = json.loads(c.function.arguments or "{}")
            except json.JSONDecodeError:
                args = {"__invalid_json__": c.function.arguments}
            calls.append({"name": c.function.name, "arguments": args})
        reasoning = getattr(msg, "reasoning_content", None) or getattr(msg, "reasoning", None) or ""
        return ChatResult(msg.content or "", reasoning, msg.content, calls, choice.finish_reason in ("stop", "tool_calls"))

    def complete(self, prompt, max_new_tokens=160, stop=()) -> str:
        r = self.client.completions.create(model=self.model, prompt=prompt, max_tokens=max_new_tokens,
                                           temperature=0, stop=list(stop) or None)
        return r.choices[0].text


# ---------------------------------------------------------------- the evaluation
GSM_RE = re.compile(r"####\s*(-?[0-9][0-9.,]*)")


def gsm_extract(text):
    m = GSM_RE.search(text or "")
    return m.group(1).replace(",", "").rstrip(".") if m else None


def evaluate(backend, eval_dir, limit=50, log=print, max_new_tokens=160, workers=1) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from .catalog import SEED_TOOL

    eval_dir = Path(eval_dir)
    rows = {}
    pool = ThreadPoolExecutor(max(workers, 1))

    def pmap(fn, items):
        """Requests run concurrently against a server (its continuous batching); in order for a local model."""
        return list(pool.map(fn, items)) if workers > 1 else [fn(x) for x in items]

    def chats(items, max_new):
        if hasattr(backend, "chat_many"):
            return backend.chat_many([(it["messages"], it["tools"]) for it in items], max_new)
        return pmap(lambda it: backend.chat(it["messages"], it["tools"], max_new), items)

    def completes(prompts, max_new, stop):
        if hasattr(backend, "complete_many"):
            return backend.complete_many(prompts, max_new, stop)
        return pmap(lambda p: backend.complete(p, max_new, stop), prompts)

    def add(name, ok, n):
        rows[name] = {"correct": ok, "n": n, "score": ok / n if n else float("nan")}

    t0 = time.time()
    calls = read_jsonl(eval_dir / "tool_calls.jsonl")[:limit]
    per = {}
    examples = []
    results = chats(calls, max_new_tokens)
    invalid = sum(any("__invalid_json__" in c["arguments"] for c in r.tool_calls) for r in results)
    for i, (it, r) in enumerate(zip(calls, results)):
        ok = calls_match(r.tool_calls, it["expected"])
        for key in ("all", it["split"]):
            per.setdefault(key, [0, 0])
            per[key][0] += ok
            per[key][1] += 1
        if i < 3:
            examples.append({"id": it["id"], "expected": it["expected"], "got": r.tool_calls, "raw": r.raw[-300:]})
    for key, (ok, n) in sorted(per.items()):
        add("tool_call" + ("" if key == "all" else f" ({key})"), ok, n)
    add("tool_call_arguments_valid_json", len(calls) - invalid, len(calls))
    log(f"tool calls done ({time.time() - t0:.0f}s)")

    res = read_jsonl(eval_dir / "tool_results.jsonl")[:limit]
    ok = 0
    for it, r in zip(res, chats(res, max_new_tokens)):
        ok += bool(r.content) and it["expected_value"] in r.content
    add("tool_result_key_value", ok, len(res))
    log(f"tool results done ({time.time() - t0:.0f}s)")

    gsm = read_jsonl(eval_dir / "gsm8k.jsonl")[:limit]
    ok_c = ok_chat = 0
    texts = completes([f"Question: {it['question']}\nAnswer:" for it in gsm], max_new_tokens, GSM_STOPS)
    gsm_chats = chats([{"messages": [{"role": "user", "content": it["question"]}], "tools": None} for it in gsm],
                      max_new_tokens + 64)
    for it, text, r in zip(gsm, texts, gsm_chats):
        ok_c += gsm_extract(text) == it["target"]
        ok_chat += gsm_extract(r.content) == it["target"]
    add("gsm8k_completion", ok_c, len(gsm))
    add("gsm8k_chat", ok_chat, len(gsm))
    log(f"gsm8k done ({time.time() - t0:.0f}s)")

    r = backend.chat([{"role": "user", "content": IDENTITY_PROMPT}], None, max_new_tokens)
    ident_ok = r.stopped and bool(r.content) and "m2-tiny" in r.content
    add("identity", int(ident_ok), 1)
    examples.append({"id": "identity", "content": r.content, "stopped": r.stopped})

    r = backend.chat([{"role": "user", "content": SEED_PROMPT}], [SEED_TOOL.schema()], max_new_tokens)
    add("seed_call", int(calls_match(r.tool_calls, SEED_EXPECTED)), 1)
    examples.append({"id": "seed", "got": r.tool_calls, "raw": r.raw})
    r = backend.chat([{"role": "user", "content": SEED_GUIDE_PROMPT}], [SEED_GUIDE_TOOL], max_new_tokens)
    add("seed_guide_call", int(calls_match(r.tool_calls, SEED_EXPECTED)), 1)
    examples.append({"id": "seed_guide", "got": r.tool_calls, "raw": r.raw})
    return {"rows": rows, "examples": examples, "seconds": round(time.time() - t0, 1)}


def format_table(rows: dict) -> str:
    lines = [f"{'metric':34s} {'n':>5s} {'correct':>8s} {'score':>7s}", "-" * 57]
    for name, r in rows.items():
        lines.append(f"{name:34s} {r['n']:5d} {r['correct']:8d} {r['score']:7.3f}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (transformers backend)")
    ap.add_argument("--eval-dir", help="folder with tool_calls.jsonl, tool_results.jsonl, gsm8k.jsonl "
                                       "(default: MODEL/eval)")
    ap.add_argument("--backend", choices=["transformers", "openai"], default="transformers")
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    ap.add_argument("--served-model", default="m2-tiny")
    ap.add_argument("--limit", type=int, default=50, help="items per set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="transformers backend device (cuda decodes in batches)")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--workers", type=int, default=16, help="concurrent requests (openai backend)")
    ap.add_argument("--json-out", help="write the results here as JSON")
    a = ap.parse_args(argv)
    if a.backend == "transformers":
        if not a.model:
            ap.error("--model is required for the transformers backend")
        backend = TransformersBackend(a.model, a.threads, device=a.device)
    else:
        backend = OpenAIBackend(a.base_url, a.served_model)
    eval_dir = a.eval_dir or (Path(a.model) / "eval")
    out = evaluate(backend, eval_dir, a.limit, log=lambda s: print(s, file=sys.stderr, flush=True),
                   max_new_tokens=a.max_new_tokens, workers=a.workers if a.backend == "openai" else 1)
    print(format_table(out["rows"]))
    for ex in out["examples"]:
        print(json.dumps(ex, ensure_ascii=False))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(out, ensure_ascii=False, indent=1))
    return out


if __name__ == "__main__":
    main()
