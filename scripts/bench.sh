#!/usr/bin/env bash
# Runs the pipeline benchmark against a release build (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# nats-server, bubblewrap and the toolchains the bench runs jobs with.
scripts/setup.sh
cargo bench -p cola --bench pipeline
