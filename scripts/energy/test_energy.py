#!/usr/bin/env python3
"""Unit tests of the energy bench's scripts that need neither cola nor NATS (standard library).

    python3 -m unittest discover -s scripts/energy -p 'test_*.py' -v

- make_trace: the shipped trace is what the script makes, byte for byte, every time; values in
  bounds; no sun at night; the nodes differ.
- evaluate: known synthetic runs give known shares, ratios, percentiles, a missed deadline is
  counted, targets are checked, the SVG is well-formed.
- loadgen: the seeded Poisson schedule (rate, shiftable share), the request body, the C program
  (compiled with gcc when there is one), and a whole run against a local stand-in of the API
  that answers 429 first (retries counted) and ends every job.
replay.py is checked against a real nats-server by check-replay.sh.
"""

from __future__ import annotations

import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import unittest
import xml.etree.ElementTree as ET
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import evaluate  # noqa: E402
import loadgen  # noqa: E402
import make_trace  # noqa: E402


class MakeTrace(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir)

    def test_the_shipped_trace_is_what_the_script_makes_every_time(self) -> None:
        first, second = self.dir / "one.csv", self.dir / "two.csv"
        make_trace.main(["--out", str(first), "--quiet"])
        make_trace.main(["--out", str(second), "--quiet"])
        self.assertEqual(first.read_bytes(), second.read_bytes())
        self.assertEqual(first.read_bytes(), make_trace.DEFAULT_OUT.read_bytes(),
                         "scripts/energy/solar-trace.csv is not what make_trace.py makes: run it again")
        other = self.dir / "other.csv"
        make_trace.main(["--out", str(other), "--seed", "15", "--quiet"])
        self.assertNotEqual(first.read_bytes(), other.read_bytes(), "the seed changes nothing")
        yesterday = self.dir / "yesterday.csv"
        make_trace.main(["--out", str(yesterday), "--yesterday", "--quiet"])
        self.assertEqual(yesterday.read_bytes(), make_trace.YESTERDAY_OUT.read_bytes(),
                         "scripts/energy/solar-trace-yesterday.csv is not what make_trace.py --yesterday makes")
        self.assertNotEqual(first.read_bytes(), yesterday.read_bytes(), "yesterday is today")

    def test_readings_are_in_bounds_and_dark_at_night(self) -> None:
        trace = make_trace.read_trace(make_trace.DEFAULT_OUT)
        self.assertEqual(sorted(trace), ["a", "b", "c"])
        loads = {n.name: n.load_w for n in make_trace.NODES}
        for node, readings in trace.items():
            self.assertEqual(sorted(readings), list(range(0, 1440, 5)))
            for minute, r in readings.items():
                self.assertTrue(0.0 <= r["renewable_share"] <= 1.0)
                self.assertTrue(0.0 <= r["battery_pct"] <= 100.0)
                self.assertGreaterEqual(r["solar_w"], 0.0)
                self.assertGreaterEqual(r["carbon_g_per_kwh"], 0.0)
                self.assertAlmostEqual(r["renewable_share"], min(1.0, r["solar_w"] / loads[node]), delta=2e-4)
                if minute <= 6 * 60 or minute >= 20 * 60:
                    self.assertEqual(r["solar_w"], 0.0, f"{node} has sun at minute {minute}")
                    self.assertEqual(r["renewable_share"], 0.0)
            self.assertGreater(max(r["renewable_share"] for r in readings.values()), 0.5, f"{node} never gets sun")

    def test_the_nodes_differ(self) -> None:
        trace = make_trace.read_trace(make_trace.DEFAULT_OUT)
        series = {n: [trace[n][m]["renewable_share"] for m in sorted(trace[n])] for n in trace}
        self.assertNotEqual(series["a"], series["b"])
        self.assertNotEqual(series["b"], series["c"])
        self.assertNotEqual(series["a"], series["c"])
        # East, south, west: the clear-sky output peaks in that order, at each panel's peak hour.
        for node in make_trace.NODES:
            self.assertEqual(make_trace.clear_sky(node.peak_hour, node.peak_hour), 1.0)
            self.assertEqual(make_trace.clear_sky(node.peak_hour, make_trace.SUNRISE_H), 0.0)
            self.assertEqual(make_trace.clear_sky(node.peak_hour, make_trace.SUNSET_H), 0.0)
        self.assertLess(make_trace.NODES[0].peak_hour, make_trace.NODES[1].peak_hour)
        self.assertLess(make_trace.NODES[1].peak_hour, make_trace.NODES[2].peak_hour)
        # The greenest node changes over the day (else placement has nothing to choose).
        greenest = {max(trace, key=lambda n: trace[n][m]["renewable_share"]) for m in range(7 * 60, 19 * 60, 5)}
        self.assertEqual(greenest, {"a", "b", "c"})

    def test_a_malformed_trace_is_refused_with_its_line(self) -> None:
        bad = self.dir / "bad.csv"
        bad.write_text(",".join(make_trace.COLUMNS) + "\n0,a,1.5,0,0,0\n")
        with self.assertRaisesRegex(ValueError, "bad.csv:2"):
            make_trace.read_trace(bad)
        bad.write_text("minute,node\n")
        with self.assertRaisesRegex(ValueError, "expected the columns"):
            make_trace.read_trace(bad)


