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

msModelSlim (AscendV1) checkpoints load with quantization="ascend" (layers/quant/ascend.py): weights in
quant_model_weights*.safetensors, one method per layer from quant_model_description.json; int8 weights and their
scales go into the parameters that method created (each parameter says which on-disk dtypes it accepts), experts
as experts.{e}.{w1,w2,w3}.{weight,weight_scale,weight_offset}, C8 scales self_attn.{k,v}_proj.kv_cache_* into
self_attn.attn.{k,v}_cache_*. After loading, every method's process_weights_after_loading runs.

Tensors are read one at a time from memory-mapped files (safe_open), each read once, and copied straight into
this rank's shard by the parameter's weight_loader, so peak memory stays about one tensor above the model.
"""
from __future__ import annotations

import functools
import json
import logging
import re
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from m2serve import envs
from m2serve.distributed.parallel_state import ParallelContext, get_parallel_context
from m2serve.config import KV_CACHE_DTYPES
from m2serve.errors import CheckpointError, ConfigError
from m2serve.layers import cpu_kernels
from m2serve.layers.quant.ascend import AscendQuantConfig, load_quant_config
from m2serve.layers.quant.cpu_bf16 import CpuBf16WeightsConfig
from m2serve.layers.quant.base import FloatKVCache, UnquantizedMoEMethod
from m2serve.models.arch import MiniMaxM2Arch
from m2serve.models.minimax_m2 import MiniMaxM2ForCausalLM

logger = logging.getLogger(__name__)

# vLLM's --dtype names.
_DTYPES = {"float32": torch.float32, "float": torch.float32, "bfloat16": torch.bfloat16,
           "float16": torch.float16, "half": torch.float16}


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_amx() -> bool:
    """True on CPUs with AMX tiles (Sapphire Rapids and later), where bf16 matmuls are fast."""
    return "amx_tile" in _cpu_flags()


def cpu_has_native_bf16() -> bool:
    """AMX or AVX-512 BF16 (Cooper Lake, Zen 4): bf16 matmuls run natively instead of emulated."""
    return cpu_has_amx() or "avx512_bf16" in _cpu_flags()


def resolve_dtype(name: str, checkpoint_dtype: str | None, device: torch.device) -> torch.dtype:
    """--dtype → torch dtype. auto on CPU: bf16 with AMX; else bf16 for a bf16 checkpoint where the CPU kernels
    can keep its weights in bf16 and compute in fp32 (`wants_cpu_bf16_weights`: lossless, half the bytes per
    decode step); else fp32. On an accelerator: the checkpoint's dtype (bf16 when unknown, or for FP8 checkpoints
    whose torch_dtype is bf16)."""
    if isinstance(name, torch.dtype):
        return name
    key = str(name).lower()
    ckpt = str(checkpoint_dtype or "").lower().removeprefix("torch.")
    if key == "auto":
        if torch.device(device).type == "cpu":
            if cpu_has_amx():
                return torch.bfloat16
            if ckpt == "bfloat16" and wants_cpu_bf16_weights(torch.bfloat16, device):
                return torch.bfloat16
            return torch.float32
        return _DTYPES.get(ckpt, torch.bfloat16)
    if key in _DTYPES:
        return _DTYPES[key]
    raise ConfigError(f"dtype {name!r} is not supported; use one of auto, {', '.join(_DTYPES)}")


def wants_cpu_bf16_weights(dtype: torch.dtype, device: torch.device) -> bool:
    """bf16 on a CPU without native bf16 matmul: store the matrices in bf16 and compute in fp32 (layers/quant/cpu_bf16.py), where
    the compiled CPU kernels exist to read them (M2SERVE_CPU_BF16_WEIGHTS=0 keeps bf16 activations instead)."""
    return (dtype == torch.bfloat16 and torch.device(device).type == "cpu" and not cpu_has_native_bf16()
            and envs.cpu_bf16_weights() and cpu_kernels.get() is not None)


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
_EXPERT_RE = re.compile(r"^block_sparse_moe\.experts\.(\d+)\.(w[123])\.(weight|weight_scale|weight_offset)$")
_KV_SCALE_RE = re.compile(r"^self_attn\.([kv])_proj\.kv_cache_(scale|offset)$")
# Tensor-name suffixes of the msModelSlim layout (not foreign when loading with quantization="ascend").
_ASCEND_SUFFIXES = frozenset({"weight_scale", "weight_offset", "input_scale", "input_offset", "deq_scale",
                              "quant_bias", "kv_cache_scale", "kv_cache_offset"})
_INDEX_FILES = ("model.safetensors.index.json", "quant_model_weights.safetensors.index.json")
_SINGLE_FILES = ("model.safetensors", "quant_model_weights.safetensors")


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
    for index in (model_dir / name for name in _INDEX_FILES):
        if not index.is_file():
            continue
        weight_map = json.loads(index.read_text()).get("weight_map") or {}
        files = sorted({model_dir / f for f in weight_map.values()})
        for f in files:
            if not f.is_file():
                raise CheckpointError(f"{index.name} lists {f.name}, which is not in {model_dir}")
        return files
    for single in (model_dir / name for name in _SINGLE_FILES):
        if single.is_file():
            return [single]
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
               show_progress: bool = True, quantization: str | None = None,
               num_threads: int = 1, kv_cache_dtype: str = "auto") -> MiniMaxM2ForCausalLM:
    """quantization: None, or "ascend" for an msModelSlim folder (required there, refused elsewhere).
    num_threads > 1 (--model-loader-extra-config '{"enable_multithread_load": true, "num_threads": N}') reads and
    copies tensors on N threads: safetensors reads from the page cache and torch copies release the GIL."""
    model_dir = Path(model_dir)
    quant_config = load_quant_config(model_dir, arch, quantization)
    if quant_config is None and wants_cpu_bf16_weights(dtype, device):
        quant_config, dtype = CpuBf16WeightsConfig(), torch.float32
        logger.info("dtype bfloat16 on a CPU without native bf16 matmul: %s", quant_config.summary())
    block = _check_quantization(arch.quantization_config)
    parallel = parallel or get_parallel_context()
    with torch.device(device):
        model = MiniMaxM2ForCausalLM(arch, dtype, parallel, quant_config=quant_config)
    if kv_cache_dtype != "auto":
        _set_kv_cache_dtype(model, kv_cache_dtype)
    with ExitStack() as stack:
        ckpt = _Checkpoint(_checkpoint_files(model_dir), stack)
        _WeightFiller(model, ckpt, block, arch).run(show_progress, num_threads)
    return model.eval()


def _set_kv_cache_dtype(model: MiniMaxM2ForCausalLM, name: str) -> None:
    """--kv-cache-dtype NAME: every layer's float cache stores K/V in that dtype (the model computes in its own)."""
    dtype = KV_CACHE_DTYPES[name]
    for i, layer in enumerate(model.model.layers):
        attn = layer.self_attn.attn
        if type(attn.kv_cache_method) is not FloatKVCache:
            raise ConfigError(f"--kv-cache-dtype {name}: layer {i}'s KV cache is {type(attn.kv_cache_method).__name__} "
                             "(this checkpoint sets its own KV cache format); use --kv-cache-dtype auto")
        attn.kv_cache_method = FloatKVCache(dtype)


