#!/usr/bin/env python3
"""The energy bench's load: C jobs with Poisson arrivals through cola's HTTP API.

Submits `--jobs` (default 1,000) C programs to `POST /api/v1/jobs` at exponentially distributed
intervals (a Poisson process of `--rate` jobs/s; the schedule is seeded by `--seed`, so two runs
get the same arrivals, shiftable jobs and CPU amounts). Each program burns a set amount of CPU
time (drawn per job from `--cpu-ms`, default 30-60 ms, passed as its argument; it spins on
`clock()`, so the amount does not depend on the machine's speed) and prints it. A share
`--shiftable` (default 0.3) of the jobs is time-shiftable: they carry
`"schedule": {"not_after": <submission time + --window-seconds>}` (RFC 3339).

A 429 (per-user quota) is retried after its Retry-After (plus a little jitter) until
`--submit-timeout` seconds have passed for that job; the count of such retries is reported.
Once every job is submitted, each is polled with `GET /api/v1/jobs/{id}` (a sweep over the
unfinished ones every `--poll-interval` s, `--poll-workers` at a time) until all are terminal or
`--wait-timeout` passes.

Writes `--out` (JSON lines): per job, the whole job view as the API last answered it, plus
`"loadgen": {"index", "offset_s" (its planned arrival after the start), "planned_at",
"first_attempt_at", "submitted_at" (Unix seconds: planned, first POST, accepted POST),
"retries_429", "shiftable", "not_after", "cpu_ms"}`; a job that could not be submitted has `"id": null`, `"status":
"not_submitted"` and `loadgen.error`. Standard library only (urllib and threads).

    python3 scripts/energy/loadgen.py --url http://127.0.0.1:8080 --token-file .cola/dev-token \\
        --jobs 1000 --rate 8.33 --shiftable 0.3 --window-seconds 30 --out results.jsonl

Exits 0 when every job was submitted and ended, 1 otherwise (the file is written either way).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

TERMINAL = {"succeeded", "failed", "cancelled"}

SOURCE = r"""#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Burns argv[1] milliseconds of CPU time (default 40), then says so. */
int main(int argc, char **argv) {
    long ms = argc > 1 ? atol(argv[1]) : 40;
    clock_t budget = (clock_t)(ms * (CLOCKS_PER_SEC / 1000));
    clock_t start = clock();
    volatile unsigned long spins = 0;
    while (clock() - start < budget)
        for (int i = 0; i < 100000; i++) spins++;
    printf("burned %ld ms of CPU in %lu spins\n", ms, (unsigned long)spins);
    return 0;
}
"""


@dataclass(frozen=True)
class Planned:
    index: int
    offset_s: float  # when to submit, after the start
    shiftable: bool
    cpu_ms: int


def schedule(jobs: int, rate: float, shiftable: float, seed: int, cpu_ms: tuple[int, int]) -> list[Planned]:
    """The seeded plan: Poisson arrivals (exponential gaps of mean 1/rate), which jobs may be
    shifted (each with probability `shiftable`), and each job's CPU milliseconds."""
    if jobs < 0 or rate <= 0 or not 0.0 <= shiftable <= 1.0 or not 0 < cpu_ms[0] <= cpu_ms[1]:
        raise ValueError("need jobs >= 0, rate > 0, 0 <= shiftable <= 1, 0 < cpu low <= high")
    rng = random.Random(seed)
    plan, t = [], 0.0
    for i in range(jobs):
        t += rng.expovariate(rate)
        plan.append(Planned(i, t, rng.random() < shiftable, rng.randint(*cpu_ms)))
    return plan


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_body(job: Planned, now: float, window_s: float) -> dict:
    body: dict = {"language": "c", "source": SOURCE, "args": [str(job.cpu_ms)]}
    if job.shiftable:
        body["schedule"] = {"not_after": rfc3339(now + window_s)}
    return body


