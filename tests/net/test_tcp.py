"""TCP: open_tcp_listeners, serve_tcp, serve_listeners, open_tcp_stream (Happy Eyeballs)."""

from __future__ import annotations

import errno
import functools
import resource
import socket as stdlib_socket
from typing import Any

import pytest

import nursery_io
import nursery_io.socket as nsocket
from nursery_io import SocketListener, SocketStream
from nursery_io._net._highlevel_open_tcp_stream import format_host_port, reorder_for_rfc_6555
from nursery_io.abc import HostnameResolver, SocketFactory
from nursery_io.testing import open_stream_to_socket_listener


def ipv6_loopback_works() -> bool:
    if not stdlib_socket.has_ipv6:
        return False
    try:
        with stdlib_socket.socket(stdlib_socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_works(), reason="no IPv6 loopback here")


async def echo_handler(stream: SocketStream) -> None:
    async for chunk in stream:
        await stream.send_all(chunk)


# ----- open_tcp_listeners -----


async def test_open_tcp_listeners_on_loopback() -> None:
    listeners = await nursery_io.open_tcp_listeners(0, host="127.0.0.1")
    assert len(listeners) == 1
    async with listeners[0] as listener:
        assert isinstance(listener, SocketListener)
        sock = listener.socket
        assert sock.getsockname()[0] == "127.0.0.1"
        assert sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR)
        assert sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_ACCEPTCONN)


async def test_open_tcp_listeners_on_every_interface() -> None:
    listeners = await nursery_io.open_tcp_listeners(0)
    try:
        families = {listener.socket.family for listener in listeners}
        assert stdlib_socket.AF_INET in families
        for listener in listeners:
            if listener.socket.family == stdlib_socket.AF_INET6:
                assert listener.socket.getsockopt(
                    stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY
                )
            client = await open_stream_to_socket_listener(listener)
            server = await listener.accept()
            await client.aclose()
            await server.aclose()
    finally:
        for listener in listeners:
            await listener.aclose()


async def test_open_tcp_listeners_argument_checks() -> None:
    with pytest.raises(TypeError):
        await nursery_io.open_tcp_listeners("80", host="127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await nursery_io.open_tcp_listeners(0, host="127.0.0.1", backlog=1.5)  # type: ignore[arg-type]


async def test_open_tcp_listeners_backlog_is_capped() -> None:
    # A huge backlog must not wrap around in the kernel's 16 bits.
    for backlog in (None, 1, 10**9):
        (listener,) = await nursery_io.open_tcp_listeners(0, host="127.0.0.1", backlog=backlog)
        await listener.aclose()


async def test_open_tcp_listeners_closes_everything_on_failure() -> None:
    (taken,) = await nursery_io.open_tcp_listeners(0, host="127.0.0.1")
    async with taken:
        port = taken.socket.getsockname()[1]
        with pytest.raises(OSError) as info:
            await nursery_io.open_tcp_listeners(port, host="127.0.0.1")
        assert info.value.errno == errno.EADDRINUSE


@needs_ipv6
async def test_open_tcp_listeners_ipv6() -> None:
    (listener,) = await nursery_io.open_tcp_listeners(0, host="::1")
    async with listener:
        assert listener.socket.family == stdlib_socket.AF_INET6
        port = listener.socket.getsockname()[1]
        async with await nursery_io.open_tcp_stream("::1", port) as client:
            server = await listener.accept()
            async with server:
                await client.send_all(b"six")
                assert await server.receive_some() == b"six"


# ----- serve_tcp / serve_listeners -----


async def test_serve_tcp_echo() -> None:
    async with nursery_io.open_nursery() as nursery:
        serve = functools.partial(nursery_io.serve_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve, echo_handler, 0)
        assert all(isinstance(listener, SocketListener) for listener in listeners)
        port = listeners[0].socket.getsockname()[1]
        async with await nursery_io.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"echo?")
            assert await stream.receive_some() == b"echo?"
        nursery.cancel_scope.cancel()
    # Stopping the server closed its listeners.
    assert listeners[0].socket.fileno() == -1


