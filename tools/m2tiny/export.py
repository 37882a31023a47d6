"""Export a trained m2-tiny checkpoint to the HF folder layout of the real MiniMax-M2 release.

    python -m tools.m2tiny.export --ckpt build/m2tiny/ckpt/last.pt --tokenizer build/m2tiny/tokenizer \\
        --out models/m2-tiny

Writes config.json (the real checkpoint's keys), generation_config.json, tokenizer.json, tokenizer_config.json,
chat_template.jinja and model.safetensors with the ORIGINAL tensor names (specs/minimax-m2.md section 2):
transformers keeps experts stacked (mlp.experts.gate_up_proj [E, 2I, H], rows 0..I-1 = w1/gate then w3/up;
mlp.experts.down_proj [E, H, I] = w2) and the router under mlp.; the file has one tensor per expert
(block_sparse_moe.experts.E.w1/w2/w3.weight) and block_sparse_moe.gate / e_score_correction_bias. Weights are
bfloat16; e_score_correction_bias stays float32 as in the official checkpoint (it only ranks experts, and bf16
would round away small differences).
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from .common import TEMPLATE_PATH
from .modelcfg import checkpoint_config, generation_config, write_json

_EXPERTS = re.compile(r"^(model\.layers\.\d+)\.mlp\.experts\.(gate_up_proj|down_proj)$")
_ORIG_EXPERT = re.compile(r"^(model\.layers\.\d+)\.block_sparse_moe\.experts\.(\d+)\.(w1|w2|w3)\.weight$")


def hf_to_original(state_dict: dict, dtype=None) -> dict:
    """transformers in-memory state dict -> {original checkpoint name: tensor}."""
    import torch

    dtype = dtype or torch.bfloat16
    out = {}
    for name, t in state_dict.items():
        t = t.detach()
        m = _EXPERTS.match(name)
        if m:
            prefix, kind = m.groups()
            if kind == "gate_up_proj":
                inter = t.shape[1] // 2
                for e in range(t.shape[0]):
                    out[f"{prefix}.block_sparse_moe.experts.{e}.w1.weight"] = t[e, :inter].to(dtype).contiguous()
                    out[f"{prefix}.block_sparse_moe.experts.{e}.w3.weight"] = t[e, inter:].to(dtype).contiguous()
            else:
                for e in range(t.shape[0]):
                    out[f"{prefix}.block_sparse_moe.experts.{e}.w2.weight"] = t[e].to(dtype).contiguous()
        elif name.endswith(".mlp.e_score_correction_bias"):
            out[name.replace(".mlp.", ".block_sparse_moe.")] = t.to(torch.float32).contiguous()
        elif name.endswith(".mlp.gate.weight"):
            out[name.replace(".mlp.", ".block_sparse_moe.")] = t.to(dtype).contiguous()
        elif name.endswith("rotary_emb.inv_freq"):
            continue
        else:
            out[name] = t.to(dtype).contiguous()
    return out


def original_to_hf(tensors: dict) -> dict:
    """Inverse of hf_to_original (used by tests): original names -> transformers state-dict names."""
    import torch

    out, experts = {}, {}
    for name, t in tensors.items():
        m = _ORIG_EXPERT.match(name)
        if m:
            prefix, e, w = m.groups()
            experts.setdefault(prefix, {}).setdefault(int(e), {})[w] = t
        elif ".block_sparse_moe." in name:
            out[name.replace(".block_sparse_moe.", ".mlp.")] = t
        else:
            out[name] = t
    for prefix, by_e in experts.items():
        n = len(by_e)
        out[f"{prefix}.mlp.experts.gate_up_proj"] = torch.stack(
            [torch.cat([by_e[e]["w1"], by_e[e]["w3"]], dim=0) for e in range(n)])
        out[f"{prefix}.mlp.experts.down_proj"] = torch.stack([by_e[e]["w2"] for e in range(n)])
    return out


def export_folder(state_dict: dict, arch: dict, tokenizer_dir, out_dir, template_path=None) -> dict:
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = hf_to_original(state_dict)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)
    write_json(out / "config.json", checkpoint_config(arch))
    write_json(out / "generation_config.json", generation_config())
    tok = Path(tokenizer_dir)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tok / f, out / f)
    src = Path(template_path or TEMPLATE_PATH)
    if src.resolve() != (out / "chat_template.jinja").resolve():
        shutil.copyfile(src, out / "chat_template.jinja")
    size = (out / "model.safetensors").stat().st_size
    return {"out": str(out), "tensors": len(tensors), "safetensors_bytes": size,
            "params": int(sum(t.numel() for t in tensors.values()))}


def export_checkpoint(ckpt_path, tokenizer_dir, out_dir, template_path=None) -> dict:
    import torch

    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    return export_folder(ck["model"], ck["arch"], tokenizer_dir, out_dir, template_path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--tokenizer", required=True, help="folder with tokenizer.json and tokenizer_config.json")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    print(export_checkpoint(a.ckpt, a.tokenizer, a.out))


if __name__ == "__main__":
    main()
