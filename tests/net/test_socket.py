"""nursery_io.socket: the module surface, SocketType operations, resolution hooks, fds."""

from __future__ import annotations

import ast
import errno
import functools
import os
import socket as stdlib_socket
from pathlib import Path
from typing import Any

import pytest

import nursery_io
import nursery_io.socket as nsocket
from nursery_io.abc import HostnameResolver, SocketFactory
from nursery_io.lowlevel import current_statistics
from nursery_io.testing import assert_checkpoints, wait_all_tasks_blocked

# ----- helpers -----


def fill_send_buffer(sock: Any) -> int:
    """Write into a non-blocking socket until the kernel refuses more; return bytes written."""
    total = 0
    chunk = b"x" * 65536
    while True:
        try:
            total += sock._sock.send(chunk) if hasattr(sock, "_sock") else sock.send(chunk)
        except BlockingIOError:
            return total


def drain(sock: stdlib_socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class RecordingResolver(HostnameResolver):
    def __init__(self, answers: dict[bytes, list[Any]] | None = None) -> None:
        self.answers = answers or {}
        self.getaddrinfo_calls: list[tuple[Any, ...]] = []
        self.getnameinfo_calls: list[tuple[Any, ...]] = []

    async def getaddrinfo(  # type: ignore[override]
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        self.getaddrinfo_calls.append((host, port, family, type, proto, flags))
        await nursery_io.lowlevel.checkpoint()
        if host not in self.answers:
            raise stdlib_socket.gaierror(stdlib_socket.EAI_NONAME, "unknown to this resolver")
        port = port if isinstance(port, int) else 0
        return [
            (
                fam,
                stdlib_socket.SOCK_STREAM,
                6,
                "",
                (addr, port, 0, 0) if fam == stdlib_socket.AF_INET6 else (addr, port),
            )
            for fam, addr in self.answers[host]
        ]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> tuple[str, str]:
        self.getnameinfo_calls.append((sockaddr, flags))
        await nursery_io.lowlevel.checkpoint()
        return ("custom.example", "custom-service")


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


# ----- the module surface -----


def test_reexports_every_uppercase_stdlib_constant() -> None:
    for name in stdlib_socket.__all__:
        if name.isupper():
            assert getattr(nsocket, name) == getattr(stdlib_socket, name), name
    for name in ["gaierror", "herror", "inet_pton", "inet_ntop", "htons", "gethostname"]:
        assert getattr(nsocket, name) is getattr(stdlib_socket, name)
    assert nsocket.IP_BIND_ADDRESS_NO_PORT == 24
    # nursery_io's own versions, not the stdlib's
    assert nsocket.socket is not stdlib_socket.socket
    assert nsocket.getaddrinfo is not stdlib_socket.getaddrinfo


def test_static_constant_list_matches_this_python() -> None:
    # The TYPE_CHECKING import exists for type checkers; it must name exactly the constants
    # the module exports at run time. (nursery_io.socket star-imports them from there.)
    from nursery_io._net import _socket_reexports

    source = Path(_socket_reexports.__file__).read_text()
    static: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    static.update(alias.name for alias in stmt.names)
    dynamic = {name for name in stdlib_socket.__all__ if name.isupper()}
    assert dynamic <= static


def test_sockettype_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        nsocket.SocketType()


def test_from_stdlib_socket_rejects_other_objects() -> None:
    with pytest.raises(TypeError):
        nsocket.from_stdlib_socket(object())  # type: ignore[arg-type]


async def test_constructors_and_sync_passthroughs() -> None:
    sock = nsocket.socket()
    with sock:
        assert isinstance(sock, nsocket.SocketType)
        assert sock.family == stdlib_socket.AF_INET
        assert sock.type == stdlib_socket.SOCK_STREAM
        assert "nursery_io.socket.socket" in repr(sock)
        assert not sock.get_inheritable()
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
        assert sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR)
        assert len(sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, 8)) == 8
        with pytest.raises(TypeError):
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, None)
        with sock.dup() as dup:
            assert dup.fileno() != sock.fileno()
    assert sock.fileno() == -1
    sock.close()  # idempotent


async def test_socket_with_fileno_and_fromfd_read_the_real_family() -> None:
    a, b = stdlib_socket.socketpair()
    with a, b:
        dup = nsocket.fromfd(a.fileno(), stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM)
        with dup:
            assert dup.family == stdlib_socket.AF_UNIX
            assert dup.type == stdlib_socket.SOCK_STREAM
            assert dup.fileno() != a.fileno()
        adopted = nsocket.socket(fileno=os.dup(b.fileno()))
        with adopted:
            assert adopted.family == stdlib_socket.AF_UNIX


