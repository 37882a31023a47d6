"""Does the supervised induction head find an argument value's source in the request, and is it used when it does?

    python tools/m2tiny/sweeps/induction_on_values.py MODEL [--layer 1] [--heads 0,4]

Teacher-forced on the first 60 held-out tool calls (the expected call rendered after the prompt): for each
argument-value token after the first, its *source* is a prompt position holding the same token right after an
occurrence of the previous value token (where an induction head should look). Prints how often the head's
strongest attention is on a source, the mean attention mass on the sources, and the model's accuracy on that
token when the head is / is not on a source. Heads are those `--copy-attn-heads auto` supervises on m2-tiny.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from teacher_forced_copy import encode_call  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import MiniMaxM2ForCausalLM  # noqa: E402

from tools.m2tiny.common import read_jsonl  # noqa: E402
from tools.m2tiny.induction import HeadSupervision  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--layer", type=int, default=1, help="the induction head's layer")
    ap.add_argument("--heads", default="0,4")
    ap.add_argument("--n", type=int, default=60)
    a = ap.parse_args()
    torch.set_num_threads(2)
    tok = Tokenizer.from_file(str(Path(a.model) / "tokenizer.json"))
    model = MiniMaxM2ForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    heads = [int(h) for h in a.heads.split(",")]
    probe = HeadSupervision(model, 0, a.layer, heads)    # only its hooks and attention recomputation are used
    probe.active = True
    n = with_source = on_source = 0
    mass = 0.0
    right = {True: [0, 0], False: [0, 0]}                # head on a source -> [right, total]
    for r in read_jsonl(ROOT / "models/m2-tiny/eval/tool_calls.jsonl")[:a.n]:
        ids, prompt_ids, found = encode_call(r, tok)
        n0 = len(prompt_ids)
        with torch.no_grad():
            pred = model(torch.tensor([ids])).logits[0].argmax(-1)
            attn = probe._log_attention(a.layer)[0].exp()                    # [heads, T, T]
        probe.captured.clear()
        for kind, pos in found:
            if kind != "value":
                continue
            for i in pos[1:]:                   # ids[i] is predicted at i - 1, whose token is ids[i - 1]
                n += 1
                sources = [j + 1 for j in range(n0 - 1) if ids[j] == ids[i - 1] and ids[j + 1] == ids[i]]
                if not sources:
                    continue
                with_source += 1
                row = attn[:, i - 1]                                          # [heads, T]
                on = any(int(row[h].argmax()) in sources for h in range(len(heads)))
                on_source += on
                mass += float(row[:, sources].sum(-1).max())
                right[on][0] += int(pred[i - 1]) == ids[i]
                right[on][1] += 1
    print(json.dumps({
        "model": a.model, "value_tokens_after_the_first": n, "with_a_source_in_the_prompt": with_source,
        "head_on_a_source": on_source, "mean_mass_on_sources": round(mass / max(with_source, 1), 3),
        "accuracy_when_on_source": f"{right[True][0]}/{right[True][1]}",
        "accuracy_otherwise": f"{right[False][0]}/{right[False][1]}"}))


if __name__ == "__main__":
    main()
