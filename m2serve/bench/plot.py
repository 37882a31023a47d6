"""`bench serve --plot`: one PNG with the TTFT and TPOT distributions and the output throughput over time.

matplotlib is optional (`pip install 'm2serve[bench]'`); without it the plot is skipped with a message.
"""
from __future__ import annotations

from pathlib import Path


def plot_serving(outputs, metrics, output_lens, path: str | Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("WARNING: --plot needs matplotlib (pip install 'm2serve[bench]'); no plot written")
        return None
    ok = [(o, n) for o, n in zip(outputs, output_lens) if o.success]
    ttfts = [o.ttft * 1000 for o, _ in ok]
    tpots = [(o.latency - o.ttft) / (n - 1) * 1000 for o, n in ok if n > 1]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for ax, values, name in ((axes[0], ttfts, "TTFT"), (axes[1], tpots, "TPOT (excl. 1st token)")):
        if values:
            ax.hist(values, bins=min(50, max(5, len(values) // 2)), color="tab:blue", alpha=0.8)
            stats = metrics.stats["ttft" if name == "TTFT" else "tpot"]
            ax.axvline(stats.mean, color="tab:red", linestyle="--", label=f"mean {stats.mean:.1f} ms")
            ax.axvline(stats.median, color="tab:green", linestyle=":", label=f"median {stats.median:.1f} ms")
            ax.legend()
        ax.set_title(f"{name} distribution")
        ax.set_xlabel("ms")
        ax.set_ylabel("requests")
    ax = axes[2]
    tokens = metrics.tokens_per_second
    seconds = list(range(len(tokens)))
    ax.bar(seconds, tokens, width=1.0, align="edge", color="tab:blue", alpha=0.7, label="output tokens / s")
    ax.set_xlabel("time since first request (s)")
    ax.set_ylabel("output tokens per second (token events)")
    ax.set_title("Output throughput over time")
    twin = ax.twinx()
    conc = metrics.concurrent_per_second
    if conc:
        twin.step(seconds + [len(conc)], conc + conc[-1:], where="post", color="tab:orange",
                  label="requests active in the second")
    twin.set_ylabel("requests active in the second")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
