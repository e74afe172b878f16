"""SSLStream, SSLListener and the TLS-over-TCP helpers.

Certificates come from trustme: one throwaway CA, a server certificate for ``localhost``
and ``127.0.0.1``, and a client certificate for the tests that need one.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trustme

import nursery_io
from nursery_io import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    NeedHandshakeError,
    SSLListener,
    SSLStream,
    aclose_forcefully,
    fail_after,
    move_on_after,
    open_nursery,
)
from nursery_io.abc import Stream
from nursery_io.testing import (
    assert_checkpoints,
    check_two_way_stream,
    lockstep_stream_pair,
    memory_stream_one_way_pair,
    memory_stream_pair,
    memory_stream_pump,
    wait_all_tasks_blocked,
)

CA = trustme.CA()
SERVER_CERT = CA.issue_cert("localhost", "127.0.0.1")
CLIENT_CERT = CA.issue_cert("client@example.org")

TLS_VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


def server_context(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    SERVER_CERT.configure_cert(context)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


def client_context(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    CA.configure_trust(context)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


SSLPair = tuple[SSLStream[Any], SSLStream[Any]]


def ssl_pair(
    transport_pair: Callable[[], tuple[Stream, Stream]] = memory_stream_pair,
    *,
    version: ssl.TLSVersion | None = None,
    https_compatible: bool = False,
    client_ctx: ssl.SSLContext | None = None,
    server_ctx: ssl.SSLContext | None = None,
    hostname: str = "localhost",
) -> SSLPair:
    """A (client, server) pair of TLS streams over a fresh transport pair, no handshake."""
    client_transport, server_transport = transport_pair()
    client = SSLStream(
        client_transport,
        client_ctx or client_context(version),
        server_hostname=hostname,
        https_compatible=https_compatible,
    )
    server = SSLStream(
        server_transport,
        server_ctx or server_context(version),
        server_side=True,
        https_compatible=https_compatible,
    )
    return client, server


async def handshake(client: SSLStream[Any], server: SSLStream[Any]) -> None:
    async with open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)


async def handshaken_pair(
    transport_pair: Callable[[], tuple[Stream, Stream]] = memory_stream_pair, **kwargs: Any
) -> SSLPair:
    client, server = ssl_pair(transport_pair, **kwargs)
    await handshake(client, server)
    return client, server


async def receive_exactly(stream: Stream, count: int) -> bytes:
    received = bytearray()
    while len(received) < count:
        chunk = await stream.receive_some()
        assert chunk, f"stream ended after {len(received)} of {count} bytes"
        received += chunk
    return bytes(received)


def port_of(listener: SSLListener[Any]) -> int:
    transport_listener = listener.transport_listener
    assert isinstance(transport_listener, nursery_io.SocketListener)
    port: int = transport_listener.socket.getsockname()[1]
    return port


def payload(size: int, seed: int = 0) -> bytes:
    return bytes((seed + i * 7) % 251 for i in range(size))


# ----- conformance -----


def maker(
    transport_pair: Callable[[], tuple[Stream, Stream]], *, pre_handshake: bool, **kwargs: Any
) -> Callable[[], Awaitable[SSLPair]]:
    async def make() -> SSLPair:
        if pre_handshake:
            return await handshaken_pair(transport_pair, **kwargs)
        return ssl_pair(transport_pair, **kwargs)

    return make


@pytest.mark.parametrize("version", TLS_VERSIONS, ids=lambda v: v.name)
async def test_conformance_memory_and_lockstep(version: ssl.TLSVersion) -> None:
    # close_notify makes aclose() a send, which a lockstep transport can't complete while
    # nobody reads: the plain maker buffers, and the lockstep one only serves as the
    # clogged maker (as the suite uses it). Both are handshaken first, since an aclose()
    # before the handshake drops the connection rather than closing it gracefully.
    await check_two_way_stream(
        maker(memory_stream_pair, pre_handshake=True, version=version),
        maker(lockstep_stream_pair, pre_handshake=True, version=version),
    )


@pytest.mark.parametrize("version", TLS_VERSIONS, ids=lambda v: v.name)
async def test_conformance_lockstep_https_compatible(version: ssl.TLSVersion) -> None:
    # With https_compatible, aclose() sends nothing, so an unbuffered transport works for
    # every check. (Handshaken first all the same: the suite has one side wait until its
    # transport is writable while the other side's first receive_some has to *send* a
    # handshake message first; on a transport without any buffer, neither can move.)
    await check_two_way_stream(
        maker(lockstep_stream_pair, pre_handshake=True, version=version, https_compatible=True),
        maker(lockstep_stream_pair, pre_handshake=True, version=version, https_compatible=True),
    )


async def test_conformance_memory_https_compatible_without_handshake() -> None:
    await check_two_way_stream(
        maker(memory_stream_pair, pre_handshake=False, https_compatible=True), None
    )


# ----- over real TCP -----


async def echo_handler(stream: SSLStream[Any]) -> None:
    try:
        async for chunk in stream:
            await stream.send_all(chunk)
        await stream.aclose()
    except BrokenResourceError:
        pass


@pytest.mark.parametrize("version", TLS_VERSIONS, ids=lambda v: v.name)
async def test_echo_over_tcp(version: ssl.TLSVersion) -> None:
    async with open_nursery() as nursery:
        serve = functools.partial(nursery_io.serve_ssl_over_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve, echo_handler, 0, server_context(version))
        (listener,) = listeners
        assert isinstance(listener, SSLListener)
        port = port_of(listener)
        client = await nursery_io.open_ssl_over_tcp_stream(
            "127.0.0.1", port, ssl_context=client_context()
        )
        async with client:
            await client.do_handshake()
            assert client.version() == ("TLSv1.3" if version.name == "TLSv1_3" else "TLSv1.2")
            cert = client.getpeercert()
            assert cert is not None
            assert ("DNS", "localhost") in cert["subjectAltName"]
            await client.send_all(b"hello")
            assert await receive_exactly(client, 5) == b"hello"

            # Megabytes in both directions at once.
            data = payload(3_000_000)
            got = bytearray()

            async def reader() -> None:
                got.extend(await receive_exactly(client, len(data)))

            with fail_after(30):
                async with open_nursery() as inner:
                    inner.start_soon(reader)
                    await client.send_all(data)
            assert got == data

            # Our close_notify ends the handler's loop, and it answers with its own:
            # exactly what unwrap waits for.
            original_transport = client.transport_stream
            with fail_after(10):
                transport, trailing = await client.unwrap()
            assert transport is original_transport
            assert client.transport_stream is None  # as in Trio: the caller owns it now
            assert trailing == b""
            with pytest.raises(ClosedResourceError):
                await client.receive_some()
            assert await transport.receive_some() == b""  # the handler closed the socket
            await transport.aclose()
        nursery.cancel_scope.cancel()


async def test_open_ssl_over_tcp_listeners_accept_does_not_handshake() -> None:
    listeners = await nursery_io.open_ssl_over_tcp_listeners(
        0, server_context(), host="127.0.0.1", https_compatible=True, backlog=5
    )
    assert len(listeners) == 1
    listener = listeners[0]
    port = port_of(listener)
    async with listener:
        # A plain TCP client that never says anything: accept must return all the same.
        tcp = await nursery_io.open_tcp_stream("127.0.0.1", port)
        async with tcp:
            with fail_after(5):
                server = await listener.accept()
            assert isinstance(server, SSLStream)
            assert server.server_side
            assert isinstance(server.transport_stream, nursery_io.SocketStream)
            with pytest.raises(NeedHandshakeError):
                server.version()
            await tcp.aclose()
            # https_compatible was passed on: the silent client's EOF is an EOF.
            assert await server.receive_some() == b""
            await server.aclose()
    with pytest.raises(ClosedResourceError):
        await listener.accept()


async def test_tcp_peer_that_never_answers() -> None:
    # The server accepts at the TCP level and then does nothing at all.
    tcp_listeners = await nursery_io.open_tcp_listeners(0, host="127.0.0.1")
    port = tcp_listeners[0].socket.getsockname()[1]
    async with tcp_listeners[0]:
        client = await nursery_io.open_ssl_over_tcp_stream(
            "127.0.0.1", port, ssl_context=client_context()
        )
        silent = await tcp_listeners[0].accept()
        async with silent:
            with move_on_after(0.2) as scope:
                await client.do_handshake()
            assert scope.cancelled_caught
            # The cancelled handshake broke the stream; closing it is quick all the same.
            with pytest.raises(BrokenResourceError):
                await client.send_all(b"x")
            with fail_after(5):
                await client.aclose()
            with pytest.raises(ClosedResourceError):
                await client.receive_some()


async def test_tcp_default_context_rejects_unknown_ca() -> None:
    async with open_nursery() as nursery:

        async def handler(stream: SSLStream[Any]) -> None:
            with pytest.raises(BrokenResourceError):
                await stream.do_handshake()

        serve = functools.partial(nursery_io.serve_ssl_over_tcp, host="127.0.0.1")
        (listener,) = await nursery.start(serve, handler, 0, server_context())
        port = port_of(listener)
        # No ssl_context: the system's CAs, which don't include our test CA.
        client = await nursery_io.open_ssl_over_tcp_stream("127.0.0.1", port)
        assert client.context.check_hostname
        assert client.server_hostname == "127.0.0.1"
        with pytest.raises(BrokenResourceError) as info:
            await client.send_all(b"x")
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        await client.aclose()
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


# ----- handshake -----


async def test_handshake_happens_on_first_use() -> None:
    client, server = ssl_pair()
    async with open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"hi")
        assert await receive_exactly(server, 2) == b"hi"
    assert client.version() == server.version() == "TLSv1.3"


async def test_concurrent_handshakes_coalesce() -> None:
    client, server = ssl_pair()
    finished: list[str] = []

    async def call(stream: SSLStream[Any], name: str) -> None:
        await stream.do_handshake()
        finished.append(name)

    async with open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(call, client, f"client{i}")
            nursery.start_soon(call, server, f"server{i}")
        # Sending and receiving may join in too.
        nursery.start_soon(client.send_all, b"x")
        nursery.start_soon(server.receive_some, 1)
    assert len(finished) == 6
    # Once done, do_handshake is just a checkpoint.
    with assert_checkpoints():
        await client.do_handshake()


async def test_need_handshake_error() -> None:
    client, server = ssl_pair()
    assert client.context is not None
    assert client.server_side is False
    assert server.server_side is True
    assert client.server_hostname == "localhost"
    assert server.server_hostname is None
    assert client.pending() == 0
    assert client.session is None
    calls: dict[str, Callable[[SSLStream[Any]], object]] = {
        "getpeercert": lambda s: s.getpeercert(),
        "selected_alpn_protocol": lambda s: s.selected_alpn_protocol(),
        "cipher": lambda s: s.cipher(),
        "shared_ciphers": lambda s: s.shared_ciphers(),
        "compression": lambda s: s.compression(),
        "version": lambda s: s.version(),
        "get_channel_binding": lambda s: s.get_channel_binding(),
        "session_reused": lambda s: s.session_reused,
        "verify_client_post_handshake": lambda s: s.verify_client_post_handshake(),
    }
    for name, call in calls.items():
        with pytest.raises(NeedHandshakeError):
            call(client)
        with pytest.raises(NeedHandshakeError):
            call(server)
        del name
    with pytest.raises(NeedHandshakeError):
        client.selected_npn_protocol()
    await handshake(client, server)
    assert client.version() == "TLSv1.3"
    cipher = client.cipher()
    assert cipher is not None
    assert cipher[1] == "TLSv1.3"
    assert server.shared_ciphers()
    assert client.compression() is None
    assert client.session_reused is False
    assert client.selected_alpn_protocol() is None
    binary = client.getpeercert(binary_form=True)
    assert isinstance(binary, bytes)
    assert server.getpeercert() is None  # no client certificate was asked for
    with pytest.warns(DeprecationWarning):
        assert client.selected_npn_protocol() is None


@pytest.mark.parametrize("version", TLS_VERSIONS, ids=lambda v: v.name)
async def test_alpn(version: ssl.TLSVersion) -> None:
    client_ctx, server_ctx = client_context(version), server_context(version)
    client_ctx.set_alpn_protocols(["h2", "http/1.1"])
    server_ctx.set_alpn_protocols(["http/1.1"])
    client, server = await handshaken_pair(client_ctx=client_ctx, server_ctx=server_ctx)
    assert client.selected_alpn_protocol() == server.selected_alpn_protocol() == "http/1.1"
    assert client.version() == server.version()


async def test_context_setter_and_session_resumption() -> None:
    client_ctx = client_context(ssl.TLSVersion.TLSv1_2)
    server_ctx = server_context(ssl.TLSVersion.TLSv1_2)
    first_client, first_server = await handshaken_pair(client_ctx=client_ctx, server_ctx=server_ctx)
    session = first_client.session
    assert session is not None
    second_client, second_server = ssl_pair(client_ctx=client_ctx, server_ctx=server_ctx)
    second_client.session = session
    second_server.context = server_ctx
    await handshake(second_client, second_server)
    assert second_client.session_reused
    for stream in (first_client, first_server, second_client, second_server):
        await aclose_forcefully(stream)


async def test_wrong_hostname() -> None:
    client, server = ssl_pair(hostname="example.com")
    async with open_nursery() as nursery:

        async def server_side() -> None:
            with pytest.raises(BrokenResourceError):
                await server.do_handshake()

        nursery.start_soon(server_side)
        with pytest.raises(BrokenResourceError) as info:
            await client.do_handshake()
        await aclose_forcefully(client)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert "example.com" in str(info.value.__cause__)


async def test_untrusted_certificate() -> None:
    untrusting = ssl.create_default_context()
    client, server = ssl_pair(client_ctx=untrusting)
    async with open_nursery() as nursery:

        async def server_side() -> None:
            with pytest.raises(BrokenResourceError):
                await server.receive_some()

        nursery.start_soon(server_side)
        with pytest.raises(BrokenResourceError) as info:
            await client.send_all(b"secret")
        await aclose_forcefully(client)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    for operation in (client.do_handshake, client.receive_some, lambda: client.send_all(b"x")):
        with pytest.raises(ClosedResourceError):
            await operation()


async def test_broken_after_failed_handshake() -> None:
    client, server = ssl_pair(client_ctx=ssl.create_default_context())
    async with open_nursery() as nursery:
        nursery.start_soon(lambda: _expect_broken(server.do_handshake))
        await _expect_broken(client.do_handshake)
        # Like Trio, no alert is sent: the server learns of it when the connection ends.
        await client.transport_stream.aclose()
    for operation in (
        client.do_handshake,
        client.receive_some,
        client.wait_send_all_might_not_block,
        client.unwrap,
        lambda: client.send_all(b"x"),
    ):
        with pytest.raises(BrokenResourceError) as info:
            await operation()
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    with pytest.raises(NeedHandshakeError):
        client.version()
    with assert_checkpoints():
        await client.aclose()


async def _expect_broken(fn: Callable[[], Awaitable[object]]) -> None:
    with pytest.raises(BrokenResourceError):
        await fn()


async def test_client_certificate_and_post_handshake_auth() -> None:
    # TLS 1.3 post-handshake authentication: reading the server's request makes the
    # client's receive_some send its certificate, while nobody on the client is sending.
    # Lockstep transports make sure that answer is really flushed before anyone waits.
    client_ctx = client_context()
    CLIENT_CERT.configure_cert(client_ctx)
    client_ctx.post_handshake_auth = True
    server_ctx = server_context()
    CA.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.post_handshake_auth = True
    client, server = await handshaken_pair(
        lockstep_stream_pair, client_ctx=client_ctx, server_ctx=server_ctx
    )
    assert server.getpeercert() is None
    with fail_after(10):
        async with open_nursery() as nursery:

            async def client_side() -> None:
                assert await receive_exactly(client, 6) == b"who?\r\n"
                # Keep reading while we write: after checking the certificate, the server
                # sends a new session ticket, and a transport without a buffer delivers
                # it only to a reader (as with Trio).
                nursery.start_soon(client.receive_some)
                await client.send_all(b"me")

            nursery.start_soon(client_side)
            server.verify_client_post_handshake()
            # The request goes out with this data.
            await server.send_all(b"who?\r\n")
            # The client's certificate arrives ahead of its reply.
            assert await receive_exactly(server, 2) == b"me"
            await server.send_all(b"!")
    cert = server.getpeercert()
    assert cert is not None
    assert ("email", "client@example.org") in cert["subjectAltName"]


# ----- deadlocks -----


@pytest.mark.parametrize("version", TLS_VERSIONS, ids=lambda v: v.name)
@pytest.mark.parametrize("transport", ["lockstep", "memory"])
async def test_both_sides_send_at_once_from_the_start(
    version: ssl.TLSVersion, transport: str
) -> None:
    # No handshake up front: both sides' send_all and receive_some race to do it, and then
    # both sides push a lot of data while their readers take it.
    pair_maker = lockstep_stream_pair if transport == "lockstep" else memory_stream_pair
    client, server = ssl_pair(pair_maker, version=version)
    client_data, server_data = payload(500_000, 1), payload(400_000, 2)
    results: dict[str, bytes] = {}

    async def send(stream: SSLStream[Any], data: bytes) -> None:
        for start in range(0, len(data), 30_000):
            await stream.send_all(data[start : start + 30_000])

    async def receive(stream: SSLStream[Any], count: int, key: str) -> None:
        results[key] = await receive_exactly(stream, count)

    with fail_after(30):
        async with open_nursery() as nursery:
            nursery.start_soon(send, client, client_data)
            nursery.start_soon(send, server, server_data)
            nursery.start_soon(receive, server, len(client_data), "server")
            nursery.start_soon(receive, client, len(server_data), "client")
    assert results["server"] == client_data
    assert results["client"] == server_data


async def test_both_sides_send_everything_before_reading() -> None:
    # Buffered transport: each side's send_all does the handshake and all of its sending
    # without anybody calling receive_some.
    client, server = ssl_pair()
    data = payload(2_000_000)
    with fail_after(30):
        async with open_nursery() as nursery:
            nursery.start_soon(client.send_all, data)
            nursery.start_soon(server.send_all, data[::-1])
        assert await receive_exactly(server, len(data)) == data
        assert await receive_exactly(client, len(data)) == data[::-1]


async def test_tls13_server_does_not_wait_for_tickets_to_be_read() -> None:
    # The client only writes. A TLS 1.3 server ends its handshake with session tickets;
    # if it insisted on delivering them first over an unbuffered transport, it would wait
    # for a client read that never comes while the client waits for it to read.
    client, server = ssl_pair(lockstep_stream_pair, version=ssl.TLSVersion.TLSv1_3)
    with fail_after(10):
        async with open_nursery() as nursery:

            async def client_side() -> None:
                await client.do_handshake()
                await client.send_all(b"only writing")

            nursery.start_soon(client_side)
            await server.do_handshake()
            assert await receive_exactly(server, 12) == b"only writing"
        # The tickets go out with the server's first data.
        async with open_nursery() as nursery:
            nursery.start_soon(server.send_all, b"reply")
            assert await receive_exactly(client, 5) == b"reply"


class WantsReadBeforeWriting:
    """Wraps an SSLObject so that writing needs data from the peer first, as a write in
    the middle of a TLS 1.2 renegotiation does: writes fail with SSLWantReadError until
    some of the peer's data has arrived (in the incoming buffer, or already read)."""

    def __init__(self, ssl_object: ssl.SSLObject, incoming: ssl.MemoryBIO) -> None:
        self._ssl_object = ssl_object
        self._incoming = incoming
        self._peer_spoke = False
        self.refused = 0

    def write(self, data: Any) -> int:
        if not (self._peer_spoke or self._incoming.pending):
            self.refused += 1
            raise ssl.SSLWantReadError("need the peer's data first")
        return self._ssl_object.write(data)

    def read(self, *args: Any) -> bytes:
        data = self._ssl_object.read(*args)
        self._peer_spoke = True
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ssl_object, name)


