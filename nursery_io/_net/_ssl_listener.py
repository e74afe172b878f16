"""TLS servers: :class:`SSLListener`, which wraps each accepted connection in a server-side
:class:`~nursery_io.SSLStream`, and the check that a context can serve at all."""

from __future__ import annotations

import ssl as _stdlib_ssl
from typing import TypeVar

from .._core._util import final
from .._highlevel_generic import aclose_forcefully
from ..abc import Listener, Stream
from ._ssl import SSLStream, check_context

__all__ = ["SSLListener", "check_server_context"]

T_Stream = TypeVar("T_Stream", bound=Stream)


def check_server_context(ssl_context: object) -> None:
    """Refuse what can never serve TLS, before anything is opened or accepted."""
    check_context(ssl_context)
    assert isinstance(ssl_context, _stdlib_ssl.SSLContext)
    if ssl_context.protocol == _stdlib_ssl.PROTOCOL_TLS_CLIENT:
        raise ValueError(
            "this ssl_context is for clients (PROTOCOL_TLS_CLIENT, as from "
            "ssl.create_default_context()); a server needs "
            "ssl.create_default_context(ssl.Purpose.CLIENT_AUTH) or PROTOCOL_TLS_SERVER"
        )


@final
class SSLListener(Listener[SSLStream[T_Stream]]):
    """A :class:`~nursery_io.abc.Listener` that wraps every connection accepted by
    ``transport_listener`` in a server-side :class:`SSLStream` using ``ssl_context``.

    ``accept`` does not do the handshake (so a slow or silent client can't hold up the
    accept loop): it happens on the stream's first use, in the task that handles it.
    ``https_compatible`` is passed on to each stream. The ``transport_listener``
    attribute is the wrapped listener; :meth:`aclose` closes it.
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_https_compatible",
        "_ssl_context",
        "transport_listener",
    )

    def __init__(
        self,
        transport_listener: Listener[T_Stream],
        ssl_context: _stdlib_ssl.SSLContext,
        *,
        https_compatible: bool = False,
    ) -> None:
        check_server_context(ssl_context)
        self.transport_listener = transport_listener
        self._ssl_context = ssl_context
        self._https_compatible = https_compatible

    def __repr__(self) -> str:
        return f"<nursery_io.SSLListener over {self.transport_listener!r}>"

    async def accept(self) -> SSLStream[T_Stream]:
        """Accept the next connection and return it as a server-side :class:`SSLStream`."""
        transport_stream = await self.transport_listener.accept()
        try:
            return SSLStream(
                transport_stream,
                self._ssl_context,
                server_side=True,
                https_compatible=self._https_compatible,
            )
        except BaseException:
            await aclose_forcefully(transport_stream)
            raise

    async def aclose(self) -> None:
        """Close the wrapped listener."""
        await self.transport_listener.aclose()
