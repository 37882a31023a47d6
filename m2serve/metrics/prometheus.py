"""Prometheus metrics under vLLM's names, so existing dashboards work unchanged."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from m2serve.core.messages import SchedulerStats

TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80,
                160, 640, 2560]
ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80]
LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680]
ITERATION_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]


def _token_buckets(max_model_len: int) -> list[int]:
    out, base = [], 1
    while True:
        for m in (1, 2, 5):
            if base * m > max_model_len:
                return out
            out.append(base * m)
        base *= 10


class Metrics:
    def __init__(self, model_name: str, max_model_len: int, cache_info: dict[str, str]):
        self.registry = r = CollectorRegistry()
        L = ["model_name", "engine"]
        self.labels = {"model_name": model_name, "engine": "0"}
        g = lambda name, doc: Gauge(name, doc, L, registry=r).labels(**self.labels)  # noqa: E731
        c = lambda name, doc: Counter(name, doc, L, registry=r).labels(**self.labels)  # noqa: E731
        h = lambda name, doc, b: Histogram(name, doc, L, buckets=b, registry=r).labels(**self.labels)  # noqa: E731
        self.running = g("vllm:num_requests_running", "Requests in the running batch.")
        self.waiting = g("vllm:num_requests_waiting", "Requests waiting to be scheduled.")
        self.kv_usage = g("vllm:kv_cache_usage_perc", "Fraction of KV-cache blocks in use (0..1).")
        info = Gauge("vllm:cache_config_info", "Cache configuration.", sorted(cache_info), registry=r)
        info.labels(**cache_info).set(1)
        self.prompt_tokens = c("vllm:prompt_tokens", "Prompt tokens processed.")
        self.generation_tokens = c("vllm:generation_tokens", "Generated tokens.")
        self.prefix_queries = c("vllm:prefix_cache_queries", "Prefix-cache queries, in tokens.")
        self.prefix_hits = c("vllm:prefix_cache_hits", "Prefix-cache hits, in tokens.")
        self.preemptions = c("vllm:num_preemptions", "Preemptions.")
        self.success = Counter("vllm:request_success", "Finished requests.", L + ["finished_reason"], registry=r)
        self.ttft = h("vllm:time_to_first_token_seconds", "Time to first token.", TTFT_BUCKETS)
        self.itl = h("vllm:inter_token_latency_seconds", "Inter-token latency.", ITL_BUCKETS)
        self.tpot = h("vllm:request_time_per_output_token_seconds", "Time per output token of a request.",
                      ITL_BUCKETS)
        self.e2e = h("vllm:e2e_request_latency_seconds", "End-to-end request latency.", LATENCY_BUCKETS)
        tb = _token_buckets(max_model_len)
        self.req_prompt_tokens = h("vllm:request_prompt_tokens", "Prompt tokens per request.", tb)
        self.req_generation_tokens = h("vllm:request_generation_tokens", "Generated tokens per request.", tb)
        self.iteration_tokens = h("vllm:iteration_tokens_total", "Tokens per engine step.", ITERATION_BUCKETS)
        self._last = SchedulerStats(0, 0, 0.0, 0, 0, 0)

    def record_stats(self, s: SchedulerStats) -> None:
        self.running.set(s.num_running)
        self.waiting.set(s.num_waiting)
        self.kv_usage.set(s.kv_cache_usage)
        # The engine sends cumulative counts; Prometheus counters take increments.
        self.prefix_queries.inc(max(s.prefix_cache_queries - self._last.prefix_cache_queries, 0))
        self.prefix_hits.inc(max(s.prefix_cache_hits - self._last.prefix_cache_hits, 0))
        self.preemptions.inc(max(s.num_preemptions - self._last.num_preemptions, 0))
        if s.step_num_tokens:
            self.iteration_tokens.observe(s.step_num_tokens)
        self._last = s

    def record_first_token(self, num_prompt_tokens: int, ttft: float) -> None:
        self.prompt_tokens.inc(num_prompt_tokens)
        self.ttft.observe(ttft)

    def record_tokens(self, n: int, itl: float | None) -> None:
        self.generation_tokens.inc(n)
        if itl is not None:
            self.itl.observe(itl)

    def record_finished(self, reason: str, e2e: float, num_prompt: int, num_generated: int,
                        decode_time: float) -> None:
        self.success.labels(**self.labels, finished_reason=reason).inc()
        self.e2e.observe(e2e)
        self.req_prompt_tokens.observe(num_prompt)
        self.req_generation_tokens.observe(num_generated)
        if num_generated > 1:
            self.tpot.observe(decode_time / (num_generated - 1))

    def render(self) -> bytes:
        return generate_latest(self.registry)
