#!/usr/bin/env python3
"""A 24-hour solar day for three nodes, as the energy bench's telemetry (issue 14).

Writes `solar-trace.csv` beside this script (or `--out`): one reading per node every 5 simulated
minutes, columns

    minute_of_day,node,renewable_share,solar_w,battery_pct,carbon_g_per_kwh

Run `python3 scripts/energy/make_trace.py` to make it again: the model is seeded (`--seed`,
default 14), so the file comes out byte for byte the same (scripts/energy/test_energy.py checks
that the shipped file is what this script makes). The day before it, `solar-trace-yesterday.csv`
(the same model and nodes, other clouds: seed 13), is what the bench replays first, for the
middlewares' forecast to have a yesterday: `python3 scripts/energy/make_trace.py --yesterday`.
Standard library only.

The model, per node, at minute m of the day (hour h = m / 60):

- Clear sky: the sun is up from 06:00 to 20:00. A panel's clear-sky output is
  `peak_w * sin(pi * u) ** 1.5`, where u goes from 0 at sunrise to 1/2 at the panel's peak hour
  (its orientation: east-facing panels peak in the morning, west-facing ones in the afternoon)
  to 1 at sunset, linearly on each side. Before sunrise and after sunset it is exactly 0.
- Clouds: a Markov chain per node over three sky states, clear / broken / overcast, letting
  through 100 % / 55 % / 20 % of the light, one step every 5 minutes; each node has its own
  transition probabilities (its climate) and its own seeded random stream. The light let through
  is smoothed (clouds drift in, they do not switch) and gets a little seeded noise (±4 %).
- `solar_w` = clear-sky output × light let through.
- Each node draws a constant `load_w`; `renewable_share = min(1, solar_w / load_w)` (direct solar
  only: the battery below is not counted, so the night's share is 0).
- `battery_pct`: a site battery that stores the solar surplus above the node's load (95 %
  efficient) and feeds the site's other consumers (a constant `site_w`), between 0 and 100 %.
  Informational only.
- `carbon_g_per_kwh`: the grid's intensity at that hour (a node's base intensity, 20 % higher
  at the evening peak at 19:00 and 20 % lower at 07:00) × (1 − renewable_share).
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "solar-trace.csv"
DEFAULT_SEED = 14
YESTERDAY_OUT = HERE / "solar-trace-yesterday.csv"
YESTERDAY_SEED = 13
COLUMNS = ["minute_of_day", "node", "renewable_share", "solar_w", "battery_pct", "carbon_g_per_kwh"]
STEP_MINUTES = 5
MINUTES_PER_DAY = 24 * 60
SUNRISE_H = 6.0
SUNSET_H = 20.0
SKY_LIGHT = (1.0, 0.55, 0.2)  # clear, broken, overcast


@dataclass(frozen=True)
class Node:
    name: str
    orientation: str
    peak_hour: float  # when the panel's clear-sky output peaks
    peak_w: float  # the panel's clear-sky output at its peak
    load_w: float  # the node's constant draw
    # Sky transitions per 5-minute step: clear -> broken, broken -> clear, broken -> overcast,
    # overcast -> broken (every other move stays).
    clouds: tuple[float, float, float, float]
    battery_wh: float
    site_w: float  # the site's other consumers, fed from the battery
    grid_g_per_kwh: float  # the grid's base carbon intensity


NODES = (
    Node("a", "east", 9.5, 1500.0, 1000.0, (0.02, 0.10, 0.02, 0.10), 5000.0, 150.0, 420.0),
    Node("b", "south", 13.0, 2000.0, 1200.0, (0.04, 0.08, 0.04, 0.08), 4000.0, 150.0, 350.0),
    Node("c", "west", 16.0, 1000.0, 900.0, (0.06, 0.06, 0.06, 0.06), 3000.0, 100.0, 480.0),
)


def clear_sky(peak_hour: float, hour: float) -> float:
    """A panel's clear-sky output as a fraction of its peak (0 at night, 1 at peak_hour)."""
    if hour <= SUNRISE_H or hour >= SUNSET_H:
        return 0.0
    if hour <= peak_hour:
        u = 0.5 * (hour - SUNRISE_H) / (peak_hour - SUNRISE_H)
    else:
        u = 0.5 + 0.5 * (hour - peak_hour) / (SUNSET_H - peak_hour)
    return math.sin(math.pi * u) ** 1.5


def sky_states(node: Node, rng: random.Random, steps: int) -> list[int]:
    """The Markov chain of sky states (0 clear, 1 broken, 2 overcast), one per step."""
    to_broken, to_clear, to_overcast, to_lighter = node.clouds
    state, states = 0, []
    for _ in range(steps):
        states.append(state)
        r = rng.random()
        if state == 0:
            state = 1 if r < to_broken else 0
        elif state == 1:
            state = 0 if r < to_clear else 2 if r < to_clear + to_overcast else 1
        else:
            state = 1 if r < to_lighter else 2
    return states


def grid_intensity(node: Node, hour: float) -> float:
    """The grid's carbon intensity (g/kWh): the node's base, higher in the evening peak."""
    return node.grid_g_per_kwh * (1.0 + 0.2 * math.cos(2.0 * math.pi * (hour - 19.0) / 24.0))


