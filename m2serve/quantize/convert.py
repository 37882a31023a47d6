"""`m2serve quantize`: an fp32/bf16/block-FP8 MiniMax-M2 folder -> msModelSlim AscendV1 layout (spec A5).

Steps: load the float model (fp32) -> [QuaRot: fold norms, rotate, check the float logits are unchanged] ->
[calibrate: static W8A8 activation ranges, C8 K/V ranges] -> quantize weights per output channel (symmetric
int8) -> write quant_model_weights.safetensors (+ index when sharded), quant_model_description.json, the
source's json/py/txt/jinja files (config.json without quantization_config), optional/quarot.safetensors ->
load the result with quantization="ascend" and report its logits against the float model's.

Schemes: w8a8_dynamic = every attention linear and expert W8A8_DYNAMIC (msModelSlim's MiniMax recipe);
w8a8 = attention linears static W8A8 (calibrated), experts W8A8_DYNAMIC (static W8A8 has no MoE scheme).
Embedding, norms, router gate (fp32), e_score_correction_bias (fp32) and lm_head stay FLOAT.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from m2serve.errors import ConfigError
from m2serve.layers.quant.ascend import DESCRIPTION_FILE, TYPE_PRIORITY
from m2serve.models.arch import MiniMaxM2Arch

logger = logging.getLogger(__name__)

SCHEMES = ("w8a8_dynamic", "w8a8")
FP32_EPS = torch.finfo(torch.float32).eps
QUAROT_FILE = "optional/quarot.safetensors"
# A few kinds of text (prose, dialogue, code, JSON, Chinese) for when no --calib-data is given.
BUILTIN_CALIBRATION_TEXT = """\
The committee met on Tuesday to review the budget for the coming year. After a long discussion about
maintenance costs, the members agreed to postpone the new library wing and to repair the roof first.

User: Can you explain why the sky is blue? Assistant: Sunlight is made of many colours. Air molecules scatter
short wavelengths, such as blue, much more strongly than long ones, so blue light reaches us from every direction.

