"""DTLS (DTLSEndpoint / DTLSChannel) side by side with Trio 0.35, over loopback UDP.

Each scenario runs under ``trio.run`` and ``nursery_io.run`` and records a trace (results,
exception types and messages, packet timings under an autojump MockClock); the traces
must be equal. Packet loss, duplication, reordering and small path MTUs come from
:class:`ImperfectSocket`, a wrapper around a real UDP socket that both libraries accept.
After the scenarios come nursery_io-only checks of the parts Trio doesn't expose (the
record parsers against malformed input, garbage collection of a forgotten endpoint).
"""

from __future__ import annotations

import gc
import os
import random
import socket as stdlib_socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing
import trustme
from OpenSSL import SSL

import nursery_io
import nursery_io.testing
from nursery_io._net import _dtls, _dtls_records

Trace = list[Any]
Scenario = Callable[[ModuleType], Awaitable[Trace]]
SCENARIOS: dict[str, Scenario] = {}
# Scenarios that run under an autojump clock, so retransmit timers cost no real time.
AUTOJUMP: set[str] = set()

CA = trustme.CA()
SERVER_CERT = CA.issue_cert("example.com")


def scenario(*, autojump: bool = False) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[fn.__name__] = fn
        if autojump:
            AUTOJUMP.add(fn.__name__)
        return fn

    return register


