#!/usr/bin/env bash
# Fairness between users (see BENCHMARKS.md, "Fairness between users"): a real release
# `cola up --dev` (process backend, bubblewrap); user A floods the queue with C jobs that burn
# CPU while user B submits a C hello world every second; prints B's queue time and latency
# (p50/p95/max), A's backlog at each of B's submissions, A's throughput and A's 429s.
# Settings (environment): FLOOD_CLIENTS (A's concurrent clients, default 16), FLOOD_BACKLOG (A's
# unfinished jobs kept, default 300), FLOOD_CPU_MS (CPU each of A's jobs burns, default 200),
# SAMPLES (B's jobs, default 30), SAMPLE_INTERVAL_MS (default 1000), SETTLE_S (after A's backlog
# is built, default 3), COLA_UP_ARGS (more `cola up` arguments, e.g. quota flags).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in nats-server bwrap gcc; do
  command -v "$tool" >/dev/null || { scripts/setup.sh; break; }
done
cargo build --release --bin cola
cargo bench -p cola --bench fairness
