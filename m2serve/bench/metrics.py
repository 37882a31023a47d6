"""Aggregate serving metrics, the printed summary and the saved JSON (specs/openai-api.md §5.4-5.6).

All per-request times are seconds (time.perf_counter); reported statistics are milliseconds. Percentiles are numpy's
linear interpolation, std the population std; an empty sample reports 0 (numpy over `[] or 0`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from m2serve.bench.endpoint import RequestFuncOutput

# --percentile-metrics names -> (printed name, section header)
METRIC_LABELS = {
    "ttft": ("TTFT", "Time to First Token"),
    "tpot": ("TPOT", "Time per Output Token (excl. 1st token)"),
    "itl": ("ITL", "Inter-token Latency"),
    "e2el": ("E2EL", "End-to-end Latency"),
    "client_queue_time": ("Client Queue Time", "Client-side Queueing"),
    "e2el_including_client_queue": ("E2EL incl. Client Queue", "Queue-inclusive End-to-end Latency"),
}
GOODPUT_METRICS = ("ttft", "tpot", "e2el")


@dataclass
class MetricStats:
    mean: float
    median: float
    std: float
    percentiles: list[tuple[float, float]]   # (p, value), milliseconds


def stats_ms(values_s: Sequence[float], percentiles: Sequence[float]) -> MetricStats:
    """mean / median / std (population) / numpy linear-interpolation percentiles of seconds, in milliseconds."""
    v = list(values_s) or 0
    return MetricStats(float(np.mean(v)) * 1000, float(np.median(v)) * 1000, float(np.std(v)) * 1000,
                       [(float(p), float(np.percentile(v, p)) * 1000) for p in percentiles])


@dataclass
class BenchmarkMetrics:
    completed: int
    failed: int
    total_input: int
    total_output: int
    request_throughput: float
    request_goodput: float
    output_throughput: float
    total_token_throughput: float
    max_output_tokens_per_s: float
    max_concurrent_requests: int
    stats: dict[str, MetricStats] = field(default_factory=dict)   # ttft, tpot, itl, e2el
    tokens_per_second: list[float] = field(default_factory=list)  # 1-s buckets from the first request's start
    concurrent_per_second: list[float] = field(default_factory=list)
    rtfx: float = 0.0


def parse_goodput(pairs: Iterable[str] | None) -> dict[str, float]:
    """--goodput ttft:MS tpot:MS e2el:MS -> {name: ms}; names and values checked."""
    slos: dict[str, float] = {}
    for pair in pairs or ():
        try:
            name, value = pair.split(":")
            slos[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--goodput {pair!r}: give service level objectives as KEY:VALUE pairs, the value a "
                             "number of milliseconds (e.g. ttft:500 tpot:50)") from None
    for name, value in slos.items():
        if name not in GOODPUT_METRICS:
            raise ValueError(f"--goodput {name}:{value}: the objective must be one of {list(GOODPUT_METRICS)}")
        if value < 0:
            raise ValueError(f"--goodput {name}:{value}: the objective must be non-negative")
    return slos


def token_times(out: RequestFuncOutput) -> list[float]:
    """Wall-clock time of each token event: start + ttft, then + each ITL."""
    times = [out.start_time + out.ttft]
    for gap in out.itl:
        times.append(times[-1] + gap)
    return times


def per_second_buckets(outputs: Sequence[RequestFuncOutput]) -> tuple[np.ndarray, np.ndarray]:
    """Token events per wall-clock second since the first successful request started (the peak output throughput
    is the largest bucket), and the requests active at some time during each second (for the plot)."""
    ok = [o for o in outputs if o.success]
    if not ok:
        return np.zeros(0), np.zeros(0)
    t0 = min(o.start_time for o in ok)
    t1 = max(o.start_time + o.latency for o in ok)
    n = int(np.ceil(t1 - t0)) + 1
    tokens, concurrent = np.zeros(n), np.zeros(n)
    for o in ok:
        for t in token_times(o):
            b = int(t - t0)
            if 0 <= b < n:
                tokens[b] += 1
        first, last = int(o.start_time - t0), int(o.start_time + o.latency - t0)
        concurrent[max(first, 0):min(last, n - 1) + 1] += 1
    return tokens, concurrent


def peak_concurrency(outputs: Sequence[RequestFuncOutput]) -> int:
    """Most successful requests in flight at one instant: a sweep over the half-open intervals [start, end),
    ends before starts at equal times. (Counting requests per 1-s bucket, as older vLLM did, can exceed
    --max-concurrency: sequential requests share a second.)"""
    events = sorted([(o.start_time, 1) for o in outputs if o.success]
                    + [(o.start_time + o.latency, -1) for o in outputs if o.success])
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def calculate_metrics(outputs: Sequence[RequestFuncOutput], dur_s: float, selected_percentiles: Sequence[float],
                      goodput: dict[str, float] | None = None,
                      count_tokens: Callable[[str], int] | None = None) -> tuple[BenchmarkMetrics, list[int]]:
    """Aggregate metrics over one run; also the per-request output lengths (0 for failed requests).

    output_len is usage.completion_tokens, else `count_tokens(generated_text)` (re-tokenized), else 1.
    TPOT = (latency − TTFT) / (output_len − 1) over requests with more than one output token; ITL pools every
    request's gaps. A request is good when each given SLO holds (TPOT counts as 0 for one-token outputs)."""
    output_lens: list[int] = []
    total_input = completed = good = 0
    ttfts, tpots, all_tpots, itls, e2els = [], [], [], [], []
    for out in outputs:
        if not out.success:
            output_lens.append(0)
            continue
        n = out.output_tokens
        if not n:
            n = count_tokens(out.generated_text) if count_tokens is not None else 1
        output_lens.append(n)
        total_input += out.prompt_len
        tpot = 0.0
        if n > 1:
            tpot = (out.latency - out.ttft) / (n - 1)
            tpots.append(tpot)
        all_tpots.append(tpot)
        itls.extend(out.itl)
        ttfts.append(out.ttft)
        e2els.append(out.latency)
        completed += 1
    if goodput:
        columns = {"ttft": ttfts, "tpot": all_tpots, "e2el": e2els}
        names = [m for m in GOODPUT_METRICS if m in goodput]
        for row in zip(*(columns[m] for m in names)):
            if all(v <= goodput[m] / 1000 for m, v in zip(names, row)):
                good += 1
    tokens, concurrent = per_second_buckets(outputs)
    total_output = sum(output_lens)
    metrics = BenchmarkMetrics(
        completed=completed, failed=sum(1 for o in outputs if not o.success), total_input=total_input,
        total_output=total_output, request_throughput=completed / dur_s, request_goodput=good / dur_s,
        output_throughput=total_output / dur_s, total_token_throughput=(total_input + total_output) / dur_s,
        max_output_tokens_per_s=float(tokens.max()) if len(tokens) else 0.0,
        max_concurrent_requests=peak_concurrency(outputs),
        stats={"ttft": stats_ms(ttfts, selected_percentiles), "tpot": stats_ms(tpots, selected_percentiles),
               "itl": stats_ms(itls, selected_percentiles), "e2el": stats_ms(e2els, selected_percentiles)},
        tokens_per_second=tokens.tolist(), concurrent_per_second=concurrent.tolist())
    return metrics, output_lens