def test_close_outside_a_run() -> None:
    sock = nsocket.socket()
    sock.close()
    assert sock.fileno() == -1


# ----- operations on connected sockets -----


async def test_socketpair_send_recv_variants() -> None:
    a, b = nsocket.socketpair()
    with a, b:
        assert await a.send(b"hello") == 5
        assert await b.recv(10) == b"hello"
        await a.send(b"world")
        buf = bytearray(10)
        assert await b.recv_into(buf) == 5
        assert buf[:5] == b"world"
        await a.sendmsg([b"ab", b"cd"])
        data, ancdata, flags, _ = await b.recvmsg(10)
        assert (data, ancdata, flags) == (b"abcd", [], 0)
        await a.send(b"xyz")
        bufs = [bytearray(2), bytearray(2)]
        nbytes, _, _, _ = await b.recvmsg_into(bufs)
        assert nbytes == 3 and bytes(bufs[0] + bufs[1][:1]) == b"xyz"


async def test_sendmsg_passes_fds() -> None:
    a, b = nsocket.socketpair()
    r, w = os.pipe()
    try:
        with a, b:
            fds = stdlib_socket.CMSG_SPACE(4)
            await a.sendmsg(
                [b"x"],
                [(stdlib_socket.SOL_SOCKET, stdlib_socket.SCM_RIGHTS, r.to_bytes(4, "little"))],
            )
            _, ancdata, _, _ = await b.recvmsg(1, fds)
            level, kind, payload = ancdata[0]
            assert (level, kind) == (stdlib_socket.SOL_SOCKET, stdlib_socket.SCM_RIGHTS)
            os.close(int.from_bytes(payload[:4], "little"))
    finally:
        os.close(r)
        os.close(w)


async def test_recv_waits_for_data() -> None:
    a, b = nsocket.socketpair()
    with a, b:
        received: list[bytes] = []
        async with nursery_io.open_nursery() as nursery:

            async def reader() -> None:
                received.append(await b.recv(10))

            nursery.start_soon(reader)
            await wait_all_tasks_blocked()
            assert received == []
            await a.send(b"late")
        assert received == [b"late"]


async def test_send_waits_for_buffer_space() -> None:
    a, b = nsocket.socketpair()
    with a, b:
        filled = fill_send_buffer(a)
        sent: list[int] = []
        async with nursery_io.open_nursery() as nursery:

            async def writer() -> None:
                sent.append(await a.send(b"y" * 10))

            nursery.start_soon(writer)
            await wait_all_tasks_blocked()
            assert sent == []
            data = b""
            while not sent:
                data += await b.recv(1 << 20)
        while len(data) < filled + 10:
            data += await b.recv(1 << 20)
        assert data == b"x" * filled + b"y" * 10


async def test_every_operation_is_a_checkpoint() -> None:
    a, b = nsocket.socketpair()
    with a, b:
        with assert_checkpoints():
            await a.send(b"x")
        with assert_checkpoints():
            await b.recv(1)
        # Errors too: accept on a socket that isn't listening fails, after a checkpoint.
        with nsocket.socket() as s, assert_checkpoints(), pytest.raises(OSError):
            await s.accept()


async def test_cancelled_operations_do_nothing() -> None:
    a, b = nsocket.socketpair()
    with a, b:
        await a.send(b"keep")
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            await b.recv(10)
        assert scope.cancelled_caught
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            await a.send(b"never")
        assert scope.cancelled_caught
        assert await b.recv(100) == b"keep"
        assert not b.is_readable()


async def test_successful_operations_do_not_poll_the_kernel_each_time() -> None:
    # Trio issue #1595: a socket op that doesn't block must not cost an epoll_wait. The
    # runner still polls now and then while busy (every ~0.5 ms), hence a loose bound: it
    # only fails if the loop polls on (nearly) every operation.
    a, b = nsocket.socketpair()
    with a, b:
        before = current_statistics().kernel_polls
        for _ in range(200):
            await a.send(b"ping")
            await b.recv(4)
        polls = current_statistics().kernel_polls - before
    assert polls < 100


async def test_accept_before_listen_fails_at_once() -> None:
    with nsocket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        with pytest.raises(OSError) as info:
            await sock.accept()
        assert info.value.errno == errno.EINVAL


async def test_tcp_connect_accept_and_peer_names() -> None:
    with nsocket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        with nsocket.socket() as client:
            await client.connect(listener.getsockname())
            server, address = await listener.accept()
            with server:
                assert isinstance(server, nsocket.SocketType)
                assert address == client.getsockname()
                assert server.getpeername() == client.getsockname()
                await client.send(b"hi")
                assert await server.recv(2) == b"hi"