def _ipv6_loopback_works() -> bool:
    try:
        with stdlib_socket.socket(stdlib_socket.AF_INET6, stdlib_socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = _ipv6_loopback_works()


def server_context() -> SSL.Context:
    context = SSL.Context(SSL.DTLS_METHOD)
    SERVER_CERT.configure_cert(context)
    return context


def client_context() -> SSL.Context:
    context = SSL.Context(SSL.DTLS_METHOD)
    CA.configure_trust(context)
    return context


def raised(exc: BaseException) -> tuple[str, str]:
    return (type(exc).__name__, str(exc).replace("nursery_io", "trio"))


async def outcome(fn: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return ("returned", await fn())
    except Exception as exc:
        return raised(exc)


def sync_outcome(fn: Callable[[], Any]) -> Any:
    try:
        return ("returned", fn())
    except Exception as exc:
        return raised(exc)


def udp_socket(lib: ModuleType, ipv6: bool = False) -> Any:
    family = lib.socket.AF_INET6 if ipv6 else lib.socket.AF_INET
    return lib.socket.socket(family=family, type=lib.socket.SOCK_DGRAM)


def endpoint(lib: ModuleType, ipv6: bool = False, **kwargs: Any) -> Any:
    return lib.DTLSEndpoint(udp_socket(lib, ipv6), **kwargs)


async def echo_handler(channel: Any) -> None:
    async for datagram in channel:
        await channel.send(datagram)


async def tolerant_echo_handler(channel: Any) -> None:
    """Echo until the client starts a new association from the same address."""
    try:
        await echo_handler(channel)
    except (trio.BrokenResourceError, nursery_io.BrokenResourceError):
        pass


async def start_echo_server(lib: ModuleType, nursery: Any, server: Any, ipv6: bool = False) -> Any:
    """Bind ``server`` on loopback, serve echo on it, return its address."""
    await server.socket.bind(("::1" if ipv6 else "127.0.0.1", 0))
    await nursery.start(server.serve, server_context(), tolerant_echo_handler)
    return server.socket.getsockname()


class ImperfectSocket:
    """A UDP socket whose outgoing datagrams go through ``route``: it returns what to do
    with each one, as a list of delays (seconds): ``[]`` drops it, ``[0]`` sends it,
    ``[0, 0]`` duplicates it, ``[0.5]`` sends it half a second late (so after later ones).

    DTLSEndpoint only needs ``family``, ``type``, ``bind``, ``getsockname``, ``sendto``,
    ``recvfrom`` and ``close``, in both libraries.
    """

    def __init__(
        self, lib: ModuleType, nursery: Any, route: Callable[[bytes], list[float]]
    ) -> None:
        self._lib = lib
        self._nursery = nursery
        self._route = route
        self._sock = udp_socket(lib)
        self.sent_sizes: list[int] = []

    @property
    def family(self) -> int:
        return int(self._sock.family)

    @property
    def type(self) -> int:
        return int(self._sock.type)

    async def bind(self, address: Any) -> None:
        await self._sock.bind(address)

    def getsockname(self) -> Any:
        return self._sock.getsockname()

    def close(self) -> None:
        self._sock.close()

    async def recvfrom(self, size: int) -> Any:
        return await self._sock.recvfrom(size)

    async def _send_later(self, delay: float, datagram: bytes, address: Any) -> None:
        await self._lib.sleep(delay)
        try:
            await self._sock.sendto(datagram, address)
        except (OSError, self._lib.ClosedResourceError):
            pass

    async def sendto(self, datagram: bytes, address: Any) -> int:
        self.sent_sizes.append(len(datagram))
        for delay in self._route(bytes(datagram)):
            if delay:
                self._nursery.start_soon(self._send_later, delay, datagram, address)
            else:
                await self._sock.sendto(datagram, address)
        return len(datagram)


# ----- scenarios -----


@scenario()
async def handshake_echo_and_mtu(lib: ModuleType) -> Trace:
    trace: Trace = []
    for ipv6 in [False, True] if IPV6 else [False]:
        with endpoint(lib, ipv6) as server, endpoint(lib, ipv6) as client:
            async with lib.open_nursery() as nursery:
                address = await start_echo_server(lib, nursery, server, ipv6)
                channel = client.connect(address, client_context())
                trace.append(sync_outcome(channel.get_cleartext_mtu))
                trace.append(channel.peer_address == address)
                trace.append(channel.endpoint is client)
                trace.append(await outcome(channel.do_handshake))
                # A second call is a no-op.
                trace.append(await outcome(channel.do_handshake))
                sizes = [1, 2, 100, 1000, 1400, *range(3, 200)]
                echoed = []
                for size in sizes:
                    payload = bytes([size % 256]) * size
                    await channel.send(payload)
                    echoed.append(await channel.receive() == payload)
                trace.append(all(echoed))
                trace.append(await outcome(lambda: channel.send(b"")))
                default_mtu = channel.get_cleartext_mtu()
                channel.set_ciphertext_mtu(1234)
                small = channel.get_cleartext_mtu()
                channel.set_ciphertext_mtu(4321)
                big = channel.get_cleartext_mtu()
                channel.set_ciphertext_mtu(1234)
                trace.append((default_mtu, small, big, channel.get_cleartext_mtu()))
                stats = channel.statistics()
                trace.append((type(stats).__name__, stats.incoming_packets_dropped_in_trio))
                trace.append(repr(stats))
                nursery.cancel_scope.cancel()
    return trace


@scenario()
async def implicit_handshake_full_duplex(lib: ModuleType) -> Trace:
    # send and receive both start the handshake, at the same time, on both sides.
    trace: Trace = []
    with endpoint(lib) as server, endpoint(lib) as client:
        await server.socket.bind(("127.0.0.1", 0))
        async with lib.open_nursery() as server_nursery:

            async def handler(channel: Any) -> None:
                async with lib.open_nursery() as nursery:
                    nursery.start_soon(channel.send, b"from server")
                    trace.append(("server got", await channel.receive()))

            await server_nursery.start(server.serve, server_context(), handler)
            channel = client.connect(server.socket.getsockname(), client_context())
            async with lib.open_nursery() as nursery:
                nursery.start_soon(channel.send, b"from client")
                trace.append(("client got", await channel.receive()))
            await lib.testing.wait_all_tasks_blocked()
            server_nursery.cancel_scope.cancel()
    return sorted(trace)


@scenario()
async def channel_closing(lib: ModuleType) -> Trace:
    trace: Trace = []
    with endpoint(lib) as server, endpoint(lib) as client:
        async with lib.open_nursery() as nursery:
            address = await start_echo_server(lib, nursery, server)
            channel = client.connect(address, client_context())
            await channel.do_handshake()
            # A receive in progress is interrupted by close().
            results: list[Any] = []

            async def waiting_receive() -> None:
                results.append(await outcome(channel.receive))

            async with lib.open_nursery() as inner:
                inner.start_soon(waiting_receive)
                await lib.testing.wait_all_tasks_blocked()
                channel.close()
            trace.append(results)
            trace.append(await outcome(lambda: channel.send(b"abc")))
            trace.append(await outcome(channel.receive))
            trace.append(await outcome(channel.do_handshake))
            channel.close()  # idempotent
            trace.append(await outcome(channel.aclose))
            # A closed channel no longer owns the address: a new one works.
            again = client.connect(address, client_context())
            await again.send(b"again")
            trace.append(await again.receive())
            # Channels are context managers, sync and async.
            with again:
                pass
            trace.append(await outcome(again.receive))
            third = client.connect(address, client_context())
            async with third:
                await third.send(b"third")
                trace.append(await third.receive())
            trace.append(await outcome(lambda: third.send(b"x")))
            nursery.cancel_scope.cancel()
    return trace


@scenario()
async def closing_endpoint_with_open_channels(lib: ModuleType) -> Trace:
    trace: Trace = []
    with endpoint(lib) as server1, endpoint(lib) as server2:
        async with lib.open_nursery() as nursery:
            address1 = await start_echo_server(lib, nursery, server1)
            address2 = await start_echo_server(lib, nursery, server2)
            client = endpoint(lib)
            channel1 = client.connect(address1, client_context())
            channel2 = client.connect(address2, client_context())
            await channel1.send(b"one")
            await channel2.send(b"two")
            trace.append(await channel2.receive())
            trace.append(await channel1.receive())
            results: list[Any] = []

            async def waiting_receive() -> None:
                results.append(await outcome(channel2.receive))

            async with lib.open_nursery() as inner:
                inner.start_soon(waiting_receive)
                await lib.testing.wait_all_tasks_blocked()
                client.close()
            trace.append(results)
            client.close()  # idempotent
            trace.append(client.socket.fileno())
            trace.append(await outcome(lambda: channel1.send(b"x")))
            trace.append(await outcome(channel1.receive))
            trace.append(sync_outcome(lambda: client.connect(address1, client_context())))

            async def never_called(channel: Any) -> None:  # pragma: no cover
                raise AssertionError

            trace.append(
                await outcome(lambda: nursery.start(client.serve, server_context(), never_called))
            )
            nursery.cancel_scope.cancel()

        # Closing a serving endpoint ends serve() (after its handlers) without a cancel.
        server = endpoint(lib)
        handler_ended = []

        async def handler(channel: Any) -> None:
            handler_ended.append(await outcome(lambda: echo_handler(channel)))

        async with lib.open_nursery() as nursery:
            await server.socket.bind(("127.0.0.1", 0))
            await nursery.start(server.serve, server_context(), handler)
            with endpoint(lib) as client:
                channel = client.connect(server.socket.getsockname(), client_context())
                await channel.send(b"hi")
                trace.append(await channel.receive())
                server.close()
        trace.append(handler_ended)
    return trace


@scenario()
async def misuse(lib: ModuleType) -> Trace:
    trace: Trace = []
    with lib.socket.socket() as tcp:
        trace.append(sync_outcome(lambda: lib.DTLSEndpoint(tcp)))
    trace.append(sync_outcome(lib.DTLSChannel))
    trace.append(sync_outcome(lambda: type("Sub", (lib.DTLSEndpoint,), {})))
    trace.append(sync_outcome(lambda: type("Sub", (lib.DTLSChannel,), {})))
    stats = lib.DTLSChannelStatistics(3)
    trace.append((repr(stats), stats == lib.DTLSChannelStatistics(3)))
    trace.append(sync_outcome(lambda: setattr(stats, "incoming_packets_dropped_in_trio", 4)))

    async def idle_handler(channel: Any) -> None:  # pragma: no cover
        pass

    with endpoint(lib, incoming_packets_buffer=3) as server:
        trace.append((server.incoming_packets_buffer, server.socket.type))
        await server.socket.bind(("127.0.0.1", 0))
        async with lib.open_nursery() as nursery:
            await nursery.start(server.serve, server_context(), idle_handler)
            trace.append(
                await outcome(lambda: nursery.start(server.serve, server_context(), idle_handler))
            )
            nursery.cancel_scope.cancel()
        # serve can run again once the first one is gone.
        async with lib.open_nursery() as nursery:
            await nursery.start(server.serve, server_context(), idle_handler)
            nursery.cancel_scope.cancel()
        # A socket closed behind the endpoint's back can't serve.
        server.socket.close()
        async with lib.open_nursery() as nursery:
            trace.append(
                await outcome(lambda: nursery.start(server.serve, server_context(), idle_handler))
            )
    # A socket closed before the reader task ever ran is no crash either.
    with endpoint(lib) as closed_early:
        closed_early.socket.close()
        await lib.testing.wait_all_tasks_blocked()
    return trace


@scenario()
async def association_replaced(lib: ModuleType) -> Trace:
    trace: Trace = []
    with endpoint(lib) as server, endpoint(lib) as client:
        async with lib.open_nursery() as nursery:
            address = await start_echo_server(lib, nursery, server)
            first = client.connect(address, client_context())
            second = client.connect(address, client_context())
            trace.append(await outcome(first.do_handshake))
            # (Using ``first`` again differs on purpose: see test_replaced_channel_stays_broken.)
            await second.send(b"second")
            trace.append(await second.receive())
            # A new connect breaks an established channel too.
            third = client.connect(address, client_context())
            trace.append(await outcome(lambda: second.send(b"x")))
            trace.append(await outcome(second.receive))
            await third.send(b"third")
            trace.append(await third.receive())
            nursery.cancel_scope.cancel()
    return trace


@scenario()
async def swap_client_and_server(lib: ModuleType) -> Trace:
    # a connects to b, then b to a: each side's old channel for the peer breaks.
    trace: Trace = []
    with endpoint(lib) as a, endpoint(lib) as b:
        await a.socket.bind(("127.0.0.1", 0))
        await b.socket.bind(("127.0.0.1", 0))

        async def recording_echo(channel: Any) -> None:
            try:
                await echo_handler(channel)
            except Exception as exc:
                trace.append(("handler", raised(exc)))

        async with lib.open_nursery() as nursery:
            await nursery.start(a.serve, server_context(), recording_echo)
            await nursery.start(b.serve, server_context(), echo_handler)
            b_to_a = b.connect(a.socket.getsockname(), client_context())
            await b_to_a.send(b"b as client")
            trace.append(await b_to_a.receive())
            a_to_b = a.connect(b.socket.getsockname(), client_context())
            await a_to_b.do_handshake()
            trace.append(await outcome(lambda: b_to_a.send(b"broken")))
            await a_to_b.send(b"a as client")
            trace.append(await a_to_b.receive())
            await lib.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    return trace


@scenario()
async def serve_many_clients(lib: ModuleType) -> Trace:
    clients = 20
    handled: list[Any] = []

    async def handler(channel: Any) -> None:
        handled.append(channel.peer_address)
        await echo_handler(channel)

    replies: dict[int, list[bytes]] = {}
    with endpoint(lib) as server:
        await server.socket.bind(("127.0.0.1", 0))
        async with lib.open_nursery() as nursery:
            await nursery.start(server.serve, server_context(), handler)
            address = server.socket.getsockname()

            async def client(index: int) -> None:
                with endpoint(lib) as client_endpoint:
                    channel = client_endpoint.connect(address, client_context())
                    got = replies.setdefault(index, [])
                    for round_ in range(5):
                        await channel.send(b"%d:%d" % (index, round_))
                        got.append(await channel.receive())

            async with lib.open_nursery() as clients_nursery:
                for index in range(clients):
                    clients_nursery.start_soon(client, index)
            nursery.cancel_scope.cancel()
    expected = {i: [b"%d:%d" % (i, r) for r in range(5)] for i in range(clients)}
    return [replies == expected, len(handled), len(set(handled))]


@scenario()
async def garbage_does_not_hurt_the_server(lib: ModuleType) -> Trace:
    hello = _dtls_records._encode_record(
        _dtls_records._HANDSHAKE,
        _dtls_records._DTLS_1_0,
        0,
        _dtls_records._encode_fragment(_dtls_records._CLIENT_HELLO, 10, 0, 0, bytes(10)),
    )
    corrupt_length = bytearray(hello)
    corrupt_length[11] = 0xFF
    garbage = [
        b"",
        b"xyz",
        hello,
        hello + b"\x00",
        hello[:-1],
        hello[:14],
        bytes(corrupt_length),
        _dtls_records._encode_record(
            _dtls_records._HANDSHAKE,
            _dtls_records._DTLS_1_0,
            0,
            _dtls_records._encode_fragment(_dtls_records._CLIENT_HELLO, 20, 0, 0, bytes(10)),
        ),
        _dtls_records._encode_record(_dtls_records._HANDSHAKE, _dtls_records._DTLS_1_0, 0, b""),
        _dtls_records._encode_record(
            _dtls_records._HANDSHAKE, _dtls_records._DTLS_1_0, 0, bytes(35) + b"\xff"
        ),
        bytes(range(256)) * 4,
    ]
    trace: Trace = []
    with endpoint(lib) as server, endpoint(lib) as client:
        async with lib.open_nursery() as nursery:
            address = await start_echo_server(lib, nursery, server)
            with udp_socket(lib) as raw:
                for datagram in garbage:
                    await raw.sendto(datagram, address)
                await lib.testing.wait_all_tasks_blocked()
            channel = client.connect(address, client_context())
            await channel.send(b"still alive")
            trace.append(await channel.receive())
            # Garbage from the peer's address after the handshake is skipped too.
            await server.socket.sendto(b"\x17\xfe\xfd" + bytes(20), client.socket.getsockname())
            await channel.send(b"and now")
            trace.append(await channel.receive())
            nursery.cancel_scope.cancel()
    return trace


def _raw_client_hellos(sock_family: int = stdlib_socket.AF_INET) -> tuple[Any, bytes]:
    connection = SSL.Connection(_client_context_for_raw())
    connection.set_connect_state()
    connection.set_ciphertext_mtu(1400)
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        pass
    return connection, connection.bio_read(65536)


def _client_context_for_raw() -> SSL.Context:
    context = client_context()
    context.set_options(SSL.OP_NO_QUERY_MTU)
    return context


@scenario(autojump=True)
async def cookie_exchange_and_a_client_that_never_finishes(lib: ModuleType) -> Trace:
    # A hand-driven client: it answers the HelloVerifyRequest, then goes silent. The
    # server allocates a channel only after the cookie round trip, then retransmits its
    # flight with exponential backoff, falling back to the minimum MTU after two losses.
    trace: Trace = []
    handler_results: list[Any] = []

    async def handler(channel: Any) -> None:
        with lib.move_on_after(10) as timer:
            await channel.do_handshake()
        handler_results.append(("timed out", timer.cancelled_caught))
        handler_results.append(sync_outcome(channel.get_cleartext_mtu))

    with endpoint(lib) as server:
        await server.socket.bind(("127.0.0.1", 0))
        address = server.socket.getsockname()
        async with lib.open_nursery() as nursery:
            await nursery.start(server.serve, server_context(), handler)
            with udp_socket(lib) as raw:
                connection, hello = _raw_client_hellos()
                start = lib.current_time()
                await raw.sendto(hello, address)
                challenge, _ = await raw.recvfrom(65536)
                record = next(_dtls_records._iter_records(challenge))
                fragment = _dtls_records._parse_fragment(record.payload)
                first_record = next(_dtls_records._iter_records(hello))
                trace.append(
                    (
                        "HelloVerifyRequest",
                        record.content_type,
                        record.version,
                        record.epoch_and_sequence == first_record.epoch_and_sequence,
                        fragment.msg_type,
                        fragment.msg_seq,
                        fragment.data[:2],
                        fragment.data[2],
                        len(fragment.data),
                    )
                )
                # The same ClientHello again gets another challenge, and no channel.
                await raw.sendto(hello, address)
                await raw.recvfrom(65536)
                await lib.testing.wait_all_tasks_blocked()
                trace.append(("handlers before the cookie came back", len(handler_results)))
                connection.bio_write(challenge)
                try:
                    connection.do_handshake()
                except SSL.WantReadError:
                    pass
                await raw.sendto(connection.bio_read(65536), address)
                arrivals: list[tuple[float, int]] = []
                with lib.move_on_after(20):
                    while True:
                        datagram, _ = await raw.recvfrom(65536)
                        arrivals.append((lib.current_time() - start, len(datagram)))
            # Group the datagrams into flights by arrival time.
            flights: dict[float, list[int]] = {}
            for when, size in arrivals:
                flights.setdefault(round(when, 3), []).append(size)
            trace.append(
                [(when, len(sizes), max(sizes) <= 1472) for when, sizes in flights.items()]
            )
            trace.append(all(max(sizes) <= 548 for when, sizes in flights.items() if when >= 3))
            trace.append(handler_results)
            nursery.cancel_scope.cancel()
    return trace


@scenario(autojump=True)
async def initial_retransmit_timeout(lib: ModuleType) -> Trace:
    # The first datagram is lost; the handshake completes exactly one timeout later.
    trace: Trace = []
    with endpoint(lib) as server:
        async with lib.open_nursery() as nursery:
            address = await start_echo_server(lib, nursery, server)
            for timeout in [1, 2, 4]:
                dropped: list[bool] = []

                def drop_first(datagram: bytes) -> list[float]:
                    if not dropped:
                        dropped.append(True)
                        return []
                    return [0]

                with lib.DTLSEndpoint(ImperfectSocket(lib, nursery, drop_first)) as client:
                    channel = client.connect(address, client_context())
                    before = lib.current_time()
                    await channel.do_handshake(initial_retransmit_timeout=timeout)
                    trace.append(lib.current_time() - before)
            nursery.cancel_scope.cancel()
    return trace


@scenario(autojump=True)
async def connect_to_non_server(lib: ModuleType) -> Trace:
    with endpoint(lib) as silent, endpoint(lib) as client:
        await silent.socket.bind(("127.0.0.1", 0))
        with lib.move_on_after(100) as timer:
            channel = client.connect(silent.socket.getsockname(), client_context())
            await channel.do_handshake()
        return [timer.cancelled_caught]


@scenario(autojump=True)
async def terrible_network(lib: ModuleType) -> Trace:
    # Both directions drop, duplicate and delay datagrams; every handshake still succeeds
    # and every message gets through (the application retries, as UDP apps must).
    rng = random.Random(0)

    def chaos(datagram: bytes) -> list[float]:
        action = rng.choices(["deliver", "drop", "dupe", "delay"], [0.7, 0.1, 0.1, 0.1])[0]
        if action == "drop":
            return []
        if action == "dupe":
            return [0, 0]
        if action == "delay":
            return [rng.random() * 3]
        return [0]

    results: list[bool] = []
    async with lib.open_nursery() as network:
        server = lib.DTLSEndpoint(ImperfectSocket(lib, network, chaos))
        with server:
            async with lib.open_nursery() as nursery:
                address = await start_echo_server(lib, nursery, server)
                for index in range(15):
                    with lib.DTLSEndpoint(ImperfectSocket(lib, network, chaos)) as client:
                        channel = client.connect(address, client_context())
                        await channel.do_handshake()
                        message = b"message %d" % index
                        while True:
                            with lib.move_on_after(10) as timer:
                                await channel.send(message)
                                while await channel.receive() != message:
                                    pass  # a late echo of an earlier attempt
                            if not timer.cancelled_caught:
                                break
                        results.append(True)
                nursery.cancel_scope.cancel()
        network.cancel_scope.cancel()
    return [len(results)]


@scenario()
async def explicit_small_mtu_is_respected(lib: ModuleType) -> Trace:
    mtu = 300
    async with lib.open_nursery() as network:

        def deliver(datagram: bytes) -> list[float]:
            return [0]

        server_socket = ImperfectSocket(lib, network, deliver)
        client_socket = ImperfectSocket(lib, network, deliver)
        with lib.DTLSEndpoint(server_socket) as server, lib.DTLSEndpoint(client_socket) as client:
            await server.socket.bind(("127.0.0.1", 0))

            async def small_mtu_echo(channel: Any) -> None:
                channel.set_ciphertext_mtu(mtu)
                await echo_handler(channel)

            async with lib.open_nursery() as nursery:
                await nursery.start(server.serve, server_context(), small_mtu_echo)
                channel = client.connect(server.socket.getsockname(), client_context())
                channel.set_ciphertext_mtu(mtu)
                await channel.do_handshake()
                await channel.send(b"hi")
                reply = await channel.receive()
                nursery.cancel_scope.cancel()
        network.cancel_scope.cancel()
    # The first ClientHello can't be fragmented; everything after it fits.
    sizes = client_socket.sent_sizes[1:] + server_socket.sent_sizes
    return [reply, max(sizes) <= mtu, len(server_socket.sent_sizes) > 3]


@scenario(autojump=True)
async def handshake_finds_the_minimum_network_mtu(lib: ModuleType) -> Trace:
    # The path drops datagrams above IPv4's minimum MTU: after two losses in a row the
    # handshake falls back to it. get_cleartext_mtu still follows set_ciphertext_mtu.
    trace: Trace = []
    limit = 576 - 28

    def small_path(datagram: bytes) -> list[float]:
        return [0] if len(datagram) <= limit else []

    async with lib.open_nursery() as network:
        with lib.DTLSEndpoint(ImperfectSocket(lib, network, small_path)) as server:
            async with lib.open_nursery() as nursery:
                address = await start_echo_server(lib, nursery, server)
                client_socket = ImperfectSocket(lib, network, small_path)
                with lib.DTLSEndpoint(client_socket) as client:
                    channel = client.connect(address, client_context())
                    channel.set_ciphertext_mtu(9999)
                    start = lib.current_time()
                    await channel.send(b"xyz")
                    trace.append(await channel.receive())
                    trace.append(channel.get_cleartext_mtu() > 9000)
                    trace.append(lib.current_time() - start > 2)
                nursery.cancel_scope.cancel()
        network.cancel_scope.cancel()
    return trace


@scenario(autojump=True)
async def incoming_buffer_overflow(lib: ModuleType) -> Trace:
    trace: Trace = []
    for buffer_size in [0, 3, 10]:
        with endpoint(lib) as server:
            async with lib.open_nursery() as nursery:
                address = await start_echo_server(lib, nursery, server)
                with endpoint(lib, incoming_packets_buffer=buffer_size) as client:
                    trace.append(client.incoming_packets_buffer)
                    channel = client.connect(address, client_context())
                    await channel.do_handshake()
                    for index in range(buffer_size + 5):
                        await channel.send(str(index).encode())
                        await lib.sleep(1)
                    trace.append(channel.statistics().incoming_packets_dropped_in_trio)
                    trace.append([await channel.receive() for _ in range(buffer_size)])
                    await channel.send(b"buffer clear now")
                    trace.append(await channel.receive())
                nursery.cancel_scope.cancel()
    return trace


@scenario(autojump=True)
async def client_restarts_its_handshake(lib: ModuleType) -> Trace:
    # The client gives up mid-handshake and starts over from the same address: the first
    # server channel breaks, and a new handler gets the new association.
    trace: Trace = []
    first_time = [True]
    with endpoint(lib) as server, endpoint(lib) as client:
        await server.socket.bind(("127.0.0.1", 0))
        async with lib.open_nursery() as nursery:

            async def handler(channel: Any) -> None:
                if first_time[0]:
                    first_time[0] = False
                    connect_scope.cancel()
                    await lib.sleep(0.5)
                    trace.append(("first handler", await outcome(channel.do_handshake)))
                else:
                    await channel.send(b"hello")

            await nursery.start(server.serve, server_context(), handler)
            with lib.CancelScope() as connect_scope:
                channel = client.connect(server.socket.getsockname(), client_context())
                await channel.do_handshake()
            trace.append(connect_scope.cancelled_caught)
            channel = client.connect(server.socket.getsockname(), client_context())
            trace.append(await channel.receive())
            await lib.sleep(10)
            nursery.cancel_scope.cancel()
    return trace


def _run(lib: ModuleType, name: str) -> Trace:
    fn = SCENARIOS[name]
    if name in AUTOJUMP:
        return lib.run(fn, lib, clock=lib.testing.MockClock(autojump_threshold=0))  # type: ignore[no-any-return]
    return lib.run(fn, lib)  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_trace_as_trio(name: str) -> None:
    trio_trace = _run(trio, name)
    our_trace = _run(nursery_io, name)
    assert trio_trace, "a scenario must record something"
    assert our_trace == trio_trace


# ----- nursery_io only -----


def test_public_names() -> None:
    for name in ("DTLSEndpoint", "DTLSChannel", "DTLSChannelStatistics"):
        assert name in nursery_io.__all__
        assert getattr(nursery_io, name) is getattr(_dtls, name)


def _valid_client_hello() -> bytes:
    return _raw_client_hellos()[1]


def test_client_hello_parser_raises_only_malformed_packet() -> None:
    hello = _valid_client_hello()
    assert _dtls_records.looks_like_client_hello(hello)
    sequence, cookie, rest = _dtls_records.parse_client_hello(hello)
    assert cookie == b""
    assert sequence == 0
    assert rest
    # Every truncation and every single-bit corruption either parses or raises
    # _MalformedPacket: nothing else may escape into the endpoint's reader task.
    rng = random.Random(1)
    candidates = [hello[:cut] for cut in range(len(hello))]
    for _ in range(2000):
        damaged = bytearray(hello)
        position = rng.randrange(len(damaged))
        damaged[position] ^= 1 << rng.randrange(8)
        candidates.append(bytes(damaged))
    parsed = 0
    for candidate in candidates:
        try:
            _dtls_records.parse_client_hello(candidate)
        except _dtls_records.MalformedPacket:
            continue
        parsed += 1
    assert 0 < parsed < len(candidates)


def test_cookie_binds_address_hello_and_time() -> None:
    async def main() -> None:
        key = bytes(32)
        cookie = _dtls_records.new_cookie(key, ("127.0.0.1", 1000), b"hello")
        assert len(cookie) == 32
        assert _dtls_records.cookie_is_valid(key, cookie, ("127.0.0.1", 1000), b"hello")
        assert not _dtls_records.cookie_is_valid(key, cookie, ("127.0.0.1", 1001), b"hello")
        assert not _dtls_records.cookie_is_valid(key, cookie, ("127.0.0.2", 1000), b"hello")
        assert not _dtls_records.cookie_is_valid(key, cookie, ("127.0.0.1", 1000), b"hellO")
        assert not _dtls_records.cookie_is_valid(
            bytes(31) + b"\x01", cookie, ("127.0.0.1", 1000), b"hello"
        )
        assert not _dtls_records.cookie_is_valid(key, cookie[:8], ("127.0.0.1", 1000), b"hello")
        # Valid for at least one 30 s period, at most two.
        await nursery_io.sleep(30)
        assert _dtls_records.cookie_is_valid(key, cookie, ("127.0.0.1", 1000), b"hello")
        await nursery_io.sleep(30)
        assert not _dtls_records.cookie_is_valid(key, cookie, ("127.0.0.1", 1000), b"hello")

    nursery_io.run(main, clock=nursery_io.testing.MockClock(autojump_threshold=0))


def test_flight_packing_round_trips_and_fits_the_mtu() -> None:
    body = bytes(range(256)) * 8
    flight: list[_dtls_records.FlightPart] = [
        _dtls_records.HandshakeMessage(b"\xfe\xfd", 2, 1, bytearray(body[:80])),
        _dtls_records.HandshakeMessage(b"\xfe\xfd", 11, 2, bytearray(body)),
        _dtls_records.HandshakeMessage(b"\xfe\xfd", 14, 3, bytearray()),
        _dtls_records.PlainRecord(b"\xfe\xfd", _dtls_records._CHANGE_CIPHER_SPEC, b"\x01"),
    ]
    for mtu in (100, 300, 1472):
        packer = _dtls_records.FlightPacker()
        packer.next_record_number = 7
        datagrams = packer.pack(flight, mtu)
        assert all(len(datagram) <= mtu for datagram in datagrams)
        numbers = [r.epoch_and_sequence for d in datagrams for r in _dtls_records._iter_records(d)]
        assert numbers == list(range(7, 7 + len(numbers)))
        assert _dtls_records.decode_flight(b"".join(datagrams)) == flight


def test_route_key_matches_what_recvfrom_reports() -> None:
    assert _dtls._route_key(("::1", 5, 0, 0)) == _dtls._route_key(("::1", 5))
    assert _dtls._route_key(("0:0::1", 5)) == _dtls._route_key(("::1", 5, 0, 0))
    assert _dtls._route_key(("127.0.0.1", 5)) != _dtls._route_key(("127.0.0.1", 6))
    assert _dtls._route_key(("example.com", 5)) == ("example.com", 5, 0)


@pytest.mark.skipif(not IPV6, reason="no IPv6 loopback")
async def test_ipv6_connect_with_a_two_tuple() -> None:
    # recvfrom reports ("::1", port, 0, 0); a channel made with ("::1", port) must still
    # get the replies (Trio would wait forever here).
    with endpoint(nursery_io, True) as server, endpoint(nursery_io, True) as client:
        async with nursery_io.open_nursery() as nursery:
            address = await start_echo_server(nursery_io, nursery, server, ipv6=True)
            channel = client.connect(address[:2], client_context())
            with nursery_io.fail_after(10):
                await channel.send(b"two-tuple")
                assert await channel.receive() == b"two-tuple"
            nursery.cancel_scope.cancel()


async def test_forgotten_endpoint_warns_and_its_reader_task_ends() -> None:
    before = nursery_io.lowlevel.current_statistics().tasks_living

    async def start_and_forget() -> int:
        forgotten = endpoint(nursery_io)
        with udp_socket(nursery_io) as target:
            await target.bind(("127.0.0.1", 0))
            channel = forgotten.connect(target.getsockname(), client_context())
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(channel.do_handshake)
                await nursery_io.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
        return nursery_io.lowlevel.current_statistics().tasks_living

    with pytest.warns(ResourceWarning, match="unclosed DTLS endpoint"):
        during = await start_and_forget()
        for _ in range(3):
            gc.collect()
    await nursery_io.testing.wait_all_tasks_blocked()
    assert during > before
    assert nursery_io.lowlevel.current_statistics().tasks_living == before


def test_forgotten_endpoint_after_the_run_just_warns() -> None:
    async def main() -> Any:
        return endpoint(nursery_io)

    forgotten = nursery_io.run(main)
    sock = forgotten.socket
    with pytest.warns(ResourceWarning, match="unclosed DTLS endpoint"):
        del forgotten
        gc.collect()
    sock.close()


async def test_endpoint_needs_a_run() -> None:
    sock = udp_socket(nursery_io)
    with sock:
        failed = []

        def outside() -> None:
            try:
                nursery_io.DTLSEndpoint(sock)
            except RuntimeError as exc:
                failed.append(exc)

        await nursery_io.to_thread.run_sync(outside)
    assert failed


async def test_replaced_channel_stays_broken() -> None:
    # Trio raises OpenSSL's "something wrong with peer's ClientHello" from the second use
    # of a replaced client channel; nursery_io keeps saying what happened.
    with endpoint(nursery_io) as server, endpoint(nursery_io) as client:
        async with nursery_io.open_nursery() as nursery:
            address = await start_echo_server(nursery_io, nursery, server)
            first = client.connect(address, client_context())
            client.connect(address, client_context())
            for use in (first.do_handshake, lambda: first.send(b"x"), first.receive):
                with pytest.raises(nursery_io.BrokenResourceError, match="^peer tore down"):
                    await use()
            nursery.cancel_scope.cancel()


async def test_cancelled_handshake_can_be_resumed() -> None:
    # Trio can't: its next do_handshake raises "something wrong with peer's ClientHello".
    # nursery_io picks the handshake up where it stopped, resending the pending flight.
    dropping = [True]

    def blackhole_at_first(datagram: bytes) -> list[float]:
        return [] if dropping[0] else [0]

    with endpoint(nursery_io) as server:
        async with nursery_io.open_nursery() as nursery:
            address = await start_echo_server(nursery_io, nursery, server)
            client_socket = ImperfectSocket(nursery_io, nursery, blackhole_at_first)
            with nursery_io.DTLSEndpoint(client_socket) as client:
                channel = client.connect(address, client_context())
                with nursery_io.move_on_after(0.05) as timer:
                    await channel.do_handshake(initial_retransmit_timeout=0.01)
                assert timer.cancelled_caught
                dropping[0] = False
                with nursery_io.fail_after(10):
                    await channel.do_handshake(initial_retransmit_timeout=0.01)
                    await channel.send(b"resumed")
                    assert await channel.receive() == b"resumed"
            nursery.cancel_scope.cancel()


def test_pyopenssl_is_imported_only_by_dtls_users() -> None:
    code = (
        "import sys, nursery_io\n"
        "assert 'OpenSSL' not in sys.modules, 'imported eagerly'\n"
        "sys.modules['OpenSSL'] = None  # as if not installed\n"
        "async def main():\n"
        "    sock = nursery_io.socket.socket(type=nursery_io.socket.SOCK_DGRAM)\n"
        "    with sock:\n"
        "        try:\n"
        "            nursery_io.DTLSEndpoint(sock)\n"
        "        except ImportError:\n"
        "            print('needs pyOpenSSL')\n"
        "nursery_io.run(main)\n"
    )
    # The nursery_io under test, whatever the environment's PYTHONPATH says.
    root = str(Path(nursery_io.__file__).resolve().parents[1])
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        env={**os.environ, "PYTHONPATH": root},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "needs pyOpenSSL\n"