async def test_serve_listeners_handler_nursery_and_stream_closing() -> None:
    handled: list[SocketStream] = []

    async def handler(stream: SocketStream) -> None:
        handled.append(stream)
        await stream.send_all(b"bye")

    async with nursery_io.open_nursery() as handler_nursery:
        async with nursery_io.open_nursery() as nursery:
            listeners = await nursery_io.open_tcp_listeners(0, host="127.0.0.1")
            started = await nursery.start(
                functools.partial(nursery_io.serve_listeners, handler_nursery=handler_nursery),
                handler,
                listeners,
            )
            assert started is listeners
            client = await open_stream_to_socket_listener(listeners[0])
            async with client:
                assert await client.receive_some() == b"bye"
                # the handler returned, so serve_listeners closed the stream
                assert await client.receive_some() == b""
            nursery.cancel_scope.cancel()
    assert len(handled) == 1
    assert handled[0].socket.fileno() == -1


class ScriptedListener(nursery_io.abc.Listener[Any]):
    """Fails accept with the given errors, then blocks forever."""

    def __init__(self, errors: list[int]) -> None:
        self.errors = errors
        self.closed = False
        self.accept_times: list[float] = []

    async def accept(self) -> Any:
        self.accept_times.append(nursery_io.current_time())
        await nursery_io.lowlevel.checkpoint()
        if self.errors:
            raise OSError(self.errors.pop(0), "injected")
        await nursery_io.sleep_forever()

    async def aclose(self) -> None:
        self.closed = True