# ---- printing and JSON ---------------------------------------------------------------------------------------
def percentile_word(p: float) -> str:
    return str(int(p)) if int(p) == p else str(p)


def _line(label: str, value, fmt: str = "") -> str:
    return ("{:<40} {:<10" + fmt + "}").format(label, value)


def header(text: str, fill: str) -> str:
    return "{s:{c}^{n}}".format(s=text, n=50, c=fill)


def render_summary(m: BenchmarkMetrics, *, dur_s: float, max_concurrency: int | None, request_rate: float,
                   goodput: bool, selected_metrics: Sequence[str], extra_stats: dict[str, MetricStats] | None = None,
                   spec_decode: dict | None = None) -> tuple[list[str], dict]:
    """The printed table (vLLM's layout) and the metric keys it adds to the result JSON."""
    lines = [header(" Serving Benchmark Result ", "="),
             _line("Successful requests:", m.completed),
             _line("Failed requests:", m.failed)]
    if max_concurrency is not None:
        lines.append(_line("Maximum request concurrency:", max_concurrency))
    if not math.isinf(request_rate):
        lines.append(_line("Request rate configured (RPS):", request_rate, ".2f"))
    lines += [_line("Benchmark duration (s):", dur_s, ".2f"),
              _line("Total input tokens:", m.total_input),
              _line("Total generated tokens:", m.total_output),
              _line("Request throughput (req/s):", m.request_throughput, ".2f")]
    if goodput:
        lines.append(_line("Request goodput (req/s):", m.request_goodput, ".2f"))
    lines += [_line("Output token throughput (tok/s):", m.output_throughput, ".2f"),
              _line("Peak output token throughput (tok/s):", m.max_output_tokens_per_s, ".2f"),
              _line("Peak concurrent requests:", m.max_concurrent_requests, ".2f"),
              _line("Total token throughput (tok/s):", m.total_token_throughput, ".2f")]
    keys: dict = {}
    all_stats = dict(m.stats)
    all_stats.update(extra_stats or {})
    for name in METRIC_LABELS:
        if name not in selected_metrics or name not in all_stats:
            continue
        label, section = METRIC_LABELS[name]
        s = all_stats[name]
        lines += [header(section, "-"),
                  _line(f"Mean {label} (ms):", s.mean, ".2f"),
                  _line(f"Median {label} (ms):", s.median, ".2f")]
        keys[f"mean_{name}_ms"] = s.mean
        keys[f"median_{name}_ms"] = s.median
        keys[f"std_{name}_ms"] = s.std
        for p, value in s.percentiles:
            word = percentile_word(p)
            lines.append(_line(f"P{word} {label} (ms):", value, ".2f"))
            keys[f"p{word}_{name}_ms"] = value
    if spec_decode is not None:
        lines += [header("Speculative Decoding", "-"),
                  _line("Acceptance rate (%):", spec_decode["acceptance_rate"], ".2f"),
                  _line("Acceptance length:", spec_decode["acceptance_length"], ".2f"),
                  _line("Drafts:", int(spec_decode["num_drafts"])),
                  _line("Draft tokens:", int(spec_decode["draft_tokens"])),
                  _line("Accepted tokens:", int(spec_decode["accepted_tokens"]))]
        per_pos = spec_decode.get("per_position_acceptance_rates") or []
        if per_pos:
            lines.append("Per-position acceptance (%):")
            lines += [_line(f"  Position {i}:", rate * 100, ".2f") for i, rate in enumerate(per_pos)]
    lines.append("=" * 50)
    return lines, keys


