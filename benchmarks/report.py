"""In-process tables: ratios against the baselines side by side, size, memory, eager.

Every function takes the run's results (plain dicts, as in results.json) and returns rows or
text; ``benchmarks.docs`` puts the same text into docs/benchmark.md. The serving tables are
in ``benchmarks.report_http``, the issue's targets in ``benchmarks.targets``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.common import MIB, fmt_int, fmt_ms, fmt_ratio, format_table, ratio
from benchmarks.inprocess import AWNET_MODES


def compare(
    latency: list[dict[str, Any]], batches: Sequence[int], keys: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per (batch, AW-Net mode) with the baselines' figures and the ratios."""
    by = {(r["model"], r["mode"], r["batch"]): r for r in latency}
    rows = []
    for b in batches:
        router = by[("awnet", "router", b)]
        for mode in [m for m in (*AWNET_MODES, "router+iob") if ("awnet", m, b) in by]:
            a = by[("awnet", mode, b)]
            row: dict[str, Any] = {
                "batch": b,
                "mode": mode,
                "awnet_p50_ms": a["p50_ms"],
                "awnet_p90_ms": a["p90_ms"],
                "awnet_images_per_s": a["images_per_s"],
                "ratio_mode_router_p50": ratio(a["p50_ms"], router["p50_ms"]),
            }
            for k in keys:
                if k == "awnet":
                    continue
                s = by[(k, "-", b)]
                row.update(
                    {
                        f"{k}_p50_ms": s["p50_ms"],
                        f"{k}_p90_ms": s["p90_ms"],
                        f"{k}_images_per_s": s["images_per_s"],
                        f"ratio_awnet_{k}_p50": ratio(a["p50_ms"], s["p50_ms"]),
                        f"ratio_awnet_{k}_p90": ratio(a["p90_ms"], s["p90_ms"]),
                        f"ratio_awnet_{k}_throughput": ratio(a["images_per_s"], s["images_per_s"]),
                    }
                )
            rows.append(row)
    return rows


def latency_table(rows: list[dict[str, Any]], keys: Sequence[str]) -> str:
    others = [k for k in keys if k != "awnet"]
    headers = ["batch", "mode", "awnet ms (p50/p90)"]
    for k in others:
        headers += [f"{k} ms (p50/p90)", f"awnet/{k}"]
    headers += ["mode/router", "awnet img/s"] + [f"{k} img/s" for k in others]
    out = []
    for r in rows:
        line: list[Any] = [r["batch"], r["mode"], fmt_ms(r["awnet_p50_ms"], r["awnet_p90_ms"])]
        for k in others:
            line += [
                fmt_ms(r[f"{k}_p50_ms"], r[f"{k}_p90_ms"]),
                fmt_ratio(r[f"ratio_awnet_{k}_p50"]),
            ]
        line += [fmt_ratio(r["ratio_mode_router_p50"]), fmt_int(r["awnet_images_per_s"])]
        line += [fmt_int(r[f"{k}_images_per_s"]) for k in others]
        out.append(line)
    return format_table(headers, out, align="rl" + "r" * (len(headers) - 2))


def mode_spread(rows: list[dict[str, Any]], batches: Sequence[int]) -> dict[int, float]:
    """Slowest / fastest p50 of the three AW-Net modes, per batch."""
    out = {}
    for b in batches:
        p = [r["awnet_p50_ms"] for r in rows if r["batch"] == b and r["mode"] in AWNET_MODES]
        out[b] = max(p) / min(p)
    return out


def size_memory_table(
    models: dict[str, dict[str, Any]], memory: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """``models``: each model's summary (graph facts). Size, params, nodes, peak RSS; ratios."""
    keys = list(models)
    others = [k for k in keys if k != "awnet"]
    size: dict[str, Any] = {
        k: {kk: v for kk, v in m.items() if kk != "op_counts"} for k, m in models.items()
    }
    metrics: list[tuple[str, Any, Any]] = [
        ("model.onnx bytes", lambda k: models[k].get("file_bytes"), fmt_int),
        ("parameters (initializer elements)", lambda k: models[k].get("parameters"), fmt_int),
        ("graph nodes", lambda k: models[k].get("nodes"), fmt_int),
    ]
    for other in others:
        for name, field_ in (("bytes", "file_bytes"), ("params", "parameters"), ("nodes", "nodes")):
            size[f"ratio_awnet_{other}_{name}"] = ratio(
                models["awnet"].get(field_), models[other].get(field_)
            )
    if memory is not None:

        def mib(x: float | None) -> str:
            return "-" if x is None else f"{x / MIB:.1f}"

        metrics += [
            (
                f"peak RSS MiB (fresh process, batch {memory['batch']})",
                lambda k: memory[k]["peak_rss_bytes"],
                mib,
            ),
            ("  minus interpreter+onnxruntime MiB", lambda k: memory[k]["model_rss_bytes"], mib),
        ]
    headers = ["metric", "awnet"]
    for k in others:
        headers += [k, f"awnet/{k}"]
    rows = []
    for name, get, fmt in metrics:
        line: list[Any] = [name, fmt(get("awnet"))]
        for k in others:
            line += [fmt(get(k)), fmt_ratio(ratio(get("awnet"), get(k)))]
        rows.append(line)
    text = format_table(headers, rows)
    if "router_extractor" in models["awnet"]:
        parts = (
            ("router feature extractor", "router_extractor"),
            ("router signal heads", "router_signal_heads"),
            ("router type head (p_adv)", "router_type_head"),
            ("adversarial BNs", "adversarial_bn"),
        )
        graph_rows = [
            [label, *["yes" if models[k].get(f) else "no" for k in keys]] for label, f in parts
        ]
        text += "\n\nwhat each graph holds (from its initializers):\n" + format_table(
            ["part", *keys], graph_rows
        )
    return text, size


def eager_table(
    eager: list[dict[str, Any]], latency: list[dict[str, Any]]
) -> tuple[str, list[dict[str, Any]]]:
    by = {(r["model"], r["mode"], r["batch"]): r for r in latency}
    rows, out = [], []
    for e in eager:
        o = by[("awnet", e["mode"], e["batch"])]
        r = ratio(e["p50_ms"], o["p50_ms"])
        out.append(
            {
                "batch": e["batch"],
                "mode": e["mode"],
                "eager_p50_ms": e["p50_ms"],
                "eager_p90_ms": e["p90_ms"],
                "ort_p50_ms": o["p50_ms"],
                "ratio_eager_ort_p50": r,
                "eager_images_per_s": e["images_per_s"],
            }
        )
        rows.append(
            [
                e["batch"],
                e["mode"],
                fmt_ms(e["p50_ms"], e["p90_ms"]),
                fmt_ms(o["p50_ms"], o["p90_ms"]),
                fmt_ratio(r),
                fmt_int(e["images_per_s"]),
                fmt_int(o["images_per_s"]),
            ]
        )
    headers = [
        "batch",
        "mode",
        "torch eager ms (p50/p90)",
        "ORT awnet ms (p50/p90)",
        "eager/ORT",
        "eager img/s",
        "ORT img/s",
    ]
    return format_table(headers, rows, align="rl" + "r" * 5), out
