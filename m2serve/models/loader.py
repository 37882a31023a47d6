"""Checkpoint loading for MiniMax-M2: safetensors (single or sharded) → MiniMaxM2ForCausalLM (spec §1-§2).

Accepted on-disk layouts, tensor by tensor:
* original (hub / transformers' save_pretrained default, which converts back on save):
  model.layers.N.block_sparse_moe.{gate.weight, e_score_correction_bias, experts.E.{w1,w2,w3}.weight}
* transformers v5 in-memory layout (save_pretrained(save_original_format=False)):
  model.layers.N.mlp.{gate.weight, e_score_correction_bias, experts.gate_up_proj [E,2I,H], experts.down_proj [E,H,I]}
Attention, norms, embeddings and lm_head have the same names in both.

The official FP8 release stores most linear weights as float8_e4m3fn plus `<name>_scale_inv`
[ceil(out/128), ceil(in/128)]; they are dequantized block by block on load (the scale is *multiplied*).
Other quantization formats are refused by name. Skipped: rotary_emb.inv_freq and MTP layers >= num_hidden_layers.

Tensors are read one at a time from memory-mapped files (safe_open), each read once, and copied straight into
this rank's shard by the parameter's weight_loader, so peak memory stays about one tensor above the model.
"""
from __future__ import annotations

import functools
import json
import re
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from m2serve.distributed.parallel_state import ParallelContext, get_parallel_context
from m2serve.errors import CheckpointError, ConfigError
from m2serve.models.arch import MiniMaxM2Arch
from m2serve.models.minimax_m2 import MiniMaxM2ForCausalLM

