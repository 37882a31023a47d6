"""Engine configuration: one frozen dataclass per concern, composed into EngineConfig.

Each component receives only the sub-config it needs. Names follow vLLM's (max_num_seqs,
max_num_batched_tokens, num_gpu_blocks_override, ...) so flags and keyword arguments carry over unchanged.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from m2serve import envs
from m2serve.errors import ConfigError
from m2serve.models.arch import MiniMaxM2Arch

BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "models" / "m2-tiny"

# --kv-cache-dtype: "auto" stores K/V in the dtype the model computes in; these store them in fewer bits.
KV_CACHE_DTYPES = {"bfloat16": torch.bfloat16}
KV_CACHE_DTYPE_CHOICES = ("auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc")   # vLLM's names
KV_CACHE_DTYPE_UNBUILT = ("fp8 KV caches are not built in m2serve yet (float caches: auto, bfloat16; an msModelSlim "
                          "C8 checkpoint brings its own int8 cache)")


@dataclass(frozen=True)
class ModelConfig:
    model: str
    dtype: str = "auto"
    max_model_len: int | None = None     # None: the checkpoint's max_position_embeddings
    seed: int = 0
    served_model_name: str | None = None
    batch_invariant: bool = False        # bitwise-identical results whatever the batch (layers/batch_invariant.py)
    quantization: str | None = None      # "ascend": an msModelSlim W8A8 / W8A8_DYNAMIC / C8 folder (layers/quant/)
    load_threads: int = 1                # --model-loader-extra-config enable_multithread_load / num_threads
    kv_cache_dtype: str = "auto"         # "auto" (the compute dtype) or a KV_CACHE_DTYPES key

    def __post_init__(self):
        if self.kv_cache_dtype != "auto" and self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ConfigError(f"kv_cache_dtype={self.kv_cache_dtype!r}: {KV_CACHE_DTYPE_UNBUILT}")

    @property
    def path(self) -> Path:
        return Path(self.model)

    @property
    def arch(self) -> MiniMaxM2Arch:
        return _arch(self.model)

    @property
    def generation_config(self) -> dict:
        p = self.path / "generation_config.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    @property
    def resolved_max_model_len(self) -> int:
        limit = self.arch.max_position_embeddings
        if self.max_model_len is None:
            return limit
        if self.max_model_len > limit:
            raise ConfigError(f"max_model_len={self.max_model_len} exceeds the model's max_position_embeddings={limit}")
        return self.max_model_len


_ARCH_CACHE: dict[str, MiniMaxM2Arch] = {}


def _arch(model: str) -> MiniMaxM2Arch:
    if model not in _ARCH_CACHE:
        _ARCH_CACHE[model] = MiniMaxM2Arch.from_dir(model)
    return _ARCH_CACHE[model]


@dataclass(frozen=True)
class CacheConfig:
    block_size: int = 16
    kv_cache_memory_bytes: int | None = None   # CPU: default 4 GiB (capped by what max_num_seqs can use)
    gpu_memory_utilization: float = 0.9        # CUDA: fraction of device memory for weights + KV cache
    num_gpu_blocks_override: int | None = None
    enable_prefix_caching: bool = True

    def __post_init__(self):
        if self.block_size <= 0 or self.block_size & (self.block_size - 1):
            raise ConfigError(f"block_size={self.block_size} must be a positive power of two")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"gpu_memory_utilization={self.gpu_memory_utilization} must be in (0, 1]")
        if self.num_gpu_blocks_override is not None and self.num_gpu_blocks_override < 1:
            raise ConfigError(f"num_gpu_blocks_override={self.num_gpu_blocks_override} must be at least 1")


@dataclass(frozen=True)
class SchedulerConfig:
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    max_model_len: int = 2048
    # Schedule step N+1 while step N runs (vLLM --async-scheduling); outputs are the same.
    async_scheduling: bool = False

    def __post_init__(self):
        if self.max_num_seqs < 1:
            raise ConfigError(f"max_num_seqs={self.max_num_seqs} must be at least 1")
        if self.max_num_batched_tokens < 1:
            raise ConfigError(f"max_num_batched_tokens={self.max_num_batched_tokens} must be at least 1")


@dataclass(frozen=True)
class ParallelConfig:
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    enable_expert_parallel: bool = False

    def __post_init__(self):
        if self.tensor_parallel_size != 1:
            raise ConfigError(f"tensor_parallel_size={self.tensor_parallel_size}: tensor parallelism is not built yet")
        if self.data_parallel_size != 1:
            raise ConfigError(f"data_parallel_size={self.data_parallel_size}: data parallelism is not built yet")
        if self.enable_expert_parallel:
            raise ConfigError("enable_expert_parallel=True: expert parallelism is not built yet")


def _load_threads(extra: dict | None) -> int:
    """--model-loader-extra-config (the default loader's keys): {"enable_multithread_load": bool, "num_threads": N}."""
    extra = extra or {}
    if not isinstance(extra, dict):
        raise ConfigError(f"model_loader_extra_config={extra!r}: expected a JSON object")
    unknown = set(extra) - {"enable_multithread_load", "num_threads"}
    if unknown:
        raise ConfigError(f"model_loader_extra_config keys {sorted(unknown)} are not known; known: "
                          "['enable_multithread_load', 'num_threads']")
    if not extra.get("enable_multithread_load"):
        return 1
    n = extra.get("num_threads", 8)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"model_loader_extra_config num_threads={n!r}: expected a positive integer")
    return n


