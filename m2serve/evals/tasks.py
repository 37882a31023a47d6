"""lm-evaluation-harness tasks over m2-tiny's held-out data (local JSONL; nothing from the hub).

`m2tiny_gsm8k` is gsm8k's own recipe (prompt, stops, strict-match and flexible-extract filters, exact_match
with the same ignore rules) on held-out GSM8K-format problems; `m2tiny_gsm8k_mc` is a loglikelihood
(multiple-choice) task: after the worked answer, which final number follows "####".
"""
from __future__ import annotations

import json
import random
from pathlib import Path

GSM8K_YAML = """\
task: m2tiny_gsm8k
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: generate_until
test_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["Question:", "</s>", "<|im_end|>"]
  do_sample: false
  temperature: 0.0
  max_gen_toks: {max_gen_toks}
filter_list:
  - name: strict-match
    filter:
      - function: regex
        regex_pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"
      - function: take_first
  - name: flexible-extract
    filter:
      - function: regex
        group_select: -1
        regex_pattern: "(-?[$0-9.,]{{2,}})|(-?[0-9]+)"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: false
    regexes_to_ignore: [",", "\\\\$", "(?s).*#### ", "\\\\.$"]
metadata:
  version: 3.0
"""

GSM8K_MC_YAML = """\
task: m2tiny_gsm8k_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: multiple_choice
test_split: test
doc_to_text: context
doc_to_choice: choices
doc_to_target: label
target_delimiter: " "
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def _mc_rows(gsm_rows: list[dict], seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for row in gsm_rows:
        worked, _, final = row["answer"].rpartition("####")
        target = final.strip()
        try:
            n = int(target)
        except ValueError:
            continue
        wrong = sorted({n + d for d in (-10, -2, -1, 1, 2, 3, 10, 20)} - {n})
        choices = [str(n)] + [str(w) for w in rng.sample(wrong, 3)]
        rng.shuffle(choices)
        out.append({"context": f"Question: {row['question']}\nAnswer: {worked.strip()}\n####",
                    "choices": choices, "label": choices.index(str(n))})
    return out


def write_tasks(task_dir: str | Path, eval_dir: str | Path, max_gen_toks: int = 256) -> Path:
    """Write the task YAMLs (with absolute data paths) and the derived MC data into task_dir."""
    task_dir, eval_dir = Path(task_dir), Path(eval_dir).resolve()
    gsm = eval_dir / "gsm8k.jsonl"
    if not gsm.is_file():
        raise FileNotFoundError(f"{gsm} not found: the held-out GSM8K-format problems")
    task_dir.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in gsm.read_text().splitlines() if line.strip()]
    mc = task_dir / "gsm8k_mc.jsonl"
    mc.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _mc_rows(rows)))
    (task_dir / "m2tiny_gsm8k.yaml").write_text(GSM8K_YAML.format(data=json.dumps(str(gsm)),
                                                                  max_gen_toks=max_gen_toks))
    (task_dir / "m2tiny_gsm8k_mc.yaml").write_text(GSM8K_MC_YAML.format(data=json.dumps(str(mc))))
    return task_dir