def node_day(node: Node, seed: int, index: int) -> list[dict[str, object]]:
    """One node's readings over the day, one per STEP_MINUTES."""
    rng = random.Random(seed * 1000 + index)
    steps = MINUTES_PER_DAY // STEP_MINUTES
    states = sky_states(node, rng, steps)
    light = SKY_LIGHT[states[0]]
    battery_wh = 0.4 * node.battery_wh
    hours_per_step = STEP_MINUTES / 60.0
    rows = []
    for step in range(steps):
        minute = step * STEP_MINUTES
        hour = minute / 60.0
        light = 0.6 * light + 0.4 * SKY_LIGHT[states[step]]
        noise = 1.0 + rng.uniform(-0.04, 0.04)
        solar_w = node.peak_w * clear_sky(node.peak_hour, hour) * min(1.0, light * noise)
        share = min(1.0, solar_w / node.load_w)
        surplus_w = max(0.0, solar_w - node.load_w)
        battery_wh += (0.95 * surplus_w - node.site_w) * hours_per_step
        battery_wh = min(node.battery_wh, max(0.0, battery_wh))
        rows.append(
            {
                "minute_of_day": minute,
                "node": node.name,
                "renewable_share": f"{share:.4f}",
                "solar_w": f"{solar_w:.1f}",
                "battery_pct": f"{100.0 * battery_wh / node.battery_wh:.1f}",
                "carbon_g_per_kwh": f"{grid_intensity(node, hour) * (1.0 - share):.1f}",
            }
        )
    return rows


def make_rows(seed: int) -> list[dict[str, object]]:
    """Every node's readings, ordered by minute, then node."""
    per_node = [node_day(node, seed, i) for i, node in enumerate(NODES)]
    return [row for readings in zip(*per_node) for row in readings]


def write_trace(path: Path, seed: int) -> list[dict[str, object]]:
    rows = make_rows(seed)
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def read_trace(path: Path) -> dict[str, dict[int, dict[str, float]]]:
    """A trace file as {node: {minute_of_day: {column: value}}} (numbers as floats).

    Raises ValueError naming the line for a malformed file."""
    trace: dict[str, dict[int, dict[str, float]]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise ValueError(f"{path}: expected the columns {','.join(COLUMNS)}, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                minute = int(row["minute_of_day"])
                values = {c: float(row[c]) for c in COLUMNS[2:]}
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}:{line}: {e}") from None
            if not 0 <= minute < MINUTES_PER_DAY or not 0.0 <= values["renewable_share"] <= 1.0:
                raise ValueError(f"{path}:{line}: minute or renewable_share out of range")
            trace.setdefault(row["node"], {})[minute] = values
    if not trace:
        raise ValueError(f"{path}: no readings")
    return trace


def share_at(trace: dict[str, dict[int, dict[str, float]]], node: str, minute: float) -> float:
    """A node's renewable share at a (fractional) minute of the day: the reading in force then
    (the last one at or before it); 0 for an unknown node."""
    readings = trace.get(node)
    if not readings:
        return 0.0
    step = int(minute // STEP_MINUTES) * STEP_MINUTES % MINUTES_PER_DAY
    reading = readings.get(step)
    return reading["renewable_share"] if reading else 0.0


def summary(rows: list[dict[str, object]]) -> str:
    lines = ["node  orientation  panel W  load W  daily renewable share  solar kWh  hours with share >= 0.5"]
    for node in NODES:
        mine = [r for r in rows if r["node"] == node.name]
        shares = [float(r["renewable_share"]) for r in mine]
        kwh = sum(float(r["solar_w"]) for r in mine) * STEP_MINUTES / 60.0 / 1000.0
        green_h = sum(1 for s in shares if s >= 0.5) * STEP_MINUTES / 60.0
        lines.append(
            f"{node.name:<5} {node.orientation:<12} {node.peak_w:>7.0f} {node.load_w:>7.0f} "
            f"{sum(shares) / len(shares):>22.3f} {kwh:>10.1f} {green_h:>24.1f}"
        )
    # What placement can reach at most: a job at a random time on a random node gets the mean
    # of the nodes' shares; on the greenest node at that moment, their maximum.
    by_minute: dict[object, list[float]] = {}
    for r in rows:
        by_minute.setdefault(r["minute_of_day"], []).append(float(r["renewable_share"]))
    mean = sum(sum(s) / len(s) for s in by_minute.values()) / len(by_minute)
    best = sum(max(s) for s in by_minute.values()) / len(by_minute)
    daytime = [s for s in by_minute.values() if max(s) > 0]
    lines.append(
        f"over the day: mean of the nodes {mean:.3f}, greenest node at each time {best:.3f} "
        f"({best / mean:.2f}x); while the sun is up ({len(daytime) * STEP_MINUTES / 60:.1f} h): "
        f"{sum(sum(s) / len(s) for s in daytime) / len(daytime):.3f} and "
        f"{sum(max(s) for s in daytime) / len(daytime):.3f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help=f"the clouds' seed (default {DEFAULT_SEED})")
    parser.add_argument("--out", type=Path, help=f"default {DEFAULT_OUT}")
    parser.add_argument("--yesterday", action="store_true",
                        help=f"the day before: seed {YESTERDAY_SEED}, default out {YESTERDAY_OUT}")
    parser.add_argument("--quiet", action="store_true", help="print no summary")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else YESTERDAY_SEED if args.yesterday else DEFAULT_SEED
    out = args.out or (YESTERDAY_OUT if args.yesterday else DEFAULT_OUT)
    rows = write_trace(out, seed)
    if not args.quiet:
        print(f"wrote {len(rows)} readings to {out}")
        print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
