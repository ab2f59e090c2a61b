#!/usr/bin/env bash
# Makes the energy bench's Python virtualenv, target/energy-venv (or $COLA_ENERGY_VENV), with the
# MQTT client replay.py uses: paho-mqtt from PyPI, pinned. Idempotent: a venv that already has
# exactly these requirements is left alone; one with others is made again. Installs Debian's
# python3-venv first when `python3 -m venv` cannot work.
#
# Usage: scripts/energy/setup-venv.sh        # prints the venv's python on the last line
#   e.g. py=$(scripts/energy/setup-venv.sh | tail -1); "$py" scripts/energy/replay.py --help
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${COLA_ENERGY_VENV:-$root/target/energy-venv}
requirements=("paho-mqtt==2.2.0")

"$root/scripts/python-venv.sh" "$venv" "${requirements[@]}"
"$venv/bin/python" -c 'import paho.mqtt.client' || {
  echo "energy-venv: paho-mqtt does not import in $venv" >&2
  exit 1
}
echo "$venv/bin/python"