class _WeightFiller:
    def __init__(self, model: MiniMaxM2ForCausalLM, ckpt: _Checkpoint, block: tuple[int, int],
                 arch: MiniMaxM2Arch) -> None:
        self.model, self.ckpt, self.block, self.arch = model, ckpt, block, arch
        self.params = dict(model.named_parameters())
        self.modules = dict(model.named_modules())
        self.quantized = isinstance(model.quant_config, AscendQuantConfig)   # msModelSlim tensors expected
        # Still to load: plain parameters by name, experts by (layer, local expert id, shard, tensor suffix).
        self.todo = {n for n in self.params if ".mlp.experts." not in n}
        if arch.tie_word_embeddings:
            self.todo.discard("lm_head.weight")
        self.experts_todo = {(layer, e, s, suffix) for layer, mod in enumerate(model.model.layers)
                             for e in range(mod.mlp.experts.first_expert,
                                            mod.mlp.experts.first_expert + mod.mlp.experts.num_local)
                             for s in ("w1", "w2", "w3") for suffix in mod.mlp.experts.quant_method.param_suffixes}
        self.original_layout = any(".block_sparse_moe." in n for n in ckpt.order)

    def run(self, show_progress: bool, num_threads: int = 1) -> None:
        names = tqdm(self.ckpt.order, desc="Loading weights", unit="tensor", disable=not show_progress)
        if num_threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            # Each tensor goes to its own parameter (or its own expert slice): the loads are independent.
            with ThreadPoolExecutor(num_threads, thread_name_prefix="m2serve-load") as pool:
                for _ in pool.map(self._load_named, names):
                    pass
        else:
            for name in names:
                self._load_named(name)
        self._check_complete()
        if self.arch.tie_word_embeddings:
            self.model.lm_head.weight.data.copy_(self.model.model.embed_tokens.weight.data)
        self._process_after_loading()

    def _load_named(self, name: str) -> None:
        try:
            self._load(name)
        except CheckpointError as e:
            if name in str(e):
                raise
            raise CheckpointError(f"{name}: {e}") from None

    def _process_after_loading(self) -> None:
        """Each quant method's post-load step (fp32 scale copies, checks), errors naming the layer."""
        for module_name, module in self.modules.items():
            for attr in ("quant_method", "kv_cache_method"):
                method = getattr(module, attr, None)
                if method is None:
                    continue
                try:
                    method.process_weights_after_loading(module)
                except CheckpointError as e:
                    raise CheckpointError(f"{self._ckpt_name(module_name)}: {e}") from None

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
        ascend_tensor = self.quantized and name.rsplit(".", 1)[-1] in _ASCEND_SUFFIXES
        for suffix, fmt in _FOREIGN_QUANT_SUFFIXES.items():
            if name.endswith(suffix) and not ascend_tensor:
                hint = " without quantization='ascend'" if fmt.startswith("W8A8 (msModelSlim)") else ""
                raise CheckpointError(f"tensor {name} belongs to a {fmt} checkpoint, which m2serve does not load"
                                      f"{hint}")
        if not m:
            return self._load_plain(name, name)
        layer, rest = int(m.group(1)), m.group(2)
        prefix = f"model.layers.{layer}."
        if rest in ("block_sparse_moe.gate.weight", "block_sparse_moe.e_score_correction_bias"):
            return self._load_plain(name, prefix + rest.replace("block_sparse_moe.", "mlp."))
        if em := _EXPERT_RE.match(rest):
            return self._load_expert(name, layer, int(em.group(1)), em.group(2), em.group(3))
        if self.quantized and (km := _KV_SCALE_RE.match(rest)):
            return self._load_plain(name, f"{prefix}self_attn.attn.{km.group(1)}_cache_{km.group(2)}")
        if rest in ("mlp.experts.gate_up_proj", "mlp.experts.down_proj"):
            return self._load_stacked(name, layer, rest.rsplit(".", 1)[1])
        return self._load_plain(name, name)

    def _read(self, name: str, param: torch.nn.Parameter | None = None) -> torch.Tensor:
        """The tensor in floating point, FP8 dequantized with its block scales; or, for a parameter of a quant
        method, as stored, if its dtype is one the parameter accepts (int8 weights, int32 quant_bias, ...)."""
        dt = self.ckpt.dtype(name)
        allowed = getattr(param, "disk_dtypes", _FLOAT_DTYPES)
        if dt in allowed and dt not in _FLOAT_DTYPES:
            return self.ckpt.read(name)                                       # an integer tensor of a quant method
        if dt not in allowed and not (dt == "F8_E4M3" and allowed & _FLOAT_DTYPES):
            if allowed != _FLOAT_DTYPES:
                raise CheckpointError(f"tensor {name} has dtype {dt}, expected {' or '.join(sorted(allowed))} "
                                      "(as its quant_model_description.json type implies)")
        if dt == "F8_E4M3":
            scale = name + "_scale_inv"
            if scale not in self.ckpt.where:
                raise CheckpointError(f"missing tensor {scale} for the float8 weight {name}")
            return dequantize_block_fp8(self.ckpt.read(name), self.ckpt.read(scale), self.block, name)
        if dt not in _FLOAT_DTYPES:
            raise CheckpointError(f"tensor {name} has dtype {dt}: only float tensors and block-FP8 are supported")
        return self.ckpt.read(name)

    def _ignored(self, param_name: str) -> bool:
        """A tensor the layer's quant method declares unused (W8A8 static's weight_scale/weight_offset)."""
        module, _, leaf = param_name.rpartition(".")
        method = getattr(self.modules.get(module), "quant_method", None)
        return leaf in getattr(method, "ignored_params", ())

    def _param(self, name: str, param_name: str) -> torch.nn.Parameter:
        param = self.params.get(param_name)
        if param is None or ".mlp.experts." in param_name:           # experts load only via their own names
            raise CheckpointError(f"unexpected tensor {name} (shape {list(self.ckpt.shape(name))}): "
                                  "not part of MiniMaxM2ForCausalLM")
        return param

    def _load_plain(self, name: str, param_name: str) -> None:
        if self.quantized and param_name not in self.params and self._ignored(param_name):
            return
        param = self._param(name, param_name)
        if param_name not in self.todo:
            raise CheckpointError(f"tensor {name} loads {param_name}, which was already loaded")
        param.weight_loader(param, self._read(name, param))
        self.todo.discard(param_name)

    def _experts_of(self, name: str, layer: int):
        if layer >= len(self.model.model.layers):
            raise CheckpointError(f"unexpected tensor {name}")
        return self.model.model.layers[layer].mlp.experts

    def _load_expert(self, name: str, layer: int, expert: int, shard: str, suffix: str = "weight") -> None:
        experts = self._experts_of(name, layer)
        if not 0 <= expert < experts.num_experts:
            raise CheckpointError(f"unexpected tensor {name}: expert {expert} >= num_local_experts "
                                  f"{experts.num_experts}")
        if suffix not in experts.quant_method.param_suffixes:
            raise CheckpointError(f"unexpected tensor {name}: {experts.quant_method.name} experts have no {suffix}")
        if not experts.is_local(expert):
            return                                                            # another EP rank's expert
        if (layer, expert, shard, suffix) not in self.experts_todo:
            raise CheckpointError(f"tensor {name}: expert {expert} {shard} of layer {layer} was already loaded")
        param = getattr(experts, f"{'w2' if shard == 'w2' else 'w13'}_{suffix}")
        experts.weight_loader(param, self._read(name, param), expert, shard)
        self.experts_todo.discard((layer, expert, shard, suffix))

    def _load_stacked(self, name: str, layer: int, kind: str) -> None:
        experts = self._experts_of(name, layer)
        E, H, I = experts.num_experts, experts.hidden_size, experts.intermediate_size
        expected = (E, 2 * I, H) if kind == "gate_up_proj" else (E, H, I)
        if self.ckpt.shape(name) != expected:
            raise CheckpointError(f"tensor {name}: shape {list(self.ckpt.shape(name))}, expected {list(expected)}")
        if self.ckpt.dtype(name) not in _FLOAT_DTYPES:
            raise CheckpointError(f"tensor {name} has dtype {self.ckpt.dtype(name)}: stacked experts must be float")
        if not isinstance(experts.quant_method, UnquantizedMoEMethod):
            raise CheckpointError(f"tensor {name}: stacked float experts, but the description makes these experts "
                                  f"{experts.quant_method.name} (stored as experts.<e>.w1/w2/w3)")
        first, n = experts.first_expert, experts.num_local
        local = self.ckpt.read(name, slice(first, first + n))                 # only this rank's experts
        for i in range(n):
            e = first + i
            parts = (("w1", local[i, :I]), ("w3", local[i, I:])) if kind == "gate_up_proj" else (("w2", local[i]),)
            for shard, t in parts:
                if (layer, e, shard, "weight") not in self.experts_todo:
                    raise CheckpointError(f"tensor {name}: expert {e} {shard} of layer {layer} was already loaded")
                param = experts.w2_weight if shard == "w2" else experts.w13_weight
                experts.weight_loader(param, t, e, shard)
                self.experts_todo.discard((layer, e, shard, "weight"))

    def _ckpt_name(self, param_name: str) -> str:
        if km := re.search(r"\.self_attn\.attn\.([kv])_cache_(scale|offset)$", param_name):
            param_name = param_name[:km.start()] + f".self_attn.{km.group(1)}_proj.kv_cache_{km.group(2)}"
        if self.original_layout:
            return param_name.replace(".mlp.", ".block_sparse_moe.")
        return param_name

    def _check_complete(self) -> None:
        missing = sorted(self._ckpt_name(n) for n in self.todo)
        if self.original_layout:
            missing += [f"model.layers.{l}.block_sparse_moe.experts.{e}.{s}.{suffix}"
                        for l, e, s, suffix in sorted(self.experts_todo)]
        else:
            stacked = {(l, "down_proj" if s == "w2" else "gate_up_proj") for l, _, s, _ in self.experts_todo}
            missing += [f"model.layers.{l}.mlp.experts.{k}" for l, k in sorted(stacked)]
        if missing:
            more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
            raise CheckpointError(f"checkpoint is missing tensor(s): {', '.join(missing[:10])}{more}")
