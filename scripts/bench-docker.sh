#!/usr/bin/env bash
# The Docker backend against a bare `docker run` of the same image and program (see
# BENCHMARKS.md): builds cola in release mode, builds the executor images from that binary
# (tag `bench`), then runs the `docker` bench of the cola crate.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nats-server >/dev/null || scripts/setup.sh
cargo build --release --bin cola
target=${CARGO_TARGET_DIR:-target}
scripts/images.sh --cola-binary "$target/release/cola" --tag bench
COLA_EXECUTOR_IMAGE_TAG=bench cargo bench -p cola --bench docker
