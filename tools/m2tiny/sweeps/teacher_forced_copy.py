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
recs = read_jsonl(ROOT / "models/m2-tiny/eval/tool_calls.jsonl")[:80]
tok = Tokenizer.from_file(str(ROOT / "models/m2-tiny/tokenizer.json"))
for folder in sys.argv[1:]:
    model = MiniMaxM2ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    hit = tot = name_hit = name_tot = 0
    for r in recs:
        calls = [{"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in r["expected"]]
        msgs = r["messages"] + [{"role": "assistant", "content": "", "tool_calls": calls}]
        prompt = render_chat(r["messages"], tools=r["tools"], add_generation_prompt=True)
        full = render_chat(msgs, tools=r["tools"])
        ids = tok.encode(full, add_special_tokens=False).ids
        n0 = len(tok.encode(prompt, add_special_tokens=False).ids)
        with torch.no_grad():
            pred = model(torch.tensor([ids])).logits[0].argmax(-1)
        text_of = lambda i: tok.decode([ids[i]])
        # value tokens: those inside <parameter ...>VALUE</parameter>; name tokens: inside <invoke name="NAME">
        off = tok.encode(full, add_special_tokens=False).offsets
        for c in r["expected"]:
            for kind, s in [("name", f'<invoke name="{c["name"]}">')] + [("val", f'<parameter name="{k}">{v if not isinstance(v, (dict, list)) else json.dumps(v, ensure_ascii=False)}</parameter>') for k, v in c["arguments"].items()]:
                a = full.find(s, len(prompt))
                if a < 0: continue
                inner = (a + len('<invoke name="'), a + len('<invoke name="') + len(c["name"])) if kind == "name" else (a + s.index(">") + 1, a + len(s) - len("</parameter>"))
                for i, (x, y) in enumerate(off):
                    if i >= n0 and x >= inner[0] and y <= inner[1] and i > 0:
                        ok = int(pred[i - 1]) == ids[i]
                        if kind == "name": name_hit += ok; name_tot += 1
                        else: hit += ok; tot += 1
    print(f"{folder}: argument-value tokens {hit}/{tot} = {hit/max(tot,1):.3f}; function-name tokens {name_hit}/{name_tot} = {name_hit/max(name_tot,1):.3f}", flush=True)
