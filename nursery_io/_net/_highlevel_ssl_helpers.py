"""TLS over TCP in one call: ``open_ssl_over_tcp_stream``, ``open_ssl_over_tcp_listeners``
and ``serve_ssl_over_tcp``, the TLS versions of the TCP helpers."""

from __future__ import annotations

import ssl as _stdlib_ssl
from collections.abc import Awaitable, Callable
from typing import NoReturn

from .._core import TASK_STATUS_IGNORED, Nursery, TaskStatus
from ._highlevel_open_tcp_listeners import open_tcp_listeners
from ._highlevel_open_tcp_stream import DEFAULT_DELAY, open_tcp_stream
from ._highlevel_serve_listeners import serve_listeners
from ._highlevel_socket import SocketStream
from ._ssl import SSLStream
from ._ssl_listener import SSLListener, check_server_context

__all__ = ["open_ssl_over_tcp_listeners", "open_ssl_over_tcp_stream", "serve_ssl_over_tcp"]


async def open_ssl_over_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    https_compatible: bool = False,
    ssl_context: _stdlib_ssl.SSLContext | None = None,
    happy_eyeballs_delay: float | None = DEFAULT_DELAY,
) -> SSLStream[SocketStream]:
    """Connect to ``host``:``port`` over TCP (see :func:`open_tcp_stream`) and wrap the
    connection in a client-side :class:`SSLStream`.

    The server's certificate must be valid for ``host``, which is also sent for SNI.
    ``ssl_context`` defaults to :func:`ssl.create_default_context` (the system's trusted
    CAs, hostname checking on). Set ``https_compatible=True`` when talking to web servers
    (see :class:`SSLStream`). The handshake is not done here: it happens on first use, or
    call :meth:`SSLStream.do_handshake`.
    """
    tcp_stream = await open_tcp_stream(host, port, happy_eyeballs_delay=happy_eyeballs_delay)
    if ssl_context is None:
        ssl_context = _stdlib_ssl.create_default_context()
        # A context that ignores a missing close_notify would let a truncation attack pass
        # as a clean end of stream; some OpenSSL configurations switch that on.
        ssl_context.options &= ~_stdlib_ssl.OP_IGNORE_UNEXPECTED_EOF
    try:
        return SSLStream(
            tcp_stream, ssl_context, server_hostname=host, https_compatible=https_compatible
        )
    except BaseException:
        # A context the stream can't be built with (say, check_hostname without a usable
        # name) must not leak the connection.
        await tcp_stream.aclose()
        raise


async def open_ssl_over_tcp_listeners(
    port: int,
    ssl_context: _stdlib_ssl.SSLContext,
    *,
    host: str | bytes | None = None,
    https_compatible: bool = False,
    backlog: int | None = None,
) -> list[SSLListener[SocketStream]]:
    """Listen for TCP connections like :func:`open_tcp_listeners` (same ``port``,
    ``host`` and ``backlog``), and return the listeners wrapped in :class:`SSLListener`\\ s
    that serve TLS with ``ssl_context``."""
    check_server_context(ssl_context)  # before binding anything
    tcp_listeners = await open_tcp_listeners(port, host=host, backlog=backlog)
    return [
        SSLListener(listener, ssl_context, https_compatible=https_compatible)
        for listener in tcp_listeners
    ]


async def serve_ssl_over_tcp(
    handler: Callable[[SSLStream[SocketStream]], Awaitable[object]],
    port: int,
    ssl_context: _stdlib_ssl.SSLContext,
    *,
    host: str | bytes | None = None,
    https_compatible: bool = False,
    backlog: int | None = None,
    handler_nursery: Nursery | None = None,
    task_status: TaskStatus[list[SSLListener[SocketStream]]] = TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve TLS over TCP forever: :func:`open_ssl_over_tcp_listeners`, then
    :func:`serve_listeners`, which runs ``await handler(stream)`` in a new task for each
    connection.

    Meant for ``nursery.start(serve_ssl_over_tcp, handler, port, ssl_context)``, which
    returns the listeners once they accept (handy with ``port=0``). Each handler gets an
    :class:`SSLStream` whose handshake hasn't happened yet; a client that fails the
    handshake makes the handler's first send or receive raise
    :class:`~nursery_io.BrokenResourceError`, which, like any exception from a handler,
    propagates out of the handler nursery unless the handler catches it. The stream is
    closed (forcefully, without ``close_notify``) when the handler returns: call its
    ``aclose()`` yourself for a graceful goodbye.
    """
    listeners = await open_ssl_over_tcp_listeners(
        port, ssl_context, host=host, https_compatible=https_compatible, backlog=backlog
    )
    await serve_listeners(
        handler, listeners, handler_nursery=handler_nursery, task_status=task_status
    )