@pytest.mark.parametrize("receiver_waiting", [False, True])
async def test_write_that_needs_to_read_first(receiver_waiting: bool) -> None:
    client, server = await handshaken_pair(lockstep_stream_pair)
    wrapper = WantsReadBeforeWriting(client._ssl_object, client._incoming)
    client._ssl_object = wrapper  # type: ignore[assignment]
    received: list[bytes] = []

    async def client_receiver() -> None:
        received.append(await receive_exactly(client, 4))

    with fail_after(10):
        async with open_nursery() as nursery:
            if receiver_waiting:
                # The receiver is reading from the transport when the sender needs data:
                # the sender must wait for that read and retry, not read again itself.
                nursery.start_soon(client_receiver)
                await wait_all_tasks_blocked()
            nursery.start_soon(client.send_all, b"payload")
            await wait_all_tasks_blocked()
            assert wrapper.refused == 1
            await server.send_all(b"poke")
            assert await receive_exactly(server, 7) == b"payload"
        if not receiver_waiting:
            # The sender read the peer's data for its own sake; it was kept for us.
            await client_receiver()
    assert received == [b"poke"]


async def test_cancelled_write_waiting_for_the_peer_breaks_stream() -> None:
    client, server = await handshaken_pair()
    client._ssl_object = WantsReadBeforeWriting(  # type: ignore[assignment]
        client._ssl_object, client._incoming
    )
    with move_on_after(0.05) as scope:
        await client.send_all(b"never")
    assert scope.cancelled_caught
    # The write can't be retried as the TLS layer expects: the stream is unusable.
    with pytest.raises(BrokenResourceError):
        await client.send_all(b"other")
    with pytest.raises(BrokenResourceError):
        await client.receive_some()


