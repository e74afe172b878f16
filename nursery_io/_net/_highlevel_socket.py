"""Streams over connected sockets, and listeners that produce them."""

from __future__ import annotations

import errno
import socket as _stdlib_socket
from typing import TYPE_CHECKING, Final, overload

from .._core import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    wait_readable,
)
from .._core._util import final
from ..abc import HalfCloseableStream, Listener
from ._nonblocking import stream_error, write_rest_when_ready
from ._socket import SocketType, _SocketType

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["SocketListener", "SocketStream"]

#: What ``receive_some()`` asks the kernel for when the caller gives no size.
DEFAULT_RECEIVE_SIZE: Final = 65536

_BUSY_SENDING: Final = "another task is currently sending data on this SocketStream"
_BROKEN_BY_SEND_FILE: Final = (
    "this SocketStream is broken: a send_file() on it stopped part-way through the file"
)

# errnos that mean "this fd is not (any longer) an open socket".
_CLOSED_ERRNOS: Final = frozenset({errno.EBADF, errno.ENOTSOCK})

# accept(2) errors that concern only the one incoming connection (it died in the queue, or
# the network under it went away); the listener itself is fine, so we accept the next one.
_ACCEPT_RETRY_ERRNOS: Final = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPERM,
        errno.EPROTO,
        errno.ENETDOWN,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
        errno.ENOSR,
        errno.ESOCKTNOSUPPORT,
        errno.EPROTONOSUPPORT,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
    }
)


def _stream_error(exc: OSError) -> Exception:
    """The stream-level exception for a socket's ``exc`` (see ``stream_error``)."""
    return stream_error(
        exc, _CLOSED_ERRNOS, "this socket was already closed", "socket connection broken"
    )


