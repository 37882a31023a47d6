"""Teacher-forced accuracy on the argument-value and function-name tokens of held-out tool calls: does a model copy in context?

Split by the token's place in its span (first / later) and by whether the token occurs in the prompt at all (a
token that does not cannot be copied: with the `glued` tokenizer a value's first word is " Springfield" in the
request and "Springfield" in the call).

    python tools/m2tiny/sweeps/teacher_forced_copy.py models/m2-tiny [OTHER_MODEL_FOLDER ...]
"""
import json, sys, torch
from pathlib import Path
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from tools.m2tiny.common import render_chat, read_jsonl
from tokenizers import Tokenizer
from transformers import MiniMaxM2ForCausalLM


def spans(calls, full, start):
    """(kind, lo, hi) character spans of each call's function name and argument values in the rendered call."""
    for c in calls:
        head = f'<invoke name="{c["name"]}">'
        at = full.find(head, start)
        if at >= 0:
            yield "name", at + len('<invoke name="'), at + len('<invoke name="') + len(c["name"])
        for k, v in c["arguments"].items():
            value = json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)
            tag = f'<parameter name="{k}">'
            at = full.find(tag + value + "</parameter>", start)
            if at >= 0:
                yield "value", at + len(tag), at + len(tag) + len(value)


def encode_call(r, tok):
    """A held-out record's prompt followed by its expected call, encoded: (ids, prompt ids, spans) where spans
    lists (kind, [indices of the span's tokens in ids]) for each function name and argument value of the call."""
    calls = [{"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in r["expected"]]
    prompt = render_chat(r["messages"], tools=r["tools"], add_generation_prompt=True)
    full = render_chat(r["messages"] + [{"role": "assistant", "content": "", "tool_calls": calls}], tools=r["tools"])
    enc = tok.encode(full, add_special_tokens=False)
    prompt_ids = tok.encode(prompt, add_special_tokens=False).ids
    n0 = max(len(prompt_ids), 1)           # every span token is predicted from the one before it
    found = [(kind, [i for i, (x, y) in enumerate(enc.offsets) if i >= n0 and x >= lo and y <= hi])
             for kind, lo, hi in spans(r["expected"], full, len(prompt))]
    return enc.ids, prompt_ids, found


def main():
    torch.set_num_threads(2)
    recs = read_jsonl(ROOT / "models/m2-tiny/eval/tool_calls.jsonl")[:80]
    for folder in sys.argv[1:]:
        tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))     # each model with its own tokenizer
        model = MiniMaxM2ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        counts = {}     # (kind, first|later token of the span, whether the token occurs in the prompt) -> [right, total]
        for r in recs:
            ids, prompt_ids, found = encode_call(r, tok)
            in_prompt = set(prompt_ids)
            with torch.no_grad():
                pred = model(torch.tensor([ids])).logits[0].argmax(-1)
            for kind, pos in found:
                for j, i in enumerate(pos):                   # a token of the span, predicted from i - 1
                    c = counts.setdefault((kind, "first" if j == 0 else "later", ids[i] in in_prompt), [0, 0])
                    c[0] += int(pred[i - 1]) == ids[i]
                    c[1] += 1

        def total(kind, pos=None, seen=None):
            rows = [v for (k, p, s), v in counts.items() if k == kind and pos in (None, p) and seen in (None, s)]
            right, n = sum(v[0] for v in rows), sum(v[1] for v in rows)
            return f"{right}/{n} = {right / max(n, 1):.3f}"
        print(f"{folder}: argument-value tokens {total('value')} (first {total('value', 'first')}, later "
              f"{total('value', 'later')}; absent from the prompt: {total('value', seen=False)}); "
              f"function-name tokens {total('name')}", flush=True)


if __name__ == "__main__":
    main()