_COMPILE_MODES = {"NONE": 0, "STOCK_TORCH_COMPILE": 1, "DYNAMO_TRACE_ONCE": 2, "VLLM_COMPILE": 3}
_CUDAGRAPH_MODES = {"NONE", "PIECEWISE", "FULL", "FULL_DECODE_ONLY", "FULL_AND_PIECEWISE"}
# vLLM compilation-config keys that tune CUDA graphs or vLLM's own passes: accepted, nothing to tune here.
_COMPILE_KEYS_NO_EFFECT = {"cudagraph_capture_sizes", "max_cudagraph_capture_size", "compile_sizes", "backend",
                           "custom_ops", "splitting_ops", "use_inductor", "pass_config", "inductor_compile_config",
                           "cudagraph_num_of_warmups", "full_cuda_graph", "debug_dump_path", "cache_dir"}


@dataclass(frozen=True)
class CompilationConfig:
    """--compilation-config / -O and --enforce-eager.

    m2serve has one compiled mode, on CPU and CUDA alike: regional torch.compile of every decoder layer (norms,
    projections, QK norm, RoPE, residual adds, router: one graph, reused by all layers); paged attention and the
    grouped expert matmuls stay eager inside it. vLLM's settings map onto it: a level / mode >= 1 or any
    cudagraph_mode other than NONE turns it on; level 0, mode NONE, cudagraph_mode NONE alone, or --enforce-eager
    leave the model eager. The default is eager (measured on CPU: benchmarks/README.md).
    """
    level: int = 0
    ignored_keys: tuple = ()

    @property
    def enabled(self) -> bool:
        return self.level > 0

    @classmethod
    def parse(cls, value, enforce_eager: bool = False) -> "CompilationConfig":
        if value is None or value == {}:
            level = 0
        elif isinstance(value, bool) or not isinstance(value, (int, dict)):
            raise ConfigError(f"compilation_config={value!r}: expected a level 0-3 or a JSON object")
        elif isinstance(value, int):
            level = value
        else:
            unknown = set(value) - {"level", "mode", "cudagraph_mode"} - _COMPILE_KEYS_NO_EFFECT
            if unknown:
                raise ConfigError(f"compilation_config keys {sorted(unknown)} are not known; known: "
                                  f"{sorted({'level', 'mode', 'cudagraph_mode'} | _COMPILE_KEYS_NO_EFFECT)}")
            mode = value.get("level", value.get("mode"))
            if isinstance(mode, str):
                if mode.upper() not in _COMPILE_MODES:
                    raise ConfigError(f"compilation_config mode={mode!r}; known: {sorted(_COMPILE_MODES)}")
                mode = _COMPILE_MODES[mode.upper()]
            graphs = value.get("cudagraph_mode")
            if graphs is not None and str(graphs).upper() not in _CUDAGRAPH_MODES:
                raise ConfigError(f"compilation_config cudagraph_mode={graphs!r}; known: {sorted(_CUDAGRAPH_MODES)}")
            if mode is None:
                level = 3 if graphs is not None and str(graphs).upper() != "NONE" else 0
            elif isinstance(mode, int) and not isinstance(mode, bool):
                level = mode
            else:
                raise ConfigError(f"compilation_config level/mode={mode!r}: expected 0-3 or a mode name")
            value = {k: v for k, v in value.items() if k in _COMPILE_KEYS_NO_EFFECT}
        if not 0 <= level <= 3:
            raise ConfigError(f"compilation level {level}: expected 0-3")
        ignored = tuple(sorted(value)) if isinstance(value, dict) else ()
        return cls(0 if enforce_eager else level, ignored)


