"""`m2serve bench serve | offline | latency` end to end: the seed's command against a real `m2serve serve` process
of the tiny model, and the offline benchmarks in process."""
import argparse
import importlib.util
import json

import pytest

from m2serve.bench import cli as bench_cli
from m2serve.cli.main import main
from tests.e2e.conftest import ServerProcess


def bench_parser():
    p = argparse.ArgumentParser(prog="m2serve bench")
    bench_cli.make_parser(p)
    return p


def test_seed_command_parses_with_the_abbreviated_flag():
    args = bench_parser().parse_args(["serve", "--model", "/m", "--dataset-name", "random", "--random-input", "200",
                                      "--num-prompts", "200", "--request-rate", "1", "--save-result",
                                      "--result-dir", "./"])
    assert (args.random_input_len, args.num_prompts, args.request_rate) == (200, 200, 1.0)
    assert args.save_result and args.result_dir == "./" and args.random_output_len == 128
    args = bench_parser().parse_args(["serve", "--random_output_len", "7", "--max_concurrency", "3",
                                      "--goodput", "ttft:5", "tpot:1", "--extra-body", '{"top_k": 1}'])
    assert args.random_output_len == 7 and args.max_concurrency == 3 and args.goodput == ["ttft:5", "tpot:1"]
    assert args.extra_body == {"top_k": 1} and args.request_rate == float("inf") and args.num_prompts == 1000
    args = bench_parser().parse_args(["latency", "--batch_size", "4", "--num-iters", "2"])
    assert args.batch_size == 4 and args.input_len == 32 and args.output_len == 128 and args.num_iters_warmup == 10


@pytest.fixture(scope="module")
def bench_server(tiny_model_dir):
    s = ServerProcess(tiny_model_dir, "--dtype", "float32", "--kv-cache-memory-bytes", "64000000",
                      "--max-model-len", "512", "--seed", "0")
    yield s
    s.stop()


def test_bench_serve_against_a_real_server(bench_server, tiny_model_dir, tmp_path, capsys):
    argv = ["bench", "serve", "--model", str(tiny_model_dir), "--port", str(bench_server.port),
            "--dataset-name", "random", "--random-input", "16", "--random-output-len", "5", "--num-prompts", "6",
            "--request-rate", "50", "--max-concurrency", "2", "--save-result", "--result-dir", str(tmp_path),
            "--metric-percentiles", "50,99", "--percentile-metrics", "ttft,tpot,itl,e2el", "--goodput", "e2el:60000",
            "--disable-tqdm", "--plot", "--temperature", "0"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "{:=^50}".format(" Serving Benchmark Result ") in printed
    assert "{:<40} {:<10}".format("Successful requests:", 6) in printed
    assert "Maximum request concurrency:" in printed and "P99 E2EL (ms):" in printed
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and files[0].name.startswith("openai-50.0qps-concurrency2-")
    result = json.loads(files[0].read_text())
    assert result["completed"] == 6 and result["failed"] == 0 and result["num_prompts"] == 6
    assert result["total_input_tokens"] == 6 * 16 and result["total_output_tokens"] == 6 * 5     # ignore_eos
    assert result["request_goodput"] == pytest.approx(result["request_throughput"])
    assert 1 <= result["max_concurrent_requests"] <= 2
    for key in ("date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "request_rate",
                "burstiness", "max_concurrency", "duration", "total_token_throughput", "output_throughput",
                "max_output_tokens_per_s", "rtfx", "latencies", "queue_times", "mean_ttft_ms", "median_tpot_ms",
                "std_itl_ms", "p50_e2el_ms", "p99_ttft_ms"):
        assert key in result, key
    assert "ttfts" not in result and "generated_texts" not in result      # only with --save-detailed
    if importlib.util.find_spec("matplotlib") is not None:
        assert files[0].with_suffix(".png").is_file()


def test_bench_serve_chat_detailed(bench_server, tiny_model_dir, tmp_path):
    argv = ["bench", "serve", "--backend", "openai-chat", "--port", str(bench_server.port), "--random-input-len",
            "8", "--random-output-len", "3", "--num-prompts", "3", "--save-result", "--save-detailed",
            "--result-dir", str(tmp_path), "--result-filename", "chat.json", "--disable-tqdm", "--label", "chat"]
    assert main(argv) == 0      # no --model: the first model of /v1/models, tokenizer from its root
    result = json.loads((tmp_path / "chat.json").read_text())
    assert result["completed"] == 3 and result["label"] == "chat" and result["backend"] == "openai-chat"
    assert result["model_id"] == str(tiny_model_dir) and result["request_rate"] == "inf"
    assert result["output_lens"] == [3, 3, 3] and all(len(i) <= 2 for i in result["itls"])
    assert all(n > 8 for n in result["input_lens"])                       # usage.prompt_tokens: with the template


def test_bench_offline_and_latency_smoke(tiny_model_dir, tmp_path, capsys):
    common = ["--model", str(tiny_model_dir), "--dtype", "float32", "--kv-cache-memory-bytes", "32000000",
              "--disable-tqdm"]
    off = tmp_path / "offline.json"
    assert main(["bench", "offline", *common, "--input-len", "16", "--output-len", "4", "--num-prompts", "4",
                 "--output-json", str(off)]) == 0
    r = json.loads(off.read_text())
    assert r["num_requests"] == 4 and r["total_input_tokens"] == 64 and r["total_output_tokens"] == 16
    assert r["roofline"]["bytes"] > 0 and 0 < r["roofline"]["bandwidth_fraction"]
    printed = capsys.readouterr().out
    assert "Throughput:" in printed and "achieved bandwidth" in printed and "GFLOP/s" in printed
    lat = tmp_path / "latency.json"
    assert main(["bench", "latency", *common, "--input-len", "8", "--output-len", "4", "--batch-size", "2",
                 "--num-iters-warmup", "1", "--num-iters", "2", "--output-json", str(lat)]) == 0
    r = json.loads(lat.read_text())
    assert len(r["latencies"]) == 2 and set(r["percentiles"]) == {"10", "25", "50", "75", "90", "99"}
    assert r["decode_steps"] == 2 * 3 and r["mean_decode_step_ms"] > 0
    assert r["roofline_decode_step"]["measured_over_bound"] > 0
    printed = capsys.readouterr().out
    assert "Avg latency:" in printed and "Decode step roofline" in printed and "measured / bound" in printed
