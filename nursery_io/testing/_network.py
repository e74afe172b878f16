"""Connecting to a listener in tests."""

from __future__ import annotations

import socket as _stdlib_socket

from .. import socket as nsocket
from .._net._highlevel_socket import SocketListener, SocketStream

__all__ = ["open_stream_to_socket_listener"]

# A wildcard bind address isn't something one can connect to; use loopback instead.
_CONNECTABLE = {"0.0.0.0": "127.0.0.1", "::": "::1"}


async def open_stream_to_socket_listener(socket_listener: SocketListener) -> SocketStream:
    """Connect to ``socket_listener`` and return the client end as a :class:`SocketStream`.

    Works for TCP listeners (a wildcard address is replaced by loopback) and Unix-domain
    ones. Typical use: ``listeners = await nursery.start(serve_tcp, handler, 0)``, then
    ``await open_stream_to_socket_listener(listeners[0])``.
    """
    family = socket_listener.socket.family
    address = socket_listener.socket.getsockname()
    if family in (_stdlib_socket.AF_INET, _stdlib_socket.AF_INET6):
        host, *rest = address
        address = (_CONNECTABLE.get(host, host), *rest)
    sock = nsocket.socket(family, _stdlib_socket.SOCK_STREAM)
    try:
        await sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return SocketStream(sock)