class Api:
    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, dict]:
        """(status, headers, JSON body) of one request; HTTP errors are answers too."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return answer.status, dict(answer.headers), json.load(answer)
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = {"error": text[:500]}
            return e.code, dict(e.headers), parsed


def retry_after(headers: dict) -> float:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), "1")
    try:
        return min(30.0, max(0.1, float(value)))
    except ValueError:
        return 1.0


def submit(api: Api, job: Planned, planned_at: float, window_s: float, give_up_s: float,
           jitter: random.Random) -> dict:
    """Submits one job, retrying 429s; its result line (the view plus "loadgen")."""
    first = time.time()
    retries = 0
    meta = {"index": job.index, "offset_s": round(job.offset_s, 3), "planned_at": planned_at, "first_attempt_at": first,
            "retries_429": 0, "shiftable": job.shiftable, "not_after": None, "cpu_ms": job.cpu_ms}
    while True:
        now = time.time()
        body = request_body(job, now, window_s)
        try:
            status, headers, answer = api.call("POST", "/api/v1/jobs", body)
        except (OSError, ValueError) as e:  # not retried: a POST that may have landed is not repeated
            return {"id": None, "status": "not_submitted", "loadgen": {**meta, "error": f"POST: {e}"}}
        if status == 201:
            meta.update(submitted_at=now, retries_429=retries, not_after=body.get("schedule", {}).get("not_after"))
            return {**answer, "loadgen": meta}
        if status == 429 and time.time() - first + retry_after(headers) < give_up_s:
            retries += 1
            time.sleep(retry_after(headers) + jitter.uniform(0.0, 0.25))
            continue
        meta["retries_429"] = retries
        return {"id": None, "status": "not_submitted", "loadgen": {**meta, "error": f"HTTP {status}: {answer}"}}


def run_submissions(api: Api, plan: list[Planned], args: argparse.Namespace) -> list[dict]:
    results: list[dict | None] = [None] * len(plan)
    jitter_lock, jitter = threading.Lock(), random.Random(args.seed + 1)

    def one(job: Planned) -> None:
        with jitter_lock:
            rng = random.Random(jitter.random())
        results[job.index] = submit(api, job, start + job.offset_s, args.window_seconds, args.submit_timeout, rng)

    start = time.time()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        futures = []
        for job in plan:
            delay = start + job.offset_s - time.time()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(one, job))
            if (job.index + 1) % 100 == 0:
                print(f"loadgen: {job.index + 1} jobs sent after {time.time() - start:.1f} s", file=sys.stderr, flush=True)
        for future in futures:
            future.result()  # a bug in a submission is raised here, not lost
    done = [r for r in results if r is not None]
    lags = sorted(r["loadgen"]["first_attempt_at"] - r["loadgen"]["planned_at"] for r in done)
    print(f"loadgen: all {len(plan)} jobs submitted in {time.time() - start:.1f} s "
          f"(planned {plan[-1].offset_s if plan else 0:.1f} s; first POSTs behind the plan by "
          f"{lags[len(lags) // 2] * 1000 if lags else 0:.0f} ms at the median, {lags[-1] * 1000 if lags else 0:.0f} ms at most)",
          file=sys.stderr)
    return done


def wait_terminal(api: Api, results: list[dict], args: argparse.Namespace) -> int:
    """Polls the unfinished jobs until every one is terminal; how many are still not."""
    deadline = time.monotonic() + args.wait_timeout
    pending = [r for r in results if r.get("id") and r.get("status") not in TERMINAL]

    def refresh(result: dict) -> None:
        try:
            status, _, view = api.call("GET", f"/api/v1/jobs/{result['id']}")
        except (OSError, ValueError):
            return  # the next sweep asks again
        if status == 200:
            result.update({k: v for k, v in view.items() if k != "loadgen"})

    while pending and time.monotonic() < deadline:
        with ThreadPoolExecutor(max_workers=args.poll_workers) as pool:
            list(pool.map(refresh, pending))
        pending = [r for r in pending if r.get("status") not in TERMINAL]
        if pending:
            time.sleep(args.poll_interval)
    return len(pending)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000 / 120, help="jobs/s (default 8.33: 1,000 jobs in 120 s)")
    parser.add_argument("--shiftable", type=float, default=0.3, help="share of time-shiftable jobs")
    parser.add_argument("--window-seconds", type=float, default=30.0, help="a shiftable job's not_after, after its submission")
    parser.add_argument("--cpu-ms", default="30-60", help="CPU per job: LOW-HIGH milliseconds (uniform)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--workers", type=int, default=32, help="submissions in flight at most")
    parser.add_argument("--submit-timeout", type=float, default=120.0, help="seconds to keep retrying a 429")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--poll-workers", type=int, default=4)
    parser.add_argument("--wait-timeout", type=float, default=600.0, help="seconds to wait for all jobs to end")
    parser.add_argument("--out", type=Path, required=True, help="results, JSON lines")
    args = parser.parse_args(argv)
    try:
        low, _, high = args.cpu_ms.partition("-")
        cpu = (int(low), int(high or low))
        plan = schedule(args.jobs, args.rate, args.shiftable, args.seed, cpu)
    except ValueError as e:
        parser.error(str(e))
    try:
        token = args.token_file.read_text().strip()
    except OSError as e:
        parser.error(f"--token-file: {e}")
    if not token:
        parser.error(f"--token-file {args.token_file} is empty")

    api = Api(args.url, token)
    results = run_submissions(api, plan, args)
    unfinished = wait_terminal(api, results, args)

    tmp = args.out.with_name(args.out.name + ".tmp")
    with open(tmp, "w") as out:
        for result in results:
            out.write(json.dumps(result, sort_keys=True) + "\n")
    tmp.replace(args.out)

    statuses: dict[str, int] = {}
    for r in results:
        statuses[r.get("status", "?")] = statuses.get(r.get("status", "?"), 0) + 1
    retried = [r["loadgen"]["retries_429"] for r in results if r["loadgen"]["retries_429"]]
    not_submitted = statuses.get("not_submitted", 0)
    print(f"loadgen: {len(results)} jobs ({sum(p.shiftable for p in plan)} shiftable); "
          f"statuses {dict(sorted(statuses.items()))}; 429s: {len(retried)} jobs retried, {sum(retried)} retries; "
          f"results in {args.out}")
    for r in results:
        if r["status"] == "not_submitted":
            print(f"loadgen: job {r['loadgen']['index']} not submitted: {r['loadgen']['error']}", file=sys.stderr)
            break
    if unfinished:
        print(f"loadgen: {unfinished} jobs still not terminal after {args.wait_timeout:.0f} s", file=sys.stderr)
    return 1 if unfinished or not_submitted else 0


if __name__ == "__main__":
    sys.exit(main())
