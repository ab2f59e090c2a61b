#!/usr/bin/env python3
"""Compares an energy-blind and an energy-aware run of the energy bench (issue 14).

Reads each run's results (loadgen.py's JSON lines: the job views plus "loadgen") and replay log
(replay.py's CSV: which simulated minute was sent at which wall time), and the trace, then
prints, per run and as aware/blind ratios:

- the renewable share of executor CPU-seconds: sum(cpu * renewable_share) / sum(cpu), with
  `cpu` = the job view's `timings_ms.cpu` (falling back to `timings_ms.run` for jobs without
  it, and saying so) and `renewable_share` as the job view reports it (null counts as 0: grid
  power). Beside it, the same share taken from the trace instead: the share of the job's node
  at the simulated minute its `started_at` maps to (a cross-check of cola's accounting);
- p50 / p95 latency (`finished_at` - `created_at`, nearest rank) of the non-shiftable jobs;
- the shiftable jobs: how many started after their `not_after` or never (violations), and how
  long they were held (`started_at` - `created_at`, p50 / max);
- jobs and CPU-seconds per node; jobs that did not succeed; 429 retries.

Targets: aware/blind renewable share >= 1.5, aware/blind p95 <= 1.10, no deadline violated.
With `--check` the exit code is 1 when one is missed (or a job did not succeed or was not
submitted); without, 0. Bad input: 2.

`--svg FILE` draws the simulated day: each node's renewable share (lines), and for each run
the CPU-seconds started per simulated hour, stacked by node. `--json FILE` writes the figures.

    python3 scripts/energy/evaluate.py --blind blind.jsonl --blind-replay replay-blind.csv \\
        --aware aware.jsonl --aware-replay replay-aware.csv --svg energy.svg [--check]

Standard library only.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

import make_trace

SHARE_TARGET = 1.5
P95_TARGET = 1.10
NODE_COLOURS = ("#e6730f", "#2a9d5c", "#6a5acd", "#c2185b", "#1f77b4", "#8c6d31")


def parse_time(text: str | None) -> float | None:
    """Unix seconds of an RFC 3339 time (any number of fractional digits, `Z` or an offset)."""
    if not text:
        return None
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return stamp.timestamp() + (float("0." + fraction) if fraction else 0.0)


class ReplayClock:
    """Maps wall times to simulated minutes from a replay log."""

    def __init__(self, path: Path) -> None:
        self.walls: list[float] = []
        self.minutes: list[float] = []
        self.speed = 0.0
        with open(path, newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    self.walls.append(float(row["wall_time"]))
                    self.minutes.append(float(row["sim_minute"]))
                    self.speed = float(row["speed"])
                except (KeyError, TypeError, ValueError) as e:
                    raise ValueError(f"{path}:{line}: not a replay log row ({e})") from None
        if not self.walls or self.speed <= 0:
            raise ValueError(f"{path}: an empty replay log")
        self.end = self.minutes[-1] + make_trace.STEP_MINUTES  # the last reading's step ends here

    def minute(self, wall: float) -> float | None:
        """The simulated minute at a wall time (None before the replay's first step); after
        its last step, the simulated clock runs on at the replay's speed."""
        i = bisect.bisect_right(self.walls, wall) - 1
        if i < 0:
            return None
        elapsed = (wall - self.walls[i]) * self.speed / 60.0
        if i + 1 < len(self.walls):
            elapsed = min(elapsed, self.minutes[i + 1] - self.minutes[i])
        return self.minutes[i] + elapsed


def nearest_rank(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


@dataclass
class RunFigures:
    name: str
    jobs: int = 0
    not_submitted: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0
    renewable_cpu_s: float = 0.0
    trace_renewable_cpu_s: float = 0.0
    # What the best placement could have had: each job on the greenest node when it came (a
    # shiftable one: the greenest node and moment before its latest start), from the trace.
    ideal_renewable_cpu_s: float = 0.0
    cpu_fallback_jobs: int = 0  # jobs whose cpu came from timings_ms.run
    cpu_missing_jobs: int = 0
    share_unknown_jobs: int = 0  # renewable_share null: counted as grid
    p50_ms: float | None = None
    p95_ms: float | None = None
    latency_jobs: int = 0
    shiftable: int = 0
    violations: int = 0
    held_p50_ms: float | None = None
    held_max_ms: float | None = None
    retries_429: int = 0
    per_node_jobs: dict[str, int] = field(default_factory=dict)
    per_node_cpu_s: dict[str, float] = field(default_factory=dict)
    # CPU-seconds started per simulated hour (0-23) and node; jobs outside the day counted apart.
    hourly_cpu_s: dict[str, list[float]] = field(default_factory=dict)
    outside_day: int = 0

    @property
    def share(self) -> float | None:
        return self.renewable_cpu_s / self.cpu_s if self.cpu_s else None

    @property
    def trace_share(self) -> float | None:
        return self.trace_renewable_cpu_s / self.cpu_s if self.cpu_s else None

    @property
    def ideal_share(self) -> float | None:
        return self.ideal_renewable_cpu_s / self.cpu_s if self.cpu_s else None


def read_results(path: Path) -> list[dict]:
    jobs = []
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                job = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{line_no}: {e}") from None
            if not isinstance(job, dict) or not isinstance(job.get("loadgen"), dict):
                raise ValueError(f"{path}:{line_no}: not a loadgen result (no \"loadgen\" object)")
            jobs.append(job)
    return jobs


def figures(name: str, runs: list[tuple[list[dict], ReplayClock]], trace) -> RunFigures:
    """The figures of one mode over its runs (each run's jobs with its own replay clock)."""
    run = RunFigures(name)
    latencies, held = [], []
    for jobs, clock in runs:
        add_jobs(run, jobs, clock, trace, latencies, held)
    run.latency_jobs = len(latencies)
    run.p50_ms, run.p95_ms = nearest_rank(latencies, 0.50), nearest_rank(latencies, 0.95)
    run.held_p50_ms, run.held_max_ms = nearest_rank(held, 0.50), max(held) if held else None
    return run


def add_jobs(run: RunFigures, jobs: list[dict], clock: ReplayClock, trace, latencies: list[float], held: list[float]) -> None:
    for job in jobs:
        meta = job["loadgen"]
        run.retries_429 += int(meta.get("retries_429") or 0)
        if not job.get("id"):
            run.not_submitted += 1
            continue
        run.jobs += 1
        status = job.get("status", "?")
        run.statuses[status] = run.statuses.get(status, 0) + 1
        node = job.get("node") or "?"
        run.per_node_jobs[node] = run.per_node_jobs.get(node, 0) + 1
        created, started, finished = (parse_time(job.get(k)) for k in ("created_at", "started_at", "finished_at"))

        timings = job.get("timings_ms") or {}
        cpu_ms = timings.get("cpu")
        if cpu_ms is None:
            cpu_ms = timings.get("run")
            if cpu_ms is None:
                run.cpu_missing_jobs += 1
                cpu_ms = 0
            else:
                run.cpu_fallback_jobs += 1
        cpu_s = cpu_ms / 1000.0
        share = job.get("renewable_share")
        if share is None:
            run.share_unknown_jobs += 1
            share = 0.0
        run.cpu_s += cpu_s
        run.renewable_cpu_s += cpu_s * share
        run.per_node_cpu_s[node] = run.per_node_cpu_s.get(node, 0.0) + cpu_s
        minute = clock.minute(started) if started is not None else None
        not_after = parse_time(meta.get("not_after") or (job.get("schedule") or {}).get("not_after"))
        run.ideal_renewable_cpu_s += cpu_s * best_share(trace, clock, created, not_after if meta.get("shiftable") else None)
        if minute is not None and 0 <= minute < clock.end:
            run.trace_renewable_cpu_s += cpu_s * make_trace.share_at(trace, node, minute % make_trace.MINUTES_PER_DAY)
        if minute is not None and 0 <= minute < make_trace.MINUTES_PER_DAY:
            run.hourly_cpu_s.setdefault(node, [0.0] * 24)[int(minute // 60)] += cpu_s
        elif started is not None:
            run.outside_day += 1

        if meta.get("shiftable"):
            run.shiftable += 1
            if started is None or not_after is None or started > not_after:
                run.violations += 1
            if started is not None and created is not None:
                held.append((started - created) * 1000.0)
        elif created is not None and finished is not None:
            latencies.append((finished - created) * 1000.0)


# A shiftable job's latest start before its not_after (the middleware's START_MARGIN).
START_MARGIN_S = 2.0


def best_share(trace, clock: ReplayClock, created: float | None, not_after: float | None) -> float:
    """The highest renewable share any node had in the replayed day from `created` (the
    submission) to the latest start before `not_after` (just `created` when None)."""
    if created is None:
        return 0.0
    first = clock.minute(created)
    if first is None or first >= clock.end:
        return 0.0
    last = first
    latest = clock.minute(not_after - START_MARGIN_S) if not_after is not None else None
    if latest is not None:
        last = max(first, min(latest, clock.end - 1e-9))
    steps = range(int(first // make_trace.STEP_MINUTES), int(last // make_trace.STEP_MINUTES) + 1)
    shares = (make_trace.share_at(trace, node, step * make_trace.STEP_MINUTES) for node in trace for step in steps)
    return max(shares, default=0.0)


def read_runs(results: list[Path], replays: list[Path]) -> list[tuple[list[dict], ReplayClock]]:
    """Each run's results with its replay log (as many of one as of the other)."""
    if len(results) != len(replays):
        raise ValueError(f"{len(results)} results files but {len(replays)} replay logs: one of each per run")
    return [(read_results(r), ReplayClock(c)) for r, c in zip(results, replays)]


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(value, digits=3, unit="") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def report(blind: RunFigures, aware: RunFigures) -> tuple[str, list[str], dict]:
    """The table, the missed targets, and the figures as JSON."""
    share_ratio = ratio(aware.share, blind.share)
    p95_ratio = ratio(aware.p95_ms, blind.p95_ms)
    rows = [
        ("jobs (not submitted)", f"{blind.jobs} ({blind.not_submitted})", f"{aware.jobs} ({aware.not_submitted})", "", ""),
        ("statuses", json.dumps(blind.statuses, sort_keys=True), json.dumps(aware.statuses, sort_keys=True), "", ""),
        ("executor CPU-seconds", fmt(blind.cpu_s, 1), fmt(aware.cpu_s, 1), fmt(ratio(aware.cpu_s, blind.cpu_s), 2, "x"), ""),
        ("renewable share of CPU (job views)", fmt(blind.share), fmt(aware.share), fmt(share_ratio, 2, "x"), f">= {SHARE_TARGET}x"),
        ("renewable share of CPU (trace)", fmt(blind.trace_share), fmt(aware.trace_share),
         fmt(ratio(aware.trace_share, blind.trace_share), 2, "x"), ""),
        ("renewable share, best placement (trace)", "", fmt(aware.ideal_share),
         fmt(ratio(aware.ideal_share, blind.share), 2, "x"), "(the most possible)"),
        ("non-shiftable latency p50", fmt(blind.p50_ms, 0, " ms"), fmt(aware.p50_ms, 0, " ms"),
         fmt(ratio(aware.p50_ms, blind.p50_ms), 2, "x"), ""),
        ("non-shiftable latency p95", fmt(blind.p95_ms, 0, " ms"), fmt(aware.p95_ms, 0, " ms"), fmt(p95_ratio, 2, "x"),
         f"<= {P95_TARGET:.2f}x"),
        ("shiftable jobs: late or never started", f"{blind.violations} of {blind.shiftable}",
         f"{aware.violations} of {aware.shiftable}", "", "0"),
        ("shiftable jobs held: p50 / max", f"{fmt(blind.held_p50_ms, 0)} / {fmt(blind.held_max_ms, 0)} ms",
         f"{fmt(aware.held_p50_ms, 0)} / {fmt(aware.held_max_ms, 0)} ms", "", ""),
    ]
    for node in sorted(set(blind.per_node_jobs) | set(aware.per_node_jobs)):
        rows.append((f"node {node}: jobs / CPU-s",
                     f"{blind.per_node_jobs.get(node, 0)} / {blind.per_node_cpu_s.get(node, 0.0):.1f}",
                     f"{aware.per_node_jobs.get(node, 0)} / {aware.per_node_cpu_s.get(node, 0.0):.1f}", "", ""))
    rows.append(("429 retries", str(blind.retries_429), str(aware.retries_429), "", ""))
    widths = [max(len(r[i]) for r in rows + [("", "blind", "aware", "aware/blind", "target")]) for i in range(5)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(("", "blind", "aware", "aware/blind", "target"), widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    notes = []
    for run in (blind, aware):
        if run.cpu_fallback_jobs:
            notes.append(f"{run.name}: timings_ms.cpu absent on {run.cpu_fallback_jobs} jobs: timings_ms.run used for them")
        if run.cpu_missing_jobs:
            notes.append(f"{run.name}: {run.cpu_missing_jobs} jobs have neither timings_ms.cpu nor .run: counted as 0 CPU")
        if run.share_unknown_jobs:
            notes.append(f"{run.name}: renewable_share null on {run.share_unknown_jobs} jobs: counted as grid power (0)")
        if run.outside_day:
            notes.append(f"{run.name}: {run.outside_day} jobs started outside the replayed day (not in the plot)")
    missed = []
    if share_ratio is None or share_ratio < SHARE_TARGET:
        missed.append(f"renewable share aware/blind {fmt(share_ratio, 2, 'x')} < {SHARE_TARGET}x")
    if p95_ratio is None or p95_ratio > P95_TARGET:
        missed.append(f"p95 latency aware/blind {fmt(p95_ratio, 2, 'x')} > {P95_TARGET:.2f}x")
    for run in (blind, aware):
        if run.violations:
            missed.append(f"{run.name}: {run.violations} shiftable jobs started after their not_after (or never)")
        bad = run.jobs - run.statuses.get("succeeded", 0)
        if bad or run.not_submitted:
            missed.append(f"{run.name}: {bad} jobs did not succeed, {run.not_submitted} were not submitted")
    summary = {
        run.name: {k: v for k, v in vars(run).items() if k != "hourly_cpu_s"}
        | {"share": run.share, "trace_share": run.trace_share, "ideal_share": run.ideal_share}
        for run in (blind, aware)
    } | {"share_ratio": share_ratio, "p95_ratio": p95_ratio, "missed": missed}
    return "\n".join(lines + [f"note: {n}" for n in notes]), missed, summary


def svg_plot(trace, blind: RunFigures, aware: RunFigures) -> str:
    """The simulated day as a self-contained SVG: shares on top, CPU per hour for each run."""
    nodes = sorted(trace)
    for run in (blind, aware):
        nodes += [n for n in sorted(run.hourly_cpu_s) if n not in nodes]
    colour = {n: NODE_COLOURS[i % len(NODE_COLOURS)] for i, n in enumerate(nodes)}
    width, left, right = 900, 70, 150
    plot_w = width - left - right
    panels = [("Renewable share per node (the trace)", 64, 170),
              ("Energy-blind: CPU-seconds started per simulated hour, by node", 294, 170),
              ("Energy-aware: CPU-seconds started per simulated hour, by node", 524, 170)]
    height = 750
    x = lambda minute: left + plot_w * minute / make_trace.MINUTES_PER_DAY  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
           f'{escape(f"cola energy bench: renewable share of executor CPU, blind {fmt(blind.share)}, aware {fmt(aware.share)} ({fmt(ratio(aware.share, blind.share), 2, chr(215))})")}</text>']

    def axes(title: str, top: int, h: int, y_max: float, y_label: str, ticks: list[float]) -> None:
        out.append(f'<text x="{left}" y="{top - 8}" font-weight="bold">{escape(title)}</text>')
        out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{h}" fill="none" stroke="#444"/>')
        for t in ticks:
            y = top + h - h * t / y_max
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
        for hour in range(0, 25, 3):
            xx = x(hour * 60)
            out.append(f'<line x1="{xx:.1f}" y1="{top + h}" x2="{xx:.1f}" y2="{top + h + 4}" stroke="#444"/>')
            out.append(f'<text x="{xx:.1f}" y="{top + h + 17}" text-anchor="middle">{hour:02d}:00</text>')
        out.append(f'<text transform="translate({left - 48},{top + h / 2}) rotate(-90)" text-anchor="middle">{escape(y_label)}</text>')

    # Shares.
    title, top, h = panels[0]
    axes(title, top, h, 1.0, "renewable share", [0, 0.25, 0.5, 0.75, 1.0])
    for node in sorted(trace):
        points = " ".join(f"{x(m):.1f},{top + h - h * r['renewable_share']:.1f}" for m, r in sorted(trace[node].items()))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour[node]}" stroke-width="1.8"/>')

    # CPU per hour, one panel per run, on the same scale.
    y_max = max([sum(cpu[hour] for cpu in run.hourly_cpu_s.values()) for run in (blind, aware) for hour in range(24)] + [0.0])
    step = nice_step(y_max / 4 if y_max else 1.0)
    y_max = step * max(1, math.ceil(y_max / step))
    for (title, top, h), run in zip(panels[1:], (blind, aware)):
        axes(f"{title} (renewable share {fmt(run.share)})", top, h, y_max, "CPU-seconds",
             [step * i for i in range(int(round(y_max / step)) + 1)])
        bar_w = plot_w / 24
        for hour in range(24):
            base = 0.0
            for node in nodes:
                value = run.hourly_cpu_s.get(node, [0.0] * 24)[hour]
                if value <= 0:
                    continue
                y0 = top + h - h * (base + value) / y_max
                out.append(f'<rect x="{left + hour * bar_w + 1:.1f}" y="{y0:.1f}" width="{bar_w - 2:.1f}" '
                           f'height="{h * value / y_max:.1f}" fill="{colour[node]}"><title>{escape(node)} '
                           f'{hour:02d}:00: {value:.2f} CPU-s</title></rect>')
                base += value
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 12}" text-anchor="middle">simulated time of day</text>')

    # Legend.
    lx = left + plot_w + 20
    out.append(f'<text x="{lx}" y="{panels[0][1] + 4}" font-weight="bold">node</text>')
    for i, node in enumerate(nodes):
        y = panels[0][1] + 22 + 20 * i
        out.append(f'<rect x="{lx}" y="{y - 10}" width="14" height="12" fill="{colour[node]}"/>')
        label = node if node != "?" else "? (view names no node)"
        out.append(f'<text x="{lx + 20}" y="{y}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least raw."""
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Each option once per run, in the same order: the n-th replay log goes with the n-th results.
    parser.add_argument("--blind", type=Path, action="append", required=True, help="results of an energy-blind run")
    parser.add_argument("--aware", type=Path, action="append", required=True, help="results of an energy-aware run")
    parser.add_argument("--blind-replay", type=Path, action="append", required=True, help="replay log of an energy-blind run")
    parser.add_argument("--aware-replay", type=Path, action="append", required=True, help="replay log of an energy-aware run")
    parser.add_argument("--trace", type=Path, default=make_trace.DEFAULT_OUT)
    parser.add_argument("--svg", type=Path, help="write the plot here")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    try:
        trace = make_trace.read_trace(args.trace)
        blind = figures("blind", read_runs(args.blind, args.blind_replay), trace)
        aware = figures("aware", read_runs(args.aware, args.aware_replay), trace)
    except (OSError, ValueError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    table, missed, summary = report(blind, aware)
    print(table)
    if args.svg:
        args.svg.write_text(svg_plot(trace, blind, aware))
        print(f"plot: {args.svg}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    for m in missed:
        print(f"missed: {m}")
    if not missed:
        print("every target met")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
