"""The API server process: FastAPI routes over the engine client. It never runs the model."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import uuid
from typing import AsyncIterator

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

import m2serve
from m2serve.cli.serve import ServerConfig
from m2serve.entrypoints.llm import eos_token_ids_for
from m2serve.entrypoints.openai.protocol import (ChatCompletionRequest, CompletionRequest, DetokenizeRequest,
                                                 ResponsesRequest, TokenizeRequest)
from m2serve.entrypoints.openai.serving_chat import ChatHandler
from m2serve.entrypoints.openai.serving_common import ServingContext, error_body
from m2serve.entrypoints.openai.serving_completion import CompletionHandler
from m2serve.entrypoints.openai.serving_responses import ResponsesHandler
from m2serve.errors import EngineDeadError, M2ServeError
from m2serve.frontend.engine_client import AsyncEngineClient
from m2serve.frontend.tokenizer import Tokenizer

logger = logging.getLogger("m2serve.api")
AUTH_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")


def _error(e: M2ServeError, param: str | None = None) -> JSONResponse:
    return JSONResponse(e.to_openai(param), status_code=e.status_code)


class Guard:
    """API keys, the JSON content type and a dead engine, checked before routing.

    A plain ASGI middleware: Starlette's `@app.middleware("http")` would relay every streamed chunk through an extra
    task and memory stream, a cost paid once per generated token.
    """

    def __init__(self, app, config: ServerConfig, client: AsyncEngineClient):
        self.app, self.config, self.client = app, config, client

    async def __call__(self, scope, receive, send):
        refusal = self.refusal(Request(scope)) if scope["type"] == "http" else None
        if refusal is not None:
            await refusal(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def refusal(self, request: Request) -> JSONResponse | None:
        path = request.url.path
        if self.config.api_keys and request.method != "OPTIONS" and path.startswith(AUTH_PREFIXES):
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or token.strip() not in self.config.api_keys:
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
        if request.method == "POST":
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return JSONResponse(error_body("Unsupported Media Type: Only 'application/json' is allowed"), 400)
        if self.client.dead and path.startswith(AUTH_PREFIXES):
            return _error(EngineDeadError(self.client.dead))
        return None


def build_app(config: ServerConfig, client: AsyncEngineClient, tokenizer: Tokenizer) -> FastAPI:
    ctx = ServingContext(client=client, tokenizer=tokenizer, served_model_names=config.served_model_names,
                         max_model_len=config.engine.scheduler.max_model_len, max_logprobs=config.max_logprobs,
                         response_role=config.response_role, chat_template=config.chat_template,
                         default_chat_template_kwargs=config.default_chat_template_kwargs,
                         enable_auto_tool_choice=config.enable_auto_tool_choice,
                         tool_call_parser=config.tool_call_parser, reasoning_parser=config.reasoning_parser)
    chat, completion = ChatHandler(ctx), CompletionHandler(ctx)
    app = FastAPI(title="m2serve", version=m2serve.__version__)
    app.state.ctx = ctx

    app.add_middleware(Guard, config=config, client=client)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        param = None
        if errors:
            loc = errors[0].get("loc", ())
            param = ".".join(str(x) for x in loc)
        msgs = []
        for e in errors:
            text = str(e.get("msg", ""))
            msgs.append(text.removeprefix("Value error, "))
        message = msgs[0] if len(msgs) == 1 and errors[0].get("type") == "value_error" else \
            f"{len(errors)} validation error{'s' if len(errors) != 1 else ''}:\n" + "\n".join(
                f"  {{'type': {e.get('type')!r}, 'loc': {'.'.join(str(x) for x in e.get('loc', ()))!r}, "
                f"'msg': {str(e.get('msg'))!r}}}" for e in errors)
        return JSONResponse(error_body(message, "Bad Request", 400, param), status_code=400)

    @app.exception_handler(json.JSONDecodeError)
    async def on_bad_json(request: Request, exc: json.JSONDecodeError):
        return JSONResponse(error_body(f"Invalid JSON body: {exc}"), status_code=400)

    @app.exception_handler(M2ServeError)
    async def on_error(request: Request, exc: M2ServeError):
        return _error(exc)

    # -- ops ----------------------------------------------------------------------------------------
    @app.get("/health")
    async def health():
        return Response(status_code=503 if client.dead else 200)

    @app.get("/ping")
    async def ping():
        return Response(status_code=503 if client.dead else 200)

    @app.get("/version")
    async def version():
        return {"version": m2serve.__version__}

    @app.get("/metrics")
    async def metrics():
        return Response(client.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models():
        created = int(client.started_at)
        cards = [{"id": name, "object": "model", "created": created, "owned_by": "m2serve",
                  "root": str(config.engine.model.model), "parent": None, "max_model_len": ctx.max_model_len,
                  "permission": [{"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission",
                                  "created": created, "allow_create_engine": False, "allow_sampling": True,
                                  "allow_logprobs": True, "allow_search_indices": False, "allow_view": True,
                                  "allow_fine_tuning": False, "organization": "*", "group": None,
                                  "is_blocking": False}]}
                 for name in config.served_model_names]
        return {"object": "list", "data": cards}

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest):
        ctx.check_model(body.model)
        if body.messages is not None:
            prompt = tokenizer.apply_chat_template(body.messages, tools=body.tools,
                                                   add_generation_prompt=body.add_generation_prompt,
                                                   continue_final_message=body.continue_final_message,
                                                   chat_template=body.chat_template or ctx.chat_template,
                                                   **(body.chat_template_kwargs or {}))
            ids = tokenizer.encode(prompt, add_special_tokens=bool(body.add_special_tokens))
        elif body.prompt is not None:
            add = True if body.add_special_tokens is None else body.add_special_tokens
            ids = tokenizer.encode(body.prompt, add_special_tokens=add)
        else:
            return JSONResponse(error_body("Either prompt or messages must be provided."), status_code=400)
        strs = [tokenizer.id_to_token(t) for t in ids] if body.return_token_strs else None
        return {"count": len(ids), "max_model_len": ctx.max_model_len, "tokens": ids, "token_strs": strs}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest):
        ctx.check_model(body.model)
        ctx.check_token_ids(body.tokens)
        return {"prompt": tokenizer.decode(body.tokens, skip_special_tokens=False)}

    # -- generation ---------------------------------------------------------------------------------
    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, raw: Request):
        prompt, ids, params, tools = chat.prepare(body)
        rid = raw.headers.get("x-request-id") or body.request_id or uuid.uuid4().hex
        params = params.resolve(tokenizer.generation_config)
        outputs = client.generate(f"chatcmpl-{rid}", ids, params, prompt)
        if body.stream:
            return _stream(chat.stream(body, outputs, tools), outputs)
        last = None
        async with contextlib.aclosing(outputs):
            async for last in outputs:
                pass
        return chat.full_response(body, last, tools)

    responses = ResponsesHandler(ctx, chat)

    @app.post("/v1/responses")
    async def responses_create(body: ResponsesRequest, raw: Request):
        prepared = responses.prepare(body, raw.headers.get("x-request-id"))
        outputs = client.generate(prepared.id, prepared.prompt_ids, prepared.params, prepared.prompt)
        if body.stream:
            return _stream(responses.stream(prepared, outputs), outputs)
        last = None
        async with contextlib.aclosing(outputs):
            async for last in outputs:
                pass
        return responses.full_response(prepared, last)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, raw: Request):
        prepared = completion.prepare(body)
        rid = raw.headers.get("x-request-id") or body.request_id or uuid.uuid4().hex
        streams = [client.generate(f"cmpl-{rid}-{i}", ids, params.resolve(tokenizer.generation_config), text)
                   for i, (text, ids, params) in enumerate(prepared)]
        if body.stream:
            return _stream(completion.stream(body, streams), *streams)
        try:
            return await completion.full_response(body, streams)
        finally:
            for s in streams:
                await s.aclose()

    return app


def _stream(events: AsyncIterator[str], *engine_streams) -> StreamingResponse:
    """SSE response; when the client goes away, the engine requests are aborted (their KV blocks freed)."""
    async def body():
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()
            for s in engine_streams:
                await s.aclose()
    return StreamingResponse(body(), media_type="text/event-stream")


def run_server(config: ServerConfig) -> int:
    """Start the engine process, serve HTTP until stopped. Returns the process exit code."""
    # uvloop where installed (the `server` extra installs it), as uvicorn itself would pick: its event loop and
    # socket writes cost a fraction of asyncio's, paid per streamed token on the cores the engine computes on.
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(config))
    return uvloop.run(_serve(config))


async def _serve(config: ServerConfig) -> int:
    tokenizer = Tokenizer.from_dir(config.engine.model.path)
    eos = eos_token_ids_for(tokenizer, config.engine.model.generation_config, config.engine.model.arch.eos_token_id)
    binding = config.cpu_binding
    client = AsyncEngineClient(config.engine, tokenizer, eos, config.served_model_names[0],
                               engine_threads=config.engine_threads,
                               engine_cpus=binding.engine_cpus if binding else None)
    await client.start()
    if binding is not None:                                   # after the spawn: the engine binds itself
        from m2serve.executor.cpu_binding import bind_this_process
        bind_this_process(binding.api_cpus)
    app = build_app(config, client, tokenizer)
    uv = uvicorn.Server(uvicorn.Config(app, host=config.host or "0.0.0.0", port=config.port,
                                       log_level=config.uvicorn_log_level, timeout_keep_alive=5,
                                       access_log=False))
    exit_code = 0

    def on_dead(why: str) -> None:
        nonlocal exit_code
        exit_code = 1
        logger.error("shutting down: %s", why)
        # Let in-flight requests see their 503/500 first, then stop.
        asyncio.get_running_loop().call_later(1.0, setattr, uv, "should_exit", True)

    client.on_dead = on_dead
    logger.info("serving %s on http://%s:%d", ", ".join(config.served_model_names), config.host or "0.0.0.0",
                config.port)
    try:
        await uv.serve()
    finally:
        await client.shutdown()
    return exit_code
