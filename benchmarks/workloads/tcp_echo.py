"""TCP echo server on loopback, driven by a separate client process.

Only the server runs on the library under test; the client (``_tcp_client``) is the same for
every server and reports the time, measured from the first request to the last response.
Each server stops by itself once the client process exits (or after ``timeout`` seconds).
"""

# Each worker process imports only the library under test, so imports stay inside variants.

from __future__ import annotations

import functools
import json
import subprocess
import sys
from types import ModuleType
from typing import Any

from benchmarks.workloads import Context, Result, Target

TITLE = "echo server, 50 loopback connections x R round trips of 1 KiB (separate client process)"
UNIT = "round trips"
SIZES = {
    "full": {"connections": 50, "round_trips": 1000, "size": 1024, "timeout": 60.0},
    "quick": {"connections": 50, "round_trips": 20, "size": 1024, "timeout": 30.0},
}
REFERENCE = "trio"
TARGETS = (
    Target("nursery_io >= 1.5x faster than trio", peer="trio", min_speedup=1.5),
    Target("nursery_io no slower than asyncio streams", peer="asyncio", min_speedup=1.0),
)
NOTES = {"asyncio": "streams", "uvloop": "streams"}
# Polling the client every 50 ms costs every server the same ~20 wakeups/s.
POLL = 0.05


def _start_client(ctx: Context, port: int) -> subprocess.Popen[str]:
    p = ctx.params
    argv = [str(port), str(p["connections"]), str(p["round_trips"]), str(p["size"])]
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.workloads._tcp_client", *argv, str(p["timeout"])],
        stdout=subprocess.PIPE,
        text=True,
    )


def _client_result(client: subprocess.Popen[str], timeout: float) -> Result:
    if client.poll() is None:
        client.kill()
        client.wait()
        raise TimeoutError(f"echo client did not finish within {timeout} s")
    assert client.stdout is not None
    report = json.loads(client.stdout.read().strip().splitlines()[-1])
    if "error" in report:
        raise RuntimeError(f"echo client failed: {report['error']}")
    return Result(ops=report["round_trips"], seconds=report["seconds"])


async def run_trio_like(lib: ModuleType, ctx: Context) -> Result:
    timeout: float = ctx.params["timeout"]

    async def handler(stream: Any) -> None:
        # serve_tcp closes the stream after the handler returns.
        while data := await stream.receive_some(65536):
            await stream.send_all(data)

    with lib.move_on_after(timeout):
        async with lib.open_nursery() as nursery:
            serve = functools.partial(lib.serve_tcp, host="127.0.0.1")
            listeners = await nursery.start(serve, handler, 0)
            client = _start_client(ctx, listeners[0].socket.getsockname()[1])
            while client.poll() is None:
                await lib.sleep(POLL)
            nursery.cancel_scope.cancel()
    return _client_result(client, timeout)


async def run_asyncio(ctx: Context) -> Result:
    import asyncio

    timeout: float = ctx.params["timeout"]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        client = _start_client(ctx, server.sockets[0].getsockname()[1])
        try:
            async with asyncio.timeout(timeout):
                while client.poll() is None:
                    await asyncio.sleep(POLL)
        except TimeoutError:
            pass
    return _client_result(client, timeout)


async def run_anyio(ctx: Context) -> Result:
    import anyio
    from anyio.abc import SocketAttribute, SocketStream

    timeout: float = ctx.params["timeout"]

    async def handler(stream: SocketStream) -> None:
        async with stream:
            async for data in stream:
                await stream.send(data)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    with anyio.move_on_after(timeout):
        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, handler)
            client = _start_client(ctx, listener.extra(SocketAttribute.local_port))
            while client.poll() is None:
                await anyio.sleep(POLL)
            group.cancel_scope.cancel()
    return _client_result(client, timeout)
