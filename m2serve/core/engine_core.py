"""Engine core: the scheduler and the model runner stepping together.

`step()` is one iteration of the loop: schedule, run the model, fold the sampled tokens back into the
requests. The offline LLM runs it in process; the server runs it in its own process behind ZMQ.

With async scheduling the model runs in a worker thread and up to two steps are in flight: while step N
computes (torch releases the GIL inside its kernels), this thread folds in step N-1's tokens, schedules
step N+1 and the caller ships outputs. The worker runs steps strictly in order, so step N+1 reads the
token step N sampled from the runner's own state.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from m2serve.config import EngineConfig
from m2serve.core.kv_cache.manager import KVCacheManager
from m2serve.core.messages import EngineCoreOutput, SchedulerStats
from m2serve.core.request import Request
from m2serve.core.scheduler import Scheduler
from m2serve.executor.model_runner import ModelRunner

logger = logging.getLogger(__name__)


class EngineCore:
    def __init__(self, config: EngineConfig, show_progress: bool = True):
        self.config = config
        t0 = time.perf_counter()
        self.async_scheduling = config.scheduler.async_scheduling
        self.batch_queue: deque[tuple[object, Future]] = deque()
        self._worker: ThreadPoolExecutor | None = None
        if self.async_scheduling:
            # Every torch call (load, KV init, steps) runs on the worker thread: OpenMP keeps one thread team
            # per calling thread, and a second team oversubscribes the cores, which makes libgomp stop
            # spin-waiting (measured: 45 -> 78 ms per decode step on 2 cores).
            import torch
            n = torch.get_num_threads()
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="m2serve-step",
                                              initializer=torch.set_num_threads, initargs=(n,))
            self.runner = self._worker.submit(self._init_runner, config, show_progress).result()
        else:
            self.runner = self._init_runner(config, show_progress)
        self.num_blocks = self.runner.kv_cache.shape[2]
        self.last_step_num_tokens = 0
        kv = KVCacheManager(self.num_blocks, config.cache.block_size, config.cache.enable_prefix_caching)
        self.scheduler = Scheduler(config.scheduler, kv)
        logger.info("engine ready in %.1fs (dtype %s, %d KV blocks)", time.perf_counter() - t0,
                    self.runner.dtype, self.num_blocks)

    @staticmethod
    def _init_runner(config: EngineConfig, show_progress: bool) -> ModelRunner:
        runner = ModelRunner(config.model, config.cache, config.scheduler, config.device.torch_device,
                             show_progress=show_progress, compilation=config.compilation)
        runner.init_kv_cache(runner.determine_num_blocks())
        return runner

    def add_request(self, request: Request) -> None:
        self.scheduler.add_request(request)

    def abort_requests(self, request_ids) -> None:
        self.scheduler.abort_requests(request_ids)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished_requests() or bool(self.batch_queue)

    def step(self) -> list[EngineCoreOutput]:
        if self.async_scheduling:
            return self._step_async()
        sched = self.scheduler.schedule()
        self.last_step_num_tokens = sched.num_batched_tokens
        if sched.is_empty:
            if sched.finished_req_ids:
                self.runner.execute_model(sched)    # let the runner drop finished state
            return []
        out = self.runner.execute_model(sched)
        return self.scheduler.update_from_output(sched, out)

    def _step_async(self) -> list[EngineCoreOutput]:
        """Keep two steps in flight: submit one more if possible, return the oldest one's outputs."""
        if len(self.batch_queue) < 2 and self.scheduler.has_unfinished_requests():
            sched = self.scheduler.schedule()
            if not sched.is_empty or sched.finished_req_ids:
                self.last_step_num_tokens = sched.num_batched_tokens
                self.batch_queue.append((sched, self._worker.submit(self.runner.execute_model, sched)))
                if len(self.batch_queue) < 2 and not sched.is_empty:
                    return []          # room for one more: plan it before waiting on this one
        if not self.batch_queue:
            return []
        sched, future = self.batch_queue.popleft()
        out = future.result()
        return self.scheduler.update_from_output(sched, out) if not sched.is_empty else []

    def shutdown(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)

    def stats(self) -> SchedulerStats:
        s = self.scheduler.stats()
        return SchedulerStats(s["num_running"], s["num_waiting"], s["kv_cache_usage"], s["prefix_cache_queries"],
                              s["prefix_cache_hits"], s["num_preemptions"], self.last_step_num_tokens)
