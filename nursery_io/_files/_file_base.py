"""The base every async file class shares (:class:`AsyncFileBase`: closing, positional
I/O, sync attributes) and the helpers the three layers use: turn-taking (:func:`exclusive`)
and argument checks. See the package docstring for how the layers fit together."""

from __future__ import annotations

import errno
import operator
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from functools import wraps
from io import UnsupportedOperation
from typing import TYPE_CHECKING, Any, Concatenate, Final, ParamSpec, TypeVar

from .._core import CancelScope
from .._core import checkpoint as _checkpoint
from .._core._ops import read_at as _read_at
from .._core._ops import run_op as _run_op
from .._kernel import ops as _ops
from ..abc import AsyncResource

if TYPE_CHECKING:
    from ._file_raw import AsyncFileIO

__all__ = [
    "SEEK_DATA_HOLE",
    "AsyncFileBase",
    "BinaryFileBase",
    "byte_view",
    "closed_error",
    "exclusive",
    "readlines_of",
    "ring_data",
    "size_arg",
]

_T = TypeVar("_T")
_P = ParamSpec("_P")
_S = TypeVar("_S", bound="AsyncFileBase")

SEEK_DATA_HOLE: Final = frozenset(
    w for w in (getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)) if w is not None
)
_CLOSED_MSG: Final = "I/O operation on closed file."


def closed_error() -> ValueError:
    return ValueError(_CLOSED_MSG)


def size_arg(size: int | None) -> int:
    """``read(size)`` argument: None -> -1; ints pass; anything else is a TypeError."""
    if size is None:
        return -1
    try:
        return operator.index(size)
    except TypeError:
        raise TypeError(
            f"argument should be integer or None, not {type(size).__name__!r}"
        ) from None


def byte_view(data: object) -> memoryview:
    if isinstance(data, str):
        raise TypeError(f"a bytes-like object is required, not {type(data).__name__!r}")
    view = memoryview(data)  # type: ignore[arg-type]  # raises TypeError for non-buffers
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def ring_data(view: memoryview) -> Any:
    """What to hand to ``ops.write``: the bytes object itself when the view covers all of
    one (the op can point the kernel at it directly; a read-only view would be copied)."""
    obj = view.obj
    return obj if type(obj) is bytes and len(obj) == view.nbytes else view


