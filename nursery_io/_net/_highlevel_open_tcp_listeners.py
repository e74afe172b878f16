"""``open_tcp_listeners`` and ``serve_tcp``: listen for TCP connections on every address of
a host (by default, every local interface, IPv4 and IPv6)."""

from __future__ import annotations

import errno
import socket as _stdlib_socket
from collections.abc import Awaitable, Callable
from typing import NoReturn

from .._core import TASK_STATUS_IGNORED, Nursery, TaskStatus
from . import _socket as nsocket
from ._highlevel_serve_listeners import serve_listeners
from ._highlevel_socket import SocketListener, SocketStream

__all__ = ["open_tcp_listeners", "serve_tcp"]

# The kernel stores the backlog in 16 bits without overflow checks on some systems, and Linux
# silently caps it at net.core.somaxconn anyway: ask for "as much as allowed".
_MAX_BACKLOG = 0xFFFF


def _compute_backlog(backlog: int | None) -> int:
    if backlog is None:
        return _MAX_BACKLOG
    if not isinstance(backlog, int):
        raise TypeError(f"backlog must be an int or None, not {backlog!r}")
    return min(backlog, _MAX_BACKLOG)


async def open_tcp_listeners(
    port: int, *, host: str | bytes | None = None, backlog: int | None = None
) -> list[SocketListener]:
    """Create listening TCP sockets on ``port`` for every address of ``host``.

    ``host=None`` means every local interface: typically one IPv4 (``0.0.0.0``) and one
    IPv6 (``::``) listener. IPv6 sockets are made ``IPV6_V6ONLY`` so the two don't clash,
    and ``SO_REUSEADDR`` is set so a restarted server can bind at once. With ``port=0``
    the kernel picks a free port *per listener*, so two listeners may get different ports;
    read them from ``listener.socket.getsockname()``.

    ``backlog`` caps the queue of connections not yet accepted (default: the system
    maximum). Returns a list of :class:`SocketListener`; if any one fails, all are closed
    and the error propagates.
    """
    # getaddrinfo treats port None and "" inconsistently across systems: require an int.
    if not isinstance(port, int):
        raise TypeError(f"port must be an int not {port!r}")
    backlog = _compute_backlog(backlog)
    addresses = await nsocket.getaddrinfo(
        host, port, type=_stdlib_socket.SOCK_STREAM, flags=_stdlib_socket.AI_PASSIVE
    )
    listeners: list[SocketListener] = []
    unsupported: list[OSError] = []
    try:
        for family, type_, proto, _, sockaddr in addresses:
            try:
                sock = nsocket.socket(family, type_, proto)
            except OSError as exc:
                if exc.errno != errno.EAFNOSUPPORT:
                    raise
                # A kernel without IPv6 (say) still resolves "::": skip that family as long
                # as some other one works.
                unsupported.append(exc)
                continue
            try:
                sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_REUSEADDR, 1)
                if family == _stdlib_socket.AF_INET6:
                    sock.setsockopt(_stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_V6ONLY, 1)
                await sock.bind(sockaddr)
                sock.listen(backlog)
                listeners.append(SocketListener(sock))
            except BaseException:
                sock.close()
                raise
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    if unsupported and not listeners:
        message = (
            "This system doesn't support any of the kinds of socket that that address could use"
        )
        raise OSError(errno.EAFNOSUPPORT, message) from ExceptionGroup(message, unsupported)
    return listeners


async def serve_tcp(
    handler: Callable[[SocketStream], Awaitable[object]],
    port: int,
    *,
    host: str | bytes | None = None,
    backlog: int | None = None,
    handler_nursery: Nursery | None = None,
    task_status: TaskStatus[list[SocketListener]] = TASK_STATUS_IGNORED,
) -> NoReturn:
    """Listen on ``port`` (see :func:`open_tcp_listeners`) and serve each connection by
    calling ``await handler(stream)`` in its own task, forever.

    Meant for ``nursery.start(serve_tcp, handler, port)``, which returns the list of
    listeners once they are accepting (handy with ``port=0``). The stream is closed when
    the handler returns. See :func:`serve_listeners` for ``handler_nursery`` and for what
    happens when accepting fails.
    """
    listeners = await open_tcp_listeners(port, host=host, backlog=backlog)
    await serve_listeners(
        handler, listeners, handler_nursery=handler_nursery, task_status=task_status
    )
