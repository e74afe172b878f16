"""Load generator for the serving benchmark: one process, non-blocking sockets on epoll.

    python -m benchmarks.serving_client download PORT JSON   # {"lists": [[name, ...], ...],
                                                              #  "duration": s, "loop": bool}
    python -m benchmarks.serving_client probe PORT JSON      # {"name": ..., "duration": s}
    python -m benchmarks.serving_client sleep 0 JSON         # {"duration": s}

``download``: one keep-alive connection per list, each fetching its names in order (again
and again with ``loop``) until the list is done or ``duration`` seconds passed; every body
length is checked. ``probe``: one connection sending a tiny request, waiting for the whole
answer, then the next, for ``duration`` seconds; reports latency percentiles. ``sleep``: no
socket at all, sleeps 1 ms again and again and reports how late it woke up (what the
scheduler alone adds under the load of the moment). Prints one JSON line. Loopback only,
bounded in time.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
from typing import Any

BUFFER = bytearray(1 << 20)
VIEW = memoryview(BUFFER)


class Conn:
    def __init__(self, port: int, names: list[str], loop: bool) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.names = names
        self.loop = loop
        self.index = 0
        self.head = b""
        self.remaining = -1  # body bytes still to come; -1: reading the head
        self.expected = 0
        self.done = False
        self.requests = 0
        self.bytes = 0

    def send_next(self) -> None:
        if self.index >= len(self.names):
            if not self.loop:
                self.done = True
                return
            self.index = 0
        name = self.names[self.index]
        self.index += 1
        self.sock.sendall(f"GET /{name} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        self.head = b""
        self.remaining = -1

    def on_readable(self) -> bool:
        """Read what is there; True when a response completed."""
        while True:
            try:
                n = self.sock.recv_into(BUFFER)
            except BlockingIOError:
                return False
            if not n:
                raise ConnectionError("server closed the connection")
            if self.remaining < 0:
                self.head += bytes(VIEW[:n])
                end = self.head.find(b"\r\n\r\n")
                if end < 0:
                    continue
                head, body = self.head[:end], self.head[end + 4 :]
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.expected = length
                self.remaining = length - len(body)
            else:
                self.remaining -= n
            if self.remaining < 0:
                raise ValueError("more body than Content-Length")
            if self.remaining == 0:
                self.requests += 1
                self.bytes += self.expected
                return True


def download(port: int, params: dict[str, Any]) -> dict[str, Any]:
    lists: list[list[str]] = params["lists"]
    duration: float = params["duration"]
    conns = [Conn(port, names, params.get("loop", False)) for names in lists]
    ep = select.epoll()
    by_fd = {c.sock.fileno(): c for c in conns}
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for c in conns:
        ep.register(c.sock.fileno(), select.EPOLLIN)
        c.send_next()
    active = len(conns)
    deadline = t0 + duration
    while active:
        now = time.perf_counter()
        if now >= deadline:
            break
        for fd, _ in ep.poll(min(0.1, deadline - now)):
            c = by_fd[fd]
            if c.done:
                continue
            if c.on_readable():
                c.send_next()
                if c.done:
                    active -= 1
    seconds = time.perf_counter() - t0
    result = {
        "seconds": seconds,
        "requests": sum(c.requests for c in conns),
        "bytes": sum(c.bytes for c in conns),
        "finished": active == 0,
        "client_cpu": time.process_time() - cpu0,
    }
    for c in conns:
        c.sock.close()
    return result


def probe(port: int, params: dict[str, Any]) -> dict[str, Any]:
    conn = Conn(port, [params["name"]], True)
    conn.sock.setblocking(True)
    latencies = []
    for _ in range(5):  # warm-up: the server's first requests load code, open its ring...
        conn.send_next()
        conn.sock.setblocking(False)
        while not conn.on_readable():
            select.select([conn.sock], [], [], 1.0)
    t0 = time.perf_counter()
    deadline = t0 + params["duration"]
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        conn.send_next()
        conn.sock.setblocking(False)
        while not conn.on_readable():
            select.select([conn.sock], [], [], 1.0)
        latencies.append(time.perf_counter() - start)
        time.sleep(0.002)  # a request every few ms, not a flood
    conn.sock.close()
    return _percentiles(latencies)


def _percentiles(values: list[float]) -> dict[str, Any]:
    values = sorted(values)

    def pct(p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))]

    return {"samples": len(values), "p50": pct(0.50), "p99": pct(0.99), "max": values[-1]}


def sleep(params: dict[str, Any]) -> dict[str, Any]:
    lateness = []
    deadline = time.perf_counter() + params["duration"]
    while (start := time.perf_counter()) < deadline:
        time.sleep(0.001)
        lateness.append(time.perf_counter() - start - 0.001)
    return _percentiles(lateness)


def main() -> None:
    mode, port, params = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    try:
        if mode == "download":
            report = download(port, params)
        elif mode == "probe":
            report = probe(port, params)
        else:
            report = sleep(params)
    except Exception as exc:  # reported, not raised: the driver prints it
        report = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(report), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
