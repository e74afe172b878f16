"""TLS side by side with Trio 0.35, exception messages included (see harness.Raised for
the comparison rule: same types, and Trio's message contained in ours).

These cover how connections end (close_notify on both sides, peers that close at once,
https_compatible), how the transport's own errors reach the caller, ``unwrap``, and a
handshake that fails inside ``aclose``. test_ssl.py covers the rest.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import trio

import nursery_io

from . import harness
from .harness import Scenario, Scenarios, Trace, assert_same_trace
from .tls import contexts, memory_pair

scenario = Scenarios()


class Raised(harness.Raised):
    """Where Trio records no cause, ours may name the original failure."""

    EXTRA_OPTIONAL = True


def cause_of(exc: BaseException) -> Any:
    cause = exc.__cause__
    if cause is None:
        return None
    if isinstance(cause, ssl.SSLError):
        # The reason ("UNEXPECTED_EOF_WHILE_READING", ...) is what tells the cases apart.
        return (type(cause).__name__, cause.reason)
    return type(cause).__name__


def raised(exc: BaseException) -> Raised:
    message = str(exc).replace("nursery_io", "trio")
    return Raised.from_exception(exc, message, cause_of(exc))


async def outcome(fn: Callable[[], Awaitable[Any]]) -> Any:
    return await harness.outcome(fn, raised)


def sync_outcome(fn: Callable[[], Any]) -> Any:
    return harness.sync_outcome(fn, raised)


VERSIONS = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


async def tcp_pair(
    lib: ModuleType,
    version: ssl.TLSVersion | None = None,
    *,
    https_compatible: bool = False,
    hostname: str = "localhost",
) -> tuple[Any, Any]:
    """An SSLStream pair over a real loopback TCP connection."""
    client_ctx, server_ctx = contexts(version)
    (listener,) = await lib.open_ssl_over_tcp_listeners(
        0, server_ctx, host="127.0.0.1", https_compatible=https_compatible
    )
    async with listener:
        port = listener.transport_listener.socket.getsockname()[1]
        tcp = await lib.open_tcp_stream("127.0.0.1", port)
        server = await listener.accept()
    client = lib.SSLStream(
        tcp, client_ctx, server_hostname=hostname, https_compatible=https_compatible
    )
    return client, server


async def both(lib: ModuleType, *fns: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run the calls concurrently and return their outcomes, in argument order."""
    results: list[Any] = [None] * len(fns)

    async def run(index: int, fn: Callable[[], Awaitable[Any]]) -> None:
        results[index] = await outcome(fn)

    async with lib.open_nursery() as nursery:
        for index, fn in enumerate(fns):
            nursery.start_soon(run, index, fn)
    return results


async def receive_all(stream: Any) -> Any:
    """Everything until the end of the stream, or what was received before an error."""
    received = bytearray()
    while True:
        try:
            chunk = await stream.receive_some()
        except Exception as exc:
            return (bytes(received), raised(exc))
        if not chunk:
            return (bytes(received), "eof")
        received += chunk


# ----- how connections end -----


@scenario
async def close_notify_both_sides_over_tcp(lib: ModuleType) -> Trace:
    trace: Trace = []
    for version in VERSIONS:
        client, server = await tcp_pair(lib, version)
        trace.append(await both(lib, client.do_handshake, server.do_handshake))
        await client.send_all(b"request")
        trace.append(await server.receive_some(7))
        await server.send_all(b"response")
        # Each side says goodbye and closes at once; neither sees an unexpected EOF.
        trace.append(await both(lib, server.aclose, lambda: receive_all(client)))
        trace.append(await outcome(client.aclose))
    return trace


@scenario
async def peer_closes_at_once_after_sending(lib: ModuleType) -> Trace:
    trace: Trace = []
    for version in VERSIONS:
        client, server = await tcp_pair(lib, version)

        async def server_side(server: Any = server) -> None:
            await server.send_all(b"one message, then goodbye")
            await server.aclose()

        trace.append(await both(lib, server_side, lambda client=client: receive_all(client)))
        trace.append(await outcome(client.aclose))
        # The other way round: the client speaks first and hangs up at once.
        client, server = await tcp_pair(lib, version)

        async def client_side(client: Any = client) -> None:
            await client.send_all(b"fire and forget")
            await client.aclose()

        trace.append(await both(lib, client_side, lambda server=server: receive_all(server)))
        trace.append(await outcome(server.aclose))
    return trace