# ----- sending and receiving -----


async def test_busy() -> None:
    async def expect_busy(*fns: Callable[[], Awaitable[object]]) -> None:
        busy = []

        async def run(fn: Callable[[], Awaitable[object]]) -> None:
            try:
                await fn()
            except BusyResourceError:
                busy.append(fn)

        async with open_nursery() as nursery:
            for fn in fns:
                nursery.start_soon(run, fn)
            await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        assert len(busy) == 1

    big = b"x" * 100_000
    # Lockstep transports with nobody on the other side: every call blocks in the middle.
    client, _ = await handshaken_pair(lockstep_stream_pair)
    await expect_busy(lambda: client.send_all(big), lambda: client.send_all(big))
    client, _ = await handshaken_pair(lockstep_stream_pair)
    await expect_busy(lambda: client.send_all(big), client.wait_send_all_might_not_block)
    client, _ = await handshaken_pair(lockstep_stream_pair)
    await expect_busy(client.receive_some, client.receive_some)
    client, _ = await handshaken_pair(lockstep_stream_pair)
    await expect_busy(client.receive_some, client.unwrap)
    client, _ = await handshaken_pair(lockstep_stream_pair)
    await expect_busy(lambda: client.send_all(big), client.unwrap)
    # One sender and one receiver at a time are fine, even before the handshake.
    client, server = ssl_pair(lockstep_stream_pair)
    async with open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"ping")
        nursery.start_soon(client.receive_some)
        assert await receive_exactly(server, 4) == b"ping"
        await server.send_all(b"pong")