T0 = 1_800_000_000.0  # the replay's first step, Unix seconds
STEP_S = 300 / 720  # one 5-minute step at 720x


def iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # nanoseconds, as chrono


def wall_at(minute: float) -> float:
    return T0 + minute / 5 * STEP_S


def job(id_: str, *, node: str, share, cpu, started_min: float, latency_s: float = 0.1, shiftable=False,
        not_after_min: float | None = None, run=None, status="succeeded") -> dict:
    started = wall_at(started_min)
    timings = {"queue": 1, "run": run, "total": 2}
    if cpu is not None:
        timings["cpu"] = cpu
    return {
        "id": id_, "status": status, "node": node, "renewable_share": share, "timings_ms": timings,
        "created_at": iso(started - 0.01), "started_at": iso(started), "finished_at": iso(started - 0.01 + latency_s),
        "loadgen": {"index": 0, "shiftable": shiftable, "retries_429": 0,
                    "not_after": iso(wall_at(not_after_min)) if not_after_min is not None else None},
    }


class Evaluate(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir)
        self.replay = self.dir / "replay.csv"
        with open(self.replay, "w") as f:
            f.write("wall_time,sim_minute,minute_of_day,speed\n")
            for k in range(288):
                f.write(f"{T0 + k * STEP_S:.3f},{5 * k},{5 * k},720\n")
        self.trace = make_trace.read_trace(make_trace.DEFAULT_OUT)

    def write(self, name: str, jobs: list[dict]) -> Path:
        path = self.dir / name
        path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
        return path

    def test_times_parse_with_nanoseconds_and_offsets(self) -> None:
        self.assertAlmostEqual(evaluate.parse_time("2027-01-15T08:00:00.123456789Z"), 1800000000.123456789, places=5)
        self.assertEqual(evaluate.parse_time("2027-01-15T09:00:00+01:00"), 1800000000.0)
        with self.assertRaises(ValueError):
            evaluate.parse_time("yesterday")

    def test_the_replay_clock_maps_wall_time_to_the_simulated_day(self) -> None:
        clock = evaluate.ReplayClock(self.replay)
        self.assertIsNone(clock.minute(T0 - 1))
        # The log keeps milliseconds: 1 ms is 0.012 simulated minutes at 720x.
        self.assertAlmostEqual(clock.minute(T0 + 10.5 * STEP_S), 52.5, delta=0.02)
        self.assertAlmostEqual(clock.minute(wall_at(720)), 720.0, delta=0.02)
        self.assertAlmostEqual(clock.minute(T0 + 300 * STEP_S), 1500.0, delta=0.02)  # runs on after the replay

    def test_the_best_placement_takes_the_greenest_node_and_moment_within_reach(self) -> None:
        clock = evaluate.ReplayClock(self.replay)
        at = lambda minute: max(make_trace.share_at(self.trace, n, minute) for n in self.trace)  # noqa: E731
        # Not shiftable: the greenest node when it came.
        self.assertAlmostEqual(evaluate.best_share(self.trace, clock, wall_at(600), None), at(600))
        # Shiftable from 05:00 to 09:00: the best moment up to its latest start (2 s before
        # not_after: 24 simulated minutes at 720x).
        best = max(at(m) for m in range(300, 540 - 24 + 1, 5))
        self.assertAlmostEqual(evaluate.best_share(self.trace, clock, wall_at(300), wall_at(540)), best)
        self.assertGreater(best, at(300))
        # Outside the replayed day, or never submitted: nothing.
        self.assertEqual(evaluate.best_share(self.trace, clock, wall_at(2000), None), 0.0)
        self.assertEqual(evaluate.best_share(self.trace, clock, None, None), 0.0)

    def test_known_runs_give_known_figures(self) -> None:
        blind = [
            job("b1", node="a", share=0.25, cpu=1000, started_min=600, latency_s=0.100),
            job("b2", node="b", share=0.25, cpu=3000, started_min=630, latency_s=0.200),
            job("b3", node="c", share=None, cpu=None, run=2000, started_min=61, latency_s=0.300),  # grid, cpu from run
            job("b4", node="c", share=0.0, cpu=500, started_min=700, shiftable=True, not_after_min=760),
        ]
        aware = [
            job("w1", node="a", share=0.75, cpu=1000, started_min=600, latency_s=0.100),
            job("w2", node="a", share=0.75, cpu=3000, started_min=630, latency_s=0.200),
            job("w3", node="b", share=0.5, cpu=2000, started_min=61, latency_s=0.330),
            job("w4", node="b", share=1.0, cpu=500, started_min=770, shiftable=True, not_after_min=760),  # late
        ]
        clock = evaluate.ReplayClock(self.replay)
        b = evaluate.figures("blind", [([dict(j) for j in blind], clock)], self.trace)
        w = evaluate.figures("aware", [([dict(j) for j in aware], clock)], self.trace)
        self.assertAlmostEqual(b.share, (0.25 * 1 + 0.25 * 3) / 6.5)
        self.assertAlmostEqual(w.share, (0.75 * 4 + 0.5 * 2 + 0.5) / 6.5)
        self.assertEqual((b.cpu_fallback_jobs, b.share_unknown_jobs, w.cpu_fallback_jobs), (1, 1, 0))
        self.assertAlmostEqual(b.p50_ms, 200.0, places=1)
        self.assertAlmostEqual(b.p95_ms, 300.0, places=1)
        self.assertAlmostEqual(w.p95_ms, 330.0, places=1)
        self.assertEqual((b.shiftable, b.violations, w.shiftable, w.violations), (1, 0, 1, 1))
        self.assertEqual(w.per_node_jobs, {"a": 2, "b": 2})
        self.assertAlmostEqual(w.hourly_cpu_s["a"][10], 4.0)
        self.assertAlmostEqual(w.hourly_cpu_s["b"][1], 2.0)
        self.assertAlmostEqual(w.hourly_cpu_s["b"][12], 0.5)
        # The trace's share at each start, for the cross-check.
        expected = sum(cpu * make_trace.share_at(self.trace, node, minute) for cpu, node, minute in
                       ((1, "a", 600), (3, "a", 630), (2, "b", 61), (0.5, "b", 770))) / 6.5
        self.assertAlmostEqual(w.trace_share, expected, places=6)

        table, missed, summary = evaluate.report(b, w)
        self.assertAlmostEqual(summary["share_ratio"], 4.5 / 1.0)
        self.assertAlmostEqual(summary["p95_ratio"], 1.1, places=5)
        self.assertIn("timings_ms.run used", table)
        self.assertEqual(missed, ["aware: 1 shiftable jobs started after their not_after (or never)"])

        paths = [str(self.write("blind.jsonl", blind)), str(self.write("aware.jsonl", aware))]
        svg = self.dir / "plot.svg"
        args = ["--blind", paths[0], "--aware", paths[1], "--blind-replay", str(self.replay),
                "--aware-replay", str(self.replay), "--svg", str(svg), "--json", str(self.dir / "f.json")]
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(evaluate.main(args), 0)
            self.assertEqual(evaluate.main(args + ["--check"]), 1)
        self.assertIn("4.50x", out.getvalue())
        root = ET.parse(svg).getroot()
        ns = "{http://www.w3.org/2000/svg}"
        self.assertEqual(len(root.findall(f"{ns}polyline")), 3)
        texts = {t.text for t in root.iter(f"{ns}text")}
        self.assertTrue({"a", "b", "c", "12:00", "renewable share", "CPU-seconds"} <= texts, texts)
        self.assertEqual(json.loads((self.dir / "f.json").read_text())["aware"]["violations"], 1)

    def test_targets_met_pass_the_check_and_a_slow_aware_run_does_not(self) -> None:
        blind = [job(f"b{i}", node="a", share=0.2, cpu=100, started_min=600 + i, latency_s=0.1 + i / 100) for i in range(20)]
        aware = [job(f"w{i}", node="a", share=0.4, cpu=100, started_min=600 + i, latency_s=0.1 + i / 100) for i in range(20)]
        args = ["--blind", str(self.write("b.jsonl", blind)), "--aware", str(self.write("w.jsonl", aware)),
                "--blind-replay", str(self.replay), "--aware-replay", str(self.replay), "--check"]
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(evaluate.main(args), 0, out.getvalue())
        self.assertIn("every target met", out.getvalue())
        slow = [dict(j, finished_at=iso(wall_at(600 + i) + 0.2 + i / 100)) for i, j in enumerate(aware)]
        args[3] = str(self.write("slow.jsonl", slow))
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(evaluate.main(args), 1)
        self.assertIn("p95 latency aware/blind", out.getvalue())

    def test_bad_input_is_an_error(self) -> None:
        bad = self.dir / "bad.jsonl"
        bad.write_text('{"id": "x"}\n')
        with redirect_stderr(io.StringIO()) as err:
            code = evaluate.main(["--blind", str(bad), "--aware", str(bad), "--blind-replay", str(self.replay),
                                  "--aware-replay", str(self.replay)])
        self.assertEqual(code, 2)
        self.assertIn("bad.jsonl:1", err.getvalue())