async def test_serve_listeners_backs_off_when_out_of_fds(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    listener = ScriptedListener([errno.EMFILE, errno.ENFILE, errno.ENOBUFS])
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(nursery_io.serve_listeners, echo_handler, [listener])
        while len(listener.accept_times) < 4:
            await nursery_io.sleep(0.01)
        # Three failures, each followed by a 100 ms pause.
        times = listener.accept_times
        assert [b - a for a, b in zip(times, times[1:])] == pytest.approx([0.1] * 3)
        nursery.cancel_scope.cancel()
    assert listener.closed
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 3


async def test_serve_listeners_propagates_other_errors() -> None:
    listener = ScriptedListener([errno.EINVAL])
    with pytest.RaisesGroup(pytest.RaisesGroup(OSError)):
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(nursery_io.serve_listeners, echo_handler, [listener])
    assert listener.closed


async def test_a_thousand_concurrent_connections() -> None:
    count = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * count + 200  # client and server end of each, plus the rest of the process
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"fd limit {hard} too low for {count} connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        async with nursery_io.open_nursery() as nursery:
            serve = functools.partial(nursery_io.serve_tcp, host="127.0.0.1")
            listeners = await nursery.start(serve, echo_handler, 0)
            port = listeners[0].socket.getsockname()[1]
            streams: list[SocketStream] = []
            try:
                for _ in range(count):
                    streams.append(await nursery_io.open_tcp_stream("127.0.0.1", port))
                results: dict[int, bytes] = {}

                async def talk(index: int, stream: SocketStream) -> None:
                    message = f"message {index}".encode() * 10
                    await stream.send_all(message)
                    received = b""
                    while len(received) < len(message):
                        received += await stream.receive_some()
                    results[index] = received

                async with nursery_io.open_nursery() as clients:
                    for index, stream in enumerate(streams):
                        clients.start_soon(talk, index, stream)
                assert len(results) == count
                assert all(
                    results[index] == f"message {index}".encode() * 10 for index in range(count)
                )
            finally:
                for stream in streams:
                    await stream.aclose()
            nursery.cancel_scope.cancel()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ----- open_tcp_stream -----


async def test_open_tcp_stream_argument_checks() -> None:
    with pytest.raises(ValueError):
        await nursery_io.open_tcp_stream(None, 80)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await nursery_io.open_tcp_stream("127.0.0.1", "80")  # type: ignore[arg-type]


async def test_open_tcp_stream_refused() -> None:
    with nsocket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with pytest.raises(OSError) as info:
            await nursery_io.open_tcp_stream("127.0.0.1", port)
    # A plain OSError as in Trio, with the errno every attempt got.
    assert type(info.value) is OSError
    assert info.value.errno == errno.ECONNREFUSED
    assert str(info.value) == f"all attempts to connect to 127.0.0.1:{port} failed"
    group = info.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert [type(e) for e in group.exceptions] == [ConnectionRefusedError]


async def test_open_tcp_stream_local_address() -> None:
    (listener,) = await nursery_io.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        port = listener.socket.getsockname()[1]
        stream = await nursery_io.open_tcp_stream("127.0.0.1", port, local_address="127.0.0.2")
        async with stream:
            assert stream.socket.getsockname()[0] == "127.0.0.2"
            server = await listener.accept()
            assert server.socket.getpeername()[0] == "127.0.0.2"
            await server.aclose()
        # An address this host doesn't have: that attempt fails, saying why.
        with pytest.raises(OSError) as info:
            await nursery_io.open_tcp_stream("127.0.0.1", port, local_address="192.0.2.1")
        assert isinstance(info.value.__cause__, ExceptionGroup)
        (error,) = info.value.__cause__.exceptions
        assert "local_address='192.0.2.1' is incompatible with remote address" in str(error)
        assert type(error) is OSError
        assert error.errno == errno.EADDRNOTAVAIL


def test_helpers() -> None:
    assert format_host_port("::1", 80) == "[::1]:80"
    assert format_host_port(b"example.com", 80) == "example.com:80"
    six, four = stdlib_socket.AF_INET6, stdlib_socket.AF_INET
    targets = [(six, "a"), (six, "b"), (six, "c"), (four, "x"), (four, "y")]
    # RFC 6555 section 5.4, as Trio does: only the other family's first address moves up.
    reorder_for_rfc_6555(targets)
    assert [t[1] for t in targets] == ["a", "x", "b", "c", "y"]
    same_family = [(four, "x"), (four, "y")]
    reorder_for_rfc_6555(same_family)
    assert [t[1] for t in same_family] == ["x", "y"]
    empty: list[Any] = []
    reorder_for_rfc_6555(empty)
    assert empty == []


# ----- Happy Eyeballs, with a scripted resolver and scripted sockets -----

HANG = 1001  # connect never finishes
FAIL = 1002  # connect fails at once


class ScriptedResolver(HostnameResolver):
    def __init__(self, addresses: list[tuple[int, str, int]]) -> None:
        self.addresses = addresses

    async def getaddrinfo(  # type: ignore[override]
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        await nursery_io.lowlevel.checkpoint()
        return [
            (fam, stdlib_socket.SOCK_STREAM, stdlib_socket.IPPROTO_TCP, "", (addr, p))
            for fam, addr, p in self.addresses
        ]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> tuple[str, str]:
        raise NotImplementedError


class ScriptedSocket(nsocket.SocketType):
    """A real socket whose connect() hangs or fails on the scripted ports."""

    def __init__(self, factory: ScriptedFactory, family: int) -> None:
        self.inner = nsocket.from_stdlib_socket(stdlib_socket.socket(family))
        self.factory = factory
        self.closed = False

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

    def close(self) -> None:
        self.closed = True
        self.inner.close()

    async def recv(self, size: int, flags: int = 0, /) -> bytes:  # type: ignore[override]
        return await self.inner.recv(size, flags)

    async def send(self, data: Any, flags: int = 0, /) -> int:  # type: ignore[override]
        return await self.inner.send(data, flags)

    async def connect(self, address: Any) -> None:
        self.factory.attempts.append((nursery_io.current_time(), address))
        try:
            if address[1] == HANG:
                await nursery_io.sleep_forever()
            if address[1] == FAIL:
                await nursery_io.lowlevel.checkpoint()
                raise ConnectionRefusedError(errno.ECONNREFUSED, "scripted refusal")
            await self.inner.connect(address)
        except nursery_io.Cancelled:
            self.close()  # as a real socket does
            raise


class ScriptedFactory(SocketFactory):
    def __init__(self) -> None:
        self.sockets: list[ScriptedSocket] = []
        self.attempts: list[tuple[float, Any]] = []

    def socket(self, family: Any = None, type: Any = None, proto: Any = None) -> Any:
        sock = ScriptedSocket(self, family)
        self.sockets.append(sock)
        return sock


def script(addresses: list[tuple[int, str, int]]) -> ScriptedFactory:
    factory = ScriptedFactory()
    nsocket.set_custom_hostname_resolver(ScriptedResolver(addresses))
    nsocket.set_custom_socket_factory(factory)
    return factory


V4 = stdlib_socket.AF_INET


async def test_happy_eyeballs_first_hangs_second_fails_third_wins(autojump_clock: Any) -> None:
    (listener,) = await nursery_io.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        port = listener.socket.getsockname()[1]
        factory = script(
            [(V4, "127.0.0.1", HANG), (V4, "127.0.0.1", FAIL), (V4, "127.0.0.1", port)]
        )
        start = nursery_io.current_time()
        stream = await nursery_io.open_tcp_stream("example.test", 80)
        async with stream:
            # Attempt 2 started after the delay; it failed at once, so attempt 3 did not
            # wait for another delay.
            times = [t - start for t, _ in factory.attempts]
            assert times == pytest.approx([0.0, 0.25, 0.25])
            server = await listener.accept()
            async with server:
                await stream.send_all(b"won")
                assert await server.receive_some() == b"won"
            winner = factory.sockets[2]
            assert stream.socket is winner and not winner.closed
            assert factory.sockets[0].closed and factory.sockets[1].closed


async def test_happy_eyeballs_custom_delay(autojump_clock: Any) -> None:
    (listener,) = await nursery_io.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        port = listener.socket.getsockname()[1]
        factory = script([(V4, "127.0.0.1", HANG), (V4, "127.0.0.1", port)])
        start = nursery_io.current_time()
        stream = await nursery_io.open_tcp_stream("example.test", 80, happy_eyeballs_delay=3)
        await stream.aclose()
        assert [t - start for t, _ in factory.attempts] == pytest.approx([0.0, 3.0])
        assert factory.sockets[0].closed


async def test_happy_eyeballs_all_fail(autojump_clock: Any) -> None:
    factory = script([(V4, "127.0.0.1", FAIL)] * 3)
    with pytest.raises(OSError) as info:
        await nursery_io.open_tcp_stream("example.test", 80)
    assert info.value.errno == errno.ECONNREFUSED
    assert "example.test:80" in str(info.value)
    group = info.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert len(group.exceptions) == 3
    assert all(sock.closed for sock in factory.sockets)


async def test_happy_eyeballs_moves_the_other_family_up(autojump_clock: Any) -> None:
    # RFC 6555 section 5.4, as Trio does it: the other family's first address is tried
    # second, and the rest keep the resolver's order.
    six = stdlib_socket.AF_INET6
    factory = script(
        [
            (six, "::1", FAIL),
            (six, "::2", FAIL),
            (six, "::3", FAIL),
            (V4, "127.0.0.1", FAIL),
            (V4, "127.0.0.2", FAIL),
        ]
    )
    with pytest.raises(OSError):
        await nursery_io.open_tcp_stream("example.test", 80)
    assert [address[0] for _, address in factory.attempts] == [
        "::1",
        "127.0.0.1",
        "::2",
        "::3",
        "127.0.0.2",
    ]


async def test_happy_eyeballs_cancelled_from_outside(autojump_clock: Any) -> None:
    factory = script([(V4, "127.0.0.1", HANG)] * 3)
    with nursery_io.move_on_after(10) as scope:
        await nursery_io.open_tcp_stream("example.test", 80)
    assert scope.cancelled_caught
    assert len(factory.sockets) == 3
    assert all(sock.closed for sock in factory.sockets)


async def test_happy_eyeballs_two_winners_keep_one(autojump_clock: Any) -> None:
    # Both attempts connect (the second starts when the first is still pending); exactly one
    # stream is returned and the other socket is closed.
    (listener,) = await nursery_io.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        port = listener.socket.getsockname()[1]
        factory = script([(V4, "127.0.0.1", port), (V4, "127.0.0.1", port)])
        stream = await nursery_io.open_tcp_stream("example.test", 80, happy_eyeballs_delay=0)
        async with stream:
            open_sockets = [sock for sock in factory.sockets if not sock.closed]
            assert open_sockets == [stream.socket]