async def test_max_bytes() -> None:
    client, server = await handshaken_pair()
    await client.send_all(payload(100_000))
    with pytest.raises(ValueError):
        await server.receive_some(0)
    assert await server.receive_some(1) == payload(1)
    chunk = await server.receive_some()
    # Several records at once when they are already here.
    assert 16384 < len(chunk) <= 65536
    rest = await receive_exactly(server, 100_000 - 1 - len(chunk))
    assert payload(1) + chunk + rest == payload(100_000)
    # An empty send is a checkpoint and sends nothing.
    with assert_checkpoints():
        await client.send_all(b"")
    with assert_checkpoints():
        await client.send_all(memoryview(b"abc"))
    with assert_checkpoints():
        assert await server.receive_some(10) == b"abc"


async def test_cancelled_receive_keeps_stream_usable() -> None:
    client, server = await handshaken_pair()
    with move_on_after(0.05) as scope:
        await server.receive_some()
    assert scope.cancelled_caught
    await client.send_all(b"still fine")
    assert await receive_exactly(server, 10) == b"still fine"


async def test_cancelled_send_breaks_stream() -> None:
    client, server = await handshaken_pair(lockstep_stream_pair)
    # Nobody reads on the server: the lockstep transport blocks mid-send.
    with move_on_after(0.05) as scope:
        await client.send_all(b"x" * 100_000)
    assert scope.cancelled_caught
    with pytest.raises(BrokenResourceError):
        await client.send_all(b"y")
    with pytest.raises(BrokenResourceError):
        await client.receive_some()
    await client.aclose()
    with pytest.raises(ClosedResourceError):
        await client.send_all(b"y")


