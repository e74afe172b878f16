"""SocketStream and SocketListener."""

from __future__ import annotations

import array
import errno
import socket as stdlib_socket
import struct
from typing import Any

import pytest

import nursery_io
import nursery_io.socket as nsocket
from nursery_io import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    SocketListener,
    SocketStream,
)
from nursery_io.testing import (
    assert_checkpoints,
    check_half_closeable_stream,
    check_two_way_stream,
    open_stream_to_socket_listener,
    wait_all_tasks_blocked,
)

# ----- pair makers -----


async def unix_stream_pair() -> tuple[SocketStream, SocketStream]:
    a, b = nsocket.socketpair()
    return SocketStream(a), SocketStream(b)


async def tcp_stream_pair() -> tuple[SocketStream, SocketStream]:
    with nsocket.socket() as listen_sock:
        await listen_sock.bind(("127.0.0.1", 0))
        listen_sock.listen(1)
        client = nsocket.socket()
        await client.connect(listen_sock.getsockname())
        server, _ = await listen_sock.accept()
    return SocketStream(client), SocketStream(server)


def clog(stream: SocketStream) -> int:
    # Fill the kernel buffers until a send would block; return how much went in.
    raw = stream.socket._sock  # type: ignore[attr-defined]
    total = 0
    while True:
        try:
            total += raw.send(b"\0" * 65536)
        except BlockingIOError:
            return total


def clogged(maker: Any) -> Any:
    async def make() -> tuple[SocketStream, SocketStream]:
        a, b = await maker()
        if a.socket.family == stdlib_socket.AF_UNIX:
            # Smaller buffers fill faster. (Not for TCP: a receive window much smaller
            # than the loopback MSS makes the sender wait for zero-window probes.)
            for stream in (a, b):
                stream.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 8192)
        # Traffic in one direction carries ACKs for the other, which can free send buffer
        # space there: repeat until neither side takes any more.
        while clog(a) + clog(b):
            pass
        return a, b

    return make


async def reset_tcp_pair() -> tuple[SocketStream, SocketStream]:
    """A TCP pair whose client end was closed with an RST (SO_LINGER with timeout 0)."""
    client, server = await tcp_stream_pair()
    client.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0))
    await client.aclose()
    return client, server


# ----- conformance suites -----


async def test_conformance_unix_socketpair() -> None:
    await check_half_closeable_stream(unix_stream_pair, clogged(unix_stream_pair))


async def test_conformance_tcp() -> None:
    await check_half_closeable_stream(tcp_stream_pair, clogged(tcp_stream_pair))
    await check_two_way_stream(tcp_stream_pair, None)


# ----- construction -----


async def test_constructor_checks() -> None:
    with stdlib_socket.socket() as plain, pytest.raises(TypeError):
        SocketStream(plain)  # type: ignore[arg-type]
    with nsocket.socket(type=stdlib_socket.SOCK_DGRAM) as udp, pytest.raises(ValueError):
        SocketStream(udp)


async def test_tcp_nodelay_on_by_default() -> None:
    client, server = await tcp_stream_pair()
    async with client, server:
        assert client.getsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY)
        assert server.socket.getsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY)
        client.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, False)
        assert not client.getsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY)
        assert len(client.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, 8)) == 8
        with pytest.raises(TypeError):
            client.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, None)


# ----- data transfer -----


async def test_send_all_large_and_odd_buffers() -> None:
    a, b = await unix_stream_pair()
    payload = bytes(range(256)) * 8000  # ~2 MB: many partial sends
    ints = array.array("i", range(1000))
    received = bytearray()

    async def reader() -> None:
        while chunk := await b.receive_some():
            received.extend(chunk)

    async with a, b, nursery_io.open_nursery() as nursery:
        nursery.start_soon(reader)
        await a.send_all(payload)
        await a.send_all(bytearray(b"tail"))
        await a.send_all(memoryview(ints))
        await a.send_all(b"")
        await a.send_eof()
    assert bytes(received) == payload + b"tail" + ints.tobytes()


async def test_receive_some_max_bytes() -> None:
    a, b = await unix_stream_pair()
    async with a, b:
        await a.send_all(b"abcdef")
        assert await b.receive_some(2) == b"ab"
        assert await b.receive_some() == b"cdef"
        with pytest.raises(ValueError):
            await b.receive_some(0)


async def test_operations_are_checkpoints() -> None:
    a, b = await unix_stream_pair()
    async with a, b:
        with assert_checkpoints():
            await a.send_all(b"x")
        with assert_checkpoints():
            await b.receive_some(1)
        with assert_checkpoints():
            await a.send_eof()
        with assert_checkpoints():
            await a.wait_send_all_might_not_block()