@dataclass(frozen=True)
class DeviceConfig:
    device: str = "auto"

    @property
    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@dataclass(frozen=True)
class EngineConfig:
    model: ModelConfig
    cache: CacheConfig = field(default_factory=CacheConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    compilation: CompilationConfig = field(default_factory=CompilationConfig)

    @classmethod
    def create(cls, model: str | None = None, *, dtype: str = "auto", max_model_len: int | None = None,
               seed: int = 0, served_model_name: str | None = None, block_size: int = 16,
               kv_cache_memory_bytes: int | None = None, gpu_memory_utilization: float = 0.9,
               num_gpu_blocks_override: int | None = None, enable_prefix_caching: bool = True,
               max_num_seqs: int = 256, max_num_batched_tokens: int | None = None,
               tensor_parallel_size: int = 1, data_parallel_size: int = 1,
               enable_expert_parallel: bool = False, device: str = "auto",
               batch_invariant: bool | None = None, quantization: str | None = None,
               async_scheduling: bool = False, compilation_config=None,
               enforce_eager: bool = False, model_loader_extra_config: dict | None = None,
               kv_cache_dtype: str = "auto") -> "EngineConfig":
        """Build a config from vLLM-named keyword arguments (the LLM constructor and the CLI share this)."""
        model = str(model or BUNDLED_MODEL)
        if not Path(model).is_dir():
            raise ConfigError(f"model={model!r} is not a folder (m2serve loads Hugging Face style folders; "
                              "nothing is downloaded)")
        if batch_invariant is None:
            batch_invariant = envs.batch_invariant()
        from m2serve.layers.quant.ascend import check_quantization_arg
        quantization = check_quantization_arg(quantization, model)   # the flag and the folder must agree
        model_cfg = ModelConfig(model=model, dtype=dtype, max_model_len=max_model_len, seed=seed,
                                served_model_name=served_model_name, batch_invariant=batch_invariant,
                                quantization=quantization, load_threads=_load_threads(model_loader_extra_config),
                                kv_cache_dtype=kv_cache_dtype)
        mml = model_cfg.resolved_max_model_len
        if max_num_batched_tokens is None:
            max_num_batched_tokens = 2048
        return cls(
            model=model_cfg,
            cache=CacheConfig(block_size=block_size, kv_cache_memory_bytes=kv_cache_memory_bytes,
                              gpu_memory_utilization=gpu_memory_utilization,
                              num_gpu_blocks_override=num_gpu_blocks_override,
                              enable_prefix_caching=enable_prefix_caching),
            scheduler=SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                                      max_model_len=mml, async_scheduling=async_scheduling),
            parallel=ParallelConfig(tensor_parallel_size=tensor_parallel_size,
                                    data_parallel_size=data_parallel_size,
                                    enable_expert_parallel=enable_expert_parallel),
            device=DeviceConfig(device=device),
            compilation=CompilationConfig.parse(compilation_config, enforce_eager),
        )
