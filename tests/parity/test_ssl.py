"""TLS streams side by side with Trio: each scenario is written once against a library
module (``trio`` or ``nursery_io``), run under both, and must record the same trace.

Only behaviour that Trio defines goes into the traces: exception *types* rather than
messages, and nothing that depends on the order in which Trio happens to schedule tasks.
Where nursery_io deliberately differs (see docs/reference-ssl.rst), the scenarios stop
short of it.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from . import harness
from .harness import Scenario, Scenarios, Trace, assert_same_trace
from .tls import contexts, memory_pair

scenario = Scenarios()


@scenario.parametrize()
def test_same_trace_as_trio(scenario: Scenario) -> None:
    assert_same_trace(scenario)


# ----- helpers shared by the scenarios -----


async def handshake(lib: ModuleType, client: Any, server: Any) -> None:
    async with lib.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)


async def outcome_of(fn: Callable[[], Awaitable[Any]]) -> Any:
    """What an awaited call did: its result, or the exception's type and its cause's."""

    def describe(exc: Exception) -> Any:
        cause = exc.__cause__
        return ("raised", type(exc).__name__, type(cause).__name__ if cause else None)

    return await harness.outcome(fn, describe)


def sync_outcome(fn: Callable[[], Any]) -> Any:
    return harness.sync_outcome(fn, lambda exc: ("raised", type(exc).__name__))


def call(obj: Any, name: str) -> Any:
    return getattr(obj, name)()


async def receive_exactly(stream: Any, count: int) -> bytes:
    received = bytearray()
    while len(received) < count:
        chunk = await stream.receive_some(count - len(received))
        if not chunk:
            break
        received += chunk
    return bytes(received)


# ----- scenarios -----


@scenario
async def handshake_info_and_echo(lib: ModuleType) -> Trace:
    trace: Trace = []
    client, server = memory_pair(lib, alpn=["h2", "http/1.1"])
    for name in ("version", "cipher", "selected_alpn_protocol", "getpeercert"):
        # Called, not just looked up: see "Differences from Trio" in the docs.
        trace.append((name, "before", sync_outcome(functools.partial(call, client, name))))
    trace.append(("session_reused", sync_outcome(lambda: client.session_reused)))
    trace.append(("pending", client.pending(), client.server_side, server.server_side))
    trace.append(("hostname", client.server_hostname, server.server_hostname))
    await handshake(lib, client, server)
    trace.append(("versions", client.version(), server.version()))
    trace.append(("alpn", client.selected_alpn_protocol(), server.selected_alpn_protocol()))
    trace.append(("cipher", client.cipher()[1], client.cipher() == server.cipher()))
    trace.append(("peer", client.getpeercert()["subjectAltName"], server.getpeercert()))
    trace.append(("binary", type(client.getpeercert(binary_form=True)).__name__))
    # do_handshake again is harmless.
    trace.append(("again", await outcome_of(client.do_handshake)))
    await client.send_all(b"hello")
    await client.send_all(b"")
    trace.append(("max_bytes", await outcome_of(lambda: server.receive_some(0))))
    trace.append(("got", await receive_exactly(server, 2), await receive_exactly(server, 3)))
    await server.send_all(bytearray(b"back"))
    await server.send_all(memoryview(b" at you"))
    trace.append(("got", await receive_exactly(client, 11)))
    return trace


@scenario
async def implicit_handshake_tls12(lib: ModuleType) -> Trace:
    client, server = memory_pair(lib, version=ssl.TLSVersion.TLSv1_2)
    async with lib.open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"x" * 50_000)
        data = await receive_exactly(server, 50_000)
    return [("got", len(data), client.version(), server.version())]


@scenario
async def close_notify_and_closed_stream(lib: ModuleType) -> Trace:
    trace: Trace = []
    client, server = memory_pair(lib)
    await handshake(lib, client, server)
    await client.send_all(b"bye")
    await client.aclose()
    trace.append(("server", await receive_exactly(server, 3)))
    for _ in range(2):
        trace.append(("server eof", await outcome_of(server.receive_some)))
    for name in ("receive_some", "do_handshake", "wait_send_all_might_not_block", "unwrap"):
        trace.append((name, await outcome_of(getattr(client, name))))
    trace.append(("send_all", await outcome_of(lambda: client.send_all(b"x"))))
    trace.append(("aclose again", await outcome_of(client.aclose)))
    # The client is gone: the server's own close still works.
    trace.append(("server aclose", await outcome_of(server.aclose)))
    return trace


@scenario
async def truncation(lib: ModuleType) -> Trace:
    trace: Trace = []
    for https_compatible in (False, True):
        client, server = memory_pair(lib, https_compatible=https_compatible)
        await handshake(lib, client, server)
        await client.send_all(b"cut")
        await client.transport_stream.aclose()
        trace.append((https_compatible, await receive_exactly(server, 3)))
        # (Only the first call: Trio then reports a broken stream, nursery_io keeps
        # reporting the end of the stream.)
        trace.append((https_compatible, await outcome_of(server.receive_some)))
        await server.aclose()
    return trace


@scenario
async def https_compatible_close_sends_nothing(lib: ModuleType) -> Trace:
    trace: Trace = []
    for https_compatible in (False, True):
        client, server = memory_pair(lib, https_compatible=https_compatible)
        await handshake(lib, client, server)
        await client.aclose()
        raw = await server.transport_stream.receive_some()
        trace.append((https_compatible, len(raw) > 0))
    return trace


@scenario
async def certificate_problems(lib: ModuleType) -> Trace:
    trace: Trace = []
    for hostname, trusting in (("example.com", True), ("localhost", False)):
        client, server = memory_pair(lib, hostname=hostname)
        if not trusting:
            client_transport = client.transport_stream
            client = lib.SSLStream(
                client_transport, ssl.create_default_context(), server_hostname=hostname
            )
        server_outcome: list[Any] = []

        async def server_side(
            server: Any = server, server_outcome: list[Any] = server_outcome
        ) -> None:
            server_outcome.append((await outcome_of(server.do_handshake))[:2])

        async with lib.open_nursery() as nursery:
            nursery.start_soon(server_side)
            trace.append((hostname, await outcome_of(client.do_handshake)))
            # Neither library sends the alert: the server learns when the connection ends.
            await client.transport_stream.aclose()
        trace.append((hostname, "server", server_outcome))
        trace.append((hostname, "again", (await outcome_of(client.do_handshake))[:2]))
        trace.append((hostname, "send", (await outcome_of(lambda: client.send_all(b"x")))[:2]))
        await client.aclose()
        await server.aclose()
    return trace


@scenario
async def conflicts(lib: ModuleType) -> Trace:
    trace: Trace = []
    cases: list[tuple[str, Callable[[Any], Callable[[], Awaitable[Any]]]]] = [
        ("send_all", lambda s: functools.partial(s.send_all, b"x" * 100_000)),
        ("receive_some", lambda s: s.receive_some),
        ("wait_send_all_might_not_block", lambda s: s.wait_send_all_might_not_block),
    ]
    for first_name, first in cases:
        for second_name, second in cases:
            client, server = memory_pair(lib, lockstep=True)
            await handshake(lib, client, server)
            results: list[str] = []

            async def run(fn: Callable[[], Awaitable[Any]], results: list[str] = results) -> None:
                try:
                    await fn()
                except lib.BusyResourceError:
                    results.append("busy")

            async with lib.open_nursery() as nursery:
                nursery.start_soon(run, first(client))
                await lib.testing.wait_all_tasks_blocked()
                nursery.start_soon(run, second(client))
                await lib.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
            trace.append((first_name, second_name, results))
            await lib.aclose_forcefully(client)
            await lib.aclose_forcefully(server)
    return trace


@scenario
async def cancellation(lib: ModuleType) -> Trace:
    trace: Trace = []
    # A cancelled receive loses nothing.
    client, server = memory_pair(lib)
    await handshake(lib, client, server)
    with lib.move_on_after(0.01):
        await server.receive_some()
    await client.send_all(b"ok")
    trace.append(("after cancelled receive", await receive_exactly(server, 2)))
    # A send cancelled half-way through breaks the stream.
    client, server = memory_pair(lib, lockstep=True)
    await handshake(lib, client, server)
    with lib.move_on_after(0.01):
        await client.send_all(b"x" * 100_000)
    trace.append(("after cancelled send", (await outcome_of(lambda: client.send_all(b"y")))[:2]))
    # So does a cancelled handshake.
    client, server = memory_pair(lib)
    with lib.move_on_after(0.01):
        await client.do_handshake()
    trace.append(("after cancelled handshake", (await outcome_of(client.receive_some))[:2]))
    await lib.aclose_forcefully(client)
    return trace


@scenario
async def unwrap_both_sides(lib: ModuleType) -> Trace:
    trace: Trace = []
    client, server = memory_pair(lib)
    await handshake(lib, client, server)
    results: dict[str, Any] = {}

    async def unwrap(name: str, stream: Any) -> None:
        results[name] = await stream.unwrap()

    async with lib.open_nursery() as nursery:
        nursery.start_soon(unwrap, "client", client)
        nursery.start_soon(unwrap, "server", server)
    for name, stream in (("client", client), ("server", server)):
        transport, trailing = results[name]
        # (Not compared: whether stream.transport_stream still refers to the transport
        # afterwards; Trio sets it to None.)
        trace.append((name, trailing, type(transport).__name__))
        trace.append((name, await outcome_of(stream.receive_some)))
    client_transport, _ = results["client"]
    server_transport, _ = results["server"]
    await client_transport.send_all(b"plain")
    trace.append(("plain", bytes(await server_transport.receive_some())))
    return trace


@scenario
async def tls13_client_that_only_writes(lib: ModuleType) -> Trace:
    trace: Trace = []
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        client, server = memory_pair(lib, lockstep=True, version=version)
        with lib.move_on_after(5) as scope:
            async with lib.open_nursery() as nursery:

                async def client_side(client: Any = client) -> None:
                    await client.do_handshake()
                    await client.send_all(b"write only")

                nursery.start_soon(client_side)
                await server.do_handshake()
                trace.append((version.name, await receive_exactly(server, 10)))
        trace.append((version.name, "deadlocked", scope.cancelled_caught))
    return trace


@scenario
async def over_tcp(lib: ModuleType) -> Trace:
    trace: Trace = []
    client_ctx, server_ctx = contexts()

    async def handler(stream: Any) -> None:
        data = await stream.receive_some()
        await stream.send_all(bytes(data).upper())
        await stream.aclose()

    async with lib.open_nursery() as nursery:
        serve = functools.partial(lib.serve_ssl_over_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve, handler, 0, server_ctx)
        trace.append(("listeners", [type(listener).__name__ for listener in listeners]))
        port = listeners[0].transport_listener.socket.getsockname()[1]
        client = await lib.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=client_ctx)
        trace.append(("client", type(client).__name__, type(client.transport_stream).__name__))
        await client.send_all(b"shout")
        trace.append(("reply", await receive_exactly(client, 5)))
        trace.append(("end", await outcome_of(client.receive_some)))
        await client.aclose()
        nursery.cancel_scope.cancel()
    return trace


@scenario(autojump=True)
async def deadline_passing_just_before_a_send(lib: ModuleType) -> Trace:
    # The deadline passes with no checkpoint in between (the clock jumps). Trio notices it
    # at the schedule point inside send_all, before the record reaches the socket: the
    # send is cancelled and the TLS stream is broken, since part of a record may be out.
    trace: Trace = []
    client_ctx, server_ctx = contexts()
    a, b = lib.socket.socketpair()
    client = lib.SSLStream(lib.SocketStream(a), client_ctx, server_hostname="localhost")
    server = lib.SSLStream(lib.SocketStream(b), server_ctx, server_side=True)
    await handshake(lib, client, server)
    clock = lib.lowlevel.current_clock()
    with lib.move_on_after(1) as scope:
        clock.jump(2)
        await client.send_all(b"late")
    trace.append(("cancelled", scope.cancelled_caught))
    trace.append(("then", await outcome_of(lambda: client.send_all(b"again"))))
    with lib.move_on_after(1) as scope:
        clock.jump(2)
        await server.receive_some()
    trace.append(("receive cancelled", scope.cancelled_caught))
    await client.transport_stream.aclose()
    await server.transport_stream.aclose()
    return trace
