"""Unix-domain stream sockets: open_unix_socket, listeners, a full accept queue."""

from __future__ import annotations

import os
import socket as stdlib_socket
from pathlib import Path

import pytest

import nursery_io
import nursery_io.socket as nsocket
from nursery_io import SocketListener, SocketStream
from nursery_io.testing import open_stream_to_socket_listener, wait_all_tasks_blocked


async def unix_listener(path: str | bytes, backlog: int = 16) -> SocketListener:
    sock = nsocket.socket(stdlib_socket.AF_UNIX)
    await sock.bind(path)
    sock.listen(backlog)
    return SocketListener(sock)


async def test_open_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "server.sock"
    async with await unix_listener(str(path)) as listener:
        for target in (path, str(path), os.fsencode(path)):
            client = await nursery_io.open_unix_socket(target)
            server = await listener.accept()
            async with client, server:
                assert isinstance(client, SocketStream)
                await client.send_all(b"over unix")
                assert await server.receive_some() == b"over unix"
                await client.send_eof()
                assert await server.receive_some() == b""
                await server.send_all(b"still open")
                assert await client.receive_some() == b"still open"


async def test_abstract_namespace() -> None:
    name = f"\0nursery_io-test-{os.getpid()}"
    async with await unix_listener(name) as listener:
        client = await open_stream_to_socket_listener(listener)
        server = await listener.accept()
        async with client, server:
            await server.send_all(b"abstract")
            assert await client.receive_some() == b"abstract"


async def test_open_unix_socket_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await nursery_io.open_unix_socket(tmp_path / "missing.sock")
    # A socket file nobody listens on any more.
    path = tmp_path / "stale.sock"
    listener = await unix_listener(str(path))
    await listener.aclose()
    with pytest.raises(ConnectionRefusedError):
        await nursery_io.open_unix_socket(path)


async def test_connect_waits_while_the_accept_queue_is_full(tmp_path: Path) -> None:
    # A full AF_UNIX accept queue makes a non-blocking connect fail with EAGAIN (not
    # EINPROGRESS): the connect must be retried, not reported as done.
    path = str(tmp_path / "busy.sock")
    async with await unix_listener(path, backlog=0) as listener:
        queued = []
        try:
            while True:
                raw = stdlib_socket.socket(stdlib_socket.AF_UNIX)
                raw.setblocking(False)
                try:
                    raw.connect(path)
                except BlockingIOError:
                    raw.close()
                    break
                queued.append(raw)
            connected: list[SocketStream] = []
            async with nursery_io.open_nursery() as nursery:

                async def connect() -> None:
                    connected.append(await nursery_io.open_unix_socket(path))

                nursery.start_soon(connect)
                await wait_all_tasks_blocked(0.01)
                assert connected == []
                accepted = [await listener.accept() for _ in range(len(queued) + 1)]
            (client,) = connected
            async with client:
                await client.send_all(b"finally")
                assert await accepted[-1].receive_some() == b"finally"
            for stream in accepted:
                await stream.aclose()
        finally:
            for raw in queued:
                raw.close()


async def test_unix_stream_has_no_tcp_options() -> None:
    a, b = nsocket.socketpair()
    stream = SocketStream(a)  # TCP_NODELAY is skipped quietly
    async with stream:
        with pytest.raises(OSError):
            stream.getsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY)
    b.close()