def exclusive(
    method: Callable[Concatenate[_S, _P], Awaitable[_T]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    """Run ``method`` while holding the file's turn (see "Concurrency" in the package docstring)."""

    @wraps(method)
    async def locked(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        raw = self._raw
        if raw._fd < 0:
            raise closed_error()
        if raw._busy:
            await raw._wait_turn()
        else:
            raw._busy = True
        try:
            if raw._fd < 0:  # closed while we waited for our turn
                raise closed_error()
            return await method(self, *args, **kwargs)
        finally:
            raw._release_turn()

    return locked


class AsyncFileBase(AsyncResource):
    """What every file object returned by :func:`open_file` has."""

    __slots__ = ("_raw",)

    _raw: AsyncFileIO

    # --- state and attributes (all sync, like the stdlib's) ---

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` has run."""
        return self._raw._fd < 0

    @property
    def name(self) -> str | bytes | int:
        """The path given to ``open_file`` (``os.fspath`` of it), or the fd."""
        return self._raw._name

    @property
    def closefd(self) -> bool:
        return self._raw._closefd

    def fileno(self) -> int:
        """The file descriptor. Don't read or write it directly while the file is open:
        for regular files the file position is kept by this object, not the kernel."""
        fd = self._raw._fd
        if fd < 0:
            raise closed_error()
        return fd

    def readable(self) -> bool:
        raw = self._raw
        if raw._fd < 0:
            raise closed_error()
        return raw._readable

    def writable(self) -> bool:
        raw = self._raw
        if raw._fd < 0:
            raise closed_error()
        return raw._writable

    def seekable(self) -> bool:
        return self._raw._is_seekable()

    def isatty(self) -> bool:
        raw = self._raw
        if raw._fd < 0:
            raise closed_error()
        return not raw._regular and os.isatty(raw._fd)

    # --- closing ---

    async def aclose(self) -> None:
        """Flush buffered writes and close the file (the fd is released even if the flush
        fails or the call is cancelled: the close itself is shielded, as in Trio). Closing a
        closed file does nothing. Like every async method here, this is a checkpoint: after
        closing it raises ``Cancelled`` if the surrounding scope was cancelled.

        An operation another task has in progress on this file is allowed to finish first
        (so its fd can't be reused under it); calls made after that raise ``ValueError``."""
        raw = self._raw
        if raw._fd >= 0 and not (raw._busy or raw._positional or self._has_unflushed()):
            # Nobody else is using it and nothing to write out: close right away.
            raw._close_fd()
        elif raw._fd >= 0:
            with CancelScope(shield=True):
                if raw._busy:
                    await raw._wait_turn()
                else:
                    raw._busy = True
                try:
                    while raw._positional:
                        await raw._wait_positional_idle()
                    if raw._fd >= 0:
                        try:
                            await self._flush_for_close()
                        finally:
                            raw._close_fd()
                finally:
                    raw._release_turn()
        await _checkpoint()

    async def _flush_for_close(self) -> None:
        """Write out buffered data (turn held; shielded by the caller)."""

    def _has_unflushed(self) -> bool:
        """Buffered writes not yet written (pread must write them out first)."""
        return False

    def _has_buffered(self) -> bool:
        """Buffered writes or read-ahead (pwrite must write out / drop them first)."""
        return False

    async def _locked_flush(self) -> None:
        """Take a turn and write out buffered writes."""

    async def _locked_sync(self) -> None:
        """Take a turn, write out buffered writes and drop read-ahead."""

    # --- positional I/O: no file position, no turn-taking ---

    async def pread(self, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes at byte ``offset`` with one op, like :func:`os.pread`
        (fewer bytes only at end of file, for a regular file). Bypasses the buffer and
        leaves the file position alone, so any number of tasks may ``pread`` one file at
        once. Buffered writes are written out first. On text files too, in bytes."""
        raw = self._raw
        fd = raw._fd
        if fd < 0:
            raise closed_error()
        if not raw._readable:
            raise UnsupportedOperation("File not open for reading")
        if size < 0:
            raise ValueError("negative size")
        if offset < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        if self._has_unflushed():
            await self._locked_flush()
            fd = raw._fd
            if fd < 0:  # closed meanwhile
                raise closed_error()
        raw._positional += 1
        try:
            return await _read_at(fd, size, offset)
        finally:
            raw._positional -= 1
            if raw._idle_lot and not raw._positional:
                raw._idle_lot.unpark_all()

    async def pwrite(self, data: Any, offset: int) -> int:
        """Write all of ``data`` at byte ``offset``, looping over short writes; returns
        ``len(data)``. Leaves the file position alone and runs concurrently like
        :meth:`pread`; buffered writes go first and read-ahead is dropped. (On a file opened
        for appending, Linux appends instead, whatever the offset.)"""
        raw = self._raw
        if raw._fd < 0:
            raise closed_error()
        if not raw._writable:
            raise UnsupportedOperation("File not open for writing")
        if offset < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        view = byte_view(data)
        if self._has_buffered():
            # Our read-ahead may cover the range being written: drop it (and write out
            # buffered data first, so the two writes land in program order).
            await self._locked_sync()
            if raw._fd < 0:  # closed meanwhile
                raise closed_error()
        total = view.nbytes
        if not total:
            await _checkpoint()
            return 0
        raw._positional += 1
        try:
            while view:
                n: int = await _run_op(_ops.write(raw._fd, ring_data(view), offset))
                if not n:
                    raise OSError(errno.EIO, "write() wrote nothing")
                view = view[n:]
                offset += n
        finally:
            raw._positional -= 1
            if raw._idle_lot and not raw._positional:
                raw._idle_lot.unpark_all()
        raw._size_hint = max(raw._size_hint, offset)
        return total

    async def fsync(self) -> None:
        """Write out buffered data, then make the file durable (:func:`os.fsync`, an FSYNC
        op on the ring)."""
        await self._sync(_ops.fsync)

    async def fdatasync(self) -> None:
        """Like :meth:`fsync`, but only the data and what is needed to read it back
        (:func:`os.fdatasync`)."""
        await self._sync(_ops.fdatasync)

    async def _sync(self, make_op: Callable[[int], Any]) -> None:
        raw = self._raw
        if raw._fd < 0:
            raise closed_error()
        if self._has_unflushed():
            await self._locked_flush()
            if raw._fd < 0:  # closed meanwhile
                raise closed_error()
        raw._positional += 1  # like pread: no turn needed, but aclose waits for it
        try:
            await _run_op(make_op(raw._fd))
        finally:
            raw._positional -= 1
            if raw._idle_lot and not raw._positional:
                raw._idle_lot.unpark_all()

    # --- iteration over lines ---

    def __aiter__(self) -> AsyncIterator[Any]:
        return self  # type: ignore[return-value]  # subclasses define __anext__

    def __repr__(self) -> str:
        raw = self._raw
        if raw._fd < 0:
            return f"<nursery_io.{type(self).__name__} [closed]>"
        return f"<nursery_io.{type(self).__name__} name={raw._name!r} mode={self.mode!r}>"

    @property
    def mode(self) -> str:
        return self._raw._mode


class BinaryFileBase(AsyncFileBase):
    """What the two binary classes, :class:`AsyncFileIO` and :class:`AsyncBufferedFile`,
    share: the same methods over each layer's own ``_readall``, ``_readline`` and ``_tell``."""

    __slots__ = ()

    # --- each layer's own (turn held) ---

    def _check_readable(self) -> None:
        raise NotImplementedError

    async def _readall(self) -> bytes:
        raise NotImplementedError

    async def _readline(self, limit: int) -> bytes:
        raise NotImplementedError

    def _tell(self) -> int:
        raise NotImplementedError

    # --- public API ---

    @exclusive
    async def readall(self) -> bytes:
        """Read until end of file."""
        self._check_readable()
        return await self._readall()

    @exclusive
    async def readline(self, size: int | None = -1) -> bytes:
        """Read one line, up to and including ``b"\\n"`` (at most ``size`` bytes)."""
        self._check_readable()
        return await self._readline(size_arg(size))

    async def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Read lines until end of file, or until they total more than ``hint`` bytes."""
        return await readlines_of(self, hint)

    @exclusive
    async def tell(self) -> int:
        """The current file position (counting what a buffered file holds)."""
        await _checkpoint()
        return self._tell()

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


async def readlines_of(file: Any, hint: int | None) -> list[Any]:
    hint = size_arg(hint)
    lines: list[Any] = []
    total = 0
    while True:
        line = await file.readline()
        if not line:
            break
        lines.append(line)
        total += len(line)
        if 0 < hint <= total:
            break
    return lines
