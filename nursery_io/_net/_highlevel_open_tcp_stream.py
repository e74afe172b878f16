"""``open_tcp_stream``: connect to a host by name, racing its addresses (Happy Eyeballs).

A name often resolves to several addresses, some IPv6 and some IPv4, and some of them may
be unreachable in ways that only show up as a long connect timeout. Happy Eyeballs
(RFC 6555, as Chrome and Trio do it) avoids paying that timeout: try the addresses in
order, but start the next attempt as soon as the previous one fails or has had
``happy_eyeballs_delay`` seconds to succeed, keep the earlier attempts running, and take
whichever connects first.
"""

from __future__ import annotations

import socket as _stdlib_socket
from collections.abc import Generator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .._core import open_nursery
from .._sync import Event
from .._timeouts import move_on_after
from . import _socket as nsocket
from ._highlevel_socket import SocketStream
from ._socket_reexports import IP_BIND_ADDRESS_NO_PORT

if TYPE_CHECKING:
    from ._socket import SocketType

__all__ = ["open_tcp_stream"]

#: Seconds to give one connection attempt before starting the next one (RFC 8305
#: recommends 250 ms; Trio uses the same).
DEFAULT_DELAY = 0.250


def format_host_port(host: str | bytes, port: int | str) -> str:
    """``host:port``, with brackets around IPv6 literals."""
    if isinstance(host, bytes):
        host = host.decode("ascii", errors="replace")
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def reorder_for_rfc_6555(targets: list[Any]) -> None:
    """Move the first address of the *other* family to second place (RFC 6555 §5.4), in
    place; everything else keeps the resolver's order (RFC 6724 preference).

    If the preferred family is unreachable, the second attempt (started after one delay)
    then already tries the other family.
    """
    for index in range(1, len(targets)):
        if targets[index][0] != targets[0][0]:
            targets.insert(1, targets.pop(index))
            break


@contextmanager
def _close_all() -> Generator[set[SocketType], None, None]:
    sockets: set[SocketType] = set()
    try:
        yield sockets
    finally:
        errors: list[BaseException] = []
        for sock in sockets:
            try:
                sock.close()
            except BaseException as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise BaseExceptionGroup("errors closing the losing sockets", errors)


async def open_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    happy_eyeballs_delay: float | None = DEFAULT_DELAY,
    local_address: str | None = None,
) -> SocketStream:
    """Connect to ``host``:``port`` over TCP and return a :class:`SocketStream`.

    ``host`` is a name or a numeric IPv4/IPv6 address. All its addresses are tried with
    Happy Eyeballs (RFC 6555): the first address of the other family moves up to second
    place; a new attempt starts whenever the previous one failed or
    ``happy_eyeballs_delay`` seconds passed (``None`` means the default of 0.25 s;
    ``math.inf`` tries one address at a time); the first connection to succeed wins and
    every other attempt is cancelled and its socket closed.

    ``local_address`` binds the outgoing socket to that local IP address (the port is
    picked by the kernel at connect time).

    If every attempt fails, raises :class:`OSError` whose ``__cause__`` is an
    :class:`ExceptionGroup` with the error of each attempt. To set a timeout on the whole
    thing, wrap the call in :func:`fail_after` / :func:`move_on_after`.
    """
    # getaddrinfo would read None as "this machine": insist on a name.
    if not isinstance(host, str | bytes):
        raise ValueError(f"host must be str or bytes, not {host!r}")
    if not isinstance(port, int):
        raise TypeError(f"port must be int, not {port!r}")
    if happy_eyeballs_delay is None:
        happy_eyeballs_delay = DEFAULT_DELAY

    targets = await nsocket.getaddrinfo(host, port, type=_stdlib_socket.SOCK_STREAM)
    if not targets:
        raise OSError(f"no results found for hostname lookup: {format_host_port(host, port)}")
    reorder_for_rfc_6555(targets)

    failures: list[OSError] = []
    winner: SocketType | None = None

    async def attempt(
        family: int, type_: int, proto: int, sockaddr: Any, failed: Event, sockets: set[Any]
    ) -> None:
        nonlocal winner
        try:
            sock = nsocket.socket(family, type_, proto)
            sockets.add(sock)
            if local_address is not None:
                # Binding picks a local port at once, and it must then be unique for every
                # destination. IP_BIND_ADDRESS_NO_PORT defers that choice to connect(), where
                # the full 4-tuple is known, so many connections can share local ports.
                try:
                    sock.setsockopt(_stdlib_socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                except OSError:
                    pass
                try:
                    await sock.bind((local_address, 0))
                except OSError as exc:
                    # Trio's message, plus the reason; a plain OSError as in Trio, but
                    # keeping the errno.
                    reason = f" ({exc.strerror})" if exc.strerror else ""
                    error = OSError(
                        f"local_address={local_address!r} is incompatible with remote "
                        f"address {sockaddr!r}{reason}"
                    )
                    error.errno = exc.errno
                    raise error from None
            await sock.connect(sockaddr)
        except OSError as exc:
            failures.append(exc)
            failed.set()
            return
        # Only one attempt can get here per nursery turn, but a second one may connect in
        # the same batch before the cancellation lands: the first one wins.
        if winner is None:
            winner = sock
            nursery.cancel_scope.cancel(reason="successfully found a socket")

    with _close_all() as sockets:
        async with open_nursery() as nursery:
            for family, type_, proto, _, sockaddr in targets:
                failed = Event()
                nursery.start_soon(attempt, family, type_, proto, sockaddr, failed, sockets)
                # Give this attempt until the delay, or until it fails, before the next.
                with move_on_after(happy_eyeballs_delay):
                    await failed.wait()
        if winner is None:
            message = f"all attempts to connect to {format_host_port(host, port)} failed"
            # A plain OSError, as in Trio (not, say, ConnectionRefusedError); one errno
            # shared by every attempt (typically ECONNREFUSED) is worth passing on.
            error = OSError(message)
            codes = {exc.errno for exc in failures}
            if len(codes) == 1:
                error.errno = codes.pop()
            raise error from ExceptionGroup(message, failures)
        # Wrapping can still fail (setsockopt); until it succeeds the winner stays in
        # ``sockets``, so it is closed on the way out like the losers.
        stream = SocketStream(winner)
        sockets.remove(winner)
        return stream