async def test_connect_refused() -> None:
    with nsocket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused
        with nsocket.socket() as client, pytest.raises(ConnectionRefusedError):
            await client.connect(("127.0.0.1", port))


async def test_cancelled_connect_closes_the_socket(autojump_clock: Any) -> None:
    # A listener with a full queue makes further connects wait for a SYN-ACK that never
    # comes (the kernel drops SYNs while the accept queue is full).
    with nsocket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = []
        client = nsocket.socket()
        try:
            for _ in range(4):
                filler = stdlib_socket.socket()
                filler.setblocking(False)
                fillers.append(filler)
                try:
                    filler.connect(listener.getsockname())
                except BlockingIOError:
                    pass
            with nursery_io.move_on_after(5):
                await client.connect(listener.getsockname())
            assert client.fileno() == -1
        finally:
            client.close()
            for filler in fillers:
                filler.close()


async def test_shutdown_and_is_readable() -> None:
    a, b = nsocket.socketpair()
    with a, b:
        assert not a.did_shutdown_SHUT_WR
        assert not b.is_readable()
        a.shutdown(stdlib_socket.SHUT_WR)
        assert a.did_shutdown_SHUT_WR
        assert b.is_readable()
        assert await b.recv(1) == b""


async def test_notify_closing_wakes_a_blocked_reader() -> None:
    a, b = nsocket.socketpair()
    with a, b:
        async with nursery_io.open_nursery() as nursery:

            async def reader() -> None:
                with pytest.raises(nursery_io.ClosedResourceError):
                    await b.recv(10)

            nursery.start_soon(reader)
            await wait_all_tasks_blocked()
            b.close()


async def test_two_readers_is_busy() -> None:
    a, b = nsocket.socketpair()
    with a, b:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(b.recv, 10)
            await wait_all_tasks_blocked()
            with pytest.raises(nursery_io.BusyResourceError):
                await b.recv(10)
            await a.send(b"x")


async def test_wait_writable() -> None:
    a, b = nsocket.socketpair()
    with a, b:
        await a.wait_writable()
        fill_send_buffer(a)
        async with nursery_io.open_nursery() as nursery:
            woke: list[bool] = []

            async def waiter() -> None:
                await a.wait_writable()
                woke.append(True)

            nursery.start_soon(waiter)
            await wait_all_tasks_blocked()
            assert woke == []
            drain(b._sock)  # type: ignore[attr-defined]
        assert woke == [True]


# ----- name resolution -----


async def test_getaddrinfo_numeric_needs_no_resolver() -> None:
    resolver = RecordingResolver()
    assert nsocket.set_custom_hostname_resolver(resolver) is None
    result = await nsocket.getaddrinfo("127.0.0.1", 80, type=stdlib_socket.SOCK_STREAM)
    assert result[0][4] == ("127.0.0.1", 80)
    result = await nsocket.getaddrinfo(None, 0, flags=stdlib_socket.AI_PASSIVE)
    assert resolver.getaddrinfo_calls == []
    assert nsocket.set_custom_hostname_resolver(None) is resolver


async def test_getaddrinfo_names_go_to_the_resolver_idna_encoded() -> None:
    resolver = RecordingResolver({b"example.test": [(stdlib_socket.AF_INET, "127.0.0.7")]})
    nsocket.set_custom_hostname_resolver(resolver)
    result = await nsocket.getaddrinfo("example.test", 80)
    assert result[0][4] == ("127.0.0.7", 80)
    with pytest.raises(stdlib_socket.gaierror):
        await nsocket.getaddrinfo("bücher.test", 80)
    assert resolver.getaddrinfo_calls[1][0] == b"xn--bcher-kva.test"


async def test_resolver_is_per_run() -> None:
    nsocket.set_custom_hostname_resolver(RecordingResolver())

    async def other_run() -> None:
        assert nsocket.set_custom_hostname_resolver(None) is None

    await nursery_io.to_thread.run_sync(nursery_io.run, other_run)


async def test_getaddrinfo_with_the_system_resolver_in_a_thread() -> None:
    # /etc/hosts always knows "localhost"; a thread does the lookup.
    result = await nsocket.getaddrinfo("localhost", 80, family=stdlib_socket.AF_INET)
    assert result[0][4][0].startswith("127.")


async def test_getaddrinfo_errors() -> None:
    with pytest.raises(stdlib_socket.gaierror):
        await nsocket.getaddrinfo("127.0.0.1", 80, family=12345)


