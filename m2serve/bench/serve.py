"""`m2serve bench serve`: vLLM's `vllm bench serve` load generator (specs/openai-api.md §5), same flags, metric
definitions, printed table and JSON keys.

Requests go out at --request-rate (gaps ~ Gamma(shape=burstiness, scale=1/(rate·burstiness)), rescaled so the last
one leaves at N/rate s; `inf`: all at once), at most --max-concurrency in flight, each streamed over SSE and timed on
the client. The tokenizer is read from a local folder only (--tokenizer, --model, or the `root` of the server's
/v1/models card); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import time
import uuid
from datetime import datetime
from pathlib import Path

from m2serve.cli.args import add, json_arg

BACKENDS = {"openai": "/v1/completions", "vllm": "/v1/completions", "openai-chat": "/v1/chat/completions"}
CHAT_BACKENDS = {"openai-chat"}
PERCENTILE_METRICS = ("ttft", "tpot", "itl", "e2el", "client_queue_time", "e2el_including_client_queue")


def make_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="m2serve bench serve")
    g = p.add_argument_group("endpoint")
    add(g, "--backend", default="openai", choices=sorted(BACKENDS),
        help="openai (= vllm): /v1/completions; openai-chat: /v1/chat/completions")
    add(g, "--base-url", default=None, help="server base URL (default http://HOST:PORT)")
    add(g, "--host", default="127.0.0.1")
    add(g, "--port", type=int, default=8000)
    add(g, "--endpoint", default=None,
        help="API path (default /v1/completions, or /v1/chat/completions with --backend openai-chat)")
    add(g, "--header", nargs="*", metavar="KEY=VALUE", default=None, help="extra HTTP headers for every request")
    add(g, "--model", default=None, help="model id or folder (default: the first model of GET /v1/models)")
    add(g, "--served-model-name", default=None, help="the `model` sent in requests (default: --model)")
    add(g, "--tokenizer", default=None, help="tokenizer folder (default: --model, else the server card's `root`)")
    add(g, "--tokenizer-mode", default="auto", help="accepted (the model folder's tokenizer.json is used)")
    add(g, "--trust-remote-code", action="store_true", help="accepted; no remote code is run")
    add(g, "--request-id-prefix", default=None, help="x-request-id prefix (default bench-<random>-)")
    add(g, "--ready-check-timeout-sec", type=int, default=0,
        help="retry the initial test request for up to this many seconds while the server is not reachable")

    g = p.add_argument_group("dataset")
    add(g, "--dataset-name", default="random", choices=["random", "sharegpt", "custom"])
    add(g, "--dataset-path", default=None, help="ShareGPT JSON file or custom JSONL file")
    add(g, "--num-prompts", type=int, default=1000)
    add(g, "--seed", type=int, default=0)
    add(g, "--input-len", type=int, default=None, help="generic alias of --random-input-len")
    add(g, "--output-len", type=int, default=None,
        help="generic alias of --random-output-len / --sharegpt-output-len / --custom-output-len")
    add(g, "--random-input-len", type=int, default=1024)
    add(g, "--random-output-len", type=int, default=128)
    add(g, "--random-range-ratio", default="0.0",
        help='per-request length range [L(1-r), L(1+r)]; a float in [0,1) or JSON {"input": r1, "output": r2}')
    add(g, "--random-prefix-len", type=int, default=0, help="random tokens shared by every prompt, before it")
    add(g, "--sharegpt-output-len", type=int, default=None, help="fixed output length instead of the answer's")
    add(g, "--custom-output-len", type=int, default=256)
    add(g, "--skip-chat-template", action="store_true", help="custom dataset: send prompts without the template")

    g = p.add_argument_group("traffic")
    add(g, "--request-rate", type=float, default=float("inf"), help="requests per second (inf: all at t=0)")
    add(g, "--burstiness", type=float, default=1.0, help="Gamma shape of the arrival gaps (1: Poisson)")
    add(g, "--max-concurrency", type=int, default=None, help="most requests in flight (default unlimited)")
    add(g, "--ramp-up-strategy", default=None, choices=["linear", "exponential"])
    add(g, "--ramp-up-start-rps", type=int, default=None)
    add(g, "--ramp-up-end-rps", type=int, default=None)
    add(g, "--num-warmups", type=int, default=0, help="requests (the first prompt) sent before the measured run")

    g = p.add_argument_group("sampling")
    add(g, "--ignore-eos", action="store_true",
        help="send ignore_eos (exact output lengths); always on with the random dataset, like vLLM")
    add(g, "--logprobs", type=int, default=None)
    for flag, kind in (("--temperature", float), ("--top-p", float), ("--top-k", int), ("--min-p", float),
                       ("--frequency-penalty", float), ("--presence-penalty", float),
                       ("--repetition-penalty", float)):
        add(g, flag, type=kind, default=None, help="sent only when given")
    add(g, "--extra-body", type=json_arg("--extra-body"), default=None, help="JSON merged into every request body")

    g = p.add_argument_group("results")
    add(g, "--save-result", action="store_true", help="write the result JSON")
    add(g, "--save-detailed", action="store_true", help="also per-request lists (ttfts, itls, texts, errors...)")
    add(g, "--append-result", action="store_true", help="append the JSON as one more line of the file")
    add(g, "--result-dir", default=None)
    add(g, "--result-filename", default=None)
    add(g, "--label", default=None, help="result label (default: the backend)")
    add(g, "--metadata", nargs="*", metavar="KEY=VALUE", default=None, help="extra keys of the result JSON")
    add(g, "--percentile-metrics", default=None,
        help=f"comma list of {','.join(PERCENTILE_METRICS)} (default ttft,tpot,itl)")
    add(g, "--metric-percentiles", default="99", help="comma list of percentiles, e.g. 50,90,99")
    add(g, "--goodput", nargs="+", default=None, metavar="KEY:MS", help="SLOs: ttft:MS tpot:MS e2el:MS")
    add(g, "--disable-tqdm", action="store_true")
    add(g, "--plot", action="store_true",
        help="PNG of the TTFT/TPOT distributions and output throughput over time, next to the result JSON")
    return p


# ---- setup helpers ---------------------------------------------------------------------------------------------
def parse_kv(items, flag: str) -> dict[str, str]:
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"{flag} {item!r}: use KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def fetch_models(base_url: str, headers: dict | None = None) -> list[dict]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(base_url + "/v1/models", headers=headers or {}),
                                    timeout=30) as r:
            return list(json.loads(r.read()).get("data") or [])
    except (OSError, ValueError) as e:                   # URLError / HTTPError are OSErrors
        raise RuntimeError(f"cannot read {base_url}/v1/models (is the server running at this address?): {e}") from e


def load_tokenizer(tokenizer_id: str | None, cards: list[dict] | None):
    """A local folder's tokenizer: `tokenizer_id` itself, else the `root` folder of the /v1/models card whose id is
    `tokenizer_id` (or the only / first card). Never downloads."""
    from m2serve.frontend.tokenizer import Tokenizer

    if tokenizer_id and (Path(tokenizer_id) / "tokenizer.json").is_file():
        return Tokenizer.from_dir(tokenizer_id), tokenizer_id
    cards = list(cards or ())
    matching = [c for c in cards if c.get("id") == tokenizer_id]
    for card in matching + [c for c in cards if c not in matching]:
        root = card.get("root")
        if root and (Path(root) / "tokenizer.json").is_file():
            return Tokenizer.from_dir(root), root
    raise SystemExit(f"m2serve bench serve: error: no local tokenizer for {tokenizer_id!r}: pass --tokenizer (or "
                     "--model) as a model folder with tokenizer.json; m2serve bench never downloads")


def resolve_model(args, base_url: str, headers: dict) -> tuple[str, str, list[dict] | None]:
    """(model_id, model name sent in requests, /v1/models cards or None)."""
    cards = None
    if args.model is None:
        cards = fetch_models(base_url, headers)
        if not cards:
            raise RuntimeError(f"no models found on the server at {base_url}")
        # As vLLM: the card's id is the name sent in requests, its root the model id (and default tokenizer).
        model_name, model_id = cards[0]["id"], cards[0].get("root") or cards[0]["id"]
        print(f"First model name: {model_name}, first model id: {model_id}")
        return model_id, args.served_model_name or model_name, cards
    model_id, name = args.model, args.served_model_name
    if name is None:
        # A local folder served under another name: send the name of the card whose root is that folder.
        with contextlib.suppress(Exception):
            cards = fetch_models(base_url, headers)
        ids = [c.get("id") for c in cards or ()]
        if cards and model_id not in ids:
            want = os.path.realpath(model_id)
            for card in cards:
                if card.get("root") and os.path.realpath(str(card["root"])) == want:
                    name = card["id"]
                    print(f"--model {model_id} is served as {name!r}: requests name that model")
                    break
    return model_id, name or model_id, cards


def result_filename(args, model_id: str, current_dt: str) -> str | None:
    """{label or backend}-{rate}qps[-concurrency{C}]-{model basename}-{date}.json under --result-dir."""
    if not (args.save_result or args.append_result or args.plot):
        return None
    base_model = model_id.rstrip("/").split("/")[-1]
    conc = f"-concurrency{args.max_concurrency}" if args.max_concurrency is not None else ""
    label = args.label or args.backend
    if args.ramp_up_strategy is not None:
        name = (f"{label}-ramp-up-{args.ramp_up_strategy}-{args.ramp_up_start_rps}qps-"
                f"{args.ramp_up_end_rps}qps{conc}-{base_model}-{current_dt}.json")
    else:
        name = f"{label}-{args.request_rate}qps{conc}-{base_model}-{current_dt}.json"
    if args.result_filename:
        name = args.result_filename
    if args.result_dir:
        os.makedirs(args.result_dir, exist_ok=True)
        name = os.path.join(args.result_dir, name)
    return name


# ---- traffic ---------------------------------------------------------------------------------------------------
def current_rate(args, index: int, total: int) -> float:
    if args.ramp_up_strategy is None:
        return args.request_rate
    progress = index / max(total - 1, 1)
    start, end = args.ramp_up_start_rps, args.ramp_up_end_rps
    if args.ramp_up_strategy == "linear":
        return start + (end - start) * progress
    return start * (end / start) ** progress


def arrival_times(num: int, rate_of, burstiness: float, rescale_rate: float | None, rng) -> list[float]:
    """Send offsets (s) of `num` requests: cumulative Gamma(shape=b, scale=1/(rate·b)) gaps (0 at rate inf, 1/rate
    at b inf), rescaled so the last arrival is at num/rate when the rate is fixed."""
    if burstiness <= 0:
        raise ValueError(f"--burstiness must be positive, got {burstiness}")
    gaps = []
    for i in range(num):
        rate = rate_of(i)
        if rate <= 0:
            raise ValueError(f"request rate must be positive, got {rate}")
        if math.isinf(rate):
            gaps.append(0.0)
        elif math.isinf(burstiness):
            gaps.append(1.0 / rate)
        else:
            gaps.append(float(rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness))))
    times, acc = [], 0.0
    for g in gaps:
        acc += g
        times.append(acc)
    if rescale_rate is not None and not math.isinf(rescale_rate) and times and times[-1] > 0:
        factor = (num / rescale_rate) / times[-1]
        times = [t * factor for t in times]
    return times


# ---- /metrics spec-decode counters -----------------------------------------------------------------------------
async def spec_decode_counters(session, base_url: str) -> dict | None:
    import aiohttp

    try:
        async with session.get(base_url + "/metrics", timeout=aiohttp.ClientTimeout(total=10)) as r:
            if r.status != 200:
                return None
            text = await r.text()
    except Exception:
        return None
    found, c = False, {"num_drafts": 0, "num_draft_tokens": 0, "num_accepted_tokens": 0, "per_pos": {}}
    for line in text.splitlines():
        if not line.startswith("vllm:spec_decode"):
            continue
        parts = line.split()
        name = parts[0].split("{")[0]
        if not name.endswith("_total"):
            continue
        found = True
        try:
            value = int(float(parts[-1]))
        except ValueError:
            continue
        if "num_drafts" in name:
            c["num_drafts"] += value
        elif "num_draft_tokens" in name:
            c["num_draft_tokens"] += value
        elif "num_accepted_tokens_per_pos" in name and 'position="' in line:
            pos = int(line.split('position="', 1)[1].split('"', 1)[0])
            c["per_pos"][pos] = c["per_pos"].get(pos, 0) + value
        elif "num_accepted_tokens" in name:
            c["num_accepted_tokens"] += value
    return c if found else None


def spec_decode_delta(before: dict | None, after: dict | None) -> dict | None:
    if before is None or after is None:
        return None
    drafts = after["num_drafts"] - before["num_drafts"]
    draft_tokens = after["num_draft_tokens"] - before["num_draft_tokens"]
    accepted = after["num_accepted_tokens"] - before["num_accepted_tokens"]
    if draft_tokens <= 0:
        return None
    per_pos = []
    if drafts > 0:
        for pos in sorted(set(before["per_pos"]) | set(after["per_pos"])):
            b = before["per_pos"].get(pos, 0)
            per_pos.append((after["per_pos"].get(pos, b) - b) / drafts)
    return {"num_drafts": drafts, "draft_tokens": draft_tokens, "accepted_tokens": accepted,
            "acceptance_rate": accepted / draft_tokens * 100,
            "acceptance_length": 1 + accepted / drafts if drafts > 0 else 0.0,
            "per_position_acceptance_rates": per_pos}


# ---- the run ---------------------------------------------------------------------------------------------------
async def benchmark(args, *, api_url: str, base_url: str, model_id: str, model_name: str, tokenizer,
                    requests, extra_body: dict, headers: dict, selected_metrics: list[str],
                    selected_percentiles: list[float], goodput: dict) -> tuple[dict, dict]:
    """Run the load; returns (result keys, in-memory extras for the plot)."""
    import aiohttp
    import numpy as np
    from tqdm.auto import tqdm

    from m2serve.bench import metrics as M
    from m2serve.bench.endpoint import RequestFuncInput, async_request

    chat = args.backend in CHAT_BACKENDS
    prefix = args.request_id_prefix if args.request_id_prefix is not None else f"bench-{uuid.uuid4().hex[:8]}-"
    # aiohttp, like vLLM's client: the client shares the machine with the server it measures, and httpx's streaming
    # took about twice its CPU time per token. No connection limit: --max-concurrency is the only cap.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=6 * 3600),
                                     trust_env=True) as client:
        def make_input(req, request_id):
            return RequestFuncInput(prompt=req.prompt, api_url=api_url, prompt_len=req.prompt_len,
                                    output_len=req.expected_output_len, model=model_id, model_name=model_name,
                                    logprobs=args.logprobs, ignore_eos=args.ignore_eos, extra_body=extra_body,
                                    extra_headers=headers, request_id=request_id)

        def rid(suffix: str) -> str:
            # In-process callers (bench compare) can ask for UUIDs: llama_cpp.server rejects other x-request-ids.
            return str(uuid.uuid4()) if getattr(args, "request_id_uuid", False) else f"{prefix}{suffix}"

        print("Starting initial single prompt test run...")
        test_input = make_input(requests[0], rid("test"))
        deadline = time.monotonic() + max(args.ready_check_timeout_sec, 0)
        while True:
            test_output = await async_request(client, test_input, chat)
            if test_output.success or time.monotonic() >= deadline:
                break
            await asyncio.sleep(1.0)
        if not test_output.success:
            error = [line for line in test_output.error.strip().splitlines() if line.strip()]
            raise RuntimeError("Initial test run failed - Please make sure benchmark arguments are correctly "
                               f"specified. Error: {error[-1] if error else 'unknown'}")
        print("Initial test run completed.")

        semaphore = (asyncio.Semaphore(args.max_concurrency) if args.max_concurrency
                     else contextlib.nullcontext())
        if args.num_warmups > 0:
            print(f"Warming up with {args.num_warmups} requests...")
            wbar = None if args.disable_tqdm else tqdm(total=args.num_warmups, desc="warmup")

            async def warm(i):
                async with semaphore:
                    return await async_request(client, make_input(requests[0], rid(f"warmup-{i}")), chat, wbar)
            await asyncio.gather(*(warm(i) for i in range(args.num_warmups)))
            if wbar is not None:
                wbar.close()
            print("Warmup run completed.")

        print("Starting main benchmark run...")
        if args.ramp_up_strategy is not None:
            print(f"Traffic ramp-up strategy: {args.ramp_up_strategy}: from {args.ramp_up_start_rps} to "
                  f"{args.ramp_up_end_rps} RPS over the run.")
        else:
            print(f"Traffic request rate: {args.request_rate}")
        distribution = "Poisson process" if args.burstiness == 1.0 else "Gamma distribution"
        print(f"Burstiness factor: {args.burstiness} ({distribution})")
        print(f"Maximum request concurrency: {args.max_concurrency}")

        offsets = arrival_times(len(requests), lambda i: current_rate(args, i, len(requests)), args.burstiness,
                                args.request_rate if args.ramp_up_strategy is None else None, np.random)
        spec_before = await spec_decode_counters(client, base_url)
        pbar = None if args.disable_tqdm else tqdm(total=len(requests), desc="requests", dynamic_ncols=True)

        async def limited(inp, arrival):
            async with semaphore:
                out = await async_request(client, inp, chat, pbar)
            out.client_queue_time = out.start_time - arrival
            return out

        start = time.perf_counter()
        tasks = []
        for i, req in enumerate(requests):
            delay = start + offsets[i] - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(limited(make_input(req, rid(str(i))), time.perf_counter())))
        outputs = await asyncio.gather(*tasks)
        if pbar is not None:
            pbar.close()
        duration = time.perf_counter() - start
        spec = spec_decode_delta(spec_before, await spec_decode_counters(client, base_url))

    def count_tokens(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    m, output_lens = M.calculate_metrics(outputs, duration, selected_percentiles, goodput, count_tokens)
    failed = [o for o in outputs if not o.success]
    if failed:
        print("Failed requests during benchmark run detected (capping to 10):")
        for i, o in enumerate(failed[:10]):
            print(f"Error {i}: {o.error}")
    extra_stats = {}
    if args.max_concurrency is not None:
        ok = [o for o in outputs if o.success]
        extra_stats["client_queue_time"] = M.stats_ms([o.client_queue_time for o in ok], selected_percentiles)
        if not math.isinf(args.request_rate):
            extra_stats["e2el_including_client_queue"] = M.stats_ms(
                [o.latency + o.client_queue_time for o in ok], selected_percentiles)
    lines, keys = M.render_summary(m, dur_s=duration, max_concurrency=args.max_concurrency,
                                   request_rate=args.request_rate, goodput=bool(goodput),
                                   selected_metrics=selected_metrics, extra_stats=extra_stats, spec_decode=spec)
    print("\n".join(lines))
    result = M.result_dict(m, outputs, output_lens, duration, bool(goodput))
    if spec is not None:
        for k in ("acceptance_rate", "acceptance_length"):
            result[f"spec_decode_{k}"] = spec[k]
        result["spec_decode_num_drafts"] = int(spec["num_drafts"])
        result["spec_decode_draft_tokens"] = int(spec["draft_tokens"])
        result["spec_decode_accepted_tokens"] = int(spec["accepted_tokens"])
        result["spec_decode_per_position_acceptance_rates"] = spec["per_position_acceptance_rates"]
    result.update(keys)
    return result, {"metrics": m, "outputs": outputs, "output_lens": output_lens}


def run(args: argparse.Namespace) -> dict:
    """Entry point of `m2serve bench serve`; returns the result dict (also printed / saved)."""
    import random

    import numpy as np

    from m2serve.bench.datasets import get_samples
    from m2serve.bench.metrics import parse_goodput

    if importlib.util.find_spec("aiohttp") is None:
        raise RuntimeError("bench serve needs aiohttp: pip install 'm2serve[bench]'")
    print(args)
    if args.max_concurrency is not None and args.max_concurrency <= 0:
        raise ValueError("--max-concurrency must be greater than 0")
    if args.num_prompts < 1:
        raise ValueError("--num-prompts must be at least 1")
    if args.ramp_up_strategy is not None:
        if not math.isinf(args.request_rate):
            raise ValueError("with --ramp-up-strategy, leave --request-rate out: the ramp sets the rate")
        if args.ramp_up_start_rps is None or args.ramp_up_end_rps is None:
            raise ValueError("--ramp-up-strategy needs --ramp-up-start-rps and --ramp-up-end-rps")
        if args.ramp_up_start_rps < 0 or args.ramp_up_start_rps > args.ramp_up_end_rps:
            raise ValueError("ramp-up RPS must be non-negative with start <= end")
        if args.ramp_up_strategy == "exponential" and args.ramp_up_start_rps == 0:
            raise ValueError("exponential ramp-up cannot start at 0 RPS")
    random.seed(args.seed)
    np.random.seed(args.seed)

    endpoint = args.endpoint or BACKENDS[args.backend]
    if args.backend in CHAT_BACKENDS and not endpoint.rstrip("/").endswith("chat/completions"):
        raise ValueError(f"--backend {args.backend} posts chat requests: --endpoint must end in chat/completions, "
                         f"got {endpoint}")
    if args.backend not in CHAT_BACKENDS and not endpoint.rstrip("/").endswith("completions"):
        raise ValueError(f"--backend {args.backend} posts completions: --endpoint must end in completions, "
                         f"got {endpoint}")
    base_url = (args.base_url.rstrip("/") if args.base_url is not None else f"http://{args.host}:{args.port}")
    api_url = base_url + endpoint
    headers = parse_kv(args.header, "--header")
    auth = {"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"} if os.environ.get("OPENAI_API_KEY") else {}

    model_id, model_name, cards = resolve_model(args, base_url, {**auth, **headers})
    tokenizer_id = args.tokenizer if args.tokenizer is not None else model_id
    tokenizer, _ = load_tokenizer(tokenizer_id, cards if cards is not None else _cards_quietly(base_url, auth))

    if args.input_len is not None:
        args.random_input_len = args.input_len
    if args.output_len is not None:
        args.random_output_len = args.sharegpt_output_len = args.custom_output_len = args.output_len
    if args.dataset_name == "random" and not args.ignore_eos:
        args.ignore_eos = True    # random prompts run to their drawn output length (vLLM does the same)
    requests = get_samples(args, tokenizer)
    goodput = parse_goodput(args.goodput)

    sampling = {k: v for k, v in {"top_p": args.top_p, "top_k": args.top_k, "min_p": args.min_p,
                                  "temperature": args.temperature, "frequency_penalty": args.frequency_penalty,
                                  "presence_penalty": args.presence_penalty,
                                  "repetition_penalty": args.repetition_penalty}.items() if v is not None}
    if "temperature" not in sampling:
        print("WARNING: bench serve does not set temperature==0 (greedy) by default; the server's default applies. "
              "For greedy decoding, pass --temperature=0.")
    extra_body = {**sampling, **(args.extra_body or {})}
    selected_metrics = [m.strip() for m in (args.percentile_metrics or "ttft,tpot,itl").split(",") if m.strip()]
    unknown = set(selected_metrics) - set(PERCENTILE_METRICS)
    if unknown:
        raise ValueError(f"--percentile-metrics: unknown {sorted(unknown)}; allowed {list(PERCENTILE_METRICS)}")
    selected_percentiles = [float(p) for p in str(args.metric_percentiles).split(",") if p.strip()]

    result, extras = asyncio.run(benchmark(
        args, api_url=api_url, base_url=base_url, model_id=model_id, model_name=model_name, tokenizer=tokenizer,
        requests=requests, extra_body=extra_body, headers=headers, selected_metrics=selected_metrics,
        selected_percentiles=selected_percentiles, goodput=goodput))

    current_dt = datetime.now().strftime("%Y%m%d-%H%M%S")
    result_json = {"date": current_dt, "endpoint_type": args.backend, "backend": args.backend, "label": args.label,
                   "model_id": model_id, "tokenizer_id": tokenizer_id, "num_prompts": args.num_prompts}
    result_json.update(parse_kv(args.metadata, "--metadata"))
    result_json["request_rate"] = args.request_rate if not math.isinf(args.request_rate) else "inf"
    result_json["burstiness"] = args.burstiness
    result_json["max_concurrency"] = args.max_concurrency
    if args.ramp_up_strategy is not None:
        result_json.update(ramp_up_strategy=args.ramp_up_strategy, ramp_up_start_rps=args.ramp_up_start_rps,
                           ramp_up_end_rps=args.ramp_up_end_rps)
    result_json.update(result)

    file_name = result_filename(args, model_id, current_dt)
    if args.plot and file_name is not None:
        from m2serve.bench.plot import plot_serving
        png = plot_serving(extras["outputs"], extras["metrics"], extras["output_lens"],
                           Path(file_name).with_suffix(".png"))
        if png is not None:
            print(f"Plot written to {png}")
    if not args.save_detailed:
        from m2serve.bench.metrics import DETAILED_KEYS
        for key in DETAILED_KEYS:
            result_json.pop(key, None)
    if (args.save_result or args.append_result) and file_name is not None:
        mode = "a+" if args.append_result else "w"
        with open(file_name, mode, encoding="utf-8") as f:
            if args.append_result and f.tell() != 0:
                f.write("\n")
            json.dump(_jsonable(result_json), f)
        print(f"Results saved to {file_name}")
    return result_json


def _cards_quietly(base_url: str, headers: dict) -> list[dict] | None:
    try:
        return fetch_models(base_url, headers)
    except RuntimeError:
        return None


def _jsonable(obj):
    """numpy scalars -> Python numbers; inf/nan -> strings json can read back."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and (math.isinf(obj) or math.isnan(obj)):
        return str(obj)
    return obj
