"""The targets of issue 9, each with what this run measured and whether it is met.

A target whose figures the run did not produce (no PyTriton, no paced level, a batch size
not timed in process, no plain baseline) is "not measured", never met by default.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import fmt_int, fmt_num, fmt_ratio, format_table, ratio
from benchmarks.inprocess import model_call_ms


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 9 with the measured value; ``met`` is None when not measured."""
    http, latency, rows = results.get("http") or [], results["latency"], results["comparison"]

    def find(server: str, scenario: str, conns: int | None = None) -> dict[str, Any] | None:
        cand = [
            r
            for r in http
            if r["server"] == server
            and r["scenario"] == scenario
            and r["model"] != "-"
            and (conns is None or r["connections"] == conns)
        ]
        return max(cand, key=lambda r: r["connections"]) if cand else None

    def row(
        name: str, value: float | None, need: str, ok: bool | None, note: str = ""
    ) -> dict[str, Any]:
        return {"target": name, "measured": value, "required": need, "met": ok, "note": note}

    def at_least(name: str, value: float | None, bound: float, note: str = "") -> dict[str, Any]:
        return row(name, value, f">= {bound:.2f}x", None if value is None else value >= bound, note)

    def at_most(name: str, value: float | None, bound: float, note: str = "") -> dict[str, Any]:
        return row(name, value, f"<= {bound:.2f}x", None if value is None else value <= bound, note)

    out = []
    top = max((r["connections"] for r in http if r["scenario"] == "single"), default=None)
    t = find("triton", "single", top)
    kinds = list(dict.fromkeys(r["server"] for r in http if r["server"].startswith("service")))
    for kind in kinds or ["service"]:  # each service configuration (--workers) on its own
        s = find(kind, "single", top)
        v = ratio(s["requests_per_s"], t["requests_per_s"]) if s and t else None
        out.append(
            at_least(
                f"1 image, {top} connections: {kind} req/s / PyTriton's",
                v,
                2.0,
                f"{kind} {fmt_int(s and s['requests_per_s'])} req/s (aim 1,500)",
            )
        )
        s1, call = find(kind, "single", 1), model_call_ms(latency, 1)
        v = s1["p50_ms"] if s1 else None
        out.append(
            row(
                f"{kind}, 1 connection: p50 ms vs model call + 1 ms",
                v,
                f"<= {fmt_num((call or 0) + 1)} ms",
                None if v is None or call is None else v <= call + 1.0,
                f"model call {fmt_num(call or 0)} ms",
            )
        )
        b = find(kind, "batch")
        v = b.get("vs_inprocess") if b else None
        out.append(
            at_least(
                f"{kind}, batch requests: img/s vs in-process at that batch",
                v,
                0.8,
                f"{b['images_per_request']} images, {b['connections']} connections" if b else "",
            )
        )
        p = find(kind, "paced")
        v = ratio(p["p99_ms"], p["p50_ms"]) if p else None
        out.append(
            at_most(
                f"{kind}, at 70 % of saturation: p99 / p50",
                v,
                3.0,
                f"load {fmt_ratio(p and p['load_fraction'])} of saturation" if p else "",
            )
        )
    by_server = results.get("rss_by_server") or {"service": results.get("rss_over_requests")}
    for kind, m in by_server.items():
        v = m["growth"] if m else None
        out.append(
            row(
                f"{kind}, RSS growth after warm-up",
                v,
                "<= 5 %",
                None if v is None else v <= 0.05,
                f"over {m['requests']:,} requests (target: 100,000)" if m else "",
            )
        )
    arch = (results.get("models", {}).get("awnet") or {}).get("arch") or "awnet"
    by = {(r["batch"], r["mode"]): r for r in rows}
    r32, r1 = by.get((32, "router")), by.get((1, "router"))
    v = r32.get("ratio_awnet_plain_throughput") if r32 else None
    out.append(
        at_least(
            f"{arch}: AW-Net / plain throughput at batch 32",
            v,
            0.95,
        )
    )
    v = r1.get("ratio_awnet_plain_p50") if r1 else None
    out.append(
        at_most(
            f"{arch}: AW-Net / plain latency at batch 1",
            v,
            1.1,
        )
    )
    return out


def targets_table(rows: list[dict[str, Any]]) -> str:
    def val(r: dict[str, Any]) -> str:
        v = r["measured"]
        if v is None:
            return "-"
        if "ms" in r["required"]:
            return f"{fmt_num(v)} ms"
        return f"{100 * v:+.1f} %" if "%" in r["required"] else fmt_ratio(v)

    verdict = {True: "met", False: "NOT met", None: "not measured"}
    return format_table(
        ["target", "measured", "required", "verdict", "note"],
        [[r["target"], val(r), r["required"], verdict[r["met"]], r["note"]] for r in rows],
        align="lrrll",
    )