def fibonacci(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a

print([fibonacci(i) for i in range(10)])

{"name": "get_weather", "arguments": {"location": "Shanghai", "unit": "celsius"}, "id": "call_01"}

请查询上海明天的天气，并告诉我是否需要带伞。根据天气预报，明天上海多云转小雨，气温十八到二十三摄氏度。

In 1905 Albert Einstein published four papers that changed physics: on the photoelectric effect, Brownian
motion, special relativity and the equivalence of mass and energy, E = mc^2.

SELECT customer_id, SUM(amount) AS total FROM orders WHERE created_at >= '2024-01-01' GROUP BY customer_id
ORDER BY total DESC LIMIT 10;

The recipe calls for two cups of flour, one teaspoon of baking soda, half a cup of sugar, two eggs and a cup
of milk. Mix the dry ingredients first, then fold in the wet ones and bake at 180 degrees for 25 minutes.
"""


@dataclass
class QuantizeOptions:
    scheme: str = "w8a8_dynamic"
    quarot: bool = False
    kv_c8: bool = False
    calib_data: str | None = None
    num_calib_samples: int = 64
    max_calib_len: int = 512
    seed: int = 1234
    dtype: str = "auto"                 # dtype of the FLOAT tensors written (auto: the source's)
    part_file_size: float = 4.0         # GB per safetensors shard
    validate: bool = True
    show_progress: bool = True
    report: dict = field(default_factory=dict)


# -- quantization math (spec A2 / A5) -----------------------------------------------------------------
def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output channel symmetric minmax: s = max(amax/127, eps), W_q = clamp(round(W/s)) -> (int8, fp32 [out])."""
    w = w.float()
    s = (w.abs().amax(dim=1) / 127.0).clamp_min(FP32_EPS)
    return torch.round(w / s[:, None]).clamp_(-128, 127).to(torch.int8), s


def static_activation_qparams(lo: float, hi: float) -> tuple[float, float]:
    """msModelSlim's asymmetric int8 range: scale = (max - min)/255, offset = round(-min/scale) - 128, with
    [min, max] widened to include 0."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, FP32_EPS)
    scale = float(torch.tensor(scale, dtype=torch.float32))
    return scale, float(round(-lo / scale) - 128)


def _dynamic_tensors(prefix: str, w: torch.Tensor) -> dict[str, torch.Tensor]:
    q, s = quantize_weight(w)
    return {f"{prefix}.weight": q, f"{prefix}.weight_scale": s[:, None].contiguous(),
            f"{prefix}.weight_offset": torch.zeros(s.shape[0], 1, dtype=torch.float32)}


def _static_tensors(prefix: str, w: torch.Tensor, lo: float, hi: float) -> dict[str, torch.Tensor]:
    q, s_w = quantize_weight(w)
    s_x, o_x = static_activation_qparams(lo, hi)
    deq = (torch.tensor(s_x, dtype=torch.float32) * s_w).float()
    quant_bias = (-o_x * q.to(torch.int64).sum(dim=1)).to(torch.int32)   # round(b/deq - o_x sum W_q), b = 0
    return {f"{prefix}.weight": q, f"{prefix}.input_scale": torch.tensor([s_x], dtype=torch.float32),
            f"{prefix}.input_offset": torch.tensor([o_x], dtype=torch.float32), f"{prefix}.deq_scale": deq,
            f"{prefix}.quant_bias": quant_bias}


# -- calibration data ---------------------------------------------------------------------------------
def calibration_texts(path: str | None) -> list[str]:
    if path is None:
        text = BUILTIN_CALIBRATION_TEXT
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"--calib-data {path}: no such file")
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".jsonl":
            out = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                        raise ConfigError(f"--calib-data {path}:{n}: each line must be an object with a 'text' string")
                    out.append(row["text"])
            return out
    return [chunk.strip() for chunk in text.split("\n\n") if chunk.strip()]


def calibration_samples(src: Path, opts: QuantizeOptions, vocab_size: int) -> list[list[int]]:
    from m2serve.frontend.tokenizer import Tokenizer

    if not (src / "tokenizer.json").is_file():
        raise ConfigError(f"{src} has no tokenizer.json: calibration (--scheme w8a8 or --kv-c8) tokenizes its text "
                          "with the checkpoint's tokenizer")
    tok = Tokenizer.from_dir(src)
    samples = []
    for text in calibration_texts(opts.calib_data)[:opts.num_calib_samples]:
        ids = [i for i in tok.encode(text)[:opts.max_calib_len] if 0 <= i < vocab_size]
        if ids:
            samples.append(ids)
    if not samples:
        raise ConfigError("no calibration sample has any token")
    return samples


# -- the conversion -----------------------------------------------------------------------------------
def _probe_ids(vocab: int, n: int = 24) -> list[int]:
    return [(7919 * i + 13) % vocab for i in range(n)]


@torch.inference_mode()
def _probe_logits(model, ids: list[int]) -> torch.Tensor:
    from m2serve.layers.attention_metadata import AttentionMetadata

    arch, L, bs = model.arch, len(ids), 16
    nb = -(-L // bs)
    cache = torch.zeros(arch.num_hidden_layers, 2, nb, bs, arch.num_key_value_heads, arch.head_dim,
                        dtype=model.kv_cache_dtype)
    model.bind_kv_cache(cache)
    meta = AttentionMetadata(torch.arange(L), [0, L], [L], torch.arange(nb)[None, :], 0, bs)
    return model.compute_logits(model(torch.tensor(ids), torch.arange(L), meta))


def _float_dtype(name: str, arch: MiniMaxM2Arch) -> torch.dtype:
    if name == "auto":
        src = str(arch.torch_dtype or "bfloat16").removeprefix("torch.")
        if arch.quantization_config:                                          # block-FP8 source
            src = "bfloat16"
        name = src
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in table:
        raise ConfigError(f"--dtype {name!r}: use auto, float32, bfloat16 or float16")
    return table[name]


def quantize_checkpoint(src: str | Path, dst: str | Path, opts: QuantizeOptions | None = None) -> dict:
    """Write the msModelSlim layout of `src` into `dst`; returns a report (also logged)."""
    from m2serve.models.loader import load_model

    opts = opts or QuantizeOptions()
    if opts.scheme not in SCHEMES:
        raise ConfigError(f"--scheme {opts.scheme!r}: use one of {', '.join(SCHEMES)}")
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ConfigError("SRC and DST must be different folders")
    if (src / DESCRIPTION_FILE).is_file():
        raise ConfigError(f"{src} is already quantized ({DESCRIPTION_FILE})")
    arch = MiniMaxM2Arch.from_dir(src)
    out_dtype = _float_dtype(opts.dtype, arch)
    bar = (lambda it, desc: tqdm(it, desc=desc, unit="layer", disable=not opts.show_progress))
    report: dict = {"scheme": opts.scheme, "quarot": opts.quarot, "kv_c8": opts.kv_c8}

    model = load_model(src, arch, torch.float32, show_progress=opts.show_progress)
    probe = _probe_ids(arch.vocab_size)
    ref_logits = _probe_logits(model, probe) if (opts.quarot or opts.validate) else None

    rotation = None
    if opts.quarot:
        rotation, _ = apply_quarot_checked(model, opts, probe, ref_logits, report, bar)

    static = opts.scheme == "w8a8"
    calib = None
    if static or opts.kv_c8:
        from m2serve.quantize.calibrate import Calibrator
        samples = calibration_samples(src, opts, arch.vocab_size)
        names = [f"model.layers.{i}.self_attn.{p}" for i in range(arch.num_hidden_layers)
                 for p in ("q_proj", "k_proj", "v_proj", "o_proj")] if static else []
        calib = Calibrator(model, names, kv=opts.kv_c8)
        calib.run(samples, progress=lambda it: tqdm(it, desc="Calibrating", unit="sample",
                                                    disable=not opts.show_progress))
        calib.close()
        report["calibration"] = {"samples": len(samples), "tokens": sum(map(len, samples))}

    tensors, desc = _build_tensors(model, arch, opts, calib, out_dtype, bar)
    _write(src, dst, tensors, desc, rotation, opts, out_dtype)
    report["files"] = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    del model

    if opts.validate:
        report.update(_validate(dst, arch, probe, ref_logits))
    logger.info("quantize report: %s", {k: v for k, v in report.items() if k != "files"})
    opts.report = report
    return report


def apply_quarot_checked(model, opts, probe, ref_logits, report, bar):
    from m2serve.quantize.quarot import apply_quarot

    Q, Rh = apply_quarot(model, seed=opts.seed, progress=lambda it: bar(it, "QuaRot"))
    rot_logits = _probe_logits(model, probe)
    err = float((rot_logits - ref_logits).abs().max() / ref_logits.abs().max().clamp_min(1e-12))
    report["quarot_float_logits_rel_err"] = err
    if err > 1e-3:
        raise RuntimeError(f"QuaRot changed the float model's logits (relative error {err:.2e}): not exported")
    return Q, Rh


def _build_tensors(model, arch, opts, calib, out_dtype, bar):
    tensors: dict[str, torch.Tensor] = {}
    desc: dict[str, str] = {}

    def put(name: str, t: torch.Tensor, kind: str) -> None:
        tensors[name] = t.detach().contiguous().cpu()
        desc[name] = kind

    def flt(name: str, t: torch.Tensor, dtype=out_dtype) -> None:
        put(name, t.to(dtype), "FLOAT")

    flt("model.embed_tokens.weight", model.model.embed_tokens.weight)
    static = opts.scheme == "w8a8"
    for i, layer in enumerate(bar(model.model.layers, "Quantizing")):
        p = f"model.layers.{i}"
        attn = layer.self_attn
        flt(f"{p}.input_layernorm.weight", layer.input_layernorm.weight)
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            w = getattr(attn, name).weight
            if static:
                lo, hi = calib.minmax[f"{p}.self_attn.{name}"]
                for k, t in _static_tensors(f"{p}.self_attn.{name}", w, lo, hi).items():
                    put(k, t, "W8A8")
            else:
                for k, t in _dynamic_tensors(f"{p}.self_attn.{name}", w).items():
                    put(k, t, "W8A8_DYNAMIC")
        flt(f"{p}.self_attn.q_norm.weight", attn.q_norm.weight)
        flt(f"{p}.self_attn.k_norm.weight", attn.k_norm.weight)
        if opts.kv_c8:
            for which in ("k", "v"):
                amax = calib.kv_absmax[i][which]
                put(f"{p}.self_attn.{which}_proj.kv_cache_scale", (amax / 127.0).clamp_min(FP32_EPS).float(), "C8")
                put(f"{p}.self_attn.{which}_proj.kv_cache_offset", torch.zeros_like(amax, dtype=torch.float32), "C8")
        flt(f"{p}.post_attention_layernorm.weight", layer.post_attention_layernorm.weight)
        moe = layer.mlp
        flt(f"{p}.block_sparse_moe.gate.weight", moe.gate.weight, torch.float32)
        flt(f"{p}.block_sparse_moe.e_score_correction_bias", moe.e_score_correction_bias, torch.float32)
        experts, I = moe.experts, moe.experts.intermediate_size
        for e in range(experts.num_experts):
            for shard, w in (("w1", experts.w13_weight[e, :I]), ("w2", experts.w2_weight[e]),
                             ("w3", experts.w13_weight[e, I:])):
                for k, t in _dynamic_tensors(f"{p}.block_sparse_moe.experts.{e}.{shard}", w).items():
                    put(k, t, "W8A8_DYNAMIC")
    flt("model.norm.weight", model.model.norm.weight)
    flt("lm_head.weight", model.lm_head.weight)
    return tensors, desc


def _write(src: Path, dst: Path, tensors, desc, rotation, opts, out_dtype) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for old in list(dst.glob("quant_model_weights*")) + list(dst.glob(QUAROT_FILE)):
        old.unlink()                                                          # nothing stale from an earlier run
    present = set(desc.values())
    model_type = max(present, key=lambda t: TYPE_PRIORITY.index(t) if t in TYPE_PRIORITY else -1)
    full = dict(desc)
    full.update({"version": "1.0.0", "model_quant_type": model_type, "group_size": 0, "metadata": {},
                 "optional": {}})
    if opts.kv_c8:
        full.update({"kv_cache_type": "C8", "kv_quant_type": "C8"})
    if rotation is not None:
        (dst / "optional").mkdir(exist_ok=True)
        save_file({"global_rotation": rotation.float().contiguous()}, str(dst / QUAROT_FILE))
        full["optional"] = {"quarot": {"rotation_map": {"global_rotation": QUAROT_FILE}}}

    limit = int(opts.part_file_size * 1e9)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(dst / "quant_model_weights.safetensors"), metadata={"format": "pt"})
    else:
        n = len(shards)
        weight_map = {}
        for k, shard in enumerate(shards, 1):
            fname = f"quant_model_weights-{k:05d}-of-{n:05d}.safetensors"
            save_file(shard, str(dst / fname), metadata={"format": "pt"})
            weight_map.update({name: fname for name in shard})
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        (dst / "quant_model_weights.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    (dst / DESCRIPTION_FILE).write_text(json.dumps(full, indent=2) + "\n")

    for f in sorted(src.iterdir()):
        if f.is_file() and f.suffix in (".json", ".py", ".txt", ".jinja") and not f.name.endswith("index.json"):
            if f.name == "config.json":
                cfg = json.loads(f.read_text())
                cfg.pop("quantization_config", None)
                cfg["torch_dtype"] = str(out_dtype).removeprefix("torch.")
                cfg.pop("dtype", None)
                (dst / f.name).write_text(json.dumps(cfg, indent=2) + "\n")
            elif f.name != DESCRIPTION_FILE:
                shutil.copyfile(f, dst / f.name)


def _validate(dst: Path, arch: MiniMaxM2Arch, probe, ref_logits) -> dict:
    """Load the written folder like a server would and compare its probe logits with the float model's."""
    from m2serve.models.loader import load_model

    q = load_model(dst, MiniMaxM2Arch.from_dir(dst), torch.float32, show_progress=False, quantization="ascend")
    logits = _probe_logits(q, probe)
    rel = float((logits - ref_logits).abs().max() / ref_logits.abs().max().clamp_min(1e-12))
    top1 = float((logits.argmax(-1) == ref_logits.argmax(-1)).float().mean())
    return {"quantized_logits_rel_err": rel, "quantized_top1_agreement": top1}
