#!/usr/bin/env bash
# The middleware's own cost against DESIGN.md's target (see BENCHMARKS.md, "Middleware CPU and
# memory"): a real nats-server and a real release `cola middleware` (process backend); jobs
# queued as the gateway queues them. Prints the middleware's CPU as a share of one core at
# 100 numeric jobs/s and per C job, then its RSS while 10,000 queued jobs drain.
# Settings (environment): SECONDS (each CPU window, default 20), CODE_RATE (C jobs/s, default
# 10), QUEUED (default 10000), LOG (the middleware's RUST_LOG, default info).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nats-server >/dev/null || scripts/setup.sh
cargo bench -p cola --bench middleware
