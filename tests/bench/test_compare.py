"""`m2serve bench compare`: table and ratio formatting, peer detection, the GGUF dtype reader, the transformers
offline runner, and a small end to end run of m2serve alone against the tiny random model."""
import argparse
import json
import os
import struct

import pytest

from m2serve.bench import cli as bench_cli
from m2serve.bench import compare as C
from m2serve.cli.main import main


def compare_args(*argv):
    p = argparse.ArgumentParser(prog="m2serve bench")
    bench_cli.make_parser(p)
    return p.parse_args(["compare", *argv])


# ---- parser ----------------------------------------------------------------------------------------------------
def test_defaults_are_the_small_cpu_workload_and_serve_flags_pass_through():
    a = compare_args()
    assert (a.dataset_name, a.random_input_len, a.random_output_len, a.num_prompts, a.max_concurrency) == \
        ("random", 200, 128, 64, 16)
    assert a.ignore_eos and a.result_dir == "benchmarks/results" and a.dtype == "auto" and a.model is None
    assert C.parse_peers(a.peers) == ["m2serve", "vllm", "llama.cpp", "transformers"]
    a = compare_args("--model", "/m", "--peers", "m2serve,llama", "--num-prompts", "3", "--request-rate", "2",
                     "--m2serve-args=--max-num-seqs 8", "--vllm_args", "--block-size 32", "--temperature", "0.5",
                     "--metric-percentiles", "50", "--extra-body", '{"top_k": 1}')
    assert a.num_prompts == 3 and a.request_rate == 2.0 and a.temperature == 0.5 and a.extra_body == {"top_k": 1}
    assert a.m2serve_args == "--max-num-seqs 8" and a.vllm_args == "--block-size 32"
    assert C.parse_peers(a.peers) == ["m2serve", "llama.cpp"]
    C.normalize_workload(a)
    assert a.metric_percentiles == "50,99" and {"ttft", "tpot"} <= set(a.percentile_metrics.split(","))
    assert a.temperature == 0.5                        # given: kept; not given: greedy
    b = compare_args("--input-len", "10", "--output-len", "3")
    C.normalize_workload(b)
    assert (b.random_input_len, b.random_output_len, b.temperature) == (10, 3, 0.0)
    for flag in ("--save-result", "--result-filename", "--port", "--base-url", "--backend"):
        with pytest.raises(SystemExit):
            compare_args(flag, "x")


def test_equivalent_command_lists_the_non_default_flags():
    a = compare_args("--model", "m", "--num-prompts", "3", "--m2serve-args=--max-num-seqs 8", "--plot",
                     "--extra-body", '{"top_k": 1}', "--goodput", "ttft:5", "tpot:1")
    cmd = C.equivalent_command(a)
    assert cmd == ("m2serve bench compare --model m '--m2serve-args=--max-num-seqs 8' --num-prompts 3 "
                   "--extra-body '{\"top_k\": 1}' --goodput ttft:5 tpot:1 --plot")
    assert C.equivalent_command(compare_args()) == "m2serve bench compare"
    import shlex
    again = compare_args(*shlex.split(cmd)[3:])
    assert vars(again) == vars(a)


def test_unknown_peer_is_refused():
    with pytest.raises(ValueError, match="unknown engine 'sglang'"):
        C.parse_peers("m2serve,sglang")
    with pytest.raises(ValueError):
        C.parse_peers(" , ")


# ---- table -----------------------------------------------------------------------------------------------------
def rows():
    return [C.Row("m2serve", "bfloat16", completed=64, num_prompts=64, output_tok_s=200.0, mean_ttft_ms=100.0,
                  p99_ttft_ms=300.0, mean_tpot_ms=10.0, p99_tpot_ms=12.5),
            C.Row("vllm", "bfloat16", completed=64, num_prompts=64, output_tok_s=100.0, mean_ttft_ms=250.0,
                  p99_ttft_ms=900.0, mean_tpot_ms=20.0, p99_tpot_ms=30.0),
            C.Row("llama.cpp", status="not installed (run benchmarks/peers/setup_llama_cpp.sh m)"),
            C.Row("transformers", "bfloat16", "offline", completed=64, num_prompts=64, output_tok_s=50.0,
                  mean_ttft_ms=80.0, p99_ttft_ms=81.0, mean_tpot_ms=40.0, p99_tpot_ms=41.0)]