async def test_getnameinfo() -> None:
    flags = stdlib_socket.NI_NUMERICHOST | stdlib_socket.NI_NUMERICSERV
    with assert_checkpoints():
        assert await nsocket.getnameinfo(("127.0.0.1", 80), flags) == ("127.0.0.1", "80")
    host, _ = await nsocket.getnameinfo(("127.0.0.1", 80), 0)
    assert host
    resolver = RecordingResolver()
    nsocket.set_custom_hostname_resolver(resolver)
    assert await nsocket.getnameinfo(("127.0.0.1", 80), flags) == (
        "custom.example",
        "custom-service",
    )
    assert resolver.getnameinfo_calls == [(("127.0.0.1", 80), flags)]


async def test_getprotobyname() -> None:
    assert await nsocket.getprotobyname("tcp") == stdlib_socket.IPPROTO_TCP


async def test_bind_and_connect_resolve_names() -> None:
    resolver = RecordingResolver({b"server.test": [(stdlib_socket.AF_INET, "127.0.0.1")]})
    nsocket.set_custom_hostname_resolver(resolver)
    with nsocket.socket() as listener:
        await listener.bind(("server.test", 0))
        assert listener.getsockname()[0] == "127.0.0.1"
        listener.listen()
        with nsocket.socket() as client:
            await client.connect(("server.test", listener.getsockname()[1]))
            server, _ = await listener.accept()
            server.close()
    with nsocket.socket() as sock:
        await sock.bind(("", 0))  # "" means INADDR_ANY, as in the stdlib
        assert sock.getsockname()[0] == "0.0.0.0"
        with pytest.raises(ValueError):
            await sock.bind(("127.0.0.1",))


@needs_ipv6
async def test_ipv6_address_keeps_scope_and_flowinfo() -> None:
    from nursery_io._net._socket import _resolve_address

    resolver = RecordingResolver({b"six.test": [(stdlib_socket.AF_INET6, "::1")]})
    nsocket.set_custom_hostname_resolver(resolver)
    with nsocket.socket(stdlib_socket.AF_INET6) as sock:
        raw = sock._sock  # type: ignore[attr-defined]
        # getaddrinfo answers with flowinfo=0 and scope_id=0; the caller's values survive.
        assert await _resolve_address(raw, ("six.test", 80, 7, 0), local=False) == (
            "::1",
            80,
            7,
            0,
        )
        assert await _resolve_address(raw, ("six.test", 80), local=False) == ("::1", 80, 0, 0)
        await sock.bind(("six.test", 0))
        assert sock.getsockname()[0] == "::1"
    with nsocket.socket(stdlib_socket.AF_INET6) as sock:
        await sock.bind(("::1", 0))
        assert sock.getsockname()[0] == "::1"


# ----- the socket factory -----


class CountingFactory(SocketFactory):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def socket(self, family: Any = None, type: Any = None, proto: Any = None) -> Any:
        self.calls.append((family, type, proto))
        return nsocket.from_stdlib_socket(stdlib_socket.socket(family, type, proto))


async def test_custom_socket_factory() -> None:
    factory = CountingFactory()
    assert nsocket.set_custom_socket_factory(factory) is None
    with nsocket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM) as sock:
        assert sock.type == stdlib_socket.SOCK_DGRAM
    assert factory.calls == [(stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM, 0)]
    # fileno= bypasses the factory: the socket exists already.
    raw = stdlib_socket.socket()
    with nsocket.socket(fileno=raw.detach()):
        pass
    assert len(factory.calls) == 1
    assert nsocket.set_custom_socket_factory(None) is factory


# ----- no leaked fds -----


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_no_fd_left_behind_after_a_run() -> None:
    async def workout() -> None:
        async def handler(stream: nursery_io.SocketStream) -> None:
            async for chunk in stream:
                await stream.send_all(chunk)

        async with nursery_io.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(nursery_io.serve_tcp, host="127.0.0.1"), handler, 0
            )
            port = listeners[0].socket.getsockname()[1]
            for _ in range(5):
                async with await nursery_io.open_tcp_stream("127.0.0.1", port) as stream:
                    await stream.send_all(b"ping")
                    assert await stream.receive_some() == b"ping"
            # a failed connection attempt too
            with pytest.raises(OSError):
                await nursery_io.open_tcp_stream("127.0.0.1", 1)
            # and a cancelled receive
            a, b = nsocket.socketpair()
            with a, b, nursery_io.move_on_after(0.01):
                await a.recv(1)
            nursery.cancel_scope.cancel()

    nursery_io.run(workout)  # warm-up: lazily created process-wide state
    before = _open_fds()
    nursery_io.run(workout)
    assert _open_fds() == before