DETAILED_KEYS = ("input_lens", "output_lens", "ttfts", "itls", "start_times", "generated_texts", "errors")


def result_dict(m: BenchmarkMetrics, outputs: Sequence[RequestFuncOutput], output_lens: list[int], dur_s: float,
                goodput: bool) -> dict:
    """The run's JSON keys (before the per-metric keys); the detailed per-request lists are included here and
    dropped by the caller unless --save-detailed."""
    return {
        "duration": dur_s,
        "completed": m.completed,
        "failed": m.failed,
        "total_input_tokens": m.total_input,
        "total_output_tokens": m.total_output,
        "request_throughput": m.request_throughput,
        "request_goodput": m.request_goodput if goodput else None,
        "output_throughput": m.output_throughput,
        "total_token_throughput": m.total_token_throughput,
        "input_lens": [o.prompt_len for o in outputs],
        "output_lens": output_lens,
        "ttfts": [o.ttft for o in outputs],
        "itls": [o.itl for o in outputs],
        "latencies": [o.latency for o in outputs],
        "start_times": [o.start_time for o in outputs],
        "queue_times": [o.client_queue_time for o in outputs],
        "generated_texts": [o.generated_text for o in outputs],
        "errors": [o.error for o in outputs],
        "max_output_tokens_per_s": m.max_output_tokens_per_s,
        "max_concurrent_requests": m.max_concurrent_requests,
        "rtfx": m.rtfx,
    }