def test_ratios_are_engine_over_m2serve():
    assert C.ratio(100.0, 200.0) == 0.5 and C.ratio(1.0, 0.0) is None and C.ratio(None, 1.0) is None
    assert C.fmt_ratio(None) == "n/a" and C.fmt_ratio(2.0) == "2.00x" and C.fmt_num(None) == "-"
    cells = {c[0]: c for c in C.table_cells(rows())}
    assert cells["m2serve"][-3:] == ["1.00x", "1.00x", "1.00x"]
    assert cells["vLLM (CPU)"][3:] == ["64/64", "100.0", "250.00", "900.00", "20.00", "30.00", "0.50x", "2.50x",
                                       "2.00x"]
    assert cells["llama.cpp"][3].startswith("not installed") and set(cells["llama.cpp"][4:]) == {"-"}
    t = cells["transformers"]
    assert t[2] == "offline" and t[4] == "50.0 (offline)" and t[5] == "80.00 (offline)"
    assert t[-3:] == ["0.25x (offline)", "0.80x (offline)", "4.00x (offline)"]


def test_without_a_baseline_ratios_are_na():
    cells = C.table_cells([r for r in rows() if r.engine != "m2serve"])
    assert all(c[-3:] == ["n/a", "n/a", "n/a"] for c in cells if c[0] == "vLLM (CPU)")
    failed = C.table_cells([C.Row("m2serve", "float32", status="failed: boom"), rows()[1]])
    assert failed[0][3] == "failed: boom" and failed[1][-3:] == ["n/a", "n/a", "n/a"]


def test_markdown_and_text_tables():
    md = C.format_table(rows(), markdown=True).splitlines()
    assert md[0].startswith("| engine | dtype | mode | ok | output tok/s |") and len(md) == 2 + 4
    assert all(line.count(" | ") == len(C.COLUMNS) - 1 for line in md[2:])
    assert "| vLLM (CPU) | bfloat16 | serve | 64/64 | 100.0 | 250.00 |" in md[3]
    text = C.format_table(rows()).splitlines()
    assert text[0].split()[:3] == ["engine", "dtype", "mode"] and len(text) == 2 + 4
    assert "not installed (run benchmarks/peers/setup_llama_cpp.sh m)" in text[4]
    assert text[3].rstrip().endswith("2.00x")


def test_row_from_a_bench_serve_result():
    r = C.Row.from_result("vllm", "float32", {"completed": 3, "num_prompts": 3, "output_throughput": 9.5,
                                              "mean_ttft_ms": 1.0, "p99_ttft_ms": 2.0, "mean_tpot_ms": 3.0,
                                              "p99_tpot_ms": 4.0}, result_file="vllm.json")
    assert (r.output_tok_s, r.p99_tpot_ms, r.ok, r.result_file) == (9.5, 4.0, True, "vllm.json")


def test_cpu_ranges():
    assert C.cpu_ranges([0, 1]) == "0-1" and C.cpu_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert C.cpu_ranges([3]) == "3"


