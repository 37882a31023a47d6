"""bench serve metrics on synthetic timings (specs/openai-api.md §5.4-5.6): TPOT excludes the first token, ITL is
one sample per chunk, goodput, numpy linear-interpolation percentiles, peak-throughput buckets, table and keys."""
import math

import numpy as np
import pytest

from m2serve.bench.endpoint import RequestFuncOutput
from m2serve.bench.metrics import (calculate_metrics, parse_goodput, peak_concurrency, per_second_buckets,
                                   render_summary, result_dict, stats_ms)


def ok(start, ttft, itl, n_tokens, prompt_len=10, text=""):
    return RequestFuncOutput(generated_text=text, success=True, latency=ttft + sum(itl), output_tokens=n_tokens,
                             ttft=ttft, itl=list(itl), prompt_len=prompt_len, start_time=start)


def failed():
    return RequestFuncOutput(success=False, error="HTTP 500", prompt_len=7)


def test_tpot_excludes_first_token_and_itl_is_per_chunk():
    # 10 tokens in 5 chunks: TTFT 0.2 s, then 4 chunk gaps of 0.1 s -> TPOT = 0.4 / 9, ITL samples = the 4 gaps.
    a = ok(0.0, 0.2, [0.1] * 4, 10)
    b = ok(0.0, 0.4, [], 1)                 # one token: no TPOT sample, no ITL sample
    c = failed()
    m, lens = calculate_metrics([a, b, c], dur_s=2.0, selected_percentiles=[50, 99])
    assert lens == [10, 1, 0]
    assert m.completed == 2 and m.failed == 1
    assert m.total_input == 20 and m.total_output == 11            # failed prompt not counted
    assert m.stats["tpot"].mean == pytest.approx(0.4 / 9 * 1000)
    assert m.stats["itl"].mean == pytest.approx(100.0)
    assert m.stats["ttft"].mean == pytest.approx(300.0)
    assert m.stats["e2el"].mean == pytest.approx((0.6 + 0.4) / 2 * 1000)
    assert m.request_throughput == pytest.approx(1.0)
    assert m.output_throughput == pytest.approx(5.5)
    assert m.total_token_throughput == pytest.approx(15.5)


def test_output_len_falls_back_to_retokenizing_the_text():
    a = ok(0.0, 0.1, [0.1, 0.1], 0, text="a b c d")
    m, lens = calculate_metrics([a], 1.0, [99], count_tokens=lambda t: len(t.split()))
    assert lens == [4] and m.total_output == 4
    assert m.stats["tpot"].mean == pytest.approx(0.2 / 3 * 1000)


def test_percentiles_are_numpy_linear_and_std_is_population():
    ttfts = [0.1, 0.2, 0.3, 0.4]
    outs = [ok(0.0, t, [0.05], 2) for t in ttfts]
    m, _ = calculate_metrics(outs, 1.0, [25, 50, 99, 99.9])
    s = m.stats["ttft"]
    assert dict(s.percentiles)[99] == pytest.approx(397.0)           # 100 + 0.99 * 3 * 100
    assert dict(s.percentiles)[25] == pytest.approx(175.0)
    for p, v in s.percentiles:
        assert v == pytest.approx(np.percentile(ttfts, p, method="linear") * 1000)
    assert s.median == pytest.approx(250.0)
    assert s.std == pytest.approx(np.std(ttfts) * 1000) and s.std == pytest.approx(111.80339887)
    empty = stats_ms([], [99])
    assert empty.mean == 0 and empty.percentiles == [(99.0, 0.0)]


