"""Serving tables: the wrk levels with their ratios, RSS over requests, the py-spy profile.

Ratios side by side in each row: requests/s over PyTriton's in the same scenario and
connections, p50 over the in-process model call, images/s over the in-process throughput
at the request's batch.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import MIB, fmt_int, fmt_num, fmt_ratio, format_table, ratio
from benchmarks.inprocess import model_call_ms, throughput


def http_ratios(http: list[dict[str, Any]], latency: list[dict[str, Any]]) -> None:
    """Adds, in place: ``vs_triton`` (req/s over PyTriton's for the same model, scenario and
    connections), ``p50_over_model_call`` and ``vs_inprocess`` (img/s over the in-process
    throughput at the request's batch)."""
    triton = {
        (r["model"], r["scenario"], r["connections"]): r for r in http if r["server"] == "triton"
    }
    call = model_call_ms(latency, 1)
    for r in http:
        t = triton.get((r["model"], r["scenario"], r["connections"]))
        r["vs_triton"] = (
            ratio(r["requests_per_s"], t["requests_per_s"])
            if t and r["server"] != "triton"
            else None
        )
        r["p50_over_model_call"] = (
            ratio(r["p50_ms"], call) if r["images_per_request"] == 1 else None
        )
        inproc = throughput(latency, r["images_per_request"]) if r["images_per_request"] else None
        r["vs_inprocess"] = ratio(r["images_per_s"], inproc)


def http_table(http: list[dict[str, Any]]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.0f}%"

    rows = [
        [
            h["server"],
            h["model"],
            h["scenario"],
            h["images_per_request"],
            h["connections"],
            f"{h['ok']:,}",
            h["errors_total"],
            fmt_int(h["requests_per_s"]),
            fmt_int(h["images_per_s"]),
            fmt_num(h["p50_ms"]) if h.get("p50_ms") is not None else "-",
            fmt_num(h["p99_ms"]) if h.get("p99_ms") is not None else "-",
            "-" if h["mean_batch"] is None else f"{h['mean_batch']:.2f}",
            "-"
            if h["server_cpu_ms_per_request"] is None
            else f"{h['server_cpu_ms_per_request']:.2f}",
            pct(h["client_cpu_share"]),
            fmt_ratio(h.get("vs_triton")),
            fmt_ratio(h.get("vs_inprocess")),
        ]
        for h in http
    ]
    headers = [
        "server",
        "model",
        "scenario",
        "img/req",
        "conns",
        "ok",
        "errors",
        "req/s",
        "img/s",
        "p50 ms",
        "p99 ms",
        "mean batch",
        "server CPU ms/req",
        "client CPU",
        "vs triton",
        "vs in-process",
    ]
    return format_table(headers, rows, align="lll" + "r" * (len(headers) - 3))


def rss_table(mem: dict[str, Any]) -> str:
    rows = [
        [
            f"{s['requests']:,}",
            f"{s['rss_bytes'] / MIB:.1f}",
            fmt_ratio(ratio(s["rss_bytes"], mem["start_rss_bytes"])),
        ]
        for s in mem["samples"]
    ]
    head = (
        f"after {mem['warmup_requests']:,} warm-up requests, then {mem['requests']:,} more "
        f"({mem['errors']} errors): growth {100 * (mem['growth'] or 0):+.1f} %, "
        f"peak {100 * (mem['peak_growth'] or 0):+.1f} %"
    )
    return head + "\n" + format_table(["requests after warm-up", "RSS MiB", "vs first"], rows)


def profile_table(prof: dict[str, Any], top: int = 12) -> str:
    load = prof.get("load") or {}
    head = (
        f"py-spy {prof['rate_hz']} Hz for {prof['seconds']:g} s, {prof['samples']:,} samples, under "
        f"{load.get('connections')} connections ({fmt_int(load.get('requests_per_s'))} req/s while sampled)"
    )
    areas = format_table(
        ["self time by area", "share"],
        [[a["area"], f"{100 * a['share']:.1f}%"] for a in prof["areas"]],
    )
    threads = format_table(
        ["samples by thread", "share"],
        [[t["thread"], f"{100 * t['share']:.1f}%"] for t in prof.get("threads", [])],
    )
    selfs = format_table(
        ["top self time", "share"],
        [[f["function"], f"{100 * f['share']:.1f}%"] for f in prof["self"][:top]],
    )
    incl = format_table(
        ["top inclusive time", "share"],
        [[f["function"], f"{100 * f['share']:.1f}%"] for f in prof["inclusive"][:top]],
    )
    return "\n\n".join([head, threads, areas, selfs, incl])