async def test_cancelled_handshake_breaks_stream_and_wakes_waiters() -> None:
    client, server = ssl_pair()  # the server never runs
    outcomes: list[str] = []

    async def waiter() -> None:
        try:
            await client.do_handshake()
        except BrokenResourceError:
            outcomes.append("broken")

    async with open_nursery() as nursery:
        with move_on_after(0.05):
            nursery.start_soon(waiter)
            await client.do_handshake()
    assert outcomes == ["broken"]
    with pytest.raises(BrokenResourceError):
        await client.receive_some()


async def test_transport_failure_passes_through_then_the_stream_is_broken() -> None:
    client, server = await handshaken_pair()
    await server.transport_stream.aclose()
    # The transport's own exception, as in Trio...
    with pytest.raises(BrokenResourceError) as info:
        for _ in range(100):
            await client.send_all(b"x" * 1000)
    assert "MemoryReceiveStream was closed" in str(info.value)
    original = info.value
    # ... and from then on the stream is broken, naming that exception as the cause.
    with pytest.raises(BrokenResourceError) as info:
        await client.send_all(b"x")
    assert info.value.__cause__ is original


async def test_corrupted_record() -> None:
    client_transport, server_transport = memory_stream_pair()
    client, server = await handshaken_pair(lambda: (client_transport, server_transport))
    await client.send_all(b"a")
    data = bytearray(await server_transport.receive_stream.receive_some())
    data[-1] ^= 0xFF
    server_transport.receive_stream.put_data(data)
    with pytest.raises(BrokenResourceError) as info:
        await server.receive_some()
    assert isinstance(info.value.__cause__, ssl.SSLError)


