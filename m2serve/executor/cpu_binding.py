"""`--additional-config '{"enable_cpu_binding": true}'` on CPU: the API server and the engine on separate cores.

The engine's OpenMP team runs one thread per core and meets at a barrier after every parallel loop, so a core
taken away by the API process (HTTP, SSE, detokenizing) stalls the whole team until that thread runs again.
Binding gives the API server the last allowed CPU and the engine process the others (one intra-op thread each).
With fewer than 4 CPUs that would leave the engine too few cores (on this project's 2-core machine one engine
thread serves 1.5x slower than two sharing with the API server), so binding is skipped there with a warning.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

logger = logging.getLogger(__name__)

MIN_CPUS = 4


@dataclass(frozen=True)
class CpuBinding:
    api_cpus: tuple[int, ...]
    engine_cpus: tuple[int, ...]


def plan_cpu_binding(cpus=None) -> CpuBinding | None:
    """The split of this process's allowed CPUs (or `cpus`), or None where there are fewer than MIN_CPUS."""
    allowed = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
    if len(allowed) < MIN_CPUS:
        logger.warning("enable_cpu_binding: %d CPUs allowed, binding needs %d (one for the API server, the rest "
                       "for the engine): not binding", len(allowed), MIN_CPUS)
        return None
    return CpuBinding(api_cpus=tuple(allowed[-1:]), engine_cpus=tuple(allowed[:-1]))


def bind_this_process(cpus, threads: bool = False) -> None:
    """Pin this process to `cpus`; with threads, also size torch's intra-op pool to them."""
    os.sched_setaffinity(0, set(cpus))
    if threads:
        import torch

        torch.set_num_threads(len(cpus))
    logger.info("bound to CPUs %s", ",".join(map(str, sorted(cpus))))