# vLLM's --dtype names.
_DTYPES = {"float32": torch.float32, "float": torch.float32, "bfloat16": torch.bfloat16,
           "float16": torch.float16, "half": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_has_amx() -> bool:
    """True on CPUs with AMX tiles (Sapphire Rapids and later), where bf16 matmuls are fast."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_tile" in line.split()
    except OSError:
        pass
    return False


def resolve_dtype(name: str, checkpoint_dtype: str | None, device: torch.device) -> torch.dtype:
    """--dtype → torch dtype. auto: on CPU bf16 only with AMX (fp32 is faster and exact otherwise); on an
    accelerator the checkpoint's dtype (bf16 when unknown, or for FP8 checkpoints whose torch_dtype is bf16)."""
    if isinstance(name, torch.dtype):
        return name
    key = str(name).lower()
    if key == "auto":
        if torch.device(device).type == "cpu":
            return torch.bfloat16 if cpu_has_amx() else torch.float32
        ckpt = str(checkpoint_dtype or "").lower().removeprefix("torch.")
        return _DTYPES.get(ckpt, torch.bfloat16)
    if key in _DTYPES:
        return _DTYPES[key]
    raise ConfigError(f"dtype {name!r} is not supported; use one of auto, {', '.join(_DTYPES)}")


# Tensor-name suffixes of quantization formats m2serve does not load, with the format they betray.
_FOREIGN_QUANT_SUFFIXES = {
    ".weight_packed": "NVFP4 / compressed-tensors packed", ".weight_global_scale": "NVFP4",
    ".qweight": "AWQ/GPTQ", ".qzeros": "AWQ/GPTQ", ".g_idx": "GPTQ", ".scales": "AWQ/GPTQ",
    ".weight_scale": "per-channel scaled int8/fp8 (W8A8 or compressed-tensors)", ".weight_offset": "W8A8 (msModelSlim)",
    ".deq_scale": "W8A8 (msModelSlim)", ".input_scale": "static-activation quantization",
    "_blocks": "MXFP4", "_scales": "MXFP4",
}
_FLOAT_DTYPES = {"F32", "F16", "BF16", "F64"}
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_EXPERT_RE = re.compile(r"^block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight$")


def _check_quantization(qc: dict | None) -> tuple[int, int]:
    """Return the FP8 weight block size; refuse anything that is not the official block-FP8 format."""
    if not qc:
        return (128, 128)
    method = qc.get("quant_method")
    if method != "fp8":
        raise ConfigError(f"quantization_config.quant_method={method!r} is not supported: m2serve loads BF16/FP16/"
                          "FP32 checkpoints and the official block-FP8 (quant_method 'fp8') release")
    if qc.get("fmt", "float8_e4m3fn") != "float8_e4m3fn" or not qc.get("weight_block_size"):
        raise ConfigError(f"FP8 checkpoint with fmt={qc.get('fmt')!r}, weight_block_size="
                          f"{qc.get('weight_block_size')!r}: only block-wise float8_e4m3fn is supported")
    bo, bi = qc["weight_block_size"]
    return int(bo), int(bi)


def dequantize_block_fp8(w: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] = (128, 128),
                         name: str = "weight") -> torch.Tensor:
    """W[i, j] = float(w[i, j]) * scale_inv[i // bo, j // bi] → fp32 [out, in]."""
    out, inn = w.shape
    bo, bi = block
    grid = (-(-out // bo), -(-inn // bi))
    if tuple(scale_inv.shape) != grid:
        raise CheckpointError(f"{name}_scale_inv: shape {tuple(scale_inv.shape)}, expected {grid} for a "
                              f"{(out, inn)} weight in {bo}x{bi} blocks")
    s = scale_inv.float()
    if out % bo == 0 and inn % bi == 0:
        return (w.float().view(grid[0], bo, grid[1], bi) * s[:, None, :, None]).view(out, inn)
    return w.float() * s.repeat_interleave(bo, 0)[:out].repeat_interleave(bi, 1)[:, :inn]


def _checkpoint_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map") or {}
        files = sorted({model_dir / f for f in weight_map.values()})
        for f in files:
            if not f.is_file():
                raise CheckpointError(f"{index.name} lists {f.name}, which is not in {model_dir}")
        return files
    if (model_dir / "model.safetensors").is_file():
        return [model_dir / "model.safetensors"]
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{model_dir}: no model.safetensors, model.safetensors.index.json or *.safetensors")
    return files


class _Checkpoint:
    """Name → open safetensors handle over all files (memory-mapped; nothing is read until asked)."""

    def __init__(self, files: list[Path], stack: ExitStack) -> None:
        self.where: dict[str, object] = {}
        self.order: list[str] = []
        for path in files:
            handle = stack.enter_context(safe_open(str(path), framework="pt", device="cpu"))
            for name in handle.keys():
                if name in self.where:
                    raise CheckpointError(f"tensor {name} appears in more than one checkpoint file")
                self.where[name] = handle
                self.order.append(name)

    def dtype(self, name: str) -> str:
        return self.where[name].get_slice(name).get_dtype()

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.where[name].get_slice(name).get_shape())

    def read(self, name: str, rows: slice | None = None) -> torch.Tensor:
        handle = self.where[name]
        return handle.get_tensor(name) if rows is None else handle.get_slice(name)[rows]


def load_model(model_dir: str | Path, arch: MiniMaxM2Arch, dtype: torch.dtype,
               device: torch.device = torch.device("cpu"), parallel: ParallelContext | None = None,
               show_progress: bool = True) -> MiniMaxM2ForCausalLM:
    model_dir = Path(model_dir)
    block = _check_quantization(arch.quantization_config)
    parallel = parallel or get_parallel_context()
    with torch.device(device):
        model = MiniMaxM2ForCausalLM(arch, dtype, parallel)
    with ExitStack() as stack:
        ckpt = _Checkpoint(_checkpoint_files(model_dir), stack)
        _WeightFiller(model, ckpt, block, arch).run(show_progress)
    return model.eval()


class _WeightFiller:
    def __init__(self, model: MiniMaxM2ForCausalLM, ckpt: _Checkpoint, block: tuple[int, int],
                 arch: MiniMaxM2Arch) -> None:
        self.model, self.ckpt, self.block, self.arch = model, ckpt, block, arch
        self.params = dict(model.named_parameters())
        # Still to load: plain parameters by name, experts by (layer, local expert id, shard).
        self.todo = {n for n in self.params if ".mlp.experts." not in n}
        if arch.tie_word_embeddings:
            self.todo.discard("lm_head.weight")
        self.experts_todo = {(layer, e, s) for layer, mod in enumerate(model.model.layers)
                             for e in range(mod.mlp.experts.first_expert,
                                            mod.mlp.experts.first_expert + mod.mlp.experts.num_local)
                             for s in ("w1", "w2", "w3")}
        self.original_layout = any(".block_sparse_moe." in n for n in ckpt.order)

    def run(self, show_progress: bool) -> None:
        for name in tqdm(self.ckpt.order, desc="Loading weights", unit="tensor", disable=not show_progress):
            try:
                self._load(name)
            except CheckpointError as e:
                if name in str(e):
                    raise
                raise CheckpointError(f"{name}: {e}") from None
        self._check_complete()
        if self.arch.tie_word_embeddings:
            self.model.lm_head.weight.data.copy_(self.model.model.embed_tokens.weight.data)

    def _load(self, name: str) -> None:
        if name.endswith("rotary_emb.inv_freq"):
            return
        m = _LAYER_RE.match(name)
        if m and int(m.group(1)) >= self.arch.num_hidden_layers:
            return                                                            # MTP modules: unused
        if name.endswith(".weight_scale_inv"):
            if name.removesuffix("_scale_inv") not in self.ckpt.where:
                raise CheckpointError(f"unexpected tensor {name}: no {name.removesuffix('_scale_inv')} to scale")
            return                                                            # consumed with its weight
        for suffix, fmt in _FOREIGN_QUANT_SUFFIXES.items():
            if name.endswith(suffix):
                raise CheckpointError(f"tensor {name} belongs to a {fmt} checkpoint, which m2serve does not load")
        if not m:
            return self._load_plain(name, name)
        layer, rest = int(m.group(1)), m.group(2)
        prefix = f"model.layers.{layer}."
        if rest in ("block_sparse_moe.gate.weight", "block_sparse_moe.e_score_correction_bias"):
            return self._load_plain(name, prefix + rest.replace("block_sparse_moe.", "mlp."))
        if em := _EXPERT_RE.match(rest):
            return self._load_expert(name, layer, int(em.group(1)), em.group(2))
        if rest in ("mlp.experts.gate_up_proj", "mlp.experts.down_proj"):
            return self._load_stacked(name, layer, rest.rsplit(".", 1)[1])
        return self._load_plain(name, name)

    def _read(self, name: str) -> torch.Tensor:
        """The tensor in floating point, FP8 dequantized with its block scales."""
        dt = self.ckpt.dtype(name)
        if dt == "F8_E4M3":
            scale = name + "_scale_inv"
            if scale not in self.ckpt.where:
                raise CheckpointError(f"missing tensor {scale} for the float8 weight {name}")
            return dequantize_block_fp8(self.ckpt.read(name), self.ckpt.read(scale), self.block, name)
        if dt not in _FLOAT_DTYPES:
            raise CheckpointError(f"tensor {name} has dtype {dt}: only float tensors and block-FP8 are supported")
        return self.ckpt.read(name)

    def _param(self, name: str, param_name: str) -> torch.nn.Parameter:
        param = self.params.get(param_name)
        if param is None or ".mlp.experts." in param_name:           # experts load only via their own names
            raise CheckpointError(f"unexpected tensor {name} (shape {list(self.ckpt.shape(name))}): "
                                  "not part of MiniMaxM2ForCausalLM")
        return param

    def _load_plain(self, name: str, param_name: str) -> None:
        param = self._param(name, param_name)
        if param_name not in self.todo:
            raise CheckpointError(f"tensor {name} loads {param_name}, which was already loaded")
        param.weight_loader(param, self._read(name))
        self.todo.discard(param_name)

    def _experts_of(self, name: str, layer: int):
        if layer >= len(self.model.model.layers):
            raise CheckpointError(f"unexpected tensor {name}")
        return self.model.model.layers[layer].mlp.experts

    def _load_expert(self, name: str, layer: int, expert: int, shard: str) -> None:
        experts = self._experts_of(name, layer)
        if not 0 <= expert < experts.num_experts:
            raise CheckpointError(f"unexpected tensor {name}: expert {expert} >= num_local_experts "
                                  f"{experts.num_experts}")
        if not experts.is_local(expert):
            return                                                            # another EP rank's expert
        if (layer, expert, shard) not in self.experts_todo:
            raise CheckpointError(f"tensor {name}: expert {expert} {shard} of layer {layer} was already loaded")
        param = experts.w2_weight if shard == "w2" else experts.w13_weight
        experts.weight_loader(param, self._read(name), expert, shard)
        self.experts_todo.discard((layer, expert, shard))

    def _load_stacked(self, name: str, layer: int, kind: str) -> None:
        experts = self._experts_of(name, layer)
        E, H, I = experts.num_experts, experts.hidden_size, experts.intermediate_size
        expected = (E, 2 * I, H) if kind == "gate_up_proj" else (E, H, I)
        if self.ckpt.shape(name) != expected:
            raise CheckpointError(f"tensor {name}: shape {list(self.ckpt.shape(name))}, expected {list(expected)}")
        if self.ckpt.dtype(name) not in _FLOAT_DTYPES:
            raise CheckpointError(f"tensor {name} has dtype {self.ckpt.dtype(name)}: stacked experts must be float")
        first, n = experts.first_expert, experts.num_local
        local = self.ckpt.read(name, slice(first, first + n))                 # only this rank's experts
        for i in range(n):
            e = first + i
            parts = (("w1", local[i, :I]), ("w3", local[i, I:])) if kind == "gate_up_proj" else (("w2", local[i]),)
            for shard, t in parts:
                if (layer, e, shard) not in self.experts_todo:
                    raise CheckpointError(f"tensor {name}: expert {e} {shard} of layer {layer} was already loaded")
                param = experts.w2_weight if shard == "w2" else experts.w13_weight
                experts.weight_loader(param, t, e, shard)
                self.experts_todo.discard((layer, e, shard))

    def _ckpt_name(self, param_name: str) -> str:
        if self.original_layout:
            return param_name.replace(".mlp.", ".block_sparse_moe.")
        return param_name

    def _check_complete(self) -> None:
        missing = sorted(self._ckpt_name(n) for n in self.todo)
        if self.original_layout:
            missing += [f"model.layers.{l}.block_sparse_moe.experts.{e}.{s}.weight"
                        for l, e, s in sorted(self.experts_todo)]
        else:
            stacked = {(l, "down_proj" if s == "w2" else "gate_up_proj") for l, _, s in self.experts_todo}
            missing += [f"model.layers.{l}.mlp.experts.{k}" for l, k in sorted(stacked)]
        if missing:
            more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
            raise CheckpointError(f"checkpoint is missing tensor(s): {', '.join(missing[:10])}{more}")