class Loadgen(unittest.TestCase):
    def test_the_schedule_is_seeded_poisson(self) -> None:
        plan = loadgen.schedule(1000, 8.0, 0.3, 14, (30, 60))
        self.assertEqual(plan, loadgen.schedule(1000, 8.0, 0.3, 14, (30, 60)))
        self.assertNotEqual(plan, loadgen.schedule(1000, 8.0, 0.3, 15, (30, 60)))
        for seed in range(5):
            plan = loadgen.schedule(1000, 8.0, 0.3, seed, (30, 60))
            gaps = [b.offset_s - a.offset_s for a, b in zip(plan, plan[1:])]
            self.assertAlmostEqual(1000 / plan[-1].offset_s, 8.0, delta=0.8)  # the rate, within 10 %
            self.assertAlmostEqual(statistics.pstdev(gaps) / statistics.mean(gaps), 1.0, delta=0.1)  # exponential
            self.assertAlmostEqual(sum(p.shiftable for p in plan) / 1000, 0.3, delta=0.05)
            self.assertTrue(all(30 <= p.cpu_ms <= 60 for p in plan))
            self.assertEqual(sorted(p.offset_s for p in plan), [p.offset_s for p in plan])
        with self.assertRaises(ValueError):
            loadgen.schedule(10, 0.0, 0.3, 1, (30, 60))

    def test_the_request_body(self) -> None:
        shiftable = loadgen.Planned(0, 1.0, True, 42)
        body = loadgen.request_body(shiftable, 1_800_000_000.0, 30)
        self.assertEqual(body["language"], "c")
        self.assertEqual(body["args"], ["42"])
        self.assertEqual(body["schedule"], {"not_after": "2027-01-15T08:00:30.000Z"})
        self.assertNotIn("schedule", loadgen.request_body(loadgen.Planned(1, 1.0, False, 42), 0.0, 30))

    @unittest.skipUnless(shutil.which("gcc"), "no gcc")
    def test_the_c_program_burns_what_it_is_told(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "main.c").write_text(loadgen.SOURCE)
            subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", f"{d}/main", f"{d}/main.c"], check=True)
            out = subprocess.run([f"{d}/main", "20"], check=True, capture_output=True, text=True).stdout
            self.assertRegex(out, r"^burned 20 ms of CPU in \d+ spins\n$")

    def test_a_run_against_a_stand_in_api_retries_429_and_waits_for_every_job(self) -> None:
        state = {"posts": 0, "gets": {}, "bodies": []}
        lock = threading.Lock()

        class Api(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def answer(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                assert self.headers["Authorization"] == "Bearer secret-token"
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    state["posts"] += 1
                    n = state["posts"]
                    if n in (1, 2):  # the first two attempts hit the quota
                        return self.answer(429, {"error": "quota"}, {"Retry-After": "0"})
                    state["bodies"].append(body)
                self.answer(201, {"id": f"job-{n}", "status": "queued", "created_at": "2027-01-15T08:00:00Z"})

            def do_GET(self) -> None:
                id_ = self.path.rsplit("/", 1)[1]
                with lock:
                    state["gets"][id_] = state["gets"].get(id_, 0) + 1
                    done = state["gets"][id_] > 1  # queued once, then ended
                self.answer(200, {"id": id_, "status": "succeeded" if done else "running", "node": "a"})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        with tempfile.TemporaryDirectory() as d:
            token, out = Path(d) / "token", Path(d) / "results.jsonl"
            token.write_text("secret-token\n")
            with redirect_stdout(io.StringIO()) as said, redirect_stderr(io.StringIO()):
                code = loadgen.main(["--url", f"http://127.0.0.1:{server.server_address[1]}", "--token-file", str(token),
                                     "--jobs", "6", "--rate", "60", "--shiftable", "0.5", "--poll-interval", "0.05",
                                     "--out", str(out)])
            self.assertEqual(code, 0, said.getvalue())
            results = [json.loads(line) for line in out.read_text().splitlines()]
        self.assertEqual(len(results), 6)
        self.assertEqual({r["status"] for r in results}, {"succeeded"})
        self.assertEqual(sum(r["loadgen"]["retries_429"] for r in results), 2)
        self.assertIn("retries", said.getvalue())
        for r in results:
            meta = r["loadgen"]
            self.assertEqual(meta["shiftable"], meta["not_after"] is not None)
            if meta["shiftable"]:
                self.assertAlmostEqual(evaluate.parse_time(meta["not_after"]) - meta["submitted_at"], 30.0, delta=0.01)
        self.assertEqual(sorted(r["loadgen"]["index"] for r in results), list(range(6)))
        self.assertEqual(sum("schedule" in b for b in state["bodies"]), sum(r["loadgen"]["shiftable"] for r in results))


if __name__ == "__main__":
    unittest.main()
