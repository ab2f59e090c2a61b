#!/usr/bin/env bash
# Runs the pipeline benchmark against a release build (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p cola --bench pipeline
