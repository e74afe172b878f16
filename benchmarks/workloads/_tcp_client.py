"""The one TCP client every echo server is measured with (a separate process).

Single-threaded, non-blocking sockets on epoll, no event-loop library: it stays cheap so the
server is the bottleneck, and it is identical for every server.

    python -m benchmarks.workloads._tcp_client PORT CONNECTIONS ROUND_TRIPS SIZE TIMEOUT

Connects everything first, then times from the first request to the last response and prints
one JSON line: {"seconds": ..., "round_trips": ...} or {"error": ...}.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time


def run(port: int, connections: int, round_trips: int, size: int, timeout: float) -> float:
    payload = b"x" * size
    socks = [
        socket.create_connection(("127.0.0.1", port), timeout=timeout) for _ in range(connections)
    ]
    selector = selectors.EpollSelector()
    try:
        for sock in socks:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
        # Per connection: [bytes of the current response still expected, round trips left].
        state = {sock: [size, round_trips] for sock in socks}
        deadline = time.monotonic() + timeout
        start = time.perf_counter()
        for sock in socks:
            # A 1 KiB write into an idle socket's send buffer never comes out short.
            if sock.send(payload) != size:
                raise RuntimeError("short send")
            selector.register(sock, selectors.EVENT_READ, data=sock)
        active = connections
        while active:
            events = selector.select(max(0.0, deadline - time.monotonic()))
            if not events:
                raise TimeoutError(f"no response within {timeout} s")
            for key, _ in events:
                conn: socket.socket = key.data
                data = conn.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection early")
                entry = state[conn]
                entry[0] -= len(data)
                if entry[0] > 0:
                    continue
                entry[0] = size
                entry[1] -= 1
                if entry[1]:
                    conn.send(payload)
                else:
                    selector.unregister(conn)
                    active -= 1
        return time.perf_counter() - start
    finally:
        selector.close()
        for sock in socks:
            sock.close()


def main(argv: list[str]) -> None:
    port, connections, round_trips, size = (int(arg) for arg in argv[:4])
    try:
        seconds = run(port, connections, round_trips, size, float(argv[4]))
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return
    print(json.dumps({"seconds": seconds, "round_trips": connections * round_trips}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
