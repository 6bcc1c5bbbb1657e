"""Writes docs/benchmarks.md and docs/latency.svg from one benchmark run."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from .attacks import GOAL_MIB, calm_figures
from .stats import Summary, fmt, percentile


def _typing_rate() -> float:
    from .live import TYPING_RATE

    return TYPING_RATE


def live_sections() -> list[tuple[str, Callable[[Path], dict]]]:
    from . import flood, live

    return [("live", lambda work: live.run_all(work)), ("flood", lambda work: flood.run(work))]


def _table(rows: list[Summary], baseline: Summary | None = None, baseline_label: str = "") -> list[str]:
    head = "| what | samples | median | p99 |" + (f" median ÷ {baseline_label} |" if baseline else "")
    lines = [head, "|---|---|---|---|" + ("---|" if baseline else "")]
    for s in rows:
        ratio = f" {s.median / baseline.median:,.1f}× |" if baseline else ""
        lines.append(f"| {s.name} | {s.samples} | {fmt(s.median)} {s.unit} | {fmt(s.p99)} {s.unit} |{ratio}")
    return lines


def _floor_ratio(live: dict) -> float:
    floor_ping, floor_keystroke = live["floor"]
    return floor_keystroke.median / floor_ping.median


def _floor_lines(live: dict) -> list[str]:
    """Section 2's floor: what the keystroke ÷ ping ratio is with no application work at all."""
    floor_ping, floor_keystroke = live["floor"]
    ping, keystroke, *_ = live["keystroke"]
    added = (keystroke.median - ping.median) - (floor_keystroke.median - floor_ping.median)
    return [
        "The floor under the keystroke: `bench/floor.py`, an ASGI application under the same",
        "`project.serve` that only reads each update's `seq` and sends back a prediction reply this",
        "server gave (the same bytes), measured the same way on a socket of its own:",
        "",
        *_table([floor_ping, floor_keystroke], floor_ping, "its ping"),
        "",
        f"- With no validation, model or bookkeeping at all, a keystroke is {_floor_ratio(live):.2f}× its ping:",
        "  what daphne, autobahn and the client spend on a frame and an answer of this size beyond a ping",
        f"  and its pong. This project's application adds {fmt(added)} µs to that difference "
        f"({keystroke.median / ping.median:.2f}× in all).",
        "",
    ]


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
            f"{keystroke.median / ping.median:.1f}× the socket's own ping round trip (an application that "
            f"does nothing but answer measures {_floor_ratio(live):.2f}×); "
            f"a REST call takes {rest.median / keystroke.median:.1f}× and a form round trip "
            f"{form.median / keystroke.median:.1f}× as long."
        )
    comparison = sections.get("mlserver") or {}
    attacks = sections.get("attacks") or []
    if comparison and "skipped" not in comparison:
        ours, theirs = comparison["this project"], comparison["MLServer"]
        lines.append(
            f"- Beside Seldon MLServer on the same model (V2 infer, this project ÷ MLServer): 1 row "
            f"{ours['one_row'].median / theirs['one_row'].median:.2f}× the median time, 8 connections "
            f"{ours['throughput'] / theirs['throughput']:.2f}× the throughput, 1000 rows "
            f"{ours['batch'].median / theirs['batch'].median:.2f}× the median time; REST one row is "
            f"{comparison['rest'].median / comparison['v2_beside_rest'].median:.2f}× this project's V2 one row."
        )
    if attacks:
        real = [o for o in attacks if o.attack.number != "0"]  # row 0 is the calm client alone
        worst = max(real, key=lambda o: o.rise_mib)
        over = [o for o in real if o.rise_mib > GOAL_MIB or not o.alive]
        lines.append(
            f"- Under attack, the largest rise of one daphne process's resident memory was "
            f"{worst.rise_mib:,.0f} MiB (attack {worst.attack.number}); "
            + (
                f"{len(over)} of {len(real)} attacks went over the {GOAL_MIB} MiB goal "
                f"({', '.join(o.attack.number for o in over)})."
                if over
                else f"every attack stayed within the {GOAL_MIB} MiB goal."
            )
        )
    rows = list(inference)
    proba_elsewhere = comparison.get("proba_mlserver_venv") if comparison else None
    if proba_elsewhere:
        pandas = proba_elsewhere.get("pandas")
        rows.append(
            Summary.of(
                "scikit-learn predict_proba, model in memory (MLServer's venv, "
                + (f"pandas {pandas} installed)" if pandas else "no pandas)"),
                proba_elsewhere["timings"],
            )
        )
    lines += ["", "## 1. Inference per row", "", *_table(rows, served, "served"), ""]
    lines += [
        "`served` is `AdditiveModel.predict_one` on the folded pipeline (checked against scikit-learn",
        "to 1e-12 when the model loads); the others call `predict_proba` on the same one-row arrays.",
        "scikit-learn asks for pandas on every `predict_proba`; the last row times the same call in",
        "MLServer's venv (section 7), where pandas is installed, so the effect is shown, not hidden.",
        "",
    ]
    if live:
        typing_rate = _typing_rate()
        ping, *_ = live["keystroke"]
        lines += ["## 2. Keystroke to risk and its baselines", "", *_table(live["keystroke"], ping, "ping"), ""]
        lines += [
            "All on one daphne process on loopback; the WebSocket rows use the same socket, interleaved,",
            f"keystrokes paced at {typing_rate:g} a second like a fast typist (under the flood limit; section 6",
            "measures a flood); each ping goes half a period after its keystroke, so both find the socket",
            "idle for the same time.",
            "HTTP rows reuse one keep-alive connection; the form row includes CSRF and storing the assessment.",
            "",
            *_floor_lines(live),
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
            "A typist on daphne process A sharing on board `bench`, a kiosk on process B, one redis-server;",
            "the lag is from a shared update to its kiosk event once the tile is shown. Each process sends a",
            f"board its changes once per tick ({_tick_ms():g} ms), so the goal is a p99 of at most the tick plus",
            f"20 ms: **{_fanout_verdict(live['fanout'][0])}**. Updates are sent 4 a second, one a tick; the first",
            "5 are a warm-up (the first publication opens the publishing process's Redis connections).",
            "",
            *_kiosk_attack_lines(live.get("kiosk_attack")),
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
    lines += _mlserver_lines(comparison)
    lines += _attack_lines(attacks)
    lines += _shadow_lines(sections.get("shadow"))
    (out / "benchmarks.md").write_text("\n".join(lines) + "\n")
    rows = list(inference)
    if live:
        rows += live["keystroke"] + live["fanout"][:1]
    if comparison and "skipped" not in comparison:
        rows += [comparison["MLServer"]["one_row"], comparison["this project"]["one_row"], comparison["rest"]]
    (out / "latency.svg").write_text(_svg(rows))


def _tick_ms() -> float:
    from django.conf import settings

    return float(settings.BOARD_TICK_S) * 1000


def _fanout_verdict(lag: Summary) -> str:
    goal_us = (_tick_ms() + 20) * 1000
    met = "met" if lag.p99 <= goal_us else "not met"
    return f"p99 {fmt(lag.p99 / 1000)} ms against {fmt(goal_us / 1000)} ms, {met}"


def _kiosk_attack_lines(attack: dict | None) -> list[str]:
    """Section 5's attack row (bench/kiosk_attack.py)."""
    if not attack:
        return []
    alone = Summary.of("calm keystroke, alone", attack["alone_us"])
    during = Summary.of("calm keystroke, during the attack", attack["during_us"])
    tried = attack["attempts"]
    return [
        '**One address attacks the board** (bench/kiosk_attack.py; docs/kiosk.md, "Kiosks under load").',
        f"From 127.0.0.1, for {attack['seconds']:g} s: {tried['kiosks']:,} kiosk handshakes (four at a time) and 120",
        "sessions sharing on the board and typing ten times a second, on two processes with the settings as",
        "deployed. A kiosk on 127.0.0.2 and a calm typist on 127.0.0.3 (ten keystrokes a second) beside it:",
        "",
        *_table([alone, during], alone, "alone"),
        "",
        f"- The real kiosk: {attack['heartbeats']} heartbeats, the longest gap {attack['longest_gap_s']:.1f} s "
        f"(one is sent every 5 s), closed {len(attack['closed'])} times.",
        f"- The attacker's kiosk handshakes: {tried['accepted']:,} accepted, {tried['refused']:,} refused; at most "
        f"{attack['peak_kiosks']:g} kiosk sockets open on both processes together, the real one included.",
        f"- Calm keystroke median during the attack ÷ alone: **{attack['ratio']:.1f}×** (goal: at most 3×).",
        "",
    ]


def _ms(value_us: float) -> str:
    return f"{fmt(value_us / 1000)} ms"


def _mlserver_lines(comparison: dict) -> list[str]:
    if not comparison:
        return []
    lines = ["## 7. This project beside Seldon MLServer, same model", ""]
    if "skipped" in comparison:
        return [*lines, f"Skipped in this run: {comparison['skipped']}", ""]
    ours, theirs = comparison["this project"], comparison["MLServer"]
    versions = comparison.get("mlserver_versions") or {}

    def timed(label: str, key: str, stat: str) -> tuple[str, str, str, float]:
        mine, other = getattr(ours[key], stat), getattr(theirs[key], stat)
        return label, _ms(mine), _ms(other), mine / other

    rows = [
        timed("V2 infer, 1 row, one connection: median", "one_row", "median"),
        timed("V2 infer, 1 row, one connection: p99", "one_row", "p99"),
        (
            "server CPU per 1-row request",
            f"{ours['cpu_ms']:.2f} ms",
            f"{theirs['cpu_ms']:.2f} ms",
            ours["cpu_ms"] / theirs["cpu_ms"] if theirs["cpu_ms"] else float("nan"),
        ),
        (
            "V2 infer, 1 row, 8 connections: requests a second",
            f"{ours['throughput']:,.0f} /s",
            f"{theirs['throughput']:,.0f} /s",
            ours["throughput"] / theirs["throughput"],
        ),
        timed("V2 infer, 1000 rows, one connection: median", "batch", "median"),
        timed("V2 infer, 1000 rows, one connection: p99", "batch", "p99"),
    ]
    rest, v2 = comparison["rest"], comparison["v2_beside_rest"]
    lines += [
        "| what | this project | MLServer | this project ÷ MLServer |",
        "|---|---|---|---|",
        *(f"| {what} | {a} | {b} | {ratio:.2f}× |" for what, a, b, ratio in rows),
        "",
        "For times and CPU a ratio under 1 favours this project; for requests a second, a ratio over 1.",
        "",
        "| this project, one connection, REST and V2 in turns | samples | median | p99 | median ÷ V2 1 row |",
        "|---|---|---|---|---|",
        f"| V2 infer, 1 row | {v2.samples} | {_ms(v2.median)} | {_ms(v2.p99)} | 1.00× |",
        f"| REST `POST /api/v1/predict`, 1 row | {rest.samples} | {_ms(rest.median)} | {_ms(rest.p99)} | "
        f"{rest.median / v2.median:.2f}× |",
        "",
        f"- MLServer {versions.get('mlserver', '?')} with mlserver-sklearn {versions.get('mlserver-sklearn', '?')} "
        f"(scikit-learn {versions.get('scikit-learn', '?')}, NumPy {versions.get('numpy', '?')}, pandas "
        f"{versions.get('pandas', '?')}), `parallel_workers: 0`, in its own venv built from "
        "`bench/mlserver-requirements.txt`; it serves the `model.joblib` of this project's active model "
        f"({comparison.get('exported_by', 'exported')}) and answers `predict_proba`; this project answers its "
        "`risk` output.",
        f"- Both returned the same probabilities for {comparison['agreement_rows']} rows of the training data "
        f"(largest difference {comparison['agreement']:.1e}) before anything was timed.",
        "- One client (Python's `http.client`, keep-alive) for both servers; the servers took turns in four rounds. "
        "CPU is the server process's user + system time (with its children) over the 1-row run, divided by "
        "the requests. This project runs one daphne process with production settings (`DJANGO_DEBUG=0`), as",
        "MLServer runs; the other sections run the development settings (`DJANGO_DEBUG=1`). REST and V2 take",
        "turns on one connection, ten requests at a time, the first of each turn not timed: both are sampled",
        "over the same stretch of time, and each timed request follows one of its own kind.",
        "",
    ]
    return lines


def _shadow_lines(shadow: dict | None) -> list[str]:
    """README: "Model registry": the same requests with and without a shadow version, same run."""
    if not shadow:
        return []
    summaries = shadow["summaries"]
    lines = [
        "## 9. The cost of a shadow version",
        "",
        f"Measured {shadow['measured']} (`python -m bench --only=shadow` measures this section alone).",
        "",
        "| what | samples | median, no shadow | p99, no shadow | median, with a shadow | p99, with a shadow "
        "| median added | median with ÷ without |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for where in ("service", "daphne"):
        for kind in ("V2 1 row", "REST 1 row", "keystroke"):
            off, on = summaries[f"{where}: {kind}, no shadow"], summaries[f"{where}: {kind}, with a shadow"]
            lines.append(
                f"| {where}: {kind} | {off.samples} + {on.samples} | {fmt(off.median)} µs | {fmt(off.p99)} µs "
                f"| {fmt(on.median)} µs | {fmt(on.p99)} µs | {on.median - off.median:+.1f} µs "
                f"| {on.median / off.median:.2f}× |"
            )
    lines += [
        "",
        "`service` rows call the prediction service in the benchmark's own process: what the shadow itself",
        "costs. `daphne` rows are round trips to one daphne process (HTTP keep-alive; keystrokes paced at",
        f"{_typing_rate():g} a second on one socket), where that cost is lost in the noise of the machine.",
        f"{shadow['rounds']} rounds without and {shadow['rounds']} with the shadow alternate (set and cleared",
        "through the service between them), so both halves see the same machine. The shadow is a second,",
        "quickly trained version on the fast path; REST rows also store its risk.",
        "",
    ]
    return lines


def _attack_lines(attacks: list) -> list[str]:
    if not attacks:
        return []
    calm = next((o for o in attacks if o.attack.number == "0"), None)
    lines = [
        "## 8. Attacks: one daphne process's memory and a calm client",
        "",
        "Each attack runs against a fresh daphne process (with its own redis-server as channel layer and",
        "board store, started with 1,024 open files allowed unless the server raises it). Resident memory",
        "is sampled every 20 ms; the rise is the peak during the attack (and 1 s after) over the warmed-up",
        "process. A calm client on another loopback address (127.0.0.2) sends a REST prediction and a",
        f"live-socket keystroke five times a second throughout. Goal: no attack raises the process by more than "
        f"{GOAL_MIB} MiB.",
        "",
        "| attack | before | peak | rise | within goal | calm REST median / p99 | calm keystroke median / p99 "
        "| calm failures | peak open files (limit) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in attacks:
        failures = o.calm.get("failures") or {}
        failed = ", ".join(f"{v} {k}" for k, v in failures.items()) or "none"
        dead = "" if o.alive else " (the process died)"
        lines.append(
            f"| {o.attack.number}. {o.attack.title} | {o.baseline_mib:.0f} MiB | {o.peak_mib:.0f} MiB | "
            f"**{o.rise_mib:+,.0f} MiB**{dead} | {'yes' if o.rise_mib <= GOAL_MIB and o.alive else 'NO'} | "
            f"{calm_figures(o.calm.get('rest', []))} | {calm_figures(o.calm.get('keystroke', []))} | {failed} | "
            f"{o.peak_fds:,} ({o.open_file_limit if o.open_file_limit else '?'}) |"
        )
    if calm and calm.calm.get("rest") and calm.calm.get("keystroke"):
        base_rest = Summary.of("", calm.calm["rest"]).median
        base_key = Summary.of("", calm.calm["keystroke"]).median
        lines += ["", "Calm client's median during each attack ÷ its median with no attack:", ""]
        for o in attacks[1:]:
            rest, key = o.calm.get("rest"), o.calm.get("keystroke")
            lines.append(
                f"- {o.attack.number}: REST "
                + (f"{Summary.of('', rest).median / base_rest:.1f}×" if rest else "none answered")
                + ", keystroke "
                + (f"{Summary.of('', key).median / base_key:.1f}×" if key else "none answered")
            )
    lines += ["", "What each attack saw:", ""]
    for o in attacks:
        lines.append(f"- **{o.attack.number}. {o.attack.title}** ({o.seconds:.0f} s): " + "; ".join(o.notes) + ".")
    lines.append("")
    return lines


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
