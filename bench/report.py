"""Writes docs/benchmarks.md and docs/latency.svg from one benchmark run."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from .stats import Summary, fmt, percentile


def live_sections():
    from . import flood, live

    return [("live", lambda work: live.run_all(work)), ("flood", lambda work: flood.run(work))]


def _table(rows: list[Summary], baseline: Summary | None = None, baseline_label: str = "") -> list[str]:
    head = "| what | samples | median | p99 |" + (f" median ÷ {baseline_label} |" if baseline else "")
    lines = [head, "|---|---|---|---|" + ("---|" if baseline else "")]
    for s in rows:
        ratio = f" {s.median / baseline.median:,.1f}× |" if baseline else ""
        lines.append(f"| {s.name} | {s.samples} | {fmt(s.median)} {s.unit} | {fmt(s.p99)} {s.unit} |{ratio}")
    return lines


def write(sections: dict, *, machine: str, elapsed: float, out: Path) -> None:
    out.mkdir(exist_ok=True)
    inference: list[Summary] = sections["inference"]
    live = sections.get("live", {})
    served, proba, naive = inference
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s, on {machine}.",
        "Every figure is a median and a 99th percentile over all samples of repeated runs; every ratio",
        "compares two figures measured in the same run. The plot is `docs/latency.svg`.",
        "",
        "## Headline",
        "",
        f"- One prediction on the served fast path takes {fmt(served.median)} µs, "
        f"**{proba.median / served.median:,.0f}× faster** than scikit-learn's `predict_proba` on the same "
        f"pipeline and **{naive.median / served.median:,.0f}×** faster than loading the model per request.",
    ]
    if live:
        ping, keystroke, rest, form = live["keystroke"]
        lines.append(
            f"- Keystroke to risk over one WebSocket: {fmt(keystroke.median / 1000)} ms median, "
            f"{keystroke.median / ping.median:.1f}× the socket's own ping round trip; "
            f"a REST call takes {rest.median / keystroke.median:.1f}× and a form round trip "
            f"{form.median / keystroke.median:.1f}× as long."
        )
    lines += ["", "## 1. Inference per row", "", *_table(inference, served, "served"), ""]
    lines += [
        "`served` is `AdditiveModel.predict_one` on the folded pipeline (checked against scikit-learn",
        "to 1e-12 when the model loads); the other two call `predict_proba` on a one-row array.",
        "",
    ]
    if live:
        ping, *_ = live["keystroke"]
        lines += ["## 2. Keystroke to risk and its baselines", "", *_table(live["keystroke"], ping, "ping"), ""]
        lines += [
            "All on one daphne process on loopback; the WebSocket rows use the same socket, interleaved.",
            "HTTP rows reuse one keep-alive connection; the form row includes CSRF and storing the assessment.",
            "",
            "## 3. Many typists",
            "",
            "Each socket sends 10 updates a second for 5 s; latency runs from an update to the first",
            "prediction that covers it (the server may coalesce a burst into its newest update).",
            "",
            "| sockets | updates answered | median | p99 | every last update answered |",
            "|---|---|---|---|---|",
        ]
        for t in live["typists"]:
            s: Summary = t["summary"]
            lines.append(
                f"| {t['sockets']} | {s.samples} | {fmt(s.median / 1000)} ms | {fmt(s.p99 / 1000)} ms "
                f"| {t['last_answered']} of {t['sockets']} |"
            )
        idle = live["idle"]
        lines += [
            "",
            "## 4. Idle sockets on one daphne process",
            "",
            f"- Held {idle['held']:,} of {idle['target']:,} idle live sockets "
            f"(open-file limit raised to {idle['open_file_limit']:,}), opened in {idle['opened_in_s']:.0f} s.",
            f"- Server memory {idle['rss_before_mib']:.0f} MiB before, {idle['rss_after_mib']:.0f} MiB with them "
            f"open: **{idle['kib_per_socket']:.0f} KiB per socket**.",
            f"- A sample of {idle['probed']} idle sockets was asked for a prediction afterwards: "
            f"{idle['probe_answered']} answered.",
            "",
            "## 5. Kiosk fan-out across two processes through Redis",
            "",
            *_table(live["fanout"]),
            "",
            "A typist on daphne process A (`?board=bench`), a kiosk on process B, one redis-server.",
            "Updates are sent 4 a second so that the 5-a-second board limit never holds one back; the first",
            "5 are a warm-up (the first publication opens the publishing process's Redis connections).",
            "",
        ]
    flood = sections.get("flood")
    if flood:
        alone = Summary.of("calm socket alone", flood["calm_alone_latencies_us"])
        during = Summary.of("calm socket while another floods", flood["calm_latencies_us"])
        p95 = {
            s.name: percentile(values, 95)
            for s, values in ((alone, flood["calm_alone_latencies_us"]), (during, flood["calm_latencies_us"]))
        }
        closed = flood["flood_closed_code"]
        lines += [
            "## 6. A flood beside a calm socket",
            "",
            "One socket sends updates as fast as it can (reconnecting when closed) while a calm socket on",
            "the same daphne process sends 10 updates a second; latency is the calm socket's update to its",
            "prediction.",
            "",
            *_table([alone, during], alone, "alone"),
            "",
            f"- Calm socket p95: {fmt(p95[alone.name] / 1000)} ms alone, **{fmt(p95[during.name] / 1000)} ms "
            "during the flood** (goal: under 50 ms).",
            f"- The flooder sent {flood['flood_sent']:,} frames (counted at the client; many never left its kernel "
            f"buffers), got {flood['flood_answered']:,} answers, and was closed with "
            f"{closed if closed else 'no close code'} over {flood['flood_connections']} connection(s).",
            "",
        ]
    (out / "benchmarks.md").write_text("\n".join(lines) + "\n")
    rows = list(inference)
    if live:
        rows += live["keystroke"] + live["fanout"][:1]
    (out / "latency.svg").write_text(_svg(rows))


def _svg(rows: list[Summary]) -> str:
    """Median (bar) and p99 (tick) per row on a log scale of microseconds."""
    width, left, bar_h, gap = 900, 380, 16, 10
    height = 50 + len(rows) * (bar_h + gap)
    lo = math.floor(math.log10(max(0.1, min(s.median for s in rows))))
    hi = math.ceil(math.log10(max(s.p99 for s in rows)))
    scale = (width - left - 30) / max(1, hi - lo)

    def x(v: float) -> float:
        return left + (math.log10(max(v, 10**lo)) - lo) * scale

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="16" font-weight="bold">latency, µs (log scale): bar = median, tick = p99</text>',
    ]
    for decade in range(lo, hi + 1):
        parts.append(
            f'<line x1="{x(10**decade):.1f}" y1="24" x2="{x(10**decade):.1f}" y2="{height - 10}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{x(10**decade):.1f}" y="34" text-anchor="middle" fill="#666">{10**decade:,}</text>')
    for i, s in enumerate(rows):
        y = 44 + i * (bar_h + gap)
        parts.append(f'<text x="{left - 8}" y="{y + 12}" text-anchor="end">{s.name}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{x(s.median) - left:.1f}" height="{bar_h}" fill="#2f5bd3"/>')
        parts.append(
            f'<line x1="{x(s.p99):.1f}" y1="{y - 2}" x2="{x(s.p99):.1f}" y2="{y + bar_h + 2}" '
            'stroke="#c0392b" stroke-width="2"/>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