@scenario
async def peer_closes_before_the_handshake(lib: ModuleType) -> Trace:
    # aclose() first completes the handshake, so that it can send a close_notify: the peer
    # sees a clean end of stream.
    trace: Trace = []
    for version in VERSIONS:
        client, server = await tcp_pair(lib, version)
        trace.append(await both(lib, server.aclose, lambda client=client: receive_all(client)))
        trace.append(await outcome(client.aclose))
        client, server = memory_pair(lib, version)
        trace.append(await both(lib, client.aclose, lambda server=server: receive_all(server)))
        trace.append(await outcome(server.aclose))
    return trace


@scenario
async def https_compatible_endings(lib: ModuleType) -> Trace:
    trace: Trace = []
    for version in VERSIONS:
        for https_compatible in (False, True):
            client, server = await tcp_pair(lib, version, https_compatible=https_compatible)
            await both(lib, client.do_handshake, server.do_handshake)
            await server.send_all(b"data")
            # With https_compatible, no close_notify: a bare EOF.
            await server.aclose()
            trace.append((version.name, https_compatible, await receive_all(client)))
            await client.aclose()
    return trace


@scenario
async def https_compatible_peer_gone_before_the_handshake(lib: ModuleType) -> Trace:
    trace: Trace = []
    for https_compatible in (False, True):
        client, server = memory_pair(lib, https_compatible=https_compatible)
        await server.transport_stream.aclose()
        trace.append((https_compatible, await outcome(client.receive_some)))
        trace.append((https_compatible, await outcome(lambda: client.send_all(b"x"))))
        await client.aclose()
    return trace


# ----- errors from the transport -----