@final
class SocketStream(HalfCloseableStream):
    """A :class:`~nursery_io.abc.HalfCloseableStream` over a connected ``SOCK_STREAM``
    socket (TCP, or a Unix-domain stream socket).

    The stream owns the socket (available as the ``socket`` attribute) and closes it in
    :meth:`aclose`. For TCP it switches on ``TCP_NODELAY``: ``send_all`` hands over whole
    messages, so Nagle's algorithm would only add latency. Operating-system errors come out
    as :class:`~nursery_io.BrokenResourceError` (peer reset, broken pipe, ...) or
    :class:`~nursery_io.ClosedResourceError` (the socket was closed).
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_raw",
        "_receiving",
        "_send_broken",
        "_sending",
        "socket",
    )

    def __init__(self, socket: SocketType) -> None:
        if not isinstance(socket, SocketType):
            raise TypeError(
                "SocketStream requires a Trio socket object (a nursery_io.socket.SocketType, "
                f"not {type(socket).__name__}; wrap stdlib sockets with "
                "nursery_io.socket.from_stdlib_socket())"
            )
        if socket.type != _stdlib_socket.SOCK_STREAM:
            raise ValueError("SocketStream requires a SOCK_STREAM socket")
        self.socket = socket
        # Our own sockets are driven directly (the hot path of every stream); a custom
        # SocketType (a test fake, say) goes through its public methods.
        self._raw: _stdlib_socket.socket | None = (
            socket._sock if type(socket) is _SocketType else None
        )
        self._sending = False
        self._receiving = False
        # Set when nursery_io.send_file() stopped part-way (see there): sends then fail.
        self._send_broken = False
        try:
            # Fails with EOPNOTSUPP on Unix-domain sockets, where it means nothing anyway.
            self.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, True)
        except OSError:
            pass
        try:
            # Keep at most ~16 KiB of unsent data in the kernel: send_all then blocks earlier,
            # so data that is still ours to cancel isn't committed to the wire long in advance.
            self.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NOTSENT_LOWAT, 2**14)
        except OSError:
            pass

    # ----- sending -----

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``. If cancelled, a prefix of it may have been sent."""
        if self.socket.did_shutdown_SHUT_WR:
            raise ClosedResourceError("can't send data after sending EOF")
        self._claim_sending()
        try:
            raw = self._raw
            if raw is None:
                await self._send_all_generic(data)
                return
            # Our own socket: straight to the syscall. This is write_all_when_ready's first
            # step written out here: the hottest path of every stream, where one coroutine
            # frame less per call is measurable (benchmarks: tcp_echo).
            size = len(data) if type(data) is bytes or type(data) is bytearray else None
            await checkpoint_if_cancelled()
            try:
                sent = raw.send(data)
            except BlockingIOError:
                sent = 0
            except BaseException as exc:
                await cancel_shielded_checkpoint()
                if isinstance(exc, OSError):
                    raise _stream_error(exc)  # noqa: B904  (the cause is set inside)
                raise
            if sent == (memoryview(data).nbytes if size is None else size):
                await cancel_shielded_checkpoint()
                return
            try:
                await write_rest_when_ready(raw, raw.send, data, sent)
            except OSError as exc:
                raise _stream_error(exc)  # noqa: B904  (the cause is set inside)
        finally:
            self._sending = False

    def _claim_sending(self) -> None:
        if self._sending:
            raise BusyResourceError(_BUSY_SENDING)
        if self._send_broken:
            raise BrokenResourceError(_BROKEN_BY_SEND_FILE)
        self._sending = True

    async def _send_all_generic(self, data: bytes | bytearray | memoryview) -> None:
        try:
            with memoryview(data) as items, items.cast("B") as view:
                if not view:
                    if self.socket.fileno() == -1:
                        raise ClosedResourceError("socket was already closed")
                    await checkpoint()
                    return
                sent = 0
                while sent < len(view):
                    with view[sent:] as rest:
                        sent += await self.socket.send(rest)
        except OSError as exc:
            raise _stream_error(exc)  # noqa: B904  (the cause is set inside)

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise BusyResourceError(_BUSY_SENDING)
        self._sending = True
        try:
            if self.socket.fileno() == -1:
                raise ClosedResourceError("this socket was already closed")
            try:
                await self.socket.wait_writable()
            except OSError as exc:
                raise _stream_error(exc)  # noqa: B904  (the cause is set inside)
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """Shut down the sending direction (``SHUT_WR``); the peer then sees end-of-stream.

        Idempotent. Receiving keeps working.
        """
        self._claim_sending()
        try:
            await checkpoint()
            if self.socket.did_shutdown_SHUT_WR:
                return
            try:
                self.socket.shutdown(_stdlib_socket.SHUT_WR)
            except OSError as exc:
                raise _stream_error(exc)  # noqa: B904  (the cause is set inside)
        finally:
            self._sending = False

    # ----- receiving -----

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return up to ``max_bytes`` bytes (default 64 KiB); ``b""`` means end of stream.

        A cancelled call receives nothing: no data is lost.
        """
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        elif max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise BusyResourceError(
                "another task is already reading / writing this fd (receiving on this SocketStream)"
            )
        self._receiving = True
        try:
            raw = self._raw
            if raw is None:
                try:
                    return await self.socket.recv(max_bytes)
                except OSError as exc:
                    raise _stream_error(exc)  # noqa: B904  (the cause is set inside)
            # Our own socket: call_when_ready written out, as in send_all (the hot path).
            await checkpoint_if_cancelled()
            try:
                data = raw.recv(max_bytes)
            except BlockingIOError:
                pass
            except BaseException as exc:
                await cancel_shielded_checkpoint()
                if isinstance(exc, OSError):
                    raise _stream_error(exc)  # noqa: B904  (the cause is set inside)
                raise
            else:
                await cancel_shielded_checkpoint()
                return data
            try:
                while True:
                    await wait_readable(raw)
                    try:
                        return raw.recv(max_bytes)
                    except BlockingIOError:
                        pass
            except OSError as exc:
                raise _stream_error(exc)  # noqa: B904  (the cause is set inside)
        finally:
            self._receiving = False

    # ----- closing and options -----

    async def aclose(self) -> None:
        """Close the socket (waking any task blocked on it); always a checkpoint."""
        self.socket.close()
        await checkpoint()

    @overload
    def setsockopt(self, level: int, option: int, value: int | Buffer) -> None: ...
    @overload
    def setsockopt(self, level: int, option: int, value: None, length: int) -> None: ...
    def setsockopt(
        self, level: int, option: int, value: int | Buffer | None, length: int | None = None
    ) -> None:
        """Set a socket option on the underlying socket (see :meth:`socket.socket.setsockopt`)."""
        if length is None:
            if value is None:
                raise TypeError(
                    "invalid value for argument 'value', must not be None when specifying length"
                )
            self.socket.setsockopt(level, option, value)
        else:
            if value is not None:
                raise TypeError(
                    f"invalid value for argument 'value': {value!r}, must be None when "
                    "specifying optlen"
                )
            self.socket.setsockopt(level, option, None, length)

    @overload
    def getsockopt(self, level: int, option: int) -> int: ...
    @overload
    def getsockopt(self, level: int, option: int, buffersize: int) -> bytes: ...
    def getsockopt(self, level: int, option: int, buffersize: int = 0) -> int | bytes:
        """Read a socket option from the underlying socket (see
        :meth:`socket.socket.getsockopt`)."""
        if buffersize == 0:
            return self.socket.getsockopt(level, option)
        return self.socket.getsockopt(level, option, buffersize)


@final
class SocketListener(Listener[SocketStream]):
    """A :class:`~nursery_io.abc.Listener` that accepts connections on a listening
    ``SOCK_STREAM`` socket and wraps each in a :class:`SocketStream`.

    The listener owns the socket (the ``socket`` attribute) and closes it in
    :meth:`aclose`. Errors that only affect one incoming connection (it was reset while
    queued, ...) are skipped; running out of fds (``EMFILE``) and the like propagate, so a
    server loop can back off (:func:`nursery_io.serve_listeners` does).
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "socket",
    )

    def __init__(self, socket: SocketType) -> None:
        if not isinstance(socket, SocketType):
            raise TypeError(
                "SocketListener requires a Trio socket object (a nursery_io.socket.SocketType, "
                f"not {type(socket).__name__})"
            )
        if socket.type != _stdlib_socket.SOCK_STREAM:
            raise ValueError("SocketListener requires a SOCK_STREAM socket")
        try:
            listening = socket.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_ACCEPTCONN)
        except OSError:
            pass  # not every socket type answers; trust the caller
        else:
            if not listening:
                raise ValueError("SocketListener requires a listening socket")
        self.socket = socket

    async def accept(self) -> SocketStream:
        """Wait for the next connection and return it as a :class:`SocketStream`."""
        while True:
            try:
                sock, _ = await self.socket.accept()
            except OSError as exc:
                if exc.errno in _CLOSED_ERRNOS:
                    raise ClosedResourceError("this listener was already closed") from None
                if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                    raise
            else:
                return SocketStream(sock)

    async def aclose(self) -> None:
        """Close the listening socket; always a checkpoint."""
        self.socket.close()
        await checkpoint()