async def test_half_close() -> None:
    client, server = await tcp_stream_pair()
    async with client, server:
        await client.send_all(b"request")
        await client.send_eof()
        await client.send_eof()  # idempotent
        with pytest.raises(ClosedResourceError):
            await client.send_all(b"more")
        assert await server.receive_some() == b"request"
        assert await server.receive_some() == b""
        # The other direction still works.
        await server.send_all(b"response")
        await server.send_eof()
        assert await client.receive_some() == b"response"
        assert await client.receive_some() == b""


async def test_cancelled_receive_loses_nothing() -> None:
    a, b = await unix_stream_pair()
    async with a, b:
        with nursery_io.move_on_after(0.01):
            await b.receive_some()
        with nursery_io.CancelScope() as scope:
            await a.send_all(b"data")
            scope.cancel()
            await b.receive_some()  # cancelled before it reads
        assert await b.receive_some() == b"data"


async def test_cancelled_send_all_sends_a_prefix_only() -> None:
    for maker in (unix_stream_pair, tcp_stream_pair):
        a, b = await maker()
        async with a, b:
            payload = bytes(range(256)) * 40000  # far more than the kernel buffers hold
            with nursery_io.CancelScope() as scope:
                async with nursery_io.open_nursery() as nursery:

                    async def cancel_when_stuck() -> None:
                        await wait_all_tasks_blocked()
                        scope.cancel()

                    nursery.start_soon(cancel_when_stuck)
                    await a.send_all(payload)
            assert scope.cancelled_caught
            received = bytearray()

            async def reader(b: SocketStream = b) -> None:
                while chunk := await b.receive_some():
                    received.extend(chunk)

            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(reader)
                await a.send_all(b"|after")
                await a.send_eof()
            prefix_length = len(received) - len(b"|after")
            assert 0 < prefix_length < len(payload)
            assert bytes(received) == payload[:prefix_length] + b"|after"


# ----- misuse, closing and errors -----


async def test_two_receivers_are_busy() -> None:
    a, b = await unix_stream_pair()
    async with a, b, nursery_io.open_nursery() as nursery:
        nursery.start_soon(b.receive_some)
        await wait_all_tasks_blocked()
        with pytest.raises(BusyResourceError):
            await b.receive_some()
        await a.send_all(b"x")


async def test_two_senders_are_busy() -> None:
    a, b = await clogged(unix_stream_pair)()
    async with a, b, nursery_io.open_nursery() as nursery:
        nursery.start_soon(a.send_all, b"x")
        await wait_all_tasks_blocked()
        with pytest.raises(BusyResourceError):
            await a.send_all(b"y")
        with pytest.raises(BusyResourceError):
            await a.send_eof()
        with pytest.raises(BusyResourceError):
            await a.wait_send_all_might_not_block()
        nursery.cancel_scope.cancel()


async def test_closed_stream_errors() -> None:
    a, b = await unix_stream_pair()
    await a.aclose()
    await a.aclose()  # idempotent
    with pytest.raises(ClosedResourceError):
        await a.send_all(b"x")
    with pytest.raises(ClosedResourceError):
        await a.send_all(b"")
    with pytest.raises(ClosedResourceError):
        await a.receive_some()
    with pytest.raises(ClosedResourceError):
        await a.wait_send_all_might_not_block()
    with pytest.raises(ClosedResourceError):
        await a.send_eof()
    # The peer sees end of stream.
    assert await b.receive_some() == b""
    await b.aclose()


async def test_aclose_wakes_blocked_tasks() -> None:
    a, b = await unix_stream_pair()
    async with b:

        async def blocked_receive() -> None:
            with pytest.raises(ClosedResourceError):
                await a.receive_some()

        async def blocked_send() -> None:
            with pytest.raises(ClosedResourceError):
                await a.send_all(b"x" * 10_000_000)

        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(blocked_receive)
            nursery.start_soon(blocked_send)
            await wait_all_tasks_blocked()
            await a.aclose()


async def test_reset_connection_is_broken() -> None:
    _, server = await reset_tcp_pair()
    async with server:
        with pytest.raises(BrokenResourceError) as info:
            await server.receive_some()
        assert isinstance(info.value.__cause__, ConnectionResetError)
    _, server = await reset_tcp_pair()
    async with server:
        with pytest.raises(BrokenResourceError) as info:
            for _ in range(100):  # the first send may still be accepted locally
                await server.send_all(b"x" * 1000)
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno in (errno.EPIPE, errno.ECONNRESET)


async def test_send_after_peer_closed_is_broken() -> None:
    a, b = await unix_stream_pair()
    await b.aclose()
    async with a:
        with pytest.raises(BrokenResourceError):
            await a.send_all(b"x")


# ----- a custom SocketType goes through the public methods -----


