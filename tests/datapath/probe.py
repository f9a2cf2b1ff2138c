"""Real sockets for the datapath tests: a multi-address TCP/UDP identity server, and clients.

Run as a script inside the test's namespaces (it imports nothing from the repo):

    probe.py serve --ready FILE IP:PORT [IP:PORT ...]   # each socket answers with its own IP:PORT
    probe.py tcp IP PORT --count N [--rate R] [--duration S] [--sequence]
    probe.py udp IP PORT --count N [--connect]
    probe.py dns IP PORT NAME --count N                 # A queries over an unconnected socket

A client prints one JSON object: its pid and netns cookie, the answers counted by backend, the
failures, and the peer addresses getpeername()/recvfrom() reported.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import selectors
import socket
import sys
import time

SO_NETNS_COOKIE = 71


def netns_cookie() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        return int.from_bytes(probe.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), sys.byteorder)


def serve(endpoints: list[str], ready: str) -> None:
    selector = selectors.DefaultSelector()
    for endpoint in endpoints:
        ip, port = endpoint.rsplit(":", 1)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((ip, int(port)))
        listener.listen(4096)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ, ("tcp", endpoint))
        datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        datagram.bind((ip, int(port)))
        datagram.setblocking(False)
        selector.register(datagram, selectors.EVENT_READ, ("udp", endpoint))
    with open(ready + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.rename(ready + ".tmp", ready)
    answer_cache: dict[str, bytes] = {}
    while True:
        for key, _mask in selector.select():
            kind, endpoint = key.data
            answer = answer_cache.setdefault(endpoint, endpoint.encode() + b"\n")
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                if kind == "tcp":
                    connection, _peer = sock.accept()
                    connection.sendall(answer)
                    connection.close()
                else:
                    _data, peer = sock.recvfrom(2048)
                    sock.sendto(answer, peer)
            except (BlockingIOError, ConnectionError):
                continue


def tcp_client(ip: str, port: int, count: int, rate: float, duration: float, sequence: bool) -> dict[str, object]:
    answers: collections.Counter[str] = collections.Counter()
    peers: collections.Counter[str] = collections.Counter()
    order: list[str] = []
    errors: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    attempts = 0
    while (count and attempts < count) or (duration and time.monotonic() - started < duration):
        if rate:
            delay = started + attempts / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        attempts += 1
        try:
            with socket.create_connection((ip, port), timeout=2) as connection:
                peer = "{}:{}".format(*connection.getpeername())
                answer = connection.recv(64).decode().strip()
            answers[answer] += 1
            peers[peer] += 1
            if sequence:
                order.append(answer)
        except OSError as error:
            errors[type(error).__name__ + ": " + str(error)] += 1
            if sequence:
                order.append("ERROR")
    return {
        "pid": os.getpid(),
        "netns_cookie": netns_cookie(),
        "attempts": attempts,
        "answers": dict(answers),
        "peers": dict(peers),
        "failures": sum(errors.values()),
        "errors": dict(errors),
        "sequence": order,
        "seconds": time.monotonic() - started,
    }


def udp_client(ip: str, port: int, count: int, connect: bool) -> dict[str, object]:
    answers: collections.Counter[str] = collections.Counter()
    sources: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        connected = False
        for attempt in range(count):
            try:
                if connect and not connected:
                    sock.connect((ip, port))
                    connected = True
                if connect:
                    sock.send(b"ping %d" % attempt)
                else:
                    sock.sendto(b"ping %d" % attempt, (ip, port))
                data, source = sock.recvfrom(2048)
                answers[data.decode().strip()] += 1
                sources["{}:{}".format(*source)] += 1
                if connect:
                    sources["getpeername {}:{}".format(*sock.getpeername())] += 1
            except OSError as error:
                errors[type(error).__name__ + ": " + str(error)] += 1
    return {
        "pid": os.getpid(),
        "netns_cookie": netns_cookie(),
        "answers": dict(answers),
        "sources": dict(sources),
        "failures": sum(errors.values()),
        "errors": dict(errors),
    }


def _skip_name(packet: bytes, offset: int) -> int:
    while True:
        length = packet[offset]
        if length & 0xC0 == 0xC0:  # compression pointer ends the name
            return offset + 2
        offset += 1 + length
        if length == 0:
            return offset


def dns_client(ip: str, port: int, name: str, count: int) -> dict[str, object]:
    """A records for `name`, asked over an unconnected UDP socket: the reply's source is checked."""
    answers: collections.Counter[str] = collections.Counter()
    sources: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0\0\1\0\1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        for query_id in range(1, count + 1):
            try:
                sock.sendto(query_id.to_bytes(2, "big") + b"\1\0\0\1\0\0\0\0\0\0" + question, (ip, port))
                reply, source = sock.recvfrom(4096)
                sources["{}:{}".format(*source)] += 1
                if int.from_bytes(reply[:2], "big") != query_id or int.from_bytes(reply[6:8], "big") == 0:
                    errors["no answer"] += 1
                    continue
                offset = _skip_name(reply, 12) + 4  # the question: name, type, class
                offset = _skip_name(reply, offset) + 10  # the answer: name, type, class, ttl, rdlength
                answers[socket.inet_ntoa(reply[offset : offset + 4])] += 1
            except OSError as error:
                errors[type(error).__name__ + ": " + str(error)] += 1
    return {
        "answers": dict(answers),
        "sources": dict(sources),
        "failures": sum(errors.values()),
        "errors": dict(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("serve")
    server.add_argument("--ready", required=True)
    server.add_argument("endpoints", nargs="+")
    tcp = commands.add_parser("tcp")
    tcp.add_argument("ip")
    tcp.add_argument("port", type=int)
    tcp.add_argument("--count", type=int, default=0)
    tcp.add_argument("--rate", type=float, default=0.0)
    tcp.add_argument("--duration", type=float, default=0.0)
    tcp.add_argument("--sequence", action="store_true")
    udp = commands.add_parser("udp")
    udp.add_argument("ip")
    udp.add_argument("port", type=int)
    udp.add_argument("--count", type=int, default=1)
    udp.add_argument("--connect", action="store_true")
    dns = commands.add_parser("dns")
    dns.add_argument("ip")
    dns.add_argument("port", type=int)
    dns.add_argument("name")
    dns.add_argument("--count", type=int, default=1)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.endpoints, args.ready)
    elif args.command == "tcp":
        print(json.dumps(tcp_client(args.ip, args.port, args.count, args.rate, args.duration, args.sequence)))
    elif args.command == "dns":
        print(json.dumps(dns_client(args.ip, args.port, args.name, args.count)))
    else:
        print(json.dumps(udp_client(args.ip, args.port, args.count, args.connect)))


if __name__ == "__main__":
    main()
