"""The engine-core process: receives requests over ZMQ, steps the engine, sends outputs back.

The loop never waits on HTTP: it drains whatever arrived, runs one step, publishes the outputs, and blocks
only when it has nothing to do. Any exception ends the process non-zero after telling the API process why.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import traceback

import msgspec
import zmq

from m2serve import envs
from m2serve.config import EngineConfig
from m2serve.core.engine_core import EngineCore
from m2serve.core.messages import (AbortRequests, EngineCoreOutputs, EngineCoreRequest, EngineDead, EngineReady,
                                   RequestRejected, ToEngine, UtilityCall, UtilityResult)
from m2serve.core.request import Request
from m2serve.errors import M2ServeError

logger = logging.getLogger("m2serve.engine")


def run_engine_core(config: EngineConfig, input_addr: str, output_addr: str, num_threads: int | None = None,
                    cpus: tuple[int, ...] | None = None) -> None:
    """Entry point of the engine-core process (multiprocessing target)."""
    logging.basicConfig(level=envs.log_level(),
                        format="%(levelname)s %(asctime)s [engine] %(message)s")
    ctx = zmq.Context()
    inbox = ctx.socket(zmq.PULL)
    inbox.connect(input_addr)
    outbox = ctx.socket(zmq.PUSH)
    outbox.connect(output_addr)
    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder(ToEngine)
    try:
        if cpus:
            from m2serve.executor.cpu_binding import bind_this_process
            bind_this_process(cpus, threads=num_threads is None)    # one intra-op thread per bound CPU
        if num_threads:
            import torch
            torch.set_num_threads(num_threads)
        engine = EngineCore(config)
        outbox.send(enc.encode(EngineReady(engine.num_blocks, config.cache.block_size,
                                           config.scheduler.max_model_len, str(engine.runner.dtype))))
        _loop(engine, inbox, outbox, enc, dec)
    except Exception as e:  # noqa: BLE001 - any fault ends the engine loudly
        msg = f"{type(e).__name__}: {e}"
        logger.error("engine core died: %s\n%s", msg, traceback.format_exc())
        try:
            outbox.send(enc.encode(EngineDead(msg)), flags=zmq.NOBLOCK)
            time.sleep(0.2)
        finally:
            sys.exit(1)
    finally:
        outbox.close(linger=1000)
        inbox.close(linger=0)
        ctx.term()


def _loop(engine: EngineCore, inbox, outbox, enc, dec) -> None:
    poller = zmq.Poller()
    poller.register(inbox, zmq.POLLIN)
    parent = os.getppid()
    while True:
        # Block only when idle; otherwise just drain what is queued.
        timeout = 0 if engine.has_unfinished_requests() else 1000
        while poller.poll(timeout):
            if _handle(engine, dec.decode(inbox.recv()), outbox, enc) == "shutdown":
                return
            timeout = 0
        if not engine.has_unfinished_requests():
            if os.getppid() != parent:   # the API server is gone (killed): do not linger
                logger.warning("API server process exited; engine core stopping")
                return
            continue
        outputs = engine.step()
        outbox.send(enc.encode(EngineCoreOutputs(outputs, engine.stats(), time.time())))


def _handle(engine: EngineCore, msg, outbox, enc) -> str | None:
    if isinstance(msg, EngineCoreRequest):
        req = Request(msg.request_id, msg.prompt_token_ids, msg.sampling_params, msg.eos_token_ids,
                      engine.config.scheduler.max_model_len, msg.arrival_time)
        try:
            engine.add_request(req)
        except M2ServeError as e:
            outbox.send(enc.encode(RequestRejected(msg.request_id, str(e))))
    elif isinstance(msg, AbortRequests):
        engine.abort_requests(msg.request_ids)
        # Report the aborts so the front end can close the streams it still has open.
        outbox.send(enc.encode(EngineCoreOutputs([], engine.stats(), time.time())))
    elif isinstance(msg, UtilityCall):
        if msg.method == "shutdown":
            return "shutdown"
        if msg.method == "reset_prefix_cache":
            outbox.send(enc.encode(UtilityResult(msg.call_id, engine.scheduler.kv.pool.reset_prefix_cache())))
        else:
            outbox.send(enc.encode(UtilityResult(msg.call_id, False)))
    return None