def test_goodput_every_given_slo_must_hold():
    fast = ok(0.0, 0.05, [0.01] * 9, 10)      # ttft 50 ms, tpot 10 ms
    slow_ttft = ok(0.0, 0.5, [0.01] * 9, 10)  # ttft 500 ms
    slow_tpot = ok(0.0, 0.05, [0.1] * 9, 10)  # tpot 100 ms
    single = ok(0.0, 0.05, [], 1)             # tpot counts as 0
    outs = [fast, slow_ttft, slow_tpot, single]
    m, _ = calculate_metrics(outs, 2.0, [99], goodput={"ttft": 100, "tpot": 20})
    assert m.request_goodput == pytest.approx(2 / 2.0)              # fast + single
    m, _ = calculate_metrics(outs, 2.0, [99], goodput={"e2el": 200})
    assert m.request_goodput == pytest.approx(2 / 2.0)              # fast (0.14 s) + single (0.05 s)
    m, _ = calculate_metrics(outs, 2.0, [99], goodput={"ttft": 50})  # <= holds at equality
    assert m.request_goodput == pytest.approx(3 / 2.0)
    assert parse_goodput(["ttft:500", "tpot:50"]) == {"ttft": 500.0, "tpot": 50.0}
    for bad in (["ttft=5"], ["itl:5"], ["ttft:-1"]):
        with pytest.raises(ValueError):
            parse_goodput(bad)


def test_peak_output_throughput_buckets_and_peak_concurrency():
    # Token events at 0.5, 0.6, 0.7 (request a) and 1.2, 1.3 + 2.5 (request b): buckets [3, 2, 1].
    a = ok(10.0, 0.5, [0.1, 0.1], 3)
    b = ok(10.2, 1.0, [0.1, 1.2], 3)
    tokens, _ = per_second_buckets([a, b, failed()])
    assert tokens.tolist()[:3] == [3, 2, 1]
    m, _ = calculate_metrics([a, b], 3.0, [99])
    assert m.max_output_tokens_per_s == 3.0
    assert m.max_concurrent_requests == 2
    # Back to back requests (one ends as the next starts) never overlap: peak 1, though they share seconds.
    seq = [ok(i * 0.5, 0.125, [0.125, 0.25], 3) for i in range(6)]      # exact binary times
    assert peak_concurrency(seq) == 1
    assert max(per_second_buckets(seq)[1]) > 1


def test_summary_layout_and_json_keys():
    outs = [ok(0.0, 0.1, [0.02] * 4, 5), ok(0.1, 0.2, [0.03] * 4, 5)]
    m, lens = calculate_metrics(outs, 1.5, [50, 99.9], goodput={"ttft": 150})
    lines, keys = render_summary(m, dur_s=1.5, max_concurrency=2, request_rate=4.0, goodput=True,
                                 selected_metrics=["ttft", "tpot", "itl", "e2el"])
    assert lines[0] == "{:=^50}".format(" Serving Benchmark Result ") and lines[-1] == "=" * 50
    text = "\n".join(lines)
    for label in ("Successful requests:", "Maximum request concurrency:", "Request rate configured (RPS):",
                  "Request goodput (req/s):", "Peak output token throughput (tok/s):", "Peak concurrent requests:",
                  "P99.9 TTFT (ms):", "P50 TPOT (ms):", "Median ITL (ms):", "Mean E2EL (ms):"):
        assert label in text
    assert "{:-^50}".format("Time per Output Token (excl. 1st token)") in lines
    row = next(line for line in lines if line.startswith("Benchmark duration (s):"))
    assert row == "{:<40} {:<10.2f}".format("Benchmark duration (s):", 1.5) and len(row) == 51
    assert next(line for line in lines if line.startswith("Successful")) == "{:<40} {:<10}".format(
        "Successful requests:", 2)
    assert set(keys) == {f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el")
                         for s in ("mean", "median", "std", "p50", "p99.9")}
    # Optional lines disappear: no concurrency limit, infinite rate, no goodput, e2el not selected.
    lines, keys = render_summary(m, dur_s=1.5, max_concurrency=None, request_rate=math.inf, goodput=False,
                                 selected_metrics=["ttft", "tpot", "itl"])
    text = "\n".join(lines)
    for label in ("Maximum request concurrency", "Request rate configured", "Request goodput", "E2EL"):
        assert label not in text
    res = result_dict(m, outs, lens, 1.5, goodput=False)
    assert res["request_goodput"] is None and res["completed"] == 2 and res["latencies"][0] == pytest.approx(0.18)
    for key in ("duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
                "output_throughput", "total_token_throughput", "max_output_tokens_per_s", "max_concurrent_requests",
                "rtfx", "latencies", "queue_times"):
        assert key in res
