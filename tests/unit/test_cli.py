"""`m2serve serve` flags: vLLM's names in both spellings; unbuilt features refused by name; Ascend knobs noted."""
import logging

import pytest

from m2serve.cli.serve import StartupError, build_server_config, make_parser


def parse(model_dir, *flags):
    return make_parser().parse_args([str(model_dir), *flags])


def test_seed_flags_parse_in_both_spellings(tiny_model_dir, caplog, monkeypatch):
    monkeypatch.setenv("HCCL_BUFFSIZE", "1024")
    monkeypatch.setenv("TASK_QUEUE_ENABLE", "1")
    args = parse(tiny_model_dir, "--served-model-name", "MiniMax-M2.7", "--host", "0.0.0.0", "--port", "8000",
                 "--trust-remote-code", "--compilation-config", '{"cudagraph_mode": "FULL_DECODE_ONLY"}',
                 "--async-scheduling", "--additional-config",
                 '{"enable_cpu_binding":true, "enable_fused_mc2":true, "enable_flashcomm1":true, "weight_nz_mode":true}',
                 "--enable-expert-parallel", "--max-num-seqs", "48", "--max-model-len", "1024",
                 "--max_num_batched_tokens", "16384", "--gpu-memory-utilization", "0.85", "--seed", "1024",
                 "--model-loader-extra-config", '{"enable_multithread_load":true,"num_threads":16}',
                 "--enable-auto-tool-choice", "--tool-call-parser", "minimax_m2",
                 "--reasoning-parser", "minimax_m2_append_think", "--no-enable-prefix-caching")
    with caplog.at_level(logging.INFO):
        cfg = build_server_config(args)
    assert cfg.served_model_names == ["MiniMax-M2.7"]
    assert cfg.engine.scheduler.max_num_seqs == 48 and cfg.engine.scheduler.max_num_batched_tokens == 16384
    assert cfg.engine.scheduler.max_model_len == 1024 and cfg.engine.model.seed == 1024
    assert cfg.engine.cache.enable_prefix_caching is False and cfg.engine.cache.gpu_memory_utilization == 0.85
    assert cfg.reasoning_parser == "minimax_m2_append_think" and cfg.tool_call_parser == "minimax_m2"
    log = caplog.text
    for knob in ("HCCL_BUFFSIZE", "TASK_QUEUE_ENABLE", "enable_fused_mc2", "enable_flashcomm1", "weight_nz_mode"):
        assert f"{knob}" in log and "not applicable" in log


@pytest.mark.parametrize("flags,named", [
    (["--tensor-parallel-size", "4"], "--tensor-parallel-size 4"),
    (["--data-parallel-size", "4"], "--data-parallel-size 4"),
    (["--speculative_config", '{"method": "eagle3", "model": "/x", "num_speculative_tokens": 3}'],
     "--speculative-config"),
    (["--kv-transfer-config", '{"kv_connector": "MooncakeConnectorV1"}'], "--kv-transfer-config"),
    (["--quantization", "ascend"], "--quantization ascend"),
    (["--kv-cache-dtype", "fp8"], "--kv-cache-dtype fp8"),
    (["--prefill-context-parallel-size", "2"], "--prefill-context-parallel-size 2"),
    (["--tool-call-parser", "hermes"], "--tool-call-parser hermes"),
    (["--reasoning-parser", "deepseek_r1"], "--reasoning-parser deepseek_r1"),
    (["--enable-auto-tool-choice"], "--enable-auto-tool-choice"),
])
def test_unbuilt_or_unknown_features_are_refused_by_name(tiny_model_dir, flags, named):
    with pytest.raises(StartupError) as e:
        build_server_config(parse(tiny_model_dir, *flags))
    assert named in e.value.message


def test_bad_json_flag_names_itself(tiny_model_dir, capsys):
    with pytest.raises(SystemExit):
        parse(tiny_model_dir, "--additional-config", "{not json")
    assert "--additional-config" in capsys.readouterr().err


def test_cli_process_exits_2_with_message(tiny_model_dir):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "m2serve.cli.main", "serve", str(tiny_model_dir),
                        "--tensor-parallel-size", "8"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--tensor-parallel-size 8" in r.stderr


def test_compilation_and_async_flags_reach_the_engine(tiny_model_dir):
    cfg = build_server_config(parse(tiny_model_dir, "-O3", "--async-scheduling"))
    assert cfg.engine.compilation.enabled and cfg.engine.scheduler.async_scheduling
    cfg = build_server_config(parse(tiny_model_dir, "--compilation-config", '{"cudagraph_mode": "FULL_DECODE_ONLY"}',
                                    "--enforce-eager"))
    assert not cfg.engine.compilation.enabled
    assert build_server_config(parse(tiny_model_dir, "-O", "0")).engine.compilation.level == 0
    with pytest.raises(Exception, match="cudagraph_mode"):
        build_server_config(parse(tiny_model_dir, "--compilation-config", '{"cudagraph_mode": "SOMETIMES"}'))
    cfg = build_server_config(parse(tiny_model_dir, "--model-loader-extra-config",
                                    '{"enable_multithread_load": true, "num_threads": 4}'))
    assert cfg.engine.model.load_threads == 4


def test_cpu_binding_splits_api_and_engine_cpus(tiny_model_dir, monkeypatch, caplog):
    import os

    from m2serve.executor import cpu_binding

    flags = ("--additional-config", '{"enable_cpu_binding": true}')
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    cfg = build_server_config(parse(tiny_model_dir, *flags))
    assert cfg.cpu_binding == cpu_binding.CpuBinding(api_cpus=(5,), engine_cpus=(0, 1, 2, 3, 4))
    assert build_server_config(parse(tiny_model_dir)).cpu_binding is None          # off unless asked
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    with caplog.at_level(logging.WARNING):
        assert build_server_config(parse(tiny_model_dir, *flags)).cpu_binding is None
    assert "not binding" in caplog.text


def test_bind_this_process_pins_and_sizes_threads():
    import os

    import torch

    from m2serve.executor.cpu_binding import bind_this_process

    before, threads = os.sched_getaffinity(0), torch.get_num_threads()
    one = min(before)
    try:
        bind_this_process([one], threads=True)
        assert os.sched_getaffinity(0) == {one} and torch.get_num_threads() == 1
    finally:
        os.sched_setaffinity(0, before)
        torch.set_num_threads(threads)


def test_engine_process_binds_itself(tiny_model_dir):
    """A real engine-core process started with engine CPUs runs pinned to them."""
    import asyncio
    import os

    from m2serve.config import EngineConfig
    from m2serve.frontend.engine_client import AsyncEngineClient

    cpu = min(os.sched_getaffinity(0))

    async def run():
        client = AsyncEngineClient(EngineConfig.create(str(tiny_model_dir), dtype="float32",
                                                       kv_cache_memory_bytes=8 << 20),
                                   None, [2], "tiny", engine_cpus=(cpu,))
        await client.start(timeout=300)
        try:
            return os.sched_getaffinity(client.proc.pid)
        finally:
            await client.shutdown()

    assert asyncio.run(run()) == {cpu}
