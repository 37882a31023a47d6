"""`m2serve serve [MODEL]`: the flags of `vllm serve` that the seed deployment uses, same names and meanings.

Flags whose feature m2serve does not have yet stop startup with a message naming the flag and value; knobs
that only mean something on Ascend NPUs are logged as not applicable and startup goes on.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

from m2serve import envs
from m2serve.cli.args import add, add_bool, compilation_arg, json_arg, size_arg
from m2serve.config import BUNDLED_MODEL, KV_CACHE_DTYPE_CHOICES, KV_CACHE_DTYPE_UNBUILT, KV_CACHE_DTYPES, EngineConfig
from m2serve.executor.cpu_binding import CpuBinding, plan_cpu_binding

logger = logging.getLogger("m2serve.serve")

# --additional-config keys that exist for Ascend NPUs (vllm-ascend); meaningless on CPU/CUDA.
ASCEND_ADDITIONAL_CONFIG = {"enable_fused_mc2", "enable_flashcomm1", "enable_flashcomm", "weight_nz_mode",
                            "ascend_scheduler_config", "torchair_graph_config", "enable_shared_expert_dp",
                            "multistream_overlap_shared_expert", "enable_weight_nz_layout", "lmhead_tensor_parallel_size",
                            "oproj_tensor_parallel_size", "enable_prefetch", "dynamic_eplb", "refresh",
                            "layer_sharding", "enable_npugraph_ex"}
# Keys m2serve understands (performance knobs applied by the CPU engine: executor/cpu_binding.py).
KNOWN_ADDITIONAL_CONFIG = {"enable_cpu_binding"}


class StartupError(SystemExit):
    """A flag m2serve cannot honour; the message names it. Exits with status 2 like argparse errors."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message


def make_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="m2serve serve")
    p.add_argument("model_tag", nargs="?", default=None, metavar="MODEL",
                   help="model folder (Hugging Face layout); default: the bundled models/m2-tiny")
    add(p, "--model", default=None, help="model folder (same as the positional MODEL)")
    add(p, "--served-model-name", nargs="+", default=None, help="names accepted in `model`; the first is reported")
    add(p, "--host", default=None, help="bind address (default: all interfaces)")
    add(p, "--port", type=int, default=8000)
    add(p, "--api-key", nargs="+", action="extend", default=None, help="bearer token(s) guarding /v1 routes")
    add(p, "--trust-remote-code", action="store_true", help="accepted; m2serve never runs code from a checkpoint")
    add(p, "--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16", "half", "float", "bf16"])
    add(p, "--kv-cache-dtype", default="auto", choices=KV_CACHE_DTYPE_CHOICES,
        help="auto: the compute dtype; bfloat16: half the cache bytes when computing in fp32 (fp8: not built)")
    add(p, "--quantization", "-q", default=None,
        help="quantization method of the checkpoint: 'ascend' for msModelSlim W8A8 / W8A8_DYNAMIC / C8 folders")
    add(p, "--max-model-len", type=size_arg, default=None)
    add(p, "--max-num-seqs", type=int, default=256)
    add(p, "--max-num-batched-tokens", type=size_arg, default=None)
    add(p, "--gpu-memory-utilization", type=float, default=0.9)
    add(p, "--kv-cache-memory-bytes", type=size_arg, default=None)
    add(p, "--num-gpu-blocks-override", type=int, default=None)
    add(p, "--block-size", type=int, default=16)
    add_bool(p, "--enable-prefix-caching", True, "reuse KV blocks of shared prompt prefixes")
    add(p, "--enable-chunked-prefill", action="store_true", help="accepted; chunked prefill is always on")
    add(p, "--seed", type=int, default=0)
    add(p, "--enforce-eager", action="store_true", help="never compile the model")
    add(p, "--batch-invariant", action="store_true", default=None,
        help="bitwise-identical results whatever the batch (slower; env M2SERVE_BATCH_INVARIANT=1)")
    add(p, "--compilation-config", "-O", type=compilation_arg, default=None)
    add(p, "--async-scheduling", action="store_true")
    add(p, "--additional-config", type=json_arg("--additional-config"), default=None)
    add(p, "--model-loader-extra-config", type=json_arg("--model-loader-extra-config"), default=None)
    add(p, "--tensor-parallel-size", "-tp", type=int, default=1)
    add(p, "--data-parallel-size", "-dp", type=int, default=1)
    add(p, "--data-parallel-rank", "-dpn", type=int, default=None)
    add(p, "--data-parallel-address", "-dpa", default=None)
    add(p, "--data-parallel-rpc-port", "-dpp", type=int, default=None)
    add(p, "--data-parallel-size-local", "-dpl", type=int, default=None)
    add(p, "--data-parallel-start-rank", "-dpr", type=int, default=None)
    add(p, "--enable-expert-parallel", action="store_true")
    add(p, "--decode-context-parallel-size", "-dcp", type=int, default=1)
    add(p, "--prefill-context-parallel-size", "-pcp", type=int, default=1)
    add(p, "--cp-kv-cache-interleave-size", type=int, default=1)
    add(p, "--speculative-config", type=json_arg("--speculative-config"), default=None)
    add(p, "--kv-transfer-config", type=json_arg("--kv-transfer-config"), default=None)
    add(p, "--enable-auto-tool-choice", action="store_true")
    add(p, "--tool-call-parser", default=None)
    add(p, "--reasoning-parser", default=None)
    add(p, "--chat-template", default=None, help="a template file or the template text itself")
    add(p, "--default-chat-template-kwargs", type=json_arg("--default-chat-template-kwargs"), default=None)
    add(p, "--response-role", default="assistant")
    add(p, "--max-logprobs", type=int, default=20)
    add(p, "--uvicorn-log-level", default="warning")
    add(p, "--disable-log-requests", action="store_true", help="accepted (requests are not logged by default)")
    add(p, "--disable-log-stats", action="store_true")
    add(p, "--disable-uvicorn-access-log", action="store_true")
    return p