class FailingStream(trio.abc.Stream):
    """Wraps a stream; raises ``error`` from the next send/receive once armed. Written
    against trio.abc, but only duck typing is needed, so nursery_io accepts it too."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.send_error: BaseException | None = None
        self.receive_error: BaseException | None = None

    async def send_all(self, data: Any) -> None:
        if self.send_error is not None:
            raise self.send_error
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> Any:
        if self.receive_error is not None:
            raise self.receive_error
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


@scenario
async def transport_errors_reach_the_caller(lib: ModuleType) -> Trace:
    trace: Trace = []
    for error in (ValueError("boom"), lib.BrokenResourceError("transport broke")):
        client, server = memory_pair(lib)
        await both(lib, client.do_handshake, server.do_handshake)
        failing = FailingStream(client.transport_stream)
        client.transport_stream = failing
        failing.send_error = error
        trace.append(await outcome(lambda client=client: client.send_all(b"x")))
        # The stream can't know what went out: it is broken from now on.
        trace.append(await outcome(lambda client=client: client.send_all(b"x")))
        trace.append(await outcome(client.receive_some))
        trace.append(await outcome(client.aclose))
        await server.aclose()
    # The receiving side.
    client, server = memory_pair(lib)
    await both(lib, client.do_handshake, server.do_handshake)
    failing = FailingStream(server.transport_stream)
    server.transport_stream = failing
    failing.receive_error = ValueError("receive failed")
    trace.append(await outcome(server.receive_some))
    await server.aclose()
    await client.aclose()
    # During the handshake.
    client, server = memory_pair(lib)
    failing = FailingStream(client.transport_stream)
    client.transport_stream = failing
    failing.send_error = ValueError("no handshake for you")
    trace.append(await outcome(client.do_handshake))
    trace.append(await outcome(client.do_handshake))
    await client.aclose()
    return trace


@scenario
async def transport_closed_under_the_stream(lib: ModuleType) -> Trace:
    trace: Trace = []
    client, server = memory_pair(lib)
    await both(lib, client.do_handshake, server.do_handshake)
    await client.transport_stream.aclose()
    trace.append(await outcome(lambda: client.send_all(b"x")))
    trace.append(await outcome(lambda: client.send_all(b"x")))
    trace.append(await outcome(client.aclose))
    trace.append(await outcome(client.receive_some))
    await server.aclose()
    return trace


# ----- unwrap -----


@scenario
async def unwrap_returns_transport_and_trailing_bytes(lib: ModuleType) -> Trace:
    trace: Trace = []
    for version in VERSIONS:
        client, server = memory_pair(lib, version)
        await both(lib, client.do_handshake, server.do_handshake)
        await client.send_all(b"encrypted")
        trace.append(await server.receive_some(9))

        async def client_unwrap(client: Any = client) -> Any:
            original = client.transport_stream
            transport, trailing = await client.unwrap()
            # Plaintext right behind the close_notify.
            await transport.send_all(b"plaintext")
            # The transport now belongs to the caller: the attribute lets go of it.
            released = (transport is original, client.transport_stream)
            return (type(transport).__name__, bytes(trailing), released)

        async def server_unwrap(server: Any = server) -> Any:
            result = await server.unwrap()
            assert isinstance(result, tuple)
            transport, trailing = result
            rest = await transport.receive_some() if not trailing else b""
            return (type(transport).__name__, len(result), bytes(trailing) + bytes(rest))

        trace.append(await both(lib, client_unwrap, server_unwrap))
        trace.append(await outcome(client.receive_some))
        trace.append(await outcome(lambda client=client: client.send_all(b"x")))
        trace.append(await outcome(client.unwrap))
        trace.append(await outcome(client.aclose))
    # Before the handshake, unwrap does the handshake first.
    client, server = memory_pair(lib)
    results = await both(lib, client.unwrap, server.unwrap)
    trace.append([(result[0], type(result[1][0]).__name__, result[1][1]) for result in results])
    return trace


# ----- the generic stream checks -----


@scenario
async def generic_checks_accept_streams_that_handshake_on_close(lib: ModuleType) -> Trace:
    # Each library's check_two_way_stream on SSLStreams that are not handshaken yet and
    # send a close_notify on aclose: graceful closes need the peer's help, and the
    # checks must not deadlock on that (trio's own test_SSLStream_generic does this).
    trace: Trace = []
    for version in VERSIONS:

        async def stream_maker(version: ssl.TLSVersion = version) -> Any:
            return memory_pair(lib, version)

        async def clogged_stream_maker(version: ssl.TLSVersion = version) -> Any:
            client_ctx, server_ctx = contexts(version)
            client_transport, server_transport = lib.testing.lockstep_stream_pair()
            client = lib.SSLStream(client_transport, client_ctx, server_hostname="localhost")
            server = lib.SSLStream(server_transport, server_ctx, server_side=True)
            await both(lib, client.do_handshake, server.do_handshake)
            return client, server

        with lib.fail_after(30):
            trace.append(
                await outcome(
                    lambda: lib.testing.check_two_way_stream(stream_maker, clogged_stream_maker)
                )
            )
    return trace


# ----- aclose and the handshake -----


@scenario
async def handshake_failure_during_aclose(lib: ModuleType) -> Trace:
    trace: Trace = []
    client, server = memory_pair(lib, hostname="wrong.example")
    # Neither side has done the handshake; the client's aclose does it, and it fails.
    results = await both(lib, client.aclose, lambda: receive_all(server))
    trace.append(results)
    trace.append(await outcome(client.aclose))
    trace.append(await outcome(client.receive_some))
    trace.append(await outcome(server.aclose))
    # A server that can't handshake with a client that isn't speaking TLS.
    client_transport, server_transport = lib.testing.memory_stream_pair()
    _, server_ctx = contexts()
    server = lib.SSLStream(server_transport, server_ctx, server_side=True)
    await client_transport.send_all(b"GET / HTTP/1.0\r\n\r\n")
    trace.append(await outcome(server.aclose))
    trace.append(await outcome(lambda: client_transport.receive_some(100)))
    return trace


@scenario
async def aclose_is_final(lib: ModuleType) -> Trace:
    trace: Trace = []
    client, server = memory_pair(lib)
    await both(lib, client.do_handshake, server.do_handshake)
    trace.append(await both(lib, client.aclose, lambda: receive_all(server)))
    for name in ("receive_some", "do_handshake", "wait_send_all_might_not_block", "unwrap"):
        trace.append((name, await outcome(getattr(client, name))))
    trace.append(await outcome(lambda: client.send_all(b"")))
    trace.append(await outcome(client.aclose))
    trace.append(await outcome(server.aclose))
    trace.append(await outcome(server.receive_some))
    return trace


# ----- messages -----


@scenario
async def conflict_and_handshake_messages(lib: ModuleType) -> Trace:
    trace: Trace = []
    client_ctx, _ = contexts()
    left, right = lib.testing.lockstep_stream_pair()
    client = lib.SSLStream(left, client_ctx, server_hostname="localhost")
    for name in ("cipher", "version", "getpeercert", "selected_alpn_protocol"):
        trace.append(sync_outcome(lambda name=name: getattr(client, name)()))
    trace.append(sync_outcome(client.pending))

    async def use(fn: Callable[[], Awaitable[Any]]) -> None:
        trace.append(("first", await outcome(fn)))

    pairs: list[tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]] = [
        (lambda: client.send_all(b"x"), lambda: client.send_all(b"y")),
        (client.receive_some, client.receive_some),
        (client.receive_some, client.unwrap),
        (lambda: client.send_all(b"x"), client.unwrap),
        (lambda: client.send_all(b"x"), client.wait_send_all_might_not_block),
    ]
    for first, second in pairs:
        client = lib.SSLStream(
            lib.testing.lockstep_stream_pair()[0], client_ctx, server_hostname="localhost"
        )
        async with lib.open_nursery() as nursery:
            nursery.start_soon(use, first)
            await lib.testing.wait_all_tasks_blocked()
            trace.append(await outcome(second))
            nursery.cancel_scope.cancel()
    return trace


@scenario
async def ssl_listener(lib: ModuleType) -> Trace:
    client_ctx, server_ctx = contexts()
    trace: Trace = []
    listeners = await lib.open_ssl_over_tcp_listeners(0, server_ctx, host="127.0.0.1")
    (listener,) = listeners
    trace.append((type(listener).__name__, type(listener.transport_listener).__name__))
    port = listener.transport_listener.socket.getsockname()[1]
    client = await lib.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=client_ctx)
    server = await listener.accept()
    trace.append(
        (type(server).__name__, server.server_side, type(server.transport_stream).__name__)
    )
    trace.append(await both(lib, client.do_handshake, server.do_handshake))
    await listener.aclose()
    trace.append(await outcome(listener.accept))
    await client.aclose()
    await server.aclose()
    return trace


@scenario
async def international_server_hostname(lib: ModuleType) -> Trace:
    client_ctx, _ = contexts()
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    trace: Trace = []
    for hostname in ("Straße.example", "localhost", b"bytes.example"):
        left, _right = lib.testing.memory_stream_pair()
        stream = lib.SSLStream(left, client_ctx, server_hostname=hostname)
        trace.append(stream.server_hostname)
    return trace


def test_raised_comparison() -> None:
    trio_says = Raised("BrokenResourceError", "", None, by_trio=True)
    assert Raised("BrokenResourceError", "broken", "ValueError") == trio_says
    trio_says = Raised("BrokenResourceError", "", ("SSLEOFError", "X"), by_trio=True)
    assert Raised("BrokenResourceError", "broken", None) != trio_says
    assert Raised("BrokenResourceError", "broken", ("SSLEOFError", "Y")) != trio_says
    assert Raised("ClosedResourceError", "", ("SSLEOFError", "X")) != trio_says
    trio_says = Raised("BusyResourceError", "another task", by_trio=True)
    assert Raised("BusyResourceError", "another") != trio_says


@scenario.parametrize()
def test_same_trace_as_trio(scenario: Scenario) -> None:
    assert_same_trace(scenario)


def test_default_context_of_open_ssl_over_tcp_stream_refuses_truncation() -> None:
    # Like Trio, the default context never ignores a missing close_notify.
    seen: list[int] = []

    async def main() -> None:
        _, server_ctx = contexts()
        (listener,) = await nursery_io.open_ssl_over_tcp_listeners(0, server_ctx, host="127.0.0.1")
        async with listener:
            port = listener.transport_listener.socket.getsockname()[1]
            original = ssl.create_default_context

            def patched(*args: Any, **kwargs: Any) -> ssl.SSLContext:
                context = original(*args, **kwargs)
                context.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
                return context

            ssl.create_default_context = patched  # type: ignore[assignment]
            try:
                client = await nursery_io.open_ssl_over_tcp_stream("127.0.0.1", port)
            finally:
                ssl.create_default_context = original
            seen.append(client.context.options & ssl.OP_IGNORE_UNEXPECTED_EOF)
            await nursery_io.aclose_forcefully(client)

    nursery_io.run(main)
    assert seen == [0]