# ---- peers -----------------------------------------------------------------------------------------------------
def _exe(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


def test_peer_detection(tmp_path):
    model = tmp_path / "m2-x"
    model.mkdir()
    a = compare_args("--vllm-venv", str(tmp_path / "vllm"), "--llama-venv", str(tmp_path / "llama"),
                     "--gguf", str(tmp_path / "m.gguf"))
    peers = C.detect_peers(["m2serve", "vllm", "llama.cpp"], a, model)
    assert peers["m2serve"].available
    assert not peers["vllm"].available
    assert peers["vllm"].reason == "not installed (run benchmarks/peers/setup_vllm_cpu.sh)"
    assert not peers["llama.cpp"].available and peers["llama.cpp"].reason.startswith("not installed")
    _exe(tmp_path / "vllm" / "bin" / "vllm")
    _exe(tmp_path / "llama" / "bin" / "python")
    llama = C.detect_peer("llama.cpp", a, model)
    assert not llama.available and "no GGUF at" in llama.reason and str(tmp_path / "m.gguf") in llama.reason
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert C.detect_peer("vllm", a, model).available and C.detect_peer("llama.cpp", a, model).available
    assert C.default_gguf(model).name == "m2-x.gguf"       # what setup_llama_cpp.sh writes by default


def _gguf(path, kvs):
    def s(text):
        b = text.encode()
        return struct.pack("<Q", len(b)) + b
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    for key, kind, payload in kvs:
        out += s(key) + struct.pack("<I", kind) + payload
    path.write_bytes(out)


def test_gguf_dtype(tmp_path):
    f = tmp_path / "a.gguf"
    _gguf(f, [("general.architecture", 8, struct.pack("<Q", 10) + b"minimax-m2"),
              ("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, 3) + struct.pack("<3f", 0, 1, 2)),
              ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 2) + struct.pack("<Q", 1) + b"a"
               + struct.pack("<Q", 2) + b"bc"),
              ("general.file_type", 4, struct.pack("<I", 32))])
    assert C.gguf_metadata(f, {"general.file_type", "general.architecture"}) == {
        "general.file_type": 32, "general.architecture": "minimax-m2"}
    assert C.gguf_dtype(f) == "bfloat16"
    _gguf(f, [("general.file_type", 4, struct.pack("<I", 0))])
    assert C.gguf_dtype(f) == "float32"
    (tmp_path / "b.gguf").write_bytes(b"nope")
    assert C.gguf_dtype(tmp_path / "b.gguf") == "gguf"


def test_peer_commands_record_their_settings(tmp_path):
    a = compare_args("--vllm-args", "--max-num-seqs 8", "--llama-args", "--n_batch 256", "--threads", "2")
    C.normalize_workload(a)
    vllm = C.vllm_spec(a, C.Peer("vllm", True, detail={"vllm": "/v/bin/vllm"}), tmp_path, "m", "bfloat16", 512,
                       1 << 30)
    assert vllm.cmd[:3] == ["/v/bin/vllm", "serve", str(tmp_path)] and "--enforce-eager" in vllm.cmd
    assert vllm.cmd[-2:] == ["--max-num-seqs", "8"] and "--kv-cache-memory-bytes" in vllm.cmd
    assert vllm.env["VLLM_CPU_OMP_THREADS_BIND"] == C.cpu_ranges(C.usable_cpus()) and vllm.ready_path == "/health"
    gguf = tmp_path / "m.gguf"
    _gguf(gguf, [("general.file_type", 4, struct.pack("<I", 0))])
    llama = C.llama_spec(a, C.Peer("llama.cpp", True, detail={"python": "/l/bin/python", "gguf": str(gguf)}),
                         tmp_path, "m", 512, [2])
    assert llama.cmd[1:3] == ["-m", "llama_cpp.server"] and llama.dtype == "float32"
    i = llama.cmd.index("--interrupt_requests")
    assert llama.cmd[i + 1] == "False" and llama.cmd[llama.cmd.index("--n_threads") + 1] == "2"
    assert llama.extra_body == {"repeat_penalty": 1.0, "logit_bias": {"2": -1e9}}
    assert llama.settings["parallel_slots"] == 1 and llama.ready_path == "/v1/models"
    ns = C.serve_namespace(a, llama, tmp_path, "m", tmp_path / "run")
    assert (ns.base_url, ns.served_model_name, ns.result_filename) == (f"http://127.0.0.1:{llama.port}", "m",
                                                                       "llama.cpp.json")
    assert ns.extra_body["logit_bias"] == {"2": -1e9} and ns.save_result and ns.tokenizer == str(tmp_path)
    # llama_cpp.server answers 400 to an x-request-id that is not a UUID (vLLM's "bench-...-N" ids)
    assert ns.request_id_uuid and not C.serve_namespace(a, vllm, tmp_path, "m", tmp_path / "run").request_id_uuid


