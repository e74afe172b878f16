"""``open_unix_socket``: connect to a Unix-domain stream socket."""

from __future__ import annotations

import os
import socket as _stdlib_socket

from . import _socket as nsocket
from ._highlevel_socket import SocketStream

__all__ = ["open_unix_socket"]


async def open_unix_socket(
    filename: str | bytes | os.PathLike[str] | os.PathLike[bytes],
) -> SocketStream:
    """Connect to the Unix-domain stream socket at path ``filename``; return a
    :class:`SocketStream`.

    A name starting with a NUL byte is in Linux's abstract namespace. Raises the
    :class:`OSError` from ``connect`` (``FileNotFoundError``, ``ConnectionRefusedError``,
    ...) if nobody listens there.
    """
    sock = nsocket.socket(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_STREAM)
    try:
        await sock.connect(os.fspath(filename))
    except BaseException:
        sock.close()
        raise
    return SocketStream(sock)
