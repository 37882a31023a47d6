"""Teacher-forced accuracy on the argument-value and function-name tokens of held-out tool calls: does a model copy in context?

    python tools/m2tiny/sweeps/teacher_forced_copy.py models/m2-tiny [OTHER_MODEL_FOLDER ...]
"""
import json, sys, torch
from pathlib import Path
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from tools.m2tiny.common import render_chat, read_jsonl
from tokenizers import Tokenizer
from transformers import MiniMaxM2ForCausalLM
torch.set_num_threads(2)


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
recs = read_jsonl(ROOT / "models/m2-tiny/eval/tool_calls.jsonl")[:80]
tok = Tokenizer.from_file(str(ROOT / "models/m2-tiny/tokenizer.json"))
for folder in sys.argv[1:]:
    model = MiniMaxM2ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    counts = {"name": [0, 0], "value": [0, 0]}     # [right, total] tokens
    for r in recs:
        calls = [{"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in r["expected"]]
        msgs = r["messages"] + [{"role": "assistant", "content": "", "tool_calls": calls}]
        prompt = render_chat(r["messages"], tools=r["tools"], add_generation_prompt=True)
        full = render_chat(msgs, tools=r["tools"])
        enc = tok.encode(full, add_special_tokens=False)
        ids, off = enc.ids, enc.offsets
        n0 = len(tok.encode(prompt, add_special_tokens=False).ids)
        with torch.no_grad():
            pred = model(torch.tensor([ids])).logits[0].argmax(-1)
        for kind, lo, hi in spans(r["expected"], full, len(prompt)):
            for i, (x, y) in enumerate(off):
                if i >= max(n0, 1) and x >= lo and y <= hi:      # a token of the span, predicted from i - 1
                    counts[kind][0] += int(pred[i - 1]) == ids[i]
                    counts[kind][1] += 1
    (vh, vt), (nh, nt) = counts["value"], counts["name"]
    print(f"{folder}: argument-value tokens {vh}/{vt} = {vh / max(vt, 1):.3f}; "
          f"function-name tokens {nh}/{nt} = {nh / max(nt, 1):.3f}", flush=True)
