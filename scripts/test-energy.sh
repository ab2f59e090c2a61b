#!/usr/bin/env bash
# The energy bench's own tests, which need no Rust (part of `make test`): the unit tests of the
# solar trace, the load generator and the evaluation (Python's unittest), then the replay of the
# trace through a real MQTT client into a real nats-server's MQTT listener
# (scripts/energy/check-replay.sh). The Rust side of energy-aware placement is tested by
# `cargo test` (cola/tests/energy.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/apt-install.sh python3:python3
python3 -m unittest discover -s scripts/energy -p 'test_*.py'
scripts/energy/check-replay.sh
