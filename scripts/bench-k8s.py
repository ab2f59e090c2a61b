"""One phase of scripts/bench-k8s.sh: pairs of C hello worlds, one on the cluster and one on the
process backend, alternating which goes first, submit -> terminal as the client sees it."""

import json
import os
import statistics
import time
import urllib.request

SOURCE = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
PAUSE_S = 3.5  # between pairs: a warm pool refills in about three seconds (one after a take)


def run(base: str, token: str) -> float:
    """Seconds from submitting the job to its terminal view."""
    body = json.dumps({"language": "c", "source": SOURCE}).encode()
    request = urllib.request.Request(
        f"{base}/api/v1/jobs?wait=60",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=90) as answer:
        view = json.load(answer)
    elapsed = time.perf_counter() - started
    if view.get("status") != "succeeded":
        raise SystemExit(f"a job did not succeed on {base}: {view}")
    return elapsed


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    cluster = (os.environ["CLUSTER"], os.environ["CLUSTER_TOKEN"])
    local = (os.environ["LOCAL"], os.environ["LOCAL_TOKEN"])
    pairs, phase = int(os.environ["PAIRS"]), os.environ["PHASE"]
    # A first job each, not counted: connections, caches.
    run(*cluster)
    run(*local)
    times = {"cluster": [], "local": []}
    for i in range(pairs):
        time.sleep(PAUSE_S)
        order = [("cluster", cluster), ("local", local)]
        if i % 2:
            order.reverse()
        for name, side in order:
            times[name].append(run(*side))
    ratios = [c / p for c, p in zip(times["cluster"], times["local"])]
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    c50, l50 = statistics.median(times["cluster"]), statistics.median(times["local"])
    print(
        f"{phase}: Kubernetes p50 {ms(c50)} p95 {ms(p95(times['cluster']))}; "
        f"process backend p50 {ms(l50)} p95 {ms(p95(times['local']))}; "
        f"p50 ratio {c50 / l50:.2f}x, median of pair ratios {statistics.median(ratios):.2f}x "
        f"({pairs} pairs)",
        flush=True,
    )


if __name__ == "__main__":
    main()
