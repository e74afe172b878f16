"""anyio sockets on nursery_io: streams, listeners, datagrams, fds, and error mapping."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import anyio
import pytest
from anyio import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    EndOfStream,
    create_task_group,
    wait_all_tasks_blocked,
)
from anyio.abc import SocketAttribute, SocketStream

pytestmark = pytest.mark.anyio


async def tcp_pair() -> tuple[SocketStream, SocketStream, anyio.abc.SocketListener]:
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
    (listener,) = multi.listeners
    assert isinstance(listener, anyio.abc.SocketListener)
    port = listener.extra(SocketAttribute.local_port)
    client = await anyio.connect_tcp("127.0.0.1", port)
    server = await listener.accept()
    return client, server, listener


async def test_tcp_round_trip_eof_and_attributes() -> None:
    client, server, listener = await tcp_pair()
    async with client, server, listener:
        await client.send(b"hello " * 20000)  # more than a socket buffer
        received = b""
        while len(received) < 120000:
            received += await server.receive()
        assert received == b"hello " * 20000
        await client.send_eof()
        with pytest.raises(EndOfStream):
            await server.receive()
        await server.send(b"still open")
        assert await client.receive() == b"still open"

        raw = client.extra(SocketAttribute.raw_socket)
        assert isinstance(raw, socket.socket)
        assert client.extra(SocketAttribute.remote_port) == server.extra(SocketAttribute.local_port)
        assert client.extra(SocketAttribute.family) == socket.AF_INET
        accepted = server.extra(SocketAttribute.raw_socket)
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_close_maps_to_closed_resource_error() -> None:
    client, server, listener = await tcp_pair()
    async with server, listener:
        async with create_task_group() as tg:

            async def receive_until_closed() -> None:
                with pytest.raises(ClosedResourceError):
                    await client.receive()

            tg.start_soon(receive_until_closed)
            await wait_all_tasks_blocked()
            await client.aclose()
        with pytest.raises(ClosedResourceError):
            await client.receive()
        with pytest.raises(ClosedResourceError):
            await client.send(b"x")


async def test_concurrent_receivers_are_busy() -> None:
    client, server, listener = await tcp_pair()
    async with client, server, listener:
        async with create_task_group() as tg:
            tg.start_soon(client.receive)
            await wait_all_tasks_blocked()
            with pytest.raises(BusyResourceError):
                await client.receive()
            tg.cancel_scope.cancel()


async def test_reset_by_peer_is_broken_resource_error() -> None:
    client, server, listener = await tcp_pair()
    async with client, listener:
        raw = server.extra(SocketAttribute.raw_socket)
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await server.aclose()
        with pytest.raises(BrokenResourceError) as info:
            await client.receive()
        assert isinstance(info.value.__cause__, ConnectionResetError)


async def test_aclose_is_a_checkpoint_and_still_closes() -> None:
    client, server, listener = await tcp_pair()
    async with server, listener:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await client.aclose()
        assert scope.cancelled_caught
        assert client.extra(SocketAttribute.raw_socket).fileno() == -1


async def test_wrapping_existing_sockets() -> None:
    a, b = socket.socketpair()
    stream_a = await SocketStream.from_socket(a)
    stream_b = await anyio.abc.UNIXSocketStream.from_socket(b)
    async with stream_a, stream_b:
        assert stream_a.extra(SocketAttribute.raw_socket) is a
        await stream_a.send(b"ping")
        assert await stream_b.receive() == b"ping"


async def test_unix_stream_with_fds(tmp_path: Path) -> None:
    path = tmp_path / "sock"
    async with await anyio.create_unix_listener(path) as listener:
        async with create_task_group() as tg:

            async def serve() -> None:
                async with await listener.accept() as conn:  # type: ignore[attr-defined]
                    message, fds = await conn.receive_fds(10, 2)
                    assert message == b"fds"
                    for fd in fds:
                        with os.fdopen(fd, "rb") as file:
                            await conn.send(file.read())

            tg.start_soon(serve)
            async with await anyio.connect_unix(path) as client:
                read_end, write_end = os.pipe()
                os.write(write_end, b"through a passed fd")
                os.close(write_end)
                try:
                    await client.send_fds(b"fds", [read_end])
                finally:
                    os.close(read_end)
                assert await client.receive() == b"through a passed fd"


async def test_udp_and_connected_udp() -> None:
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as server:
        port = server.extra(SocketAttribute.local_port)
        async with await anyio.create_connected_udp_socket("127.0.0.1", port) as client:
            await client.send(b"datagram")
            data, (host, client_port) = await server.receive()
            assert data == b"datagram"
            assert client_port == client.extra(SocketAttribute.local_port)
            await server.send((b"reply", (host, client_port)))
            assert await client.receive() == b"reply"


async def test_unix_datagrams(tmp_path: Path) -> None:
    server_path = tmp_path / "server"
    client_path = tmp_path / "client"
    async with await anyio.create_unix_datagram_socket(local_path=server_path) as server:
        async with await anyio.create_connected_unix_datagram_socket(
            server_path, local_path=client_path
        ) as client:
            await client.send(b"one")
            data, sender = await server.receive()
            assert (data, sender) == (b"one", str(client_path))
            await server.send((b"two", str(client_path)))
            assert await client.receive() == b"two"


async def test_wait_readable_and_notify_closing() -> None:
    a, b = socket.socketpair()
    with a, b:
        async with create_task_group() as tg:

            async def wait_then_fail() -> None:
                with pytest.raises(ClosedResourceError):
                    await anyio.wait_readable(a)

            tg.start_soon(wait_then_fail)
            await wait_all_tasks_blocked()
            with pytest.raises(BusyResourceError):
                await anyio.wait_readable(a)
            anyio.notify_closing(a)
        b.send(b"x")
        await anyio.wait_readable(a)
        await anyio.wait_writable(a)


async def test_name_resolution() -> None:
    results = await anyio.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    assert results[0][4] == ("127.0.0.1", 80)
    assert await anyio.getnameinfo(
        ("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
    ) == (
        "127.0.0.1",
        "80",
    )
