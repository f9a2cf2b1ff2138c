"""Real sockets against lab echo pods, run inside a pod or on a node (it imports nothing of the repo).

    client.py tcp IP PORT [--count N] [--rate R] [--duration S]   # send a line, read the pod's name
    client.py udp IP PORT [--count N] [--connect]                  # a datagram, the pod's name back
    client.py dns IP PORT NAME [--count N]                         # A queries, unconnected socket

Prints one JSON object: answers by pod name, reply sources, failures by error, the slowest attempt.
"""

from __future__ import annotations

import argparse
import collections
import errno
import json
import socket
import time


def _error(error: OSError) -> str:
    code = error.errno if error.errno is not None else 0
    return errno.errorcode.get(code, type(error).__name__)


def tcp(ip: str, port: int, count: int, rate: float, duration: float) -> dict[str, object]:
    answers: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    peers: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    attempts, slowest = 0, 0.0
    while (count and attempts < count) or (duration and time.monotonic() - started < duration):
        if rate:
            delay = started + attempts / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        attempts += 1
        began = time.monotonic()
        try:
            with socket.create_connection((ip, port), timeout=3) as connection:
                peers["{}:{}".format(*connection.getpeername())] += 1
                connection.sendall(b"who\n")
                answers[connection.recv(256).decode().split("\n", 1)[0]] += 1
        except OSError as error:
            errors[_error(error)] += 1
        slowest = max(slowest, time.monotonic() - began)
    return {"attempts": attempts, "answers": dict(answers), "peers": dict(peers), "errors": dict(errors),
            "failures": sum(errors.values()), "slowest": slowest}


def udp(ip: str, port: int, count: int, connect: bool) -> dict[str, object]:
    answers: collections.Counter[str] = collections.Counter()
    sources: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    slowest = 0.0
    for _ in range(count):
        began = time.monotonic()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            try:
                if connect:
                    sock.connect((ip, port))
                    sock.send(b"who\n")
                else:
                    sock.sendto(b"who\n", (ip, port))
                data, source = sock.recvfrom(2048)
                answers[data.decode().strip()] += 1
                sources["{}:{}".format(*source)] += 1
            except OSError as error:
                errors[_error(error)] += 1
        slowest = max(slowest, time.monotonic() - began)
    return {"answers": dict(answers), "sources": dict(sources), "errors": dict(errors),
            "failures": sum(errors.values()), "slowest": slowest}


def _skip_name(packet: bytes, offset: int) -> int:
    while True:
        length = packet[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length
        if length == 0:
            return offset


def dns(ip: str, port: int, name: str, count: int) -> dict[str, object]:
    answers: collections.Counter[str] = collections.Counter()
    sources: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0\0\1\0\1"
    for query_id in range(1, count + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            try:
                sock.sendto(query_id.to_bytes(2, "big") + b"\1\0\0\1\0\0\0\0\0\0" + question, (ip, port))
                reply, source = sock.recvfrom(4096)
                sources["{}:{}".format(*source)] += 1
                if int.from_bytes(reply[6:8], "big") == 0:
                    errors[f"rcode {reply[3] & 0x0F}"] += 1
                    continue
                offset = _skip_name(reply, 12) + 4
                offset = _skip_name(reply, offset) + 10
                answers[socket.inet_ntoa(reply[offset : offset + 4])] += 1
            except OSError as error:
                errors[_error(error)] += 1
    return {"answers": dict(answers), "sources": dict(sources), "errors": dict(errors),
            "failures": sum(errors.values())}


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("tcp", "udp", "dns"):
        sub = commands.add_parser(name)
        sub.add_argument("ip")
        sub.add_argument("port", type=int)
        if name == "dns":
            sub.add_argument("name")
        sub.add_argument("--count", type=int, default=1)
        sub.add_argument("--rate", type=float, default=0.0)
        sub.add_argument("--duration", type=float, default=0.0)
        sub.add_argument("--connect", action="store_true")
    args = parser.parse_args()
    if args.command == "tcp":
        result = tcp(args.ip, args.port, 0 if args.duration else args.count, args.rate, args.duration)
    elif args.command == "udp":
        result = udp(args.ip, args.port, args.count, args.connect)
    else:
        result = dns(args.ip, args.port, args.name, args.count)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