# ----- ending the connection -----


@pytest.mark.parametrize("https_compatible", [False, True])
async def test_aclose_and_close_notify(https_compatible: bool) -> None:
    client, server = await handshaken_pair(https_compatible=https_compatible)
    await client.send_all(b"last words")
    with assert_checkpoints():
        await client.aclose()
    assert await receive_exactly(server, 10) == b"last words"
    # Clean end either way: a close_notify, or (https_compatible) the transport's end.
    for _ in range(3):
        with assert_checkpoints():
            assert await server.receive_some() == b""
    for operation in (
        client.do_handshake,
        client.receive_some,
        client.wait_send_all_might_not_block,
        client.unwrap,
        lambda: client.send_all(b"x"),
    ):
        with pytest.raises(ClosedResourceError):
            await operation()
    await client.aclose()  # idempotent


async def test_close_notify_is_sent_only_without_https_compatible() -> None:
    for https_compatible, expect_bytes in ((False, True), (True, False)):
        client_transport, server_transport = memory_stream_pair()
        client = SSLStream(
            client_transport,
            client_context(),
            server_hostname="localhost",
            https_compatible=https_compatible,
        )
        server = SSLStream(server_transport, server_context(), server_side=True)
        await handshake(client, server)
        await client.aclose()
        # What the client sent after the handshake: just the close_notify, if anything.
        leftover = await server_transport.receive_stream.receive_some()
        assert bool(leftover) == expect_bytes


async def test_aclose_does_not_wait_for_the_peer() -> None:
    client, server = await handshaken_pair()
    # The server never answers the close_notify.
    with fail_after(5):
        await client.aclose()
    assert await server.receive_some() == b""
    # And the server may close without waiting for anything either.
    await server.aclose()


async def test_aclose_before_handshake_does_the_handshake() -> None:
    client, server = ssl_pair()
    # As in Trio: the handshake first, so that the close_notify can follow; the server
    # then sees a clean end of stream.
    async with open_nursery() as nursery:
        nursery.start_soon(client.aclose)
        with fail_after(5):
            assert await server.receive_some() == b""
    await server.aclose()


async def test_aclose_before_handshake_waits_for_the_peer() -> None:
    client, server = ssl_pair()
    # A peer that never answers holds up aclose's handshake, as in Trio; cancelling it
    # still closes the transport.
    with move_on_after(0.1) as scope:
        await client.aclose()
    assert scope.cancelled_caught
    with pytest.raises(ClosedResourceError):
        await client.send_all(b"x")


async def test_aclose_forcefully_before_handshake_just_closes() -> None:
    client, server = ssl_pair()
    with fail_after(5):
        await aclose_forcefully(client)
    # Nothing was negotiated: the server sees the transport end during its handshake.
    with pytest.raises(BrokenResourceError):
        await server.receive_some()


async def test_aclose_forcefully_skips_close_notify() -> None:
    client, server = await handshaken_pair()
    await aclose_forcefully(client)
    with pytest.raises(BrokenResourceError) as info:
        await server.receive_some()
    assert isinstance(info.value.__cause__, ssl.SSLEOFError)
    with pytest.raises(ClosedResourceError):
        await client.send_all(b"x")


