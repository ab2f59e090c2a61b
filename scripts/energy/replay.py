#!/usr/bin/env python3
"""Replays the solar trace into an MQTT broker (nats-server's MQTT listener), faster than life.

Each step of the trace (every node's reading at one minute of the day) is published with a real
MQTT client (paho-mqtt 2.x, MQTT 3.1.1) on the topic `energy/<node>` (NATS subject
`energy.<node>`), QoS 1 (each publish waits for the broker's PUBACK), with the JSON payload
cola reads:

    {"renewable_share": 0.42, "solar_w": 812.5, "battery_pct": 61.0, "carbon_g_per_kwh": 221.4}

At `--speed 720` a simulated day takes 120 s: one step (5 simulated minutes) every 0.417 s.
Each step's wall time is written to `--log` (CSV `wall_time,sim_minute,minute_of_day,speed`,
wall_time in Unix seconds; `sim_minute` counts on across days with `--loop`) or printed, so that
what happened at a wall time can be mapped back to the simulated day (evaluate.py does).

Run it with the energy venv's python (scripts/energy/setup-venv.sh makes it):

    py=$(scripts/energy/setup-venv.sh | tail -1)
    "$py" scripts/energy/replay.py --port 1883 --speed 720 --log replay.csv

Without credentials it connects anonymously (cola allows that on a loopback listener); else
`--username cola-telemetry` and the password from `--password` or $COLA_MQTT_PASSWORD.
Exits 1 when the broker refuses the connection or does not acknowledge a publish in time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import make_trace

try:
    import paho.mqtt.client as mqtt
except ImportError:  # pragma: no cover - told to the user
    sys.exit("replay: paho-mqtt is missing: run it with the python of scripts/energy/setup-venv.sh")

PAYLOAD_FIELDS = ("renewable_share", "solar_w", "battery_pct", "carbon_g_per_kwh")


def payload(reading: dict[str, float]) -> bytes:
    """The JSON a device publishes for one reading."""
    return json.dumps({field: reading[field] for field in PAYLOAD_FIELDS}).encode()


def steps(trace, start_minute: int, loop: bool, limit: int | None):
    """(sim_minute, minute_of_day) of each step to publish, in order."""
    step = make_trace.STEP_MINUTES
    day_end = max(m for readings in trace.values() for m in readings) + step
    count, sim = 0, start_minute
    while limit is None or count < limit:
        if sim >= day_end and not loop:
            return
        yield sim, sim % make_trace.MINUTES_PER_DAY
        sim += step
        count += 1


class Publisher:
    """A connected MQTT client whose publishes wait for their acknowledgement."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.connected = threading.Event()
        self.refused: str | None = None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=args.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if args.username:
            self.client.username_pw_set(args.username, args.password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect(args.host, args.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            self.close()
            raise ConnectionError(self.refused or f"no CONNACK from {args.host}:{args.port} within 10 s")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.refused = f"the broker refused the connection: {reason_code}"
        else:
            self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected.is_set() and reason_code.is_failure:
            print(f"replay: disconnected: {reason_code} (paho reconnects)", file=sys.stderr)

    def publish_all(self, messages: list[tuple[str, bytes]], qos: int, timeout: float) -> None:
        infos = [(topic, self.client.publish(topic, body, qos=qos)) for topic, body in messages]
        deadline = time.monotonic() + timeout
        for topic, info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError(f"{topic}: not acknowledged within {timeout} s (rc {info.rc})")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path, default=make_trace.DEFAULT_OUT)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--username")
    parser.add_argument("--password", default=os.environ.get("COLA_MQTT_PASSWORD"),
                        help="default: $COLA_MQTT_PASSWORD")
    parser.add_argument("--client-id", default=f"cola-energy-replay-{os.getpid()}")
    parser.add_argument("--speed", type=float, default=720.0, help="simulated seconds per second (default 720)")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--start-minute", type=int, default=0, help="minute of the day to start at")
    parser.add_argument("--loop", action="store_true", help="go on into the next day, and the next")
    parser.add_argument("--steps", type=int, help="stop after this many steps")
    parser.add_argument("--nodes", help="comma-separated nodes to replay (default: all in the trace)")
    parser.add_argument("--ack-timeout", type=float, default=5.0, help="seconds to wait for a PUBACK")
    parser.add_argument("--log", type=Path, help="write each step's wall time here (CSV) instead of printing it")
    args = parser.parse_args(argv)
    if args.speed <= 0:
        parser.error("--speed must be positive")
    if args.username and not args.password:
        parser.error("--username needs --password or $COLA_MQTT_PASSWORD")

    try:
        trace = make_trace.read_trace(args.trace)
    except (OSError, ValueError) as e:
        print(f"replay: {e}", file=sys.stderr)
        return 2
    nodes = sorted(trace) if not args.nodes else args.nodes.split(",")
    unknown = [n for n in nodes if n not in trace]
    if unknown:
        parser.error(f"--nodes: not in the trace: {', '.join(unknown)}")
    if not any(args.start_minute in trace[n] for n in nodes):
        parser.error(f"--start-minute {args.start_minute} is not a minute of the trace "
                     f"(0 to {make_trace.MINUTES_PER_DAY - 1}, every {make_trace.STEP_MINUTES})")
    plan = steps(trace, args.start_minute, args.loop, args.steps)

    try:
        publisher = Publisher(args)
    except (OSError, ConnectionError) as e:
        print(f"replay: cannot connect to {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    step_s = make_trace.STEP_MINUTES * 60.0 / args.speed
    log = open(args.log, "w", buffering=1) if args.log else sys.stdout
    log.write("wall_time,sim_minute,minute_of_day,speed\n")
    sent = 0
    try:
        t0 = time.time()
        for k, (sim_minute, minute) in enumerate(plan):
            delay = t0 + k * step_s - time.time()
            if delay > 0:
                time.sleep(delay)
            wall = time.time()
            messages = [(f"energy/{n}", payload(trace[n][minute])) for n in nodes if minute in trace[n]]
            publisher.publish_all(messages, args.qos, args.ack_timeout)
            sent += len(messages)
            log.write(f"{wall:.3f},{sim_minute},{minute},{args.speed:g}\n")
            if args.log and minute % 180 == 0:
                print(f"replay: {minute // 60:02d}:{minute % 60:02d} simulated, {sent} readings sent", flush=True)
    except (TimeoutError, OSError) as e:
        print(f"replay: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()
        if args.log:
            log.close()
    print(f"replay: {sent} readings sent to {args.host}:{args.port} in {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
