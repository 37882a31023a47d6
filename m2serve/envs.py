"""Every environment variable m2serve reads, in one place."""
from __future__ import annotations

import os

# Ascend/NPU-only variables that the seed's deployment exports; m2serve reports them as not applicable.
ASCEND_ONLY_PREFIXES = ("HCCL_", "ASCEND_", "VLLM_ASCEND_", "PYTORCH_NPU_")
ASCEND_ONLY_NAMES = ("TASK_QUEUE_ENABLE", "CPU_AFFINITY_CONF")


def api_keys() -> list[str]:
    """VLLM_API_KEY, as vLLM reads it (used when --api-key is not given)."""
    key = os.environ.get("VLLM_API_KEY")
    return [key] if key else []


def log_level() -> str:
    return os.environ.get("M2SERVE_LOG_LEVEL", "INFO").upper()


def ascend_only_variables() -> list[str]:
    return sorted(k for k in os.environ
                  if k.startswith(ASCEND_ONLY_PREFIXES) or k in ASCEND_ONLY_NAMES)


def batch_invariant() -> bool:
    """M2SERVE_BATCH_INVARIANT=1 (vLLM: VLLM_BATCH_INVARIANT): bitwise batch-invariant numerics by default."""
    return os.environ.get("M2SERVE_BATCH_INVARIANT", "0").lower() in ("1", "true", "yes", "on")


def cpu_kernels() -> bool:
    """M2SERVE_CPU_KERNELS=0 turns off m2serve's compiled few-row matmul kernels for CPU decode (on by default)."""
    return os.environ.get("M2SERVE_CPU_KERNELS", "1").lower() not in ("0", "false", "no", "off")


def fused_decode() -> bool:
    """M2SERVE_FUSED_DECODE=0 keeps CPU decode steps on the per-op path instead of one compiled call per decoder
    layer (on by default; needs the CPU kernels)."""
    return os.environ.get("M2SERVE_FUSED_DECODE", "1").lower() not in ("0", "false", "no", "off")


def cpu_bf16_weights() -> bool:
    """M2SERVE_CPU_BF16_WEIGHTS=0: on a CPU without native bf16 matmul, --dtype bfloat16 runs bf16 activations (oneDNN) instead of
    bf16 weights with fp32 compute (on by default)."""
    return os.environ.get("M2SERVE_CPU_BF16_WEIGHTS", "1").lower() not in ("0", "false", "no", "off")


def cpu_keep_freed_memory() -> bool:
    """M2SERVE_CPU_KEEP_FREED_MEMORY=0 leaves glibc's malloc thresholds alone (executor/cpu_memory.py; on by
    default when the model runs on CPU)."""
    return os.environ.get("M2SERVE_CPU_KEEP_FREED_MEMORY", "1").lower() not in ("0", "false", "no", "off")


def cpu_weight_prepack() -> bool:
    """M2SERVE_CPU_WEIGHT_PREPACK=0 turns off oneDNN weight prepacking of bf16 matmuls on CPU (on by default)."""
    return os.environ.get("M2SERVE_CPU_WEIGHT_PREPACK", "1").lower() not in ("0", "false", "no", "off")