async def test_aclose_wakes_blocked_tasks() -> None:
    client, server = await handshaken_pair(lockstep_stream_pair)
    async with open_nursery() as nursery:

        async def expect_closed(fn: Callable[[], Awaitable[object]]) -> None:
            with pytest.raises(ClosedResourceError):
                await fn()

        nursery.start_soon(expect_closed, lambda: client.send_all(b"x" * 100_000))
        nursery.start_soon(expect_closed, client.receive_some)
        await wait_all_tasks_blocked()
        with fail_after(5):
            await client.aclose()


@pytest.mark.parametrize("https_compatible", [False, True])
async def test_peer_vanishes_without_close_notify(https_compatible: bool) -> None:
    client, server = await handshaken_pair(https_compatible=https_compatible)
    await client.send_all(b"partial")
    await client.transport_stream.aclose()
    assert await receive_exactly(server, 7) == b"partial"
    if https_compatible:
        for _ in range(2):
            assert await server.receive_some() == b""
    else:
        with pytest.raises(BrokenResourceError) as info:
            await server.receive_some()
        assert isinstance(info.value.__cause__, ssl.SSLEOFError)
        with pytest.raises(BrokenResourceError):
            await server.receive_some()
    await server.aclose()


@pytest.mark.parametrize("https_compatible", [False, True])
async def test_peer_vanishes_during_handshake(https_compatible: bool) -> None:
    client, server = ssl_pair(https_compatible=https_compatible)
    await client.transport_stream.aclose()
    if https_compatible:
        assert await server.receive_some() == b""
        assert await server.receive_some() == b""
        with pytest.raises(BrokenResourceError):
            await server.send_all(b"x")
    else:
        with pytest.raises(BrokenResourceError) as info:
            await server.receive_some()
        assert isinstance(info.value.__cause__, ssl.SSLEOFError)
    with pytest.raises(BrokenResourceError):
        await server.do_handshake()


async def test_unwrap() -> None:
    client_wire, server_in = memory_stream_one_way_pair()
    server_wire, client_in = memory_stream_one_way_pair()
    client = SSLStream(
        nursery_io.StapledStream(client_wire, client_in),
        client_context(),
        server_hostname="localhost",
    )
    server_wire_transport = nursery_io.StapledStream(server_wire, server_in)
    server = SSLStream(server_wire_transport, server_context(), server_side=True)
    await handshake(client, server)
    await client.send_all(b"encrypted")
    assert await receive_exactly(server, 9) == b"encrypted"

    # From now on, hold the client's outgoing bytes back, to deliver them in one go.
    client_wire.send_all_hook = None
    async with open_nursery() as nursery:
        result: list[tuple[Stream, bytes | bytearray]] = []

        async def server_unwrap() -> None:
            result.append(await server.unwrap())

        nursery.start_soon(server_unwrap)
        await wait_all_tasks_blocked()
        client_transport, client_trailing = await client.unwrap()
        assert client_trailing == b""
        # Plain data right behind the client's close_notify, in the same delivery.
        await client_transport.send_all(b"plain text")
        memory_stream_pump(client_wire, server_in)
    ((server_transport, server_trailing),) = result
    assert server_transport is server_wire_transport
    assert server.transport_stream is None
    assert server_trailing == b"plain text"
    with pytest.raises(ClosedResourceError):
        await server.receive_some()
    # The transports are ours now, and unencrypted.
    await server_transport.send_all(b"back")
    assert await client_transport.receive_some() == b"back"
    # Closing an unwrapped stream leaves the transport alone.
    await client.aclose()
    await server_transport.send_all(b"again")
    assert await client_transport.receive_some() == b"again"


async def test_unwrap_after_receiving_close_notify() -> None:
    client, server = await handshaken_pair()

    async def client_side() -> None:
        await client.send_all(b"done")
        original_transport = client.transport_stream
        transport, trailing = await client.unwrap()
        assert trailing == b""
        assert transport is original_transport
        assert client.transport_stream is None

    async with open_nursery() as nursery:
        nursery.start_soon(client_side)
        assert await receive_exactly(server, 4) == b"done"
        assert await server.receive_some() == b""
        await server.unwrap()


# ----- construction and listener -----


async def test_constructor_checks() -> None:
    a, _ = memory_stream_pair()
    with pytest.raises(TypeError):
        SSLStream(a, object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        # check_hostname needs a server_hostname (ssl.SSLObject would just skip the check).
        SSLStream(a, client_context())
    no_check = client_context()
    no_check.check_hostname = False
    SSLStream(a, no_check)
    with pytest.raises(TypeError):
        SSLListener(object(), object())  # type: ignore[arg-type]
    stream = SSLStream(a, client_context(), server_hostname="localhost")
    assert "client" in repr(stream)


class FakeListener(nursery_io.abc.Listener[Stream]):
    def __init__(self) -> None:
        self.pairs: list[tuple[Stream, Stream]] = []
        self.closed = False

    async def accept(self) -> Stream:
        await nursery_io.lowlevel.checkpoint()
        client_transport, server_transport = memory_stream_pair()
        self.pairs.append((client_transport, server_transport))
        return server_transport

    async def aclose(self) -> None:
        self.closed = True
        await nursery_io.lowlevel.checkpoint()


async def test_ssl_listener_over_any_listener() -> None:
    transport_listener = FakeListener()
    listener = SSLListener(transport_listener, server_context(), https_compatible=True)
    assert listener.transport_listener is transport_listener
    server = await listener.accept()
    assert server.server_side
    ((client_transport, server_transport),) = transport_listener.pairs
    assert server.transport_stream is server_transport
    client = SSLStream(client_transport, client_context(), server_hostname="localhost")
    async with open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"over a fake listener")
        assert await receive_exactly(server, 20) == b"over a fake listener"
    # https_compatible went to the stream: aclose sends no close_notify.
    await server.aclose()
    with pytest.raises(BrokenResourceError):
        await client.receive_some()
    await listener.aclose()
    assert transport_listener.closed