@dataclass
class ServerConfig:
    engine: EngineConfig
    served_model_names: list[str]
    host: str | None = None
    port: int = 8000
    api_keys: list[str] = field(default_factory=list)
    enable_auto_tool_choice: bool = False
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    chat_template: str | None = None
    default_chat_template_kwargs: dict = field(default_factory=dict)
    response_role: str = "assistant"
    max_logprobs: int = 20
    uvicorn_log_level: str = "warning"
    disable_log_stats: bool = False
    engine_threads: int | None = None
    cpu_binding: CpuBinding | None = None        # enable_cpu_binding: API server and engine on separate CPUs


def _refuse(flag: str, value, why: str) -> StartupError:
    return StartupError(f"{flag} {value}: {why}")


def build_server_config(args: argparse.Namespace) -> ServerConfig:
    """Check every flag, log the not-applicable ones, and build the configs. Raises StartupError."""
    from m2serve.parsers import REASONING_PARSERS, TOOL_PARSERS

    not_built = "is not built in m2serve yet"
    if args.model_tag and args.model and args.model_tag != args.model:
        raise StartupError(f"MODEL {args.model_tag!r} and --model {args.model!r} disagree")
    model = args.model_tag or args.model
    if args.quantization is not None and str(args.quantization).lower() != "ascend":
        raise _refuse("--quantization", args.quantization, "is not supported: m2serve loads msModelSlim checkpoints "
                      "with --quantization ascend, and unquantized (bf16/fp32) or block-FP8 ones without the flag")
    if args.quantization is not None:
        from m2serve.layers.quant.ascend import DESCRIPTION_FILE
        desc = Path(model or BUNDLED_MODEL) / DESCRIPTION_FILE
        if not desc.is_file():
            raise _refuse("--quantization", args.quantization, f"needs {desc}, which does not exist (msModelSlim "
                          "layout; `m2serve quantize` writes one)")
    if args.tensor_parallel_size != 1:
        raise _refuse("--tensor-parallel-size", args.tensor_parallel_size, f"tensor parallelism {not_built}")
    if args.data_parallel_size != 1:
        raise _refuse("--data-parallel-size", args.data_parallel_size, f"data parallelism {not_built}")
    for flag in ("data_parallel_rank", "data_parallel_address", "data_parallel_rpc_port", "data_parallel_size_local",
                 "data_parallel_start_rank"):
        value = getattr(args, flag)
        if value is not None and not (flag.endswith(("rank", "start_rank")) and value == 0) \
                and not (flag == "data_parallel_size_local" and value == 1):
            raise _refuse("--" + flag.replace("_", "-"), value, f"data parallelism {not_built}")
    if args.enable_expert_parallel:
        # One rank holds every expert: EP over a world of one is the plain MoE, so this is exact, not ignored.
        logger.info("--enable-expert-parallel: one rank, every expert is local")
    for flag in ("decode_context_parallel_size", "prefill_context_parallel_size"):
        if getattr(args, flag) != 1:
            raise _refuse("--" + flag.replace("_", "-"), getattr(args, flag), f"context parallelism {not_built}")
    if args.kv_cache_dtype != "auto" and args.kv_cache_dtype not in KV_CACHE_DTYPES:
        raise _refuse("--kv-cache-dtype", args.kv_cache_dtype, KV_CACHE_DTYPE_UNBUILT)
    if args.speculative_config is not None:
        raise _refuse("--speculative-config", args.speculative_config, f"speculative decoding {not_built}")
    if args.kv_transfer_config is not None:
        raise _refuse("--kv-transfer-config", args.kv_transfer_config, f"KV transfer (PD disaggregation) {not_built}")
    if args.tool_call_parser is not None and args.tool_call_parser not in TOOL_PARSERS:
        raise _refuse("--tool-call-parser", args.tool_call_parser, f"unknown parser; known: {sorted(TOOL_PARSERS)}")
    if args.enable_auto_tool_choice and args.tool_call_parser is None:
        raise StartupError("--enable-auto-tool-choice requires --tool-call-parser")
    if args.reasoning_parser is not None and args.reasoning_parser not in REASONING_PARSERS:
        raise _refuse("--reasoning-parser", args.reasoning_parser, f"unknown parser; known: {sorted(REASONING_PARSERS)}")

    _log_not_applicable(args)
    binding = None
    if (args.additional_config or {}).get("enable_cpu_binding"):
        binding = plan_cpu_binding()
    dtype = {"half": "float16", "float": "float32", "bf16": "bfloat16"}.get(args.dtype, args.dtype)
    engine = EngineConfig.create(
        model, dtype=dtype, max_model_len=args.max_model_len, seed=args.seed, block_size=args.block_size,
        kv_cache_memory_bytes=args.kv_cache_memory_bytes, gpu_memory_utilization=args.gpu_memory_utilization,
        num_gpu_blocks_override=args.num_gpu_blocks_override, enable_prefix_caching=args.enable_prefix_caching,
        max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
        batch_invariant=args.batch_invariant, quantization=args.quantization,
        async_scheduling=args.async_scheduling, compilation_config=args.compilation_config,
        enforce_eager=args.enforce_eager, model_loader_extra_config=args.model_loader_extra_config,
        kv_cache_dtype=args.kv_cache_dtype)
    names = args.served_model_name or [engine.model.path.name if args.model_tag is None and args.model is None
                                       else model]
    chat_template = args.chat_template
    if chat_template is not None:
        p = Path(chat_template)
        chat_template = p.read_text() if p.is_file() else chat_template
    return ServerConfig(
        engine=engine, served_model_names=names, host=args.host, port=args.port,
        api_keys=list(args.api_key or envs.api_keys()), enable_auto_tool_choice=args.enable_auto_tool_choice,
        tool_call_parser=args.tool_call_parser, reasoning_parser=args.reasoning_parser, chat_template=chat_template,
        default_chat_template_kwargs=args.default_chat_template_kwargs or {}, response_role=args.response_role,
        max_logprobs=args.max_logprobs, uvicorn_log_level=args.uvicorn_log_level,
        disable_log_stats=args.disable_log_stats, cpu_binding=binding)


