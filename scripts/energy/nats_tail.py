#!/usr/bin/env python3
"""Subscribes to a NATS subject and writes each message as a JSON line, with no client library.

A tiny client of the NATS text protocol (INFO, CONNECT, SUB, PING/PONG, MSG and HMSG with
headers), standard library only, so that check-replay.sh can see what MQTT publishers put on
NATS without installing a NATS client. Each message becomes one line:

    {"subject": "energy.a", "headers": {"Nmqtt-Pub": "1"}, "payload": "{\\"renewable_share\\": 0.4, ...}"}

Usage: nats_tail.py --port 4222 --subject 'energy.>' --count 6 --timeout 10 \
           [--ready-file F] [--out F]
It creates --ready-file once the server has the subscription (a PONG answered the PING after
SUB), so the caller can start publishing then. Exits 0 after --count messages, 1 when the
timeout passes first (having written what it got), 2 on a protocol error.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path


class Tail:
    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def line(self) -> str:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode()

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n + 2:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n + 2 :]  # the payload's trailing CRLF
        return data

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")


def parse_headers(block: bytes) -> dict[str, str]:
    lines = block.decode().split("\r\n")
    if not lines[0].startswith("NATS/1.0"):
        raise ValueError(f"bad header block: {lines[0]!r}")
    pairs = (line.split(":", 1) for line in lines[1:] if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4222)
    parser.add_argument("--subject", default="energy.>")
    parser.add_argument("--count", type=int, default=1, help="messages to wait for")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds in all")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--out", type=Path, help="default: standard output")
    args = parser.parse_args(argv)

    deadline = time.monotonic() + args.timeout
    out = open(args.out, "w", buffering=1) if args.out else sys.stdout
    got = 0
    try:
        tail = Tail(args.host, args.port, args.timeout)
        info = tail.line()
        if not info.startswith("INFO "):
            raise ValueError(f"expected INFO, got {info!r}")
        connect = {"verbose": False, "pedantic": False, "headers": True, "no_responders": False,
                   "lang": "python-tail", "version": "1", "protocol": 1}
        tail.send("CONNECT " + json.dumps(connect))
        tail.send(f"SUB {args.subject} 1")
        tail.send("PING")
        while got < args.count:
            tail.sock.settimeout(max(0.01, deadline - time.monotonic()))
            line = tail.line()
            verb, *fields = line.split(" ")
            if verb == "PONG" and args.ready_file:
                args.ready_file.touch()
            elif verb == "PING":
                tail.send("PONG")
            elif verb == "-ERR":
                raise ValueError(f"the server said {line}")
            elif verb == "MSG":  # MSG <subject> <sid> [reply-to] <#bytes>
                body = tail.exactly(int(fields[-1]))
                out.write(json.dumps({"subject": fields[0], "headers": {}, "payload": body.decode()}) + "\n")
                got += 1
            elif verb == "HMSG":  # HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
                data = tail.exactly(int(fields[-1]))
                split = int(fields[-2])
                headers = parse_headers(data[:split])
                out.write(json.dumps({"subject": fields[0], "headers": headers,
                                      "payload": data[split:].decode()}) + "\n")
                got += 1
    except (TimeoutError, socket.timeout):
        print(f"nats_tail: {got} of {args.count} messages within {args.timeout} s", file=sys.stderr)
        return 1
    except (OSError, ConnectionError, ValueError) as e:
        print(f"nats_tail: {e}", file=sys.stderr)
        return 2
    finally:
        if args.out:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