# ----- regressions found in review -----


async def test_cancelled_receive_keeps_data_it_already_decrypted() -> None:
    # The client's receive_some decrypts application data and, from the same records, a
    # TLS 1.3 certificate request it must answer; the answer can't go out yet (another
    # task holds the outgoing side) and the receive is cancelled there. The data must
    # come out of the next receive_some, and the answer must still reach the server.
    client_ctx = client_context(ssl.TLSVersion.TLSv1_3)
    CLIENT_CERT.configure_cert(client_ctx)
    client_ctx.post_handshake_auth = True
    server_ctx = server_context(ssl.TLSVersion.TLSv1_3)
    CA.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.post_handshake_auth = True
    client, server = await handshaken_pair(
        lockstep_stream_pair, client_ctx=client_ctx, server_ctx=server_ctx
    )
    received: list[bytes] = []
    with fail_after(10):
        async with open_nursery() as nursery:
            # Holds the client's outgoing lock until the server next reads (lockstep).
            nursery.start_soon(client.wait_send_all_might_not_block)
            await wait_all_tasks_blocked()
            server.verify_client_post_handshake()
            scope = nursery_io.CancelScope()

            async def reader() -> None:
                with scope:
                    received.append(await client.receive_some())

            nursery.start_soon(reader)
            await server.send_all(b"IMPORTANT")
            await wait_all_tasks_blocked()
            scope.cancel()
            await wait_all_tasks_blocked()

            async def server_reads() -> None:
                received.append(await server.receive_some())

            nursery.start_soon(server_reads)
            received.append(await client.receive_some())
            await wait_all_tasks_blocked()  # the server reading lets the other task finish
            # Keep a reader on the client: having checked the certificate, the server sends
            # a session ticket, which a lockstep transport delivers only to a reader.
            nursery.start_soon(client.receive_some)
            await client.send_all(b"reply")  # carries the certificate out first
            while b"reply" not in received:
                await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert received.count(b"IMPORTANT") == 1
    assert b"reply" in received
    assert server.getpeercert() is not None  # the certificate got through


async def test_listener_helpers_check_the_context_before_binding() -> None:
    import os

    def sockets() -> int:
        return sum(
            os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")
        )

    before = sockets()
    with pytest.raises(TypeError):
        await nursery_io.open_ssl_over_tcp_listeners(0, "not a context", host="127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="for clients"):
        # The common mistake: a client-purpose context on a server.
        await nursery_io.open_ssl_over_tcp_listeners(
            0, ssl.create_default_context(), host="127.0.0.1"
        )
    assert sockets() == before


class _HookedStream(Stream):
    """A transport that calls ``after_send()`` after each completed ``send_all``."""

    def __init__(self, inner: Stream) -> None:
        self.inner = inner
        self.after_send: Callable[[], object] = lambda: None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)
        self.after_send()

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_send_all_cancelled_between_pieces_breaks_the_stream() -> None:
    # A large send_all goes out in pieces. If it is cancelled after a piece went out but
    # before the next one did (here: while another holder keeps the transport's outgoing
    # side), the peer has part of the data: the stream must not pretend to be usable.
    def hooked_pair() -> tuple[Stream, Stream]:
        client_end, server_end = memory_stream_pair()
        return _HookedStream(client_end), server_end

    client, server = await handshaken_pair(hooked_pair)
    transport = client.transport_stream
    assert isinstance(transport, _HookedStream)
    holder_ready = nursery_io.Event()

    async def hold_the_outgoing_side() -> None:
        await client._out_lock.acquire()
        holder_ready.set()
        await nursery_io.sleep_forever()

    async def drain_server() -> None:
        while await server.receive_some():
            pass

    with fail_after(10):
        async with open_nursery() as nursery:
            nursery.start_soon(drain_server)
            # Once the first piece is out, someone else takes the outgoing side.
            transport.after_send = lambda: (
                None if holder_ready.is_set() else nursery.start_soon(hold_the_outgoing_side)
            )
            with move_on_after(0.2) as scope:
                await client.send_all(b"x" * (3 * 256 * 1024))
            assert scope.cancelled_caught and holder_ready.is_set()
            with pytest.raises(BrokenResourceError):
                await client.send_all(b"more")
            nursery.cancel_scope.cancel()