def _log_not_applicable(args: argparse.Namespace) -> None:
    for name in envs.ascend_only_variables():
        logger.warning("environment variable %s is Ascend-only: not applicable here", name)
    for key, value in (args.additional_config or {}).items():
        if key in ASCEND_ADDITIONAL_CONFIG:
            logger.warning("--additional-config %s=%s is Ascend-only: not applicable here", key, value)
        elif key in KNOWN_ADDITIONAL_CONFIG:
            logger.info("--additional-config %s=%s", key, value)
        else:
            logger.warning("--additional-config %s=%s is not a key m2serve knows: not applicable here", key, value)
    if args.trust_remote_code:
        logger.info("--trust-remote-code: accepted; m2serve never runs code from a checkpoint")
    if args.cp_kv_cache_interleave_size != 1:
        logger.info("--cp-kv-cache-interleave-size %d: only used with context parallelism (size 1 here)",
                    args.cp_kv_cache_interleave_size)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    return run(args, parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    logging.basicConfig(level=envs.log_level(), format="%(levelname)s %(asctime)s [%(name)s] %(message)s")
    try:
        config = build_server_config(args)
    except StartupError as e:
        parser.exit(2, f"m2serve serve: error: {e.message}\n")
    except Exception as e:  # config errors name the bad value
        parser.exit(2, f"m2serve serve: error: {e}\n")
    from m2serve.entrypoints.openai.api_server import run_server
    return run_server(config)
