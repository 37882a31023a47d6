"""Async client of the engine-core process, used by the API server.

Requests go out over a ZMQ PUSH socket, outputs come back on a PULL socket; one task reads them, detokenizes
(OutputProcessor) and wakes the per-request streams. A stream always sees the newest cumulative RequestOutput,
so a slow HTTP client gets several tokens at once instead of holding the engine back.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

import msgspec
import zmq
import zmq.asyncio

from m2serve.config import EngineConfig
from m2serve.core.engine_proc import run_engine_core
from m2serve.core.messages import (AbortRequests, EngineCoreOutputs, EngineCoreRequest, EngineDead, EngineReady,
                                   FromEngine, RequestRejected, UtilityCall, UtilityResult)
from m2serve.errors import EngineDeadError, InvalidRequestError
from m2serve.frontend.output_processor import OutputProcessor
from m2serve.frontend.tokenizer import Tokenizer
from m2serve.metrics.prometheus import Metrics
from m2serve.outputs import RequestOutput
from m2serve.sampling.params import SamplingParams

logger = logging.getLogger("m2serve.client")


@dataclass
class _Stream:
    num_prompt_tokens: int
    arrival: float
    child_ids: list[str]
    latest: RequestOutput | None = None
    error: Exception | None = None
    event: asyncio.Event = field(default_factory=asyncio.Event)
    first_token_time: float | None = None
    last_token_time: float | None = None
    num_tokens: int = 0


class AsyncEngineClient:
    def __init__(self, config: EngineConfig, tokenizer: Tokenizer | None, eos_token_ids: list[int],
                 metrics_name: str, engine_threads: int | None = None,
                 engine_cpus: tuple[int, ...] | None = None):
        self.config = config
        self.tokenizer = tokenizer
        self.eos_token_ids = eos_token_ids
        self.engine_threads = engine_threads
        self.engine_cpus = engine_cpus             # bind the engine process there (enable_cpu_binding)
        self.output_processor = OutputProcessor(tokenizer)
        self.streams: dict[str, _Stream] = {}
        self.dead: str | None = None
        self.on_dead: Callable[[str], None] | None = None
        self.ready: EngineReady | None = None
        self.metrics: Metrics | None = None
        self._metrics_name = metrics_name
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder(FromEngine)
        self._utility: dict[int, asyncio.Future] = {}
        self._call_ids = 0
        self._tasks: list[asyncio.Task] = []
        self.started_at = time.time()

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self, timeout: float = 600.0) -> None:
        base = os.path.join(tempfile.gettempdir(), f"m2serve-{uuid.uuid4().hex[:12]}")
        in_addr, out_addr = f"ipc://{base}-in", f"ipc://{base}-out"
        self._ctx = zmq.asyncio.Context()
        self._to_engine = self._ctx.socket(zmq.PUSH)
        self._to_engine.bind(in_addr)
        self._from_engine = self._ctx.socket(zmq.PULL)
        self._from_engine.bind(out_addr)
        mp = multiprocessing.get_context("spawn")
        self.proc = mp.Process(target=run_engine_core, name="m2serve-engine-core",
                               args=(self.config, in_addr, out_addr, self.engine_threads, self.engine_cpus),
                               daemon=True)
        self.proc.start()
        deadline = time.monotonic() + timeout
        while self.ready is None:
            if not self.proc.is_alive():
                raise EngineDeadError(f"the engine-core process exited with code {self.proc.exitcode} during startup")
            if await self._from_engine.poll(500):
                msg = self._dec.decode(await self._from_engine.recv())
                if isinstance(msg, EngineDead):
                    raise EngineDeadError(f"the engine failed to start: {msg.message}")
                if isinstance(msg, EngineReady):
                    self.ready = msg
            if time.monotonic() > deadline:
                raise EngineDeadError("the engine did not become ready in time")
        cc = self.config.cache
        self.metrics = Metrics(self._metrics_name, self.ready.max_model_len, {
            "block_size": str(cc.block_size), "num_gpu_blocks": str(self.ready.num_blocks),
            "cache_dtype": self.ready.dtype, "enable_prefix_caching": str(cc.enable_prefix_caching),
            "gpu_memory_utilization": str(cc.gpu_memory_utilization)})
        self._tasks = [asyncio.create_task(self._read_outputs()), asyncio.create_task(self._watch_process())]

    async def shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        if getattr(self, "proc", None) is not None and self.proc.is_alive():
            try:
                await self._to_engine.send(self._enc.encode(UtilityCall(-1, "shutdown")))
            except zmq.ZMQError:
                pass
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
        if getattr(self, "_ctx", None) is not None:
            self._ctx.destroy(linger=0)

    @property
    def num_blocks(self) -> int:
        return self.ready.num_blocks

    # -- requests -----------------------------------------------------------------------------------
    async def generate(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams,
                       prompt: str | None = None) -> AsyncIterator[RequestOutput]:
        """Yields the request's cumulative RequestOutput as it grows; the last one has finished=True.
        Cancelling the consumer (client disconnect) aborts the request and frees its KV blocks."""
        if self.dead:
            raise EngineDeadError(self.dead)
        if request_id in self.streams:
            raise InvalidRequestError(f"request id {request_id!r} is already in use")
        child_ids = self.output_processor.add_request(request_id, prompt, prompt_token_ids, params)
        stream = _Stream(len(prompt_token_ids), time.monotonic(), child_ids)
        self.streams[request_id] = stream
        now = time.time()
        finished = False
        try:
            for i, cid in enumerate(child_ids):
                child = params.clone(n=1, seed=None if params.seed is None else params.seed + i)
                await self._to_engine.send(self._enc.encode(
                    EngineCoreRequest(cid, list(prompt_token_ids), child, self.eos_token_ids, now)))
            while True:
                await stream.event.wait()
                stream.event.clear()
                if stream.error is not None:
                    raise stream.error
                out = stream.latest
                finished = out.finished
                yield out
                if finished:
                    return
        finally:
            self.streams.pop(request_id, None)
            if not finished:
                self.output_processor.abort(request_id)
                if not self.dead:
                    await self._send_abort(child_ids)

    async def abort(self, request_id: str) -> None:
        stream = self.streams.pop(request_id, None)
        if stream is not None:
            self.output_processor.abort(request_id)
            await self._send_abort(stream.child_ids)

    async def reset_prefix_cache(self) -> bool:
        self._call_ids += 1
        fut = asyncio.get_running_loop().create_future()
        self._utility[self._call_ids] = fut
        await self._to_engine.send(self._enc.encode(UtilityCall(self._call_ids, "reset_prefix_cache")))
        return await fut

    async def _send_abort(self, child_ids: list[str]) -> None:
        try:
            await self._to_engine.send(self._enc.encode(AbortRequests(child_ids)))
        except zmq.ZMQError:
            pass

    # -- background tasks ---------------------------------------------------------------------------
    async def _read_outputs(self) -> None:
        child_to_parent: Callable[[str], str | None] = self._parent_of
        while True:
            msg = self._dec.decode(await self._from_engine.recv())
            if isinstance(msg, EngineCoreOutputs):
                if msg.stats is not None:
                    self.metrics.record_stats(msg.stats)
                if not msg.outputs:
                    continue
                results, to_abort = self.output_processor.process(msg.outputs)
                if to_abort:
                    await self._send_abort(to_abort)
                now = time.monotonic()
                for out in results:
                    self._deliver(out, now)
            elif isinstance(msg, RequestRejected):
                parent = child_to_parent(msg.request_id)
                stream = self.streams.get(parent) if parent else None
                if stream is not None:
                    stream.error = InvalidRequestError(msg.message)
                    stream.event.set()
            elif isinstance(msg, UtilityResult):
                fut = self._utility.pop(msg.call_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg.result)
            elif isinstance(msg, EngineDead):
                self._mark_dead(f"engine core died: {msg.message}")
                return

    def _parent_of(self, child_id: str) -> str | None:
        for rid, stream in self.streams.items():
            if child_id in stream.child_ids:
                return rid
        return None

    def _deliver(self, out: RequestOutput, now: float) -> None:
        stream = self.streams.get(out.request_id)
        if stream is None:
            return
        num_tokens = sum(len(c.token_ids) for c in out.outputs)
        new = num_tokens - stream.num_tokens
        m = self.metrics
        if new > 0:
            if stream.first_token_time is None:
                stream.first_token_time = now
                m.record_first_token(stream.num_prompt_tokens, now - stream.arrival)
                m.record_tokens(new, None)
            else:
                m.record_tokens(new, (now - stream.last_token_time) / new)
            stream.last_token_time = now
            stream.num_tokens = num_tokens
        if out.finished:
            for c in out.outputs:
                decode = (stream.last_token_time or now) - (stream.first_token_time or now)
                m.record_finished(c.finish_reason or "stop", now - stream.arrival, stream.num_prompt_tokens,
                                  len(c.token_ids), decode)
        stream.latest = out
        stream.event.set()

    async def _watch_process(self) -> None:
        while self.proc.is_alive():
            await asyncio.sleep(0.5)
        self._mark_dead(f"the engine-core process exited with code {self.proc.exitcode}")

    def _mark_dead(self, why: str) -> None:
        if self.dead:
            return
        self.dead = why
        logger.error("%s", why)
        for stream in self.streams.values():
            stream.error = EngineDeadError(why)
            stream.event.set()
        if self.on_dead is not None:
            self.on_dead(why)