class WrappedSocket(nsocket.SocketType):
    """A SocketType that forwards to a real socket, counting calls."""

    def __init__(self, inner: nsocket.SocketType) -> None:
        self.inner = inner
        self.calls: list[str] = []

    @property
    def type(self) -> stdlib_socket.SocketKind:
        return self.inner.type

    @property
    def family(self) -> stdlib_socket.AddressFamily:
        return self.inner.family

    @property
    def did_shutdown_SHUT_WR(self) -> bool:
        return self.inner.did_shutdown_SHUT_WR

    def fileno(self) -> int:
        return self.inner.fileno()

    def setsockopt(self, *args: Any) -> None:
        self.inner.setsockopt(*args)

    def getsockopt(self, *args: Any) -> Any:
        return self.inner.getsockopt(*args)

    def shutdown(self, flag: int) -> None:
        self.inner.shutdown(flag)

    def close(self) -> None:
        self.inner.close()

    async def wait_writable(self) -> None:
        await self.inner.wait_writable()

    async def send(self, data: Any, flags: int = 0, /) -> int:  # type: ignore[override]
        self.calls.append("send")
        return await self.inner.send(data, flags)

    async def recv(self, size: int, flags: int = 0, /) -> bytes:  # type: ignore[override]
        self.calls.append("recv")
        return await self.inner.recv(size, flags)


async def test_stream_over_a_custom_socket_type() -> None:
    left, right = nsocket.socketpair()
    wrapped = WrappedSocket(left)
    a, b = SocketStream(wrapped), SocketStream(right)
    async with a, b:
        await a.send_all(b"hello")
        await a.send_all(memoryview(b"!"))
        assert await b.receive_some() == b"hello!"
        await b.send_all(b"back")
        assert await a.receive_some() == b"back"
        assert wrapped.calls == ["send", "send", "recv"]
    with pytest.raises(ClosedResourceError):
        await a.receive_some()
    with pytest.raises(ClosedResourceError):
        await a.send_all(b"")


async def test_custom_sockets_in_check_streams() -> None:
    async def maker() -> tuple[SocketStream, SocketStream]:
        left, right = nsocket.socketpair()
        return SocketStream(WrappedSocket(left)), SocketStream(WrappedSocket(right))

    await check_half_closeable_stream(maker, None)


# ----- SocketListener -----


async def test_listener_constructor_checks() -> None:
    with stdlib_socket.socket() as plain, pytest.raises(TypeError):
        SocketListener(plain)  # type: ignore[arg-type]
    with nsocket.socket(type=stdlib_socket.SOCK_DGRAM) as udp, pytest.raises(ValueError):
        SocketListener(udp)
    with nsocket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match="listen"):
            SocketListener(sock)


async def test_listener_accepts_streams() -> None:
    sock = nsocket.socket()
    await sock.bind(("127.0.0.1", 0))
    sock.listen()
    async with SocketListener(sock) as listener:
        client = await open_stream_to_socket_listener(listener)
        server = await listener.accept()
        async with client, server:
            assert isinstance(server, SocketStream)
            await client.send_all(b"hi")
            assert await server.receive_some() == b"hi"
            assert server.getsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY)
    with pytest.raises(ClosedResourceError):
        await listener.accept()


async def test_listener_on_wildcard_address() -> None:
    sock = nsocket.socket()
    await sock.bind(("0.0.0.0", 0))
    sock.listen()
    async with SocketListener(sock) as listener:
        client = await open_stream_to_socket_listener(listener)
        server = await listener.accept()
        await client.aclose()
        await server.aclose()


async def test_listener_aclose_wakes_accept() -> None:
    sock = nsocket.socket()
    await sock.bind(("127.0.0.1", 0))
    sock.listen()
    listener = SocketListener(sock)

    async def accept_blocked() -> None:
        with pytest.raises(ClosedResourceError):
            await listener.accept()

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(accept_blocked)
        await wait_all_tasks_blocked()
        await listener.aclose()


class FlakyAcceptSocket(WrappedSocket):
    """Accept fails once with an error about the pending connection only, then works."""

    def __init__(self, inner: nsocket.SocketType, errors: list[int]) -> None:
        super().__init__(inner)
        self.errors = errors

    async def accept(self) -> Any:
        if self.errors:
            await nursery_io.lowlevel.checkpoint()
            code = self.errors.pop(0)
            raise OSError(code, "injected")
        return await self.inner.accept()


async def test_listener_skips_per_connection_errors() -> None:
    inner = nsocket.socket()
    await inner.bind(("127.0.0.1", 0))
    inner.listen()
    flaky = FlakyAcceptSocket(inner, [errno.ECONNABORTED, errno.EPROTO])
    listener = SocketListener(flaky)
    async with listener:
        client = nsocket.socket()
        await client.connect(inner.getsockname())
        server = await listener.accept()
        await server.aclose()
        client.close()
        flaky.errors = [errno.EMFILE]
        with pytest.raises(OSError) as info:
            await listener.accept()
        assert info.value.errno == errno.EMFILE
        flaky.errors = [errno.EBADF]
        with pytest.raises(ClosedResourceError):
            await listener.accept()
