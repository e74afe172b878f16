"""``lowlevel.FdStream``: a stream over a raw fd (a pipe, a tty, a socket used as a file)."""

from __future__ import annotations

import errno
import functools
import os
from typing import Final

from .._core import (
    BusyResourceError,
    ClosedResourceError,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    in_run,
    notify_closing,
    wait_readable,
    wait_writable,
)
from .._core._util import final
from ..abc import Stream
from ._nonblocking import call_when_ready, stream_error, write_all_when_ready

__all__ = ["FdStream"]

DEFAULT_RECEIVE_SIZE: Final = 65536

# Trio's texts, which users match on.
_CLOSED: Final = "file was already closed"
_BUSY_SENDING: Final = "another task is using this stream for send"
_BUSY_RECEIVING: Final = "another task is using this stream for receive"

# What os.read and os.write report for an fd that is no longer open.
_CLOSED_ERRNOS: Final = frozenset({errno.EBADF})


class _FdHolder:
    """Owns the fd: puts it in non-blocking mode, and on close restores the mode it had
    (other holders of the same open file description, e.g. a parent process sharing a
    tty, see that mode too) and closes it."""

    __slots__ = ("_was_blocking", "fd")

    def __init__(self, fd: int) -> None:
        # -1 first, so that __del__ is harmless if we fail below.
        self.fd = -1
        if not isinstance(fd, int):
            raise TypeError(f"file descriptor must be an int, not {type(fd).__name__}")
        self._was_blocking = os.get_blocking(fd)
        self.fd = fd
        os.set_blocking(fd, False)

    @property
    def closed(self) -> bool:
        return self.fd == -1

    def _raw_close(self) -> None:
        if self.fd == -1:
            return
        fd, self.fd = self.fd, -1
        try:
            os.set_blocking(fd, self._was_blocking)
        finally:
            os.close(fd)

    def __del__(self) -> None:
        self._raw_close()

    def close(self) -> None:
        if self.fd != -1:
            if in_run():
                notify_closing(self.fd)
            self._raw_close()


def _fd_error(exc: OSError) -> Exception:
    """The stream-level exception for the fd's ``exc`` (see ``stream_error``)."""
    return stream_error(exc, _CLOSED_ERRNOS, _CLOSED, "fd broken")


@final
class FdStream(Stream):
    """A :class:`~nursery_io.abc.Stream` over a file descriptor that supports non-blocking
    I/O: a pipe, a FIFO, a tty, a socket. (Regular files are always "ready" and would block
    the whole run; use :func:`nursery_io.open_file` for those.)

    The stream takes ownership of ``fd``: closing the stream closes the fd. Don't use the
    fd directly afterwards.

    While the stream is open the fd is in non-blocking mode, and that mode belongs to the
    *open file description*, so every other fd sharing it (from ``os.dup``, or inherited
    across ``fork``, e.g. a terminal shared with the parent shell) sees non-blocking I/O
    too. The original mode is restored when the stream is closed. To read standard input,
    for example, use ``FdStream(os.dup(0))`` and don't touch ``sys.stdin`` until the stream
    is closed.
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = ("__dict__", "__weakref__", "_holder", "_receiving", "_sending")

    def __init__(self, fd: int) -> None:
        self._holder = _FdHolder(fd)
        self._sending = False
        self._receiving = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data``; if cancelled, a prefix of it may have been written."""
        if self._sending:
            raise BusyResourceError(_BUSY_SENDING)
        self._sending = True
        try:
            holder = self._holder
            # Even an empty write must notice a closed stream.
            if holder.closed:
                raise ClosedResourceError(_CLOSED)
            with memoryview(data) as items, items.cast("B") as view:
                if not view:
                    # Nothing to write; and no null write either, which could still fail
                    # (on a hung-up tty, say).
                    await checkpoint_if_cancelled()
                    await cancel_shielded_checkpoint()
                    return
                try:
                    await write_all_when_ready(
                        holder.fd, functools.partial(os.write, holder.fd), view
                    )
                except OSError as exc:
                    raise _fd_error(exc)  # noqa: B904  (the cause is set inside)
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise BusyResourceError(_BUSY_SENDING)
        self._sending = True
        try:
            if self._holder.closed:
                raise ClosedResourceError(_CLOSED)
            try:
                await wait_writable(self._holder.fd)
            except OSError as exc:
                raise _fd_error(exc)  # noqa: B904  (the cause is set inside)
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Read up to ``max_bytes`` (default 64 KiB); ``b""`` at end of file. A cancelled
        call reads nothing."""
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        else:
            if not isinstance(max_bytes, int):
                raise TypeError("max_bytes must be integer >= 1")
            if max_bytes < 1:
                raise ValueError("max_bytes must be integer >= 1")
        if self._receiving:
            raise BusyResourceError(_BUSY_RECEIVING)
        self._receiving = True
        try:
            fd = self._holder.fd
            try:
                return await call_when_ready(wait_readable, fd, os.read, fd, max_bytes)
            except OSError as exc:
                raise _fd_error(exc)  # noqa: B904  (the cause is set inside)
        finally:
            self._receiving = False

    def close(self) -> None:
        """Close the fd now (waking any task blocked on it), restoring its blocking mode."""
        self._holder.close()

    async def aclose(self) -> None:
        self.close()
        await checkpoint()

    def fileno(self) -> int:
        """The wrapped fd (-1 once closed)."""
        return self._holder.fd
