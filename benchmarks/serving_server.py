"""A static file server for the serving benchmark, one variant per process.

    python -m benchmarks.serving_server VARIANT DIRECTORY

Prints ``port N`` once listening, then serves until killed. Every variant speaks the same
minimal HTTP/1.1 (``GET /name``, keep-alive, ``Content-Length`` responses), so only the way
the file reaches the socket differs:

- ``nursery_io-zero-copy``: ``open_file`` + ``nursery_io.send_file`` (SPLICE chains);
- ``nursery_io-read-send``: ``open_file`` + ``read`` + ``send_all``;
- ``trio``: ``trio.open_file`` + ``read`` + ``send_all`` (Trio's file I/O is in threads);
- ``asyncio-sendfile``: ``open()`` + ``loop.sock_sendfile`` (``os.sendfile`` on the loop);
- ``uvloop-read-write``: uvloop streams, aiofiles ``read`` + ``writer.write``/``drain``;
- ``example-zero-copy`` / ``example-read-send``: ``examples/static_server.py`` itself (h11);
- ``responder``: the latency floor. A blocking socket and a thread per connection that
  answers every request with the same canned response (no file, no event loop): what the
  machine itself allows a tiny request under the same load.

On ``SIGTERM`` a server prints one ``stats {...}`` JSON line before exiting: the file
engine's statistics for nursery_io, and for asyncio how long each ``os.sendfile`` call held
the loop thread (the stall every other connection waits out).

Imports stay inside the variants: each process loads only what it runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

CHUNK = 256 * 1024
HEADER_END = b"\r\n\r\n"


def _parse(head: bytes) -> str:
    return head.split(b" ", 2)[1].decode()[1:]


def _response_head(size: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size


def run_trio_like(lib: Any, root: Path, zero_copy: bool) -> None:
    import socket

    async def handle(stream: Any) -> None:
        buf = b""
        try:
            while True:
                while HEADER_END not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(HEADER_END)
                async with await lib.open_file(root / _parse(head), "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    await stream.send_all(_response_head(size))
                    if zero_copy:
                        await lib.send_file(stream, f, 0, size)
                    else:
                        while chunk := await f.read(CHUNK):
                            await stream.send_all(chunk)
        except lib.BrokenResourceError:
            pass

    async def report_on_sigterm(cancel_scope: Any) -> None:
        import signal

        with lib.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                break
        stats: dict[str, Any] = {}
        engine = lib.lowlevel.current_statistics().io_statistics
        files = getattr(engine, "file_engine", None)
        if files is not None:
            stats = {
                "ops_by_engine": dict(files.ops_by_engine),
                "inline_sendfiles": getattr(files, "inline_sendfiles", None),
                "inline_sendfile_misses": getattr(files, "inline_sendfile_misses", None),
            }
        print("stats", json.dumps(stats), flush=True)
        cancel_scope.cancel()

    async def main() -> None:
        # A socket of our own, not open_tcp_listeners: no getaddrinfo, so no worker thread
        # left over from start-up in the thread counts.
        sock = lib.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        print("port", sock.getsockname()[1], flush=True)
        async with lib.open_nursery() as nursery:
            nursery.start_soon(report_on_sigterm, nursery.cancel_scope)
            await lib.serve_listeners(handle, [lib.SocketListener(sock)])

    lib.run(main)


def _timed_sendfile(stalls: list[float]) -> None:
    """Wrap ``os.sendfile`` (which asyncio calls from the loop thread) to record how long
    each call takes: the loop can do nothing else meanwhile."""
    real = os.sendfile

    def sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        start = time.perf_counter()
        try:
            return real(out_fd, in_fd, offset, count)
        finally:
            stalls.append(time.perf_counter() - start)

    os.sendfile = sendfile  # type: ignore[assignment]


def _stall_stats(stalls: list[float]) -> dict[str, Any]:
    if not stalls:
        return {"sendfile_calls": 0}
    ordered = sorted(stalls)
    return {
        "sendfile_calls": len(ordered),
        "sendfile_p50_ms": ordered[len(ordered) // 2] * 1e3,
        "sendfile_p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
        "sendfile_max_ms": ordered[-1] * 1e3,
        "sendfile_total_s": sum(ordered),
    }


def run_asyncio_sendfile(root: Path) -> None:
    import asyncio
    import signal
    import socket

    stalls: list[float] = []
    _timed_sendfile(stalls)

    async def handle(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        buf = b""
        with conn:
            try:
                while True:
                    while HEADER_END not in buf:
                        data = await loop.sock_recv(conn, 65536)
                        if not data:
                            return
                        buf += data
                    head, _, buf = buf.partition(HEADER_END)
                    with open(root / _parse(head), "rb") as f:
                        size = os.fstat(f.fileno()).st_size
                        await loop.sock_sendall(conn, _response_head(size))
                        # fallback=False: a peer going away must not start the thread
                        # pool of asyncio's read + send fallback (it would count as threads).
                        await loop.sock_sendfile(conn, f, 0, size, fallback=False)
            except (ConnectionError, BrokenPipeError, asyncio.SendfileNotAvailableError):
                pass

    def report() -> None:
        print("stats", json.dumps(_stall_stats(stalls)), flush=True)
        os._exit(0)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, report)
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1024)
        server.setblocking(False)
        print("port", server.getsockname()[1], flush=True)
        tasks = set()
        while True:
            conn, _ = await loop.sock_accept(server)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.ensure_future(handle(loop, conn))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    asyncio.run(main())


def run_uvloop_read_write(root: Path) -> None:
    import asyncio

    import aiofiles
    import uvloop

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(HEADER_END)
                except asyncio.IncompleteReadError:
                    return
                async with aiofiles.open(root / _parse(head), "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    writer.write(_response_head(size))
                    while chunk := await f.read(CHUNK):
                        writer.write(chunk)
                        await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        print("port", server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    uvloop.run(main())


def run_example(root: Path, zero_copy: bool) -> None:
    import logging

    import nursery_io
    from examples.static_server import StaticServer, serve_static

    logging.getLogger("static_server").setLevel(logging.WARNING)
    server = StaticServer(root, zero_copy=zero_copy, max_connections=1024)

    async def main() -> None:
        async with nursery_io.open_nursery() as nursery:
            port = await nursery.start(serve_static, server, 0)
            print("port", port, flush=True)

    nursery_io.run(main)


def run_responder(root: Path, name: str = "tiny.txt") -> None:
    import socket
    import threading

    body = (root / name).read_bytes()
    response = _response_head(len(body)) + body

    def serve(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while HEADER_END not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                _, _, buf = buf.partition(HEADER_END)
                conn.sendall(response)

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    print("port", server.getsockname()[1], flush=True)
    while True:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


VARIANTS = (
    "nursery_io-zero-copy",
    "nursery_io-read-send",
    "trio",
    "asyncio-sendfile",
    "uvloop-read-write",
    "example-zero-copy",
    "example-read-send",
    "responder",
)


def main() -> None:
    variant, root = sys.argv[1], Path(sys.argv[2])
    if variant == "nursery_io-zero-copy":
        import nursery_io

        run_trio_like(nursery_io, root, True)
    elif variant == "nursery_io-read-send":
        import nursery_io

        run_trio_like(nursery_io, root, False)
    elif variant == "trio":
        import trio

        run_trio_like(trio, root, False)
    elif variant == "asyncio-sendfile":
        run_asyncio_sendfile(root)
    elif variant == "uvloop-read-write":
        run_uvloop_read_write(root)
    elif variant == "example-zero-copy":
        run_example(root, True)
    elif variant == "example-read-send":
        run_example(root, False)
    elif variant == "responder":
        run_responder(root)
    else:
        raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")


if __name__ == "__main__":
    main()
