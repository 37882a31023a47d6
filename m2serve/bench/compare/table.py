"""The comparison table: one Row per engine and its cells, with each engine's ratio to m2serve, as plain text for the
terminal and as markdown for compare.md."""
from __future__ import annotations

import math
from dataclasses import dataclass

from m2serve.bench.compare.peers import BASELINE, DISPLAY


@dataclass
class Row:
    engine: str
    dtype: str = "-"
    mode: str = "serve"                       # serve (HTTP, client-timed) | offline (transformers generate)
    status: str = "ok"                        # ok | not installed (...) | failed: ...
    completed: int | None = None
    num_prompts: int | None = None
    output_tok_s: float | None = None
    mean_ttft_ms: float | None = None
    p99_ttft_ms: float | None = None
    mean_tpot_ms: float | None = None
    p99_tpot_ms: float | None = None
    result_file: str | None = None

    @classmethod
    def from_result(cls, engine: str, dtype: str, result: dict, mode: str = "serve",
                    result_file: str | None = None) -> "Row":
        return cls(engine=engine, dtype=dtype, mode=mode, completed=result.get("completed"),
                   num_prompts=result.get("num_prompts"), output_tok_s=result.get("output_throughput"),
                   mean_ttft_ms=result.get("mean_ttft_ms"), p99_ttft_ms=result.get("p99_ttft_ms"),
                   mean_tpot_ms=result.get("mean_tpot_ms"), p99_tpot_ms=result.get("p99_tpot_ms"),
                   result_file=result_file)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


COLUMNS = ("engine", "dtype", "mode", "ok", "output tok/s", "mean TTFT ms", "P99 TTFT ms", "mean TPOT ms",
           "P99 TPOT ms", "tok/s vs m2serve", "TTFT vs m2serve", "TPOT vs m2serve")


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or not math.isfinite(value) or not math.isfinite(base) or base <= 0:
        return None
    return value / base


def fmt_num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def table_cells(rows: list[Row], baseline: str = BASELINE) -> list[list[str]]:
    """One list of cells per row, in COLUMNS order. Ratios are engine / baseline (m2serve); offline cells carry
    an "(offline)" mark; engines that did not run get their status in place of the numbers."""
    base = next((r for r in rows if r.engine == baseline and r.ok), None)
    out = []
    for r in rows:
        name = DISPLAY.get(r.engine, r.engine)
        if not r.ok:
            out.append([name, r.dtype, r.mode, r.status] + ["-"] * (len(COLUMNS) - 4))
            continue
        mark = " (offline)" if r.mode == "offline" else ""
        ok = f"{r.completed}/{r.num_prompts}" if r.completed is not None and r.num_prompts is not None else "-"
        numbers = [fmt_num(r.output_tok_s, 1), fmt_num(r.mean_ttft_ms), fmt_num(r.p99_ttft_ms),
                   fmt_num(r.mean_tpot_ms), fmt_num(r.p99_tpot_ms)]
        numbers = [n + mark if n != "-" else n for n in numbers]
        ratios = [fmt_ratio(ratio(getattr(r, key), getattr(base, key) if base else None))
                  for key in ("output_tok_s", "mean_ttft_ms", "mean_tpot_ms")]
        ratios = [x + mark if x != "n/a" and r.engine != baseline else x for x in ratios]
        out.append([name, r.dtype, r.mode, ok] + numbers + ratios)
    return out


def format_table(rows: list[Row], markdown: bool = False, baseline: str = BASELINE) -> str:
    cells = table_cells(rows, baseline)
    if markdown:
        esc = [[c.replace("|", "\\|") for c in row] for row in cells]
        lines = ["| " + " | ".join(COLUMNS) + " |",
                 "|" + "|".join(["---"] * 3 + ["---:"] * (len(COLUMNS) - 3)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in esc]
        return "\n".join(lines)
    # Plain text: the status of a missing engine spans the numeric columns.
    widths = [len(c) for c in COLUMNS]
    for row, r in zip(cells, rows):
        for i, c in enumerate(row):
            if r.ok or i < 3:
                widths[i] = max(widths[i], len(c))
    right = set(range(3, len(COLUMNS)))

    def line(row, ok=True):
        if not ok:
            return "  ".join(c.ljust(widths[i]) for i, c in enumerate(row[:3])) + "  " + row[3]
        return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row))

    text = [line(list(COLUMNS)), "  ".join("-" * w for w in widths)]
    text += [line(row, r.ok).rstrip() for row, r in zip(cells, rows)]
    return "\n".join(text)


TABLE_NOTES = ("Ratios are engine / m2serve: above 1.00x is faster for tok/s, slower for TTFT and TPOT. "
               "serve rows: `m2serve bench serve`'s client over HTTP (vllm bench serve's metric definitions). "
               "(offline) rows: transformers `generate` in process, batched with the concurrency as batch size: "
               "TTFT is the batch's prefill time, TPOT its per-token decode step, no HTTP or queueing.")