# ---- running engines -------------------------------------------------------------------------------------------
def test_transformers_offline_runner(tiny_model_dir):
    from m2serve.bench.datasets import SampleRequest

    reqs = [SampleRequest(None, n, 4, list(range(10, 10 + n))) for n in (6, 6, 4)]
    r = C.run_transformers(tiny_model_dir, "float32", reqs, batch_size=2, threads=1)
    assert r["num_batches"] == 2 and r["total_output_tokens"] == 12 and r["total_input_tokens"] == 16
    assert r["mean_ttft_ms"] > 0 and r["mean_tpot_ms"] > 0 and r["p99_tpot_ms"] >= r["mean_tpot_ms"] * 0.99
    assert len(r["batch_prefill_ms"]) == 2 and r["output_throughput"] > 0 and r["mode"] == "offline"


def test_compare_m2serve_alone_end_to_end(tiny_model_dir, tmp_path, capsys):
    argv = ["bench", "compare", "--model", str(tiny_model_dir), "--peers", "m2serve,vllm,llama.cpp",
            "--vllm-venv", str(tmp_path / "none"), "--llama-venv", str(tmp_path / "none"), "--dtype", "float32",
            "--num-prompts", "3", "--random-input-len", "16", "--random-output-len", "4", "--max-concurrency", "2",
            "--result-dir", str(tmp_path / "results"), "--disable-tqdm"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "bench compare" in printed and "not installed (run benchmarks/peers/setup_vllm_cpu.sh)" in printed
    (run_dir,) = (tmp_path / "results").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == ["compare.json", "compare.md", "m2serve.json", "m2serve.log"]
    raw = json.loads((run_dir / "m2serve.json").read_text())
    assert raw["completed"] == 3 and raw["total_output_tokens"] == 12 and raw["engine"] == "m2serve"
    summary = json.loads((run_dir / "compare.json").read_text())
    assert summary["machine"]["cpu_model"] and summary["machine"]["cpu_count"] == os.cpu_count()
    assert summary["checkpoint"]["path"] == str(tiny_model_dir)
    assert summary["command"] == summary["equivalent_command"]          # called from Python: reconstructed
    assert summary["command"].startswith("m2serve bench compare --model ") and "--num-prompts 3" in summary["command"]
    assert summary["dtype"] == "float32" and summary["workload"]["num_prompts"] == 3
    m2 = summary["engines"]["m2serve"]
    assert m2["status"] == "ok" and "--kv-cache-memory-bytes" in m2["command"] and m2["startup_s"] > 0
    assert summary["engines"]["vllm"]["status"].startswith("not installed")
    (row,) = [r for r in summary["rows"] if r["engine"] == "m2serve"]
    assert row["completed"] == 3 and row["output_tok_s"] > 0 and row["p99_tpot_ms"] >= 0
    md = (run_dir / "compare.md").read_text()
    assert "| m2serve | float32 | serve | 3/3 |" in md and "1.00x" in md
    assert f"- Machine: {summary['machine']['cpu_model']}" in md
    assert "## Engines" in md and summary["command"] in md


def test_a_peer_that_fails_to_start_is_reported_and_the_run_fails(tiny_model_dir, tmp_path):
    fake = tmp_path / "vllm" / "bin" / "vllm"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho \"fake vllm: $*\"\necho 'OSError: Could not load this library: x.so'\n"
                    "echo 'done'\nexit 3\n")
    fake.chmod(0o755)
    argv = ["bench", "compare", "--model", str(tiny_model_dir), "--peers", "vllm", "--vllm-venv",
            str(tmp_path / "vllm"), "--dtype", "float32", "--num-prompts", "2", "--random-input-len", "8",
            "--random-output-len", "2", "--result-dir", str(tmp_path / "results")]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 1
    (run_dir,) = (tmp_path / "results").iterdir()
    summary = json.loads((run_dir / "compare.json").read_text())
    status = summary["engines"]["vllm"]["status"]
    assert status == ("failed: vllm server exited with status 3 during startup: OSError: Could not load this "
                      "library: x.so (see vllm.log)")
    log = (run_dir / "vllm.log").read_text()
    assert "fake vllm: serve" in log and "--enforce-eager" in log and "VLLM_CPU_OMP_THREADS_BIND=" in log
    assert "| vLLM (CPU) | float32 | serve | failed: vllm server exited" in (run_dir / "compare.md").read_text()
