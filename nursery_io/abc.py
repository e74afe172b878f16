"""Abstract interfaces: clocks, instruments, resources, byte streams, channels, listeners,
and the hooks for replacing hostname resolution and socket creation.

Implement these to make your own objects interchangeable with nursery_io's: anything that
accepts a :class:`Stream` works with a TCP connection, a TLS connection, an in-memory test
stream or a :class:`~nursery_io.StapledStream` alike.
"""

from __future__ import annotations

from abc import ABCMeta as _ABCMeta
from abc import abstractmethod
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Self, TypeVar
from typing import Any as _Any

from ._core import EndOfChannel
from ._core._abc_clock import Clock, Instrument

if TYPE_CHECKING:
    # Annotations only: a program that uses files but no sockets doesn't import socket.
    import socket as _stdlib_socket

__all__ = [
    "AsyncResource",
    "Channel",
    "Clock",
    "HalfCloseableStream",
    "HostnameResolver",
    "Instrument",
    "Listener",
    "ReceiveChannel",
    "ReceiveStream",
    "SendChannel",
    "SendStream",
    "SocketFactory",
    "Stream",
]

SendType_contra = TypeVar("SendType_contra", contravariant=True)
ReceiveType_co = TypeVar("ReceiveType_co", covariant=True)
T = TypeVar("T")
T_resource_co = TypeVar("T_resource_co", bound="AsyncResource", covariant=True)


class AsyncResource(metaclass=_ABCMeta):
    """Something that must be closed with ``await resource.aclose()`` when you are done.

    It is also an async context manager: ``async with resource:`` closes it on the way out,
    whatever happens inside the block.
    """

    __slots__ = ()

    @abstractmethod
    async def aclose(self) -> None:
        """Close the resource and release what it holds.

        Implementations must be idempotent (closing twice is fine) and must close the
        resource even when the call is cancelled: a cancelled ``aclose`` may skip a graceful
        shutdown, but it still leaves the resource closed. Pending and later operations on
        a closed resource raise :class:`~nursery_io.ClosedResourceError`.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class SendStream(AsyncResource):
    """The sending half of a reliable, ordered byte stream."""

    __slots__ = ()

    @abstractmethod
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send every byte of ``data``, waiting for buffer space as needed.

        If the call is cancelled, some unknown prefix of ``data`` may have been sent and
        the stream should be considered unusable. Raises ``BusyResourceError`` if another
        task is already in ``send_all`` or ``wait_send_all_might_not_block`` on this
        stream, ``ClosedResourceError`` if this stream was closed (also while the call is
        waiting), ``BrokenResourceError`` if the peer or the transport failed.
        """

    @abstractmethod
    async def wait_send_all_might_not_block(self) -> None:
        """Return when a ``send_all`` call would probably not have to wait.

        A hint, not a promise: it may return early (spuriously), but should not sleep
        while sending is possible. Same conflict and closed-stream errors as ``send_all``.
        """


class ReceiveStream(AsyncResource):
    """The receiving half of a reliable, ordered byte stream.

    ``async for chunk in stream`` receives chunks until the end of the stream.
    """

    __slots__ = ()

    @abstractmethod
    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Wait until some data arrives and return at most ``max_bytes`` of it.

        Returns an empty bytes object only at the end of the stream (the peer closed its
        sending side); after that, every call returns empty. ``max_bytes`` must be >= 1 if
        given; ``None`` lets the implementation pick a size. Raises ``BusyResourceError``
        if another task is already receiving, ``ClosedResourceError`` if this stream was
        closed, ``BrokenResourceError`` if the transport failed.
        """

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes | bytearray:
        chunk = await self.receive_some()
        if not chunk:
            raise StopAsyncIteration
        return chunk


class Stream(SendStream, ReceiveStream):
    """A bidirectional byte stream: both a :class:`SendStream` and a :class:`ReceiveStream`.

    ``aclose`` closes both directions.
    """

    __slots__ = ()


class HalfCloseableStream(Stream):
    """A :class:`Stream` whose sending side can be closed on its own."""

    __slots__ = ()

    @abstractmethod
    async def send_eof(self) -> None:
        """Tell the peer that nothing more will be sent, while still allowing receiving.

        The peer's ``receive_some`` then returns empty once it has read everything sent
        before. Calling it again does nothing; ``send_all`` afterwards raises
        ``ClosedResourceError``. Conflicts with a concurrent ``send_all`` like ``send_all``
        does.
        """


class Listener(AsyncResource, Generic[T_resource_co]):
    """Something that accepts incoming connections, each an :class:`AsyncResource`."""

    __slots__ = ()

    @abstractmethod
    async def accept(self) -> T_resource_co:
        """Wait for the next incoming connection and return it.

        Raises ``BusyResourceError`` if another task is already accepting,
        ``ClosedResourceError`` if the listener was closed.
        """


class SendChannel(AsyncResource, Generic[SendType_contra]):
    """The sending end of a channel of Python objects."""

    __slots__ = ()

    @abstractmethod
    async def send(self, value: SendType_contra) -> None:
        """Send ``value``, waiting until the channel can take it.

        Raises ``BrokenResourceError`` if every receiving end is closed,
        ``ClosedResourceError`` if this end was closed (also while waiting).
        """


class ReceiveChannel(AsyncResource, Generic[ReceiveType_co]):
    """The receiving end of a channel of Python objects.

    ``async for value in channel`` receives until the channel ends (every sending end was
    closed and the buffer is empty).
    """

    __slots__ = ()

    @abstractmethod
    async def receive(self) -> ReceiveType_co:
        """Wait for the next value and return it.

        Raises :class:`~nursery_io.EndOfChannel` once every sending end is closed and
        nothing is left, ``ClosedResourceError`` if this end was closed (also while
        waiting).
        """

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ReceiveType_co:
        try:
            return await self.receive()
        except EndOfChannel:
            raise StopAsyncIteration from None


class Channel(SendChannel[T], ReceiveChannel[T]):
    """A bidirectional channel: both a :class:`SendChannel` and a :class:`ReceiveChannel`."""

    __slots__ = ()


class HostnameResolver(metaclass=_ABCMeta):
    """Replaces how ``nursery_io.socket`` resolves names; install one with
    ``nursery_io.socket.set_custom_hostname_resolver`` (useful for tests and for custom
    DNS)."""

    __slots__ = ()

    @abstractmethod
    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[
        tuple[
            _stdlib_socket.AddressFamily,
            _stdlib_socket.SocketKind,
            int,
            str,
            tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes],
        ]
    ]:
        """Resolve like :func:`socket.getaddrinfo`. ``host`` arrives already IDNA-encoded
        (bytes) and numeric addresses never reach the resolver."""

    @abstractmethod
    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> tuple[str, str]:
        """Reverse-resolve like :func:`socket.getnameinfo`."""


class SocketFactory(metaclass=_ABCMeta):
    """Replaces how ``nursery_io.socket.socket()`` creates sockets; install one with
    ``nursery_io.socket.set_custom_socket_factory``."""

    __slots__ = ()

    @abstractmethod
    def socket(
        self,
        family: _stdlib_socket.AddressFamily | int | None = None,
        type: _stdlib_socket.SocketKind | int | None = None,
        proto: int | None = None,
    ) -> _Any:
        """Return a new ``nursery_io.socket.SocketType`` (typed ``Any`` here so this module
        does not depend on the socket module)."""
