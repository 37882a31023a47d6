"""Engine core: the scheduler and the model runner stepping together.

`step()` is one iteration of the loop: schedule, run the model, fold the sampled tokens back into the
requests. The offline LLM runs it in process; the server runs it in its own process behind ZMQ.
"""
from __future__ import annotations

import logging
import time

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
        self.runner = ModelRunner(config.model, config.cache, config.scheduler, config.device.torch_device,
                                  show_progress=show_progress)
        self.num_blocks = self.runner.determine_num_blocks()
        self.runner.init_kv_cache(self.num_blocks)
        self.last_step_num_tokens = 0
        kv = KVCacheManager(self.num_blocks, config.cache.block_size, config.cache.enable_prefix_caching)
        self.scheduler = Scheduler(config.scheduler, kv)
        logger.info("engine ready in %.1fs (dtype %s, %d KV blocks)", time.perf_counter() - t0,
                    self.runner.dtype, self.num_blocks)

    def add_request(self, request: Request) -> None:
        self.scheduler.add_request(request)

    def abort_requests(self, request_ids) -> None:
        self.scheduler.abort_requests(request_ids)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished_requests()

    def step(self) -> list[EngineCoreOutput]:
        sched = self.scheduler.schedule()
        self.last_step_num_tokens = sched.num_batched_tokens
        if sched.is_empty:
            if sched.finished_req_ids:
                self.runner.execute_model(sched)    # let the runner drop finished state
            return []
        out = self.runner.execute_model(sched)
        return self.scheduler.update_from_output(sched, out)

    def stats(self) -> SchedulerStats:
        s = self.scheduler.stats()
        return SchedulerStats(s["num_running"], s["num_waiting"], s["kv_cache_usage"], s["prefix_cache_queries"],
                              s["prefix_cache_hits"], s["num_preemptions"], self.last_step_num_tokens)
