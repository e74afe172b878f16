"""UDP through the socket API."""

from __future__ import annotations

import socket as stdlib_socket
from typing import Any

import pytest

import nursery_io
import nursery_io.socket as nsocket
from nursery_io.abc import HostnameResolver
from nursery_io.testing import wait_all_tasks_blocked


def ipv6_loopback_works() -> bool:
    if not stdlib_socket.has_ipv6:
        return False
    try:
        with stdlib_socket.socket(stdlib_socket.AF_INET6, stdlib_socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def udp_pair(family: int = stdlib_socket.AF_INET, host: str = "127.0.0.1") -> Any:
    a = nsocket.socket(family, stdlib_socket.SOCK_DGRAM)
    b = nsocket.socket(family, stdlib_socket.SOCK_DGRAM)
    await a.bind((host, 0))
    await b.bind((host, 0))
    return a, b


async def test_sendto_recvfrom() -> None:
    a, b = await udp_pair()
    with a, b:
        assert await a.sendto(b"datagram", b.getsockname()) == 8
        data, sender = await b.recvfrom(100)
        assert (data, sender) == (b"datagram", a.getsockname())
        await b.sendto(b"reply", 0, sender)
        buf = bytearray(10)
        nbytes, sender = await a.recvfrom_into(buf)
        assert (bytes(buf[:nbytes]), sender) == (b"reply", b.getsockname())
        with pytest.raises(TypeError):
            await a.sendto(b"x")  # type: ignore[call-overload]


async def test_datagram_boundaries_and_truncation() -> None:
    a, b = await udp_pair()
    with a, b:
        for message in (b"one", b"two!", b"three"):
            await a.sendto(message, b.getsockname())
        assert [(await b.recvfrom(100))[0] for _ in range(3)] == [b"one", b"two!", b"three"]
        await a.sendto(b"0123456789", b.getsockname())
        assert (await b.recvfrom(4))[0] == b"0123"  # the rest of the datagram is dropped


async def test_connected_udp_send_recv_and_sendmsg() -> None:
    a, b = await udp_pair()
    with a, b:
        await a.connect(b.getsockname())
        await a.send(b"connected")
        assert await b.recv(100) == b"connected"
        await b.sendmsg([b"to ", b"a"], [], 0, a.getsockname())
        data, _, _, address = await a.recvmsg(100)
        assert (data, address) == (b"to a", b.getsockname())


async def test_recvfrom_waits() -> None:
    a, b = await udp_pair()
    with a, b:
        got: list[bytes] = []
        async with nursery_io.open_nursery() as nursery:

            async def receiver() -> None:
                got.append((await b.recvfrom(100))[0])

            nursery.start_soon(receiver)
            await wait_all_tasks_blocked()
            assert got == []
            await a.sendto(b"late", b.getsockname())
        assert got == [b"late"]


class OneNameResolver(HostnameResolver):
    calls = 0

    async def getaddrinfo(  # type: ignore[override]
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        OneNameResolver.calls += 1
        assert host == b"peer.test"
        return [(stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port))]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> tuple[str, str]:
        raise NotImplementedError


async def test_sendto_resolves_names() -> None:
    nsocket.set_custom_hostname_resolver(OneNameResolver())
    a, b = await udp_pair()
    with a, b:
        await a.sendto(b"by name", ("peer.test", b.getsockname()[1]))
        assert (await b.recvfrom(100))[0] == b"by name"
        # numeric addresses skip the resolver
        await a.sendto(b"by number", b.getsockname())
        assert (await b.recvfrom(100))[0] == b"by number"
    assert OneNameResolver.calls == 1


@pytest.mark.skipif(not ipv6_loopback_works(), reason="no IPv6 loopback here")
async def test_udp_ipv6() -> None:
    a, b = await udp_pair(stdlib_socket.AF_INET6, "::1")
    with a, b:
        await a.sendto(b"six", b.getsockname())
        data, sender = await b.recvfrom(100)
        assert data == b"six"
        assert sender[:2] == a.getsockname()[:2]


async def test_cancelled_recvfrom_loses_nothing() -> None:
    a, b = await udp_pair()
    with a, b:
        await a.sendto(b"kept", b.getsockname())
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            await b.recvfrom(100)
        assert (await b.recvfrom(100))[0] == b"kept"
