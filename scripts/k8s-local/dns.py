#!/usr/bin/env python3
"""The cluster DNS of the local cluster (scripts/k8s-local.sh): what CoreDNS does for a real
cluster, for the names cola's manifests use, from the standard library alone.

Answers A queries (UDP and TCP) for
  <service>.<namespace>.svc.<domain>             the Service's cluster IP, or for a headless
                                                 Service the addresses of its endpoints
  <hostname>.<service>.<namespace>.svc.<domain>  one endpoint of a headless Service (a
                                                 StatefulSet's Pod: cola-nats-0.cola-nats-headless...)
and says "no such name" (NXDOMAIN) for every other name under <domain>. Names outside the
cluster domain are refused (REFUSED): Pods have no network beyond this machine, and the Pods'
resolvers then go on with their next search domain or fail fast. AAAA and other types of a
known name get an empty answer (NOERROR), as a resolver expects.

The records come from the API server: Services and Endpoints are listed every second with the
cluster's own kubectl (so no client library is needed).

Usage: k8s-dns.py --listen ADDRESS --port PORT --kubectl PATH --kubeconfig FILE [--domain D]
"""

import argparse
import json
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time

TYPE_A = 1
CLASS_IN = 1
TTL = 5

records = {}  # name (lower case, no trailing dot) -> list of IPv4 addresses
records_lock = threading.Lock()


def refresh_forever(kubectl, kubeconfig, domain):
    """Lists Services and Endpoints every second and rebuilds the records."""
    while True:
        try:
            output = subprocess.run(
                [kubectl, "--kubeconfig", kubeconfig, "get", "services,endpoints",
                 "--all-namespaces", "-o", "json"],
                check=True, capture_output=True, timeout=20,
            ).stdout
            items = json.loads(output)["items"]
            fresh = build_records(items, domain)
            with records_lock:
                records.clear()
                records.update(fresh)
        except (subprocess.SubprocessError, ValueError, KeyError) as error:
            print(f"k8s-dns: could not list the Services: {error}", file=sys.stderr, flush=True)
        time.sleep(1)


def build_records(items, domain):
    fresh = {}
    services = {}
    endpoints = {}
    for item in items:
        meta = item["metadata"]
        key = (meta["namespace"], meta["name"])
        if item["kind"] == "Service":
            services[key] = item
        elif item["kind"] == "Endpoints":
            endpoints[key] = item
    for (namespace, name), service in services.items():
        base = f"{name}.{namespace}.svc.{domain}".lower()
        cluster_ip = service["spec"].get("clusterIP")
        addresses = []
        for subset in endpoints.get((namespace, name), {}).get("subsets") or []:
            for address in (subset.get("addresses") or []) + (subset.get("notReadyAddresses") or []):
                ready = address in (subset.get("addresses") or [])
                hostname = address.get("hostname")
                if hostname:
                    fresh.setdefault(f"{hostname}.{base}".lower(), []).append(address["ip"])
                # A headless Service's name answers with its ready endpoints (all of them
                # with publishNotReadyAddresses, whose addresses are all "ready" then).
                if ready:
                    addresses.append(address["ip"])
        if cluster_ip and cluster_ip != "None":
            fresh[base] = [cluster_ip]
        else:
            fresh[base] = addresses
    return fresh


def parse_question(message):
    """(id, flags, name, qtype, end of the question) of a query, or None."""
    if len(message) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", message[:6])
    if qdcount != 1:
        return None
    labels = []
    offset = 12
    while True:
        if offset >= len(message):
            return None
        length = message[offset]
        offset += 1
        if length == 0:
            break
        if length > 63 or offset + length > len(message):
            return None
        labels.append(message[offset:offset + length].decode("ascii", "replace"))
        offset += length
    if offset + 4 > len(message):
        return None
    qtype, qclass = struct.unpack("!HH", message[offset:offset + 4])
    offset += 4
    return ident, flags, ".".join(labels).lower(), qtype, qclass, offset


def answer(message, domain):
    parsed = parse_question(message)
    if parsed is None:
        if len(message) >= 2:
            # FORMERR
            return message[:2] + struct.pack("!HHHHH", 0x8001, 0, 0, 0, 0)
        return None
    ident, flags, name, qtype, qclass, end = parsed
    question = message[12:end]
    recursion_desired = flags & 0x0100
    if not (name == domain or name.endswith("." + domain)):
        rcode, addresses = 5, []  # REFUSED: not ours, and nothing beyond this machine
    else:
        with records_lock:
            addresses = records.get(name)
        if addresses is None:
            rcode, addresses = 3, []  # NXDOMAIN
        else:
            rcode = 0
            if qtype != TYPE_A or qclass != CLASS_IN:
                addresses = []
    flags = 0x8000 | 0x0400 | recursion_desired | 0x0080 | rcode  # QR, AA, RD, RA
    header = struct.pack("!HHHHHH", ident, flags, 1, len(addresses), 0, 0)
    body = b""
    for address in addresses:
        body += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + socket.inet_aton(address)
    return header + question + body


class UdpHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        reply = answer(data, self.server.domain)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class TcpHandler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            prefix = self.rfile.read(2)
            if len(prefix) < 2:
                return
            (length,) = struct.unpack("!H", prefix)
            data = self.rfile.read(length)
            reply = answer(data, self.server.domain)
            if reply is None:
                return
            self.wfile.write(struct.pack("!H", len(reply)) + reply)


class UdpServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True


class TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--kubectl", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--domain", default="cluster.local")
    args = parser.parse_args()
    domain = args.domain.lower().strip(".")

    udp = UdpServer((args.listen, args.port), UdpHandler)
    tcp = TcpServer((args.listen, args.port), TcpHandler)
    for server in (udp, tcp):
        server.domain = domain
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"k8s-dns: answering for {domain} on {args.listen}:{args.port}", flush=True)
    refresh_forever(args.kubectl, args.kubeconfig, domain)


if __name__ == "__main__":
    main()
