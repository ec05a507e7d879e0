"""The figures (matplotlib, Agg): in-process latency/throughput against batch size, and the
servers' latency against throughput over the load levels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

STYLES = {
    "awnet (router)": ("C0", "-"),
    "awnet (clean)": ("C0", "--"),
    "awnet (adv)": ("C0", ":"),
    "awnet (router+iob)": ("C0", "-."),
    "static": ("C1", "-"),
    "plain": ("C2", "-"),
    "torch-eager (router)": ("C3", "-"),
    "torch-eager (clean)": ("C3", "--"),
    "torch-eager (adv)": ("C3", ":"),
}
SERVERS = {"service": "C0", "triton": "C1", "service-w2": "C2"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def batch_plot(
    latency: list[dict[str, Any]], batches: Sequence[int], path: Path, title: str
) -> Path:
    """Latency (p50, with a band up to p90) and throughput against batch size, log-x."""
    plt = _pyplot()
    series: dict[str, list[dict[str, Any]]] = {}
    for r in latency:
        label = r["model"] if r["mode"] == "-" else f"{r['model']} ({r['mode']})"
        series.setdefault(label, []).append(r)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, rs in series.items():
        rs = sorted(rs, key=lambda r: r["batch"])
        x = [r["batch"] for r in rs]
        color, ls = STYLES.get(label, (None, "-"))
        ax1.plot(x, [r["p50_ms"] for r in rs], ls, marker="o", ms=3, color=color, label=label)
        ax1.fill_between(
            x, [r["p50_ms"] for r in rs], [r["p90_ms"] for r in rs], color=color, alpha=0.12
        )
        ax2.plot(x, [r["images_per_s"] for r in rs], ls, marker="o", ms=3, color=color, label=label)
    for ax, ylabel in (
        (ax1, "latency per call, ms (p50; band to p90)"),
        (ax2, "throughput, images/s"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(list(batches), [str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def latency_throughput_plot(
    http: list[dict[str, Any]], path: Path, title: str, inprocess_batch1: float | None = None
) -> Path:
    """p50 (markers) and p99 (dashed) latency against requests/s, one line per server and
    model over its 1-image connection levels; the paced run as a star; the in-process
    batch-1 throughput as a vertical line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in http:
        if r["scenario"] == "single" and r["requests_per_s"]:
            groups.setdefault((r["server"], r["model"]), []).append(r)
    main = next(iter(groups))[1] if groups else None  # the model of the first 1-image row
    first = {s: main if (s, main) in groups else m for s, m in groups}  # gets the server's colour
    extra = iter(f"C{i}" for i in range(2, 10))
    for (server, model), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["connections"])
        color = SERVERS.get(server) if first[server] == model else next(extra)
        label = server if len({m for _, m in groups}) == 1 else f"{server} {model}"
        x = [r["requests_per_s"] for r in rs]
        ax.plot(x, [r["p50_ms"] for r in rs], "-o", color=color, label=f"{label} p50")
        ax.plot(x, [r["p99_ms"] for r in rs], "--", color=color, alpha=0.6, label=f"{label} p99")
        for r in rs:
            ax.annotate(
                f"{r['connections']}c",
                (r["requests_per_s"], r["p50_ms"]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
                color=color,
            )
    for r in http:
        if r["scenario"] == "paced" and r["requests_per_s"]:
            ax.plot(
                [r["requests_per_s"]],
                [r["p50_ms"]],
                "*",
                ms=12,
                color=SERVERS.get(r["server"]),
                label=f"{r['server']} paced ({100 * (r.get('load_fraction') or 0):.0f} %) p50",
            )
    if inprocess_batch1:
        ax.axvline(inprocess_batch1, color="grey", ls=":", label="in-process batch 1 (calls/s)")
    ax.set_yscale("log")
    ax.set_xlabel("throughput, requests/s (1 image per request)")
    ax.set_ylabel("latency, ms")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
