"""Async files: :func:`open_file`, :func:`wrap_file` and the file objects they return.

``open_file`` does not wrap a stdlib file object in threads (Trio's way). It opens the file
with an ``openat`` op and then does every read and write as a separate op on the run's file
engine: io_uring when it is available, the worker pool otherwise (``lowlevel.run_op``). What
the stdlib ``io`` classes do in C -- buffering, line splitting, incremental decoding and
encoding, universal newlines, tell/seek cookies -- is done here, in the loop thread, on
bytes that the ring delivered. Only ``opener=`` callbacks and ``SEEK_DATA``/``SEEK_HOLE``
still need a thread.

Positions. For regular files the position lives here, not in the kernel: every read and
write carries an explicit offset, so a cancelled or concurrent op can never move the file
position behind our back, and ``seek``/``tell`` cost no syscall. Two kinds of file use the
kernel's position instead (offset -1, and ``os.lseek`` for seek/tell, which never blocks):
files opened for appending (the kernel appends whatever offset is given, and moves its own
position to the new end, which is what ``tell()`` must report) and anything that is not a
regular file (pipes, ttys, devices).

Cancellation. Each op is all-or-nothing: a cancelled op either did not happen (the caller
gets ``Cancelled`` and nothing changed) or happened (the caller gets its result). Methods
that need several ops keep what they already read in the file's buffer before letting
``Cancelled`` through, so no data is lost and the position stays right. Writes are
cancellable until their data is accepted; a write that has to go to the disk to make room
then finishes shielded, as a thread would (Trio's ``abandon_on_cancel=False``).

Concurrency. Tasks that share one file object take turns (first come, first served) for
everything that uses the file position or the buffers. ``pread``/``pwrite`` don't use
either and run concurrently.
"""

from __future__ import annotations

import codecs
import errno
import io
import locale
import operator
import os
import re
import stat as _stat
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from functools import partial, wraps
from typing import TYPE_CHECKING, Any, Concatenate, Final, Generic, ParamSpec, TypeVar, overload

from . import lowlevel
from ._core import CancelScope
from .abc import AsyncResource

if TYPE_CHECKING:
    from _typeshed import OpenBinaryMode, OpenTextMode, StrOrBytesPath

__all__ = [
    "AsyncBufferedFile",
    "AsyncFileIO",
    "AsyncIOWrapper",
    "AsyncTextFile",
    "open_file",
    "wrap_file",
]

_T = TypeVar("_T")
_P = ParamSpec("_P")
_FileT = TypeVar("_FileT")
_S = TypeVar("_S", bound="_AsyncFileBase")

_ops = lowlevel.ops
_run_op = lowlevel.run_op
_checkpoint = lowlevel.checkpoint

_UnsupportedOperation = io.UnsupportedOperation

#: Text read size, as ``io.TextIOWrapper._CHUNK_SIZE``.
_CHUNK_SIZE: Final = 8192
# A read larger than the file (by this much) is capped, so read(huge) on a small file does not
# allocate ``huge`` bytes first.
_READ_SLACK: Final = 1 << 20
_SEEK_DATA_HOLE: Final = frozenset(
    w for w in (getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)) if w is not None
)
_CLOSED_MSG: Final = "I/O operation on closed file."


def _closed_error() -> ValueError:
    return ValueError(_CLOSED_MSG)


def _size_arg(size: int | None) -> int:
    """``read(size)`` argument: None -> -1; ints pass; anything else is a TypeError."""
    if size is None:
        return -1
    try:
        return operator.index(size)
    except TypeError:
        raise TypeError(
            f"argument should be integer or None, not {type(size).__name__!r}"
        ) from None


def _byte_view(data: object) -> memoryview:
    if isinstance(data, str):
        raise TypeError(f"a bytes-like object is required, not {type(data).__name__!r}")
    view = memoryview(data)  # type: ignore[arg-type]  # raises TypeError for non-buffers
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _exclusive(
    method: Callable[Concatenate[_S, _P], Awaitable[_T]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    """Run ``method`` while holding the file's turn (see "Concurrency" in the module doc)."""

    @wraps(method)
    async def locked(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        raw = self._raw
        if raw._fd < 0:
            raise _closed_error()
        if raw._busy:
            await raw._wait_turn()
        else:
            raw._busy = True
        try:
            if raw._fd < 0:  # closed while we waited for our turn
                raise _closed_error()
            return await method(self, *args, **kwargs)
        finally:
            raw._release_turn()

    return locked


# --------------------------------------------------------------------------------------------
# The common base
# --------------------------------------------------------------------------------------------


class _AsyncFileBase(AsyncResource):
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
            raise _closed_error()
        return fd

    def readable(self) -> bool:
        raw = self._raw
        if raw._fd < 0:
            raise _closed_error()
        return raw._readable

    def writable(self) -> bool:
        raw = self._raw
        if raw._fd < 0:
            raise _closed_error()
        return raw._writable

    def seekable(self) -> bool:
        return self._raw._is_seekable()

    def isatty(self) -> bool:
        raw = self._raw
        if raw._fd < 0:
            raise _closed_error()
        return not raw._regular and os.isatty(raw._fd)

    # --- closing ---

    async def aclose(self) -> None:
        """Flush buffered writes and close the file (the fd is released even if the flush
        fails or the call is cancelled: the close itself is shielded, as in Trio). Closing a
        closed file does nothing. Like every async method here, this is a checkpoint: after
        closing it raises ``Cancelled`` if the surrounding scope was cancelled."""
        raw = self._raw
        if raw._fd >= 0:
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
            raise _closed_error()
        if not raw._readable:
            raise _UnsupportedOperation("File not open for reading")
        if size < 0:
            raise ValueError("negative size")
        if offset < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        if self._has_unflushed():
            await self._locked_flush()
        raw._positional += 1
        try:
            return await _run_op(_ops.read(fd, size, offset))  # type: ignore[no-any-return]
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
            raise _closed_error()
        if not raw._writable:
            raise _UnsupportedOperation("File not open for writing")
        if offset < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        view = _byte_view(data)
        if self._has_buffered():
            # Our read-ahead may cover the range being written: drop it (and write out
            # buffered data first, so the two writes land in program order).
            await self._locked_sync()
        total = view.nbytes
        if not total:
            await _checkpoint()
            return 0
        raw._positional += 1
        try:
            while view:
                n: int = await _run_op(_ops.write(raw._fd, view, offset))
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


# --------------------------------------------------------------------------------------------
# Unbuffered binary files (buffering=0): one op per call, like io.FileIO
# --------------------------------------------------------------------------------------------


class AsyncFileIO(_AsyncFileBase):
    """An unbuffered binary file (``open_file(..., "rb", buffering=0)``): the async
    counterpart of :class:`io.FileIO`. ``read``/``write`` do one op each and may return or
    write fewer bytes than asked, exactly like their stdlib counterparts.

    The buffered and text layers are built on this object; it also holds the state the
    layers share (the fd, the position, whose turn it is).
    """

    __slots__ = (
        "_append",
        "_blksize",
        "_busy",
        "_closefd",
        "_fd",
        "_idle_lot",
        "_mode",
        "_name",
        "_pending",
        "_pos",
        "_positional",
        "_readable",
        "_regular",
        "_seekable",
        "_size_hint",
        "_turn_lot",
        "_writable",
    )

    def __init__(
        self,
        fd: int,
        name: str | bytes | int,
        *,
        readable: bool,
        writable: bool,
        append: bool,
        created: bool,
        closefd: bool,
        st: os.stat_result,
        pos: int | None,
    ) -> None:
        self._raw = self
        self._fd = fd
        self._name = name
        self._closefd = closefd
        self._readable = readable
        self._writable = writable
        self._append = append
        if created:
            self._mode = "xb+" if readable else "xb"
        elif append:
            self._mode = "ab+" if readable else "ab"
        elif readable and writable:
            self._mode = "rb+"
        else:
            self._mode = "rb" if readable else "wb"
        self._regular = _stat.S_ISREG(st.st_mode)
        # None: not yet known (only asked of the kernel for non-regular files).
        self._seekable: bool | None = True if self._regular else None
        # Our own position for regular files; None means "the kernel's" (see module doc).
        self._pos: int | None = pos if self._regular and not append else None
        self._size_hint = st.st_size
        self._blksize = st.st_blksize if st.st_blksize > 1 else io.DEFAULT_BUFFER_SIZE
        # Bytes read from a non-seekable file and handed back by a cancelled multi-op read.
        self._pending = b""
        # Turn-taking: _busy while one task owns the position/buffers; waiters park in
        # _turn_lot and are handed the turn in order. _positional counts pread/pwrite in
        # flight (they don't take turns), so aclose can wait for them.
        self._busy = False
        self._turn_lot: lowlevel.ParkingLot | None = None
        self._positional = 0
        self._idle_lot: lowlevel.ParkingLot | None = None

    # --- turn-taking ---

    async def _wait_turn(self) -> None:
        lot = self._turn_lot
        if lot is None:
            lot = self._turn_lot = lowlevel.ParkingLot()
        await lot.park()
        # Woken by _release_turn, which left _busy set for us: the turn is ours.

    def _release_turn(self) -> None:
        lot = self._turn_lot
        if lot:
            lot.unpark()
        else:
            self._busy = False

    async def _wait_positional_idle(self) -> None:
        lot = self._idle_lot
        if lot is None:
            lot = self._idle_lot = lowlevel.ParkingLot()
        await lot.park()

    def _close_fd(self) -> None:
        fd = self._fd
        self._fd = -1
        self._pending = b""
        if self._closefd:
            os.close(fd)  # inline: cheap, and CLOSE on the ring is version-gated anyway
        elif self._pos is not None:
            # Someone else owns the fd: leave its kernel position where our reads and
            # writes took it, as io.FileIO would have.
            try:
                os.lseek(fd, self._pos, os.SEEK_SET)
            except OSError:
                pass

    def __del__(self) -> None:
        fd = getattr(self, "_fd", -1)
        if fd >= 0 and self._closefd:
            self._fd = -1
            warnings.warn(
                f"unclosed file <nursery_io file name={self._name!r}>",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
            try:
                os.close(fd)
            except OSError:
                pass

    # --- checks ---

    def _is_seekable(self) -> bool:
        if self._fd < 0:
            raise _closed_error()
        seekable = self._seekable
        if seekable is None:
            try:
                os.lseek(self._fd, 0, os.SEEK_CUR)
            except OSError:
                seekable = False
            else:
                seekable = True
            self._seekable = seekable
        return seekable

    def _check_readable(self) -> None:
        if not self._readable:
            raise _UnsupportedOperation("File not open for reading")

    def _check_writable(self) -> None:
        if not self._writable:
            raise _UnsupportedOperation("File not open for writing")

    # --- the ops (turn held) ---

    def _tell(self) -> int:
        pos = self._pos
        if pos is not None:
            return pos
        return os.lseek(self._fd, 0, os.SEEK_CUR) - len(self._pending)

    async def _read(self, size: int) -> bytes:
        """One read of up to ``size`` bytes (``size > 0``) at the file position."""
        pending = self._pending
        if pending:
            await _checkpoint()
            self._pending = pending[size:]
            return pending[:size]
        pos = self._pos
        if pos is None:
            return await _run_op(_ops.read(self._fd, size, None))  # type: ignore[no-any-return]
        data: bytes = await _run_op(_ops.read(self._fd, size, pos))
        self._pos = pos + len(data)
        return data

    def _unread(self, data: bytes) -> None:
        """Put back bytes a cancelled multi-op read had already taken."""
        if not data:
            return
        if self._pos is not None:
            self._pos -= len(data)
        elif self._is_seekable():
            os.lseek(self._fd, -len(data), os.SEEK_CUR)
        else:
            self._pending = data + self._pending

    def _unread_ahead(self, count: int) -> None:
        """Move the position back over ``count`` read-ahead bytes nobody consumed."""
        if self._pos is not None:
            self._pos -= count
        elif self._is_seekable():
            os.lseek(self._fd, -count, os.SEEK_CUR)
        # Not seekable (a tty opened "r+"): reads and writes are separate streams; the
        # read-ahead is simply dropped, as the stdlib does.

    def _cap(self, size: int) -> int:
        """``size``, or less when it is far beyond the end of a regular file: read(huge)
        on a small file must not allocate ``huge`` bytes first."""
        pos = self._pos
        if pos is None or size <= _READ_SLACK:
            return size
        return min(size, max(self._size_hint - pos, 0) + _READ_SLACK)

    async def _readall(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        pos = self._pos
        # First guess from the size we know of; a regular file is at its end as soon as a
        # read comes back short (io_uring itself completes short reads of regular files).
        want = self._size_hint - pos + 1 if pos is not None and self._size_hint >= pos else 8192
        try:
            while True:
                data = await self._read(want)
                if not data:
                    break
                chunks.append(data)
                total += len(data)
                if len(data) < want and self._regular:
                    break
                want = max(total, 8192)
        except BaseException:
            self._unread(b"".join(chunks))
            raise
        if pos is not None and self._pos is not None and self._pos > self._size_hint:
            self._size_hint = self._pos
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    async def _readinto(self, buffer: Any) -> int:
        view = _byte_view(buffer)
        if not view.nbytes:
            await _checkpoint()
            return 0
        pending = self._pending
        if pending:
            await _checkpoint()
            n = min(len(pending), view.nbytes)
            view[:n] = pending[:n]
            self._pending = pending[n:]
            return n
        pos = self._pos
        n = await _run_op(_ops.readinto(self._fd, view, pos))
        if pos is not None:
            self._pos = pos + n
        return n  # type: ignore[no-any-return]

    async def _write(self, data: Any) -> int:
        """One write; returns how many bytes the kernel took."""
        pos = self._pos
        n: int = await _run_op(_ops.write(self._fd, data, pos))
        if pos is not None:
            pos += n
            self._pos = pos
            self._size_hint = max(self._size_hint, pos)
        return n

    async def _write_all(self, data: memoryview) -> None:
        while data:
            n = await self._write(data)
            if not n:
                raise OSError(errno.EIO, "write() wrote nothing")
            data = data[n:]

    async def _size(self) -> int:
        await _checkpoint()
        # fstat of an open fd reads the in-memory inode: inline (see open_file).
        size = os.fstat(self._fd).st_size
        self._size_hint = size
        return size

    async def _seek(self, offset: int, whence: int) -> int:
        offset = operator.index(offset)
        pos = self._pos
        if pos is None:
            await _checkpoint()
            self._pending = b""
            new = os.lseek(self._fd, offset, whence)
            return new
        if whence == os.SEEK_SET:
            await _checkpoint()
            new = offset
        elif whence == os.SEEK_CUR:
            await _checkpoint()
            new = pos + offset
        elif whence == os.SEEK_END:
            new = await self._size() + offset
        elif whence in _SEEK_DATA_HOLE:
            # No ring op for these, and they can be slow on some filesystems.
            new = await _run_op(_ops.pool_only(os.lseek, self._fd, offset, whence))
        else:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        if new < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        self._pos = new
        return new

    async def _truncate(self, size: int | None) -> int:
        if size is None:
            size = self._tell()
        size = operator.index(size)
        if size < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        await _run_op(_ops.ftruncate(self._fd, size))
        self._size_hint = size
        return size

    # --- public API ---

    @_exclusive
    async def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes with one op (all of the rest with ``size < 0``).
        Returns ``b""`` at end of file."""
        self._check_readable()
        size = _size_arg(size)
        if size < 0:
            return await self._readall()
        if size == 0:
            await _checkpoint()
            return b""
        return await self._read(self._cap(size))

    @_exclusive
    async def readall(self) -> bytes:
        """Read until end of file."""
        self._check_readable()
        return await self._readall()

    @_exclusive
    async def readinto(self, buffer: Any) -> int:
        """Read into a writable buffer with one op, without copying; returns the count."""
        self._check_readable()
        return await self._readinto(buffer)

    @_exclusive
    async def readline(self, size: int | None = -1) -> bytes:
        """Read one line (up to and including ``b"\\n"``), at most ``size`` bytes."""
        self._check_readable()
        return await self._readline(_size_arg(size))

    async def _readline(self, limit: int) -> bytes:
        if limit == 0:
            await _checkpoint()
            return b""
        if self._pos is None and not self._pending:
            # Not ours to read ahead: a byte at a time, like io.FileIO, so nothing past the
            # line is consumed from a pipe or shared fd.
            line = bytearray()
            try:
                while limit < 0 or len(line) < limit:
                    b = await self._read(1)
                    if not b:
                        break
                    line += b
                    if b == b"\n":
                        break
            except BaseException:
                self._unread(bytes(line))
                raise
            return bytes(line)
        # Our own position: read a chunk and give back what follows the line.
        chunks: list[bytes] = []
        got = 0
        try:
            while True:
                want = 256 if not chunks else max(got, 256)
                if limit >= 0:
                    want = min(want, limit - got)
                data = await self._read(want)
                if not data:
                    break
                i = data.find(b"\n")
                if i >= 0:
                    self._unread(data[i + 1 :])
                    chunks.append(data[: i + 1])
                    break
                chunks.append(data)
                got += len(data)
                if limit >= 0 and got >= limit:
                    break
        except BaseException:
            self._unread(b"".join(chunks))
            raise
        return b"".join(chunks)

    async def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Read lines until end of file, or until they total more than ``hint`` bytes."""
        return await _readlines(self, hint)

    @_exclusive
    async def write(self, data: Any) -> int:
        """Write with one op; returns how many bytes were written (possibly fewer)."""
        self._check_writable()
        view = _byte_view(data)
        if not view.nbytes:
            await _checkpoint()
            return 0
        return await self._write(view)

    async def writelines(self, lines: Iterable[Any]) -> None:
        """Write each item of ``lines`` in full (no newlines are added)."""
        for line in lines:
            await self._write_fully(line)

    @_exclusive
    async def _write_fully(self, data: Any) -> None:
        self._check_writable()
        await self._write_all(_byte_view(data))

    @_exclusive
    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the file position; returns the new absolute position."""
        return await self._seek(offset, whence)

    @_exclusive
    async def tell(self) -> int:
        """The current file position."""
        await _checkpoint()
        return self._tell()

    @_exclusive
    async def truncate(self, size: int | None = None) -> int:
        """Resize the file to ``size`` bytes (default: the current position); the position
        doesn't move. Returns the new size."""
        self._check_writable()
        return await self._truncate(size)

    async def flush(self) -> None:
        """Nothing to flush in an unbuffered file; a checkpoint all the same."""
        if self._fd < 0:
            raise _closed_error()
        await _checkpoint()

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


async def _readlines(file: Any, hint: int | None) -> list[Any]:
    hint = _size_arg(hint)
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


# --------------------------------------------------------------------------------------------
# Buffered binary files: io.BufferedReader / BufferedWriter / BufferedRandom
# --------------------------------------------------------------------------------------------


class AsyncBufferedFile(_AsyncFileBase):
    """A buffered binary file (``open_file(..., "rb")``, ``"wb"``, ``"r+b"``, ...): the
    async counterpart of :class:`io.BufferedReader`/``BufferedWriter``/``BufferedRandom``.

    ``read(n)`` returns ``n`` bytes unless the file ends first; writes are collected in a
    buffer and written when it fills, on :meth:`flush` and on :meth:`aclose`. ``raw`` is the
    unbuffered file underneath.
    """

    __slots__ = ("_bufsize", "_rbuf", "_rpos", "_wbuf")

    def __init__(self, raw: AsyncFileIO, buffer_size: int) -> None:
        if buffer_size <= 0:
            raise ValueError("buffer size must be strictly positive")
        self._raw = raw
        self._bufsize = buffer_size
        # Read-ahead: _rbuf[_rpos:] is unread. Write-behind: _wbuf. At most one of the two
        # holds data for a seekable file.
        self._rbuf = b""
        self._rpos = 0
        self._wbuf = bytearray()

    @property
    def raw(self) -> AsyncFileIO:
        return self._raw

    # --- buffer bookkeeping (turn held) ---

    def _has_unflushed(self) -> bool:
        return bool(self._wbuf)

    def _has_buffered(self) -> bool:
        return bool(self._wbuf) or self._rpos < len(self._rbuf)

    def _tell(self) -> int:
        return self._raw._tell() - (len(self._rbuf) - self._rpos) + len(self._wbuf)

    def _drop_read_ahead(self) -> None:
        unread = len(self._rbuf) - self._rpos
        self._rbuf = b""
        self._rpos = 0
        if unread:
            self._raw._unread_ahead(unread)

    def _push_back(self, data: bytes) -> None:
        if data:
            self._rbuf = data + self._rbuf[self._rpos :]
            self._rpos = 0

    async def _fill(self, want: int) -> tuple[int, bool]:
        """Read once, appending to the read buffer. Returns (bytes got, at EOF)."""
        raw = self._raw
        size = raw._cap(max(want, self._bufsize))
        data = await raw._read(size)
        n = len(data)
        if n:
            rpos = self._rpos
            if rpos < len(self._rbuf):
                self._rbuf = self._rbuf[rpos:] + data
            else:
                self._rbuf = data
            self._rpos = 0
        # A regular file is at its end when a read comes back short.
        return n, not n or (n < size and raw._regular)

    async def _flush_writes(self) -> None:
        wbuf = self._wbuf
        raw = self._raw
        while wbuf:
            n = await raw._write(bytes(wbuf))
            if not n:
                raise OSError(errno.EIO, "write() wrote nothing")
            del wbuf[:n]

    def _check_readable(self, what: str = "read") -> None:
        if not self._raw._readable:
            raise _UnsupportedOperation(what)

    def _check_writable(self, what: str = "write") -> None:
        if not self._raw._writable:
            raise _UnsupportedOperation(what)

    async def _prepare_read(self) -> bool:
        """Write out buffered writes before reading; True if that took I/O."""
        if self._wbuf:
            await self._flush_writes()
            return True
        return False

    # --- reading (turn held) ---

    async def _read(self, size: int) -> bytes:
        if size < 0:
            return await self._readall()
        did_io = await self._prepare_read()
        avail = len(self._rbuf) - self._rpos
        if avail < size:
            eof = False
            while not eof and avail < size:
                _, eof = await self._fill(size - avail)
                avail = len(self._rbuf) - self._rpos
            did_io = True
        if not did_io:
            await _checkpoint()
        rpos = self._rpos
        end = rpos + min(size, avail)
        data = self._rbuf[rpos:end]
        self._rpos = end
        return data

    async def _read1(self, size: int) -> bytes:
        did_io = await self._prepare_read()
        if size < 0:
            size = self._bufsize
        if self._rpos >= len(self._rbuf) and size:
            # Nothing buffered: one raw read of ``size`` straight into the result (as the
            # stdlib does: nothing is left over to buffer).
            raw = self._raw
            return await raw._read(raw._cap(size))
        if not did_io:
            await _checkpoint()
        rpos = self._rpos
        end = min(rpos + size, len(self._rbuf))
        self._rpos = end
        return self._rbuf[rpos:end]

    async def _readall(self) -> bytes:
        await self._prepare_read()
        rpos = self._rpos
        head = self._rbuf[rpos:] if rpos < len(self._rbuf) else b""
        self._rbuf = b""
        self._rpos = 0
        try:
            rest = await self._raw._readall()
        except BaseException:
            self._push_back(head)
            raise
        return head + rest if head else rest

    async def _readline(self, limit: int) -> bytes:
        did_io = await self._prepare_read()
        scanned = 0  # bytes of the unread part already searched
        eof = False
        while True:
            rbuf = self._rbuf
            rpos = self._rpos
            i = rbuf.find(b"\n", rpos + scanned)
            if i >= 0:
                end = i + 1
                break
            avail = len(rbuf) - rpos
            if eof or (0 <= limit <= avail):
                end = len(rbuf)
                break
            scanned = avail
            _, eof = await self._fill(max(self._bufsize, avail))
            did_io = True
        if limit >= 0:
            end = min(end, rpos + limit)
        if not did_io:
            await _checkpoint()
        self._rpos = end
        return rbuf[rpos:end]

    # --- writing (turn held) ---

    async def _write(self, data: Any) -> int:
        view = _byte_view(data)
        # The cancel point comes first: once the data is accepted, the write finishes.
        await _checkpoint()
        return await self._write_accepted(view)

    async def _write_accepted(self, view: memoryview) -> int:
        n = view.nbytes
        if self._rpos < len(self._rbuf):
            self._drop_read_ahead()
        wbuf = self._wbuf
        if len(wbuf) + n <= self._bufsize:
            wbuf += view
            return n
        with CancelScope(shield=True):
            await self._flush_writes()
            if n >= self._bufsize:
                await self._raw._write_all(view)
            else:
                wbuf += view
        return n

    async def _flush_for_close(self) -> None:
        await self._flush_writes()

    async def _locked_flush(self) -> None:
        await self.flush()

    @_exclusive
    async def _locked_sync(self) -> None:
        await self._flush_writes()
        self._drop_read_ahead()

    # --- public API ---

    @_exclusive
    async def read(self, size: int | None = -1) -> bytes:
        """Read ``size`` bytes, fewer only at end of file; everything left with ``size``
        -1 or None."""
        self._check_readable()
        size = _size_arg(size)
        if size < -1:
            raise ValueError("read length must be non-negative or -1")
        return await self._read(size)

    @_exclusive
    async def read1(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes with at most one op (``b""`` only at end of file)."""
        self._check_readable("read1")
        return await self._read1(_size_arg(size))

    @_exclusive
    async def readall(self) -> bytes:
        """Read until end of file."""
        self._check_readable()
        return await self._readall()

    @_exclusive
    async def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` (fewer bytes only at end of file); returns the count."""
        self._check_readable()
        view = _byte_view(buffer)
        data = await self._read(view.nbytes)
        view[: len(data)] = data
        return len(data)

    @_exclusive
    async def readinto1(self, buffer: Any) -> int:
        """Read into ``buffer`` with at most one op; returns the count."""
        self._check_readable()
        view = _byte_view(buffer)
        data = await self._read1(view.nbytes)
        view[: len(data)] = data
        return len(data)

    @_exclusive
    async def peek(self, size: int = 0) -> bytes:
        """The buffered bytes ahead, without consuming them (reads once if none are)."""
        self._check_readable()
        did_io = await self._prepare_read()
        if self._rpos >= len(self._rbuf):
            await self._fill(self._bufsize)
            did_io = True
        if not did_io:
            await _checkpoint()
        return self._rbuf[self._rpos :]

    @_exclusive
    async def readline(self, size: int | None = -1) -> bytes:
        """Read one line including its ``b"\\n"`` (at most ``size`` bytes)."""
        self._check_readable()
        return await self._readline(_size_arg(size))

    async def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Read lines until end of file, or until they total more than ``hint`` bytes."""
        return await _readlines(self, hint)

    @_exclusive
    async def write(self, data: Any) -> int:
        """Buffer ``data`` (writing out when the buffer fills); returns ``len(data)``."""
        self._check_writable()
        return await self._write(data)

    async def writelines(self, lines: Iterable[Any]) -> None:
        """Write each item of ``lines`` (no newlines are added)."""
        for line in lines:
            await self.write(line)

    @_exclusive
    async def flush(self) -> None:
        """Write out buffered data. If cancelled midway, what was not written stays
        buffered (nothing is written twice)."""
        if self._wbuf:
            await self._flush_writes()
        else:
            await _checkpoint()

    @_exclusive
    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position; returns the new absolute position."""
        if whence not in (0, 1, 2) and whence not in _SEEK_DATA_HOLE:
            raise ValueError(f"whence value {whence} unsupported")
        raw = self._raw
        if not raw._is_seekable():
            raise _UnsupportedOperation("File or stream is not seekable.")
        offset = operator.index(offset)
        if self._wbuf:
            await self._flush_writes()
        elif whence in (os.SEEK_SET, os.SEEK_CUR) and raw._pos is not None:
            # A target inside the read-ahead just moves within it.
            start = raw._pos - len(self._rbuf)
            target = offset if whence == os.SEEK_SET else self._tell() + offset
            if start <= target <= raw._pos:
                await _checkpoint()
                self._rpos = target - start
                return target
        if whence == os.SEEK_CUR:
            offset = self._tell() + offset
            whence = os.SEEK_SET
        self._drop_read_ahead()
        return await raw._seek(offset, whence)

    @_exclusive
    async def tell(self) -> int:
        """The current position (buffered data included)."""
        await _checkpoint()
        return self._tell()

    @_exclusive
    async def truncate(self, size: int | None = None) -> int:
        """Flush, then resize the file to ``size`` (default: the current position). The
        position doesn't move; returns the new size."""
        self._check_writable("truncate")
        if size is None:
            size = self._tell()
        await self._flush_writes()
        self._drop_read_ahead()
        return await self._raw._truncate(size)

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


# --------------------------------------------------------------------------------------------
# Text files: io.TextIOWrapper
# --------------------------------------------------------------------------------------------

_NEWLINES: Final = (None, "", "\n", "\r", "\r\n")
_ANY_NEWLINE: Final = re.compile(r"\r\n|\r|\n")
_U64: Final = (1 << 64) - 1


def _pack_cookie(
    position: int, dec_flags: int = 0, bytes_to_feed: int = 0, need_eof: bool = False, skip: int = 0
) -> int:
    # Same layout as the stdlib's, so a cookie with no decoder state is the byte position.
    return position | (dec_flags << 64) | (bytes_to_feed << 128) | (skip << 192) | (need_eof << 256)


def _unpack_cookie(cookie: int) -> tuple[int, int, int, bool, int]:
    return (
        cookie & _U64,
        (cookie >> 64) & _U64,
        (cookie >> 128) & _U64,
        bool(cookie >> 256),
        (cookie >> 192) & _U64,
    )


class AsyncTextFile(_AsyncFileBase):
    """A text file (``open_file(..., "r")``, ``"w"``, ``"a+"``, ...): the async counterpart
    of :class:`io.TextIOWrapper`, over the :class:`AsyncBufferedFile` in ``buffer``.

    Decoding and encoding use the codec's incremental decoder/encoder, so multi-byte
    characters split between reads, ``errors=`` handlers and BOMs (utf-8-sig, utf-16) behave
    as with the stdlib, and so do the ``newline`` settings (universal newlines through
    :class:`io.IncrementalNewlineDecoder`).

    ``tell()`` returns an opaque cookie, as the stdlib does: the byte position when the
    decoder holds no state (always the case at the start of a line for utf-8, latin-1, ...),
    otherwise a larger number that only ``seek()`` understands. ``seek(cookie)`` accepts 0,
    any cookie ``tell()`` returned on this file, and ``seek(0, 2)`` (end). Relative seeks
    other than ``seek(0, 1)`` are not possible on text files, as with the stdlib.
    """

    __slots__ = (
        "_b2c",
        "_buffer",
        "_decoded",
        "_decoder",
        "_encoder",
        "_encoding",
        "_errors",
        "_line_buffering",
        "_open_mode",
        "_readnl",
        "_readtranslate",
        "_readuniversal",
        "_snapshot",
        "_used",
        "_writenl",
        "_writetranslate",
    )

    _CHUNK_SIZE = _CHUNK_SIZE

    def __init__(
        self,
        buffer: AsyncBufferedFile,
        encoding: str,
        errors: str,
        newline: str | None,
        line_buffering: bool,
        mode: str,
    ) -> None:
        self._buffer = buffer
        self._raw = buffer._raw
        self._encoding = encoding
        self._errors = errors
        self._open_mode = mode
        self._line_buffering = line_buffering
        self._readuniversal = not newline
        self._readtranslate = newline is None
        self._readnl = newline
        self._writetranslate = newline != ""
        self._writenl = newline or os.linesep
        self._decoder: Any = None
        if self._raw._readable:
            decoder: Any = codecs.getincrementaldecoder(encoding)(errors)
            if self._readuniversal:
                decoder = io.IncrementalNewlineDecoder(decoder, self._readtranslate)
            self._decoder = decoder
        self._encoder: codecs.IncrementalEncoder | None = None
        seekable = self._raw._is_seekable()  # also settles it for _read_chunk
        if self._raw._writable:
            self._encoder = codecs.getincrementalencoder(encoding)(errors)
            # Writing into the middle of a file must not start with a BOM.
            if seekable and buffer._tell() != 0:
                self._encoder.setstate(0)
        # Decoded text not yet returned: _decoded[_used:]. _snapshot = (decoder flags, bytes)
        # such that decoding the bytes from a decoder in that state gives _decoded; tell()
        # works back from it. None when there is nothing to work back from.
        self._decoded = ""
        self._used = 0
        self._snapshot: tuple[int, bytes] | None = None
        self._b2c = 0.0

    # --- attributes ---

    @property
    def buffer(self) -> AsyncBufferedFile:
        return self._buffer

    @property
    def encoding(self) -> str:
        return self._encoding

    @property
    def errors(self) -> str:
        return self._errors

    @property
    def line_buffering(self) -> bool:
        return self._line_buffering

    @property
    def write_through(self) -> bool:
        return False

    @property
    def newlines(self) -> str | tuple[str, ...] | None:
        """The newline kinds seen so far (universal-newlines reading only), as the stdlib."""
        decoder = self._decoder
        return getattr(decoder, "newlines", None) if decoder is not None else None

    @property
    def mode(self) -> str:
        return self._open_mode

    def __repr__(self) -> str:
        raw = self._raw
        if raw._fd < 0:
            return "<nursery_io.AsyncTextFile [closed]>"
        return (
            f"<nursery_io.AsyncTextFile name={raw._name!r} mode={self._open_mode!r} "
            f"encoding={self._encoding!r}>"
        )

    # --- helpers (turn held) ---

    def _check_readable(self) -> Any:
        decoder = self._decoder
        if decoder is None:
            raise _UnsupportedOperation("not readable")
        return decoder

    def _check_seekable(self) -> None:
        if not self._raw._is_seekable():
            raise _UnsupportedOperation("underlying stream is not seekable")

    def _reset_read_state(self) -> None:
        self._decoded = ""
        self._used = 0
        self._snapshot = None

    async def _read_chunk(self, size: int) -> tuple[bool, bool]:
        """Read and decode one chunk of at least ``size`` bytes' worth, appending to the
        unread text. Returns (not at EOF, the unread text started over at index 0)."""
        decoder = self._decoder
        fresh = self._used >= len(self._decoded)
        track = bool(self._raw._seekable)
        dec_buffer, dec_flags = decoder.getstate() if fresh and track else (b"", 0)
        data = await self._buffer._read1(max(size, self._CHUNK_SIZE))
        # From here on no await: the decoder state and our bookkeeping change together.
        eof = not data
        text = decoder.decode(data, eof)
        if fresh:
            self._decoded = text
            self._used = 0
            self._snapshot = (dec_flags, dec_buffer + data) if track else None
        else:
            self._decoded += text
            snapshot = self._snapshot
            if snapshot is not None:
                self._snapshot = (snapshot[0], snapshot[1] + data)
        snapshot = self._snapshot
        if snapshot is not None and self._decoded:
            self._b2c = len(snapshot[1]) / len(self._decoded)
        return not eof, fresh

    def _find_line_end(self, text: str, start: int) -> int:
        """Index just past the first line ending at or after ``start``, or -1."""
        if self._readtranslate:
            i = text.find("\n", start)
            return -1 if i < 0 else i + 1
        if self._readuniversal:
            m = _ANY_NEWLINE.search(text, start)
            return -1 if m is None else m.end()
        nl = self._readnl
        assert nl is not None
        i = text.find(nl, start)
        return -1 if i < 0 else i + len(nl)

    async def _readline(self, limit: int) -> str:
        self._check_readable()
        await self._buffer._prepare_read()
        did_io = False
        start = scan = self._used
        eof = False
        while True:
            text = self._decoded
            end = self._find_line_end(text, scan)
            if end >= 0:
                break
            if eof or (0 <= limit <= len(text) - start):
                end = len(text)
                break
            # '\r\n' may straddle two chunks when it is the only line ending.
            scan = max(start, len(text) - 1) if self._readnl == "\r\n" else len(text)
            more, fresh = await self._read_chunk(max(len(text) - start, self._CHUNK_SIZE))
            did_io = True
            eof = not more
            if fresh:
                start = scan = 0
        if limit >= 0:
            end = min(end, start + limit)
        if not did_io:
            await _checkpoint()
        self._used = end
        return text[start:end]

    async def _read(self, size: int) -> str:
        decoder = self._check_readable()
        await self._buffer._prepare_read()
        if size < 0:
            data = await self._buffer._readall()
            text: str = self._decoded[self._used :] + decoder.decode(data, True)
            self._reset_read_state()
            return text
        did_io = False
        more = True
        while more and len(self._decoded) - self._used < size:
            more, _ = await self._read_chunk(size - (len(self._decoded) - self._used))
            did_io = True
        if not did_io:
            await _checkpoint()
        start = self._used
        end = min(start + size, len(self._decoded))
        self._used = end
        return self._decoded[start:end]

    async def _write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        encoder = self._encoder
        if encoder is None:
            raise _UnsupportedOperation("not writable")
        # Cancel point before the encoder (which may emit a BOM once) sees anything.
        await _checkpoint()
        length = len(text)
        haslf = (self._writetranslate or self._line_buffering) and "\n" in text
        if haslf and self._writetranslate and self._writenl != "\n":
            text = text.replace("\n", self._writenl)
        data = encoder.encode(text)
        if self._decoded or self._snapshot is not None:
            # Like the stdlib: writing discards decoded read-ahead.
            self._reset_read_state()
            if self._decoder is not None:
                self._decoder.reset()
        buffer = self._buffer
        await buffer._write_accepted(memoryview(data))
        if self._line_buffering and (haslf or "\r" in text):
            with CancelScope(shield=True):
                await buffer._flush_writes()
        return length

    def _tell_cookie(self) -> int:
        """The tell() cookie for the current position (writes already flushed)."""
        position = self._buffer._tell()
        decoder = self._decoder
        snapshot = self._snapshot
        if decoder is None or snapshot is None:
            return position
        dec_flags, next_input = snapshot
        position -= len(next_input)
        skip = self._used
        if skip == 0:
            return _pack_cookie(position, dec_flags)
        saved = decoder.getstate()
        try:
            if skip == len(self._decoded) and not saved[0]:
                # Everything decoded so far was returned and the decoder holds no bytes.
                return _pack_cookie(position + len(next_input), saved[1])
            # Phase 1: guess how many bytes the returned characters took (from the ratio
            # seen so far) and back off until the guess lands on a boundary where the
            # decoder holds no partial input.
            start_pos, start_flags = position, dec_flags
            skip_bytes = int(self._b2c * skip)
            step = 1
            while skip_bytes > 0:
                decoder.setstate((b"", dec_flags))
                n = len(decoder.decode(next_input[:skip_bytes]))
                if n <= skip:
                    pending, flags = decoder.getstate()
                    if not pending:
                        start_pos += skip_bytes
                        start_flags = flags
                        skip -= n
                        break
                    skip_bytes -= len(pending)
                    step = 1
                else:
                    skip_bytes -= step
                    step *= 2
            else:
                skip_bytes = 0
                decoder.setstate((b"", dec_flags))
            if skip == 0:
                return _pack_cookie(start_pos, start_flags)
            # Phase 2: feed one byte at a time, remembering the last clean boundary.
            fed = 0
            produced = 0
            need_eof = False
            for i in range(skip_bytes, len(next_input)):
                fed += 1
                produced += len(decoder.decode(next_input[i : i + 1]))
                pending, flags = decoder.getstate()
                if not pending and produced <= skip:
                    start_pos += fed
                    start_flags = flags
                    skip -= produced
                    fed = produced = 0
                if produced >= skip:
                    break
            else:
                produced += len(decoder.decode(b"", True))
                need_eof = True
                if produced < skip:
                    raise OSError("can't reconstruct logical file position")
            return _pack_cookie(start_pos, start_flags, fed, need_eof, skip)
        finally:
            decoder.setstate(saved)

    async def _seek_cookie(self, cookie: int) -> int:
        if cookie < 0:
            raise ValueError(f"negative seek position {cookie!r}")
        buffer = self._buffer
        await buffer._flush_writes()
        start_pos, dec_flags, bytes_to_feed, need_eof, skip = _unpack_cookie(cookie)
        # The rest can't be half done: shielded (it is at most one short read).
        with CancelScope(shield=True):
            await self._buffer_seek(start_pos, os.SEEK_SET)
            self._reset_read_state()
            decoder = self._decoder
            if decoder is not None:
                if cookie == 0:
                    decoder.reset()
                else:
                    decoder.setstate((b"", dec_flags))
                    self._snapshot = (dec_flags, b"")
                if skip:
                    data = await buffer._read(bytes_to_feed)
                    text = decoder.decode(data, need_eof)
                    if len(text) < skip:
                        raise OSError("can't restore logical file position")
                    self._decoded = text
                    self._used = skip
                    self._snapshot = (dec_flags, data)
        encoder = self._encoder
        if encoder is not None:
            if cookie == 0:
                encoder.reset()
            else:
                encoder.setstate(0)
        return cookie

    async def _buffer_seek(self, offset: int, whence: int) -> int:
        buffer = self._buffer
        await buffer._flush_writes()
        buffer._drop_read_ahead()
        return await self._raw._seek(offset, whence)

    async def _flush_for_close(self) -> None:
        await self._buffer._flush_writes()

    def _has_unflushed(self) -> bool:
        return self._buffer._has_unflushed()

    def _has_buffered(self) -> bool:
        return self._buffer._has_buffered()

    async def _locked_flush(self) -> None:
        await self._buffer._locked_flush()

    @_exclusive
    async def _locked_sync(self) -> None:
        buffer = self._buffer
        await buffer._flush_writes()
        if buffer._rpos < len(buffer._rbuf) or self._decoded:
            # The decoded read-ahead may be stale too: restart decoding at the position.
            cookie = self._tell_cookie()
            await self._seek_cookie(cookie)

    # --- public API ---

    @_exclusive
    async def read(self, size: int | None = -1) -> str:
        """Read ``size`` characters (fewer only at end of file), or all the rest."""
        return await self._read(_size_arg(size))

    @_exclusive
    async def readline(self, size: int | None = -1) -> str:
        """Read one line including its line ending (at most ``size`` characters); ``""`` at
        end of file."""
        return await self._readline(_size_arg(size))

    async def readlines(self, hint: int | None = -1) -> list[str]:
        """Read lines until end of file, or until they total more than ``hint`` characters."""
        return await _readlines(self, hint)

    @_exclusive
    async def write(self, text: str) -> int:
        """Encode and buffer ``text``; returns ``len(text)``. With line buffering, a write
        that contains a line ending is flushed."""
        return await self._write(text)

    async def writelines(self, lines: Iterable[str]) -> None:
        """Write each string of ``lines`` (no newlines are added)."""
        for line in lines:
            await self.write(line)

    @_exclusive
    async def flush(self) -> None:
        """Write out buffered data."""
        buffer = self._buffer
        if buffer._wbuf:
            await buffer._flush_writes()
        else:
            await _checkpoint()

    @_exclusive
    async def tell(self) -> int:
        """An opaque position cookie for :meth:`seek` (see the class docstring)."""
        self._check_seekable()
        if self._buffer._wbuf:
            await self._buffer._flush_writes()
        else:
            await _checkpoint()
        return self._tell_cookie()

    @_exclusive
    async def seek(self, cookie: int, whence: int = os.SEEK_SET) -> int:
        """Go to a position: ``seek(cookie)`` with a cookie from :meth:`tell` (or 0),
        ``seek(0, 1)`` (stay), ``seek(0, 2)`` (end of file). Returns the new cookie."""
        self._check_seekable()
        cookie = operator.index(cookie)
        if whence == os.SEEK_CUR:
            if cookie != 0:
                raise _UnsupportedOperation("can't do nonzero cur-relative seeks")
            await self._buffer._flush_writes()
            cookie = self._tell_cookie()
            whence = os.SEEK_SET
        elif whence == os.SEEK_END:
            if cookie != 0:
                raise _UnsupportedOperation("can't do nonzero end-relative seeks")
            position = await self._buffer_seek(0, os.SEEK_END)
            self._reset_read_state()
            if self._decoder is not None:
                self._decoder.reset()
            encoder = self._encoder
            if encoder is not None:
                if position:
                    encoder.setstate(0)
                else:
                    encoder.reset()
            return position
        if whence != os.SEEK_SET:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        return await self._seek_cookie(cookie)

    @_exclusive
    async def truncate(self, size: int | None = None) -> int:
        """Flush, then resize the underlying file to ``size`` bytes (default: the current
        position). The position doesn't move."""
        buffer = self._buffer
        buffer._check_writable("truncate")
        await buffer._flush_writes()
        if size is None:
            # The documented behaviour (and _pyio's): the text position. CPython's C
            # TextIOWrapper truncates at the end of its read-ahead instead.
            size = self._tell_cookie()
        buffer._drop_read_ahead()
        return await self._raw._truncate(size)

    async def __anext__(self) -> str:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


# --------------------------------------------------------------------------------------------
# open_file
# --------------------------------------------------------------------------------------------


class _ModeSpec:
    __slots__ = ("append", "binary", "created", "flags", "readable", "writable")

    def __init__(self, mode: str) -> None:
        chars = set(mode)
        if len(chars) != len(mode) or not chars <= set("axrwb+t"):
            raise ValueError(f"invalid mode: {mode!r}")
        created = "x" in chars
        reading = "r" in chars
        writing = "w" in chars
        appending = "a" in chars
        updating = "+" in chars
        text = "t" in chars
        self.binary = "b" in chars
        if text and self.binary:
            raise ValueError("can't have text and binary mode at once")
        if created + reading + writing + appending > 1:
            raise ValueError("must have exactly one of create/read/write/append mode")
        if not (created or reading or writing or appending):
            raise ValueError(
                "Must have exactly one of create/read/write/append mode and at most one plus"
            )
        self.created = created
        self.append = appending
        self.readable = reading or updating
        self.writable = created or writing or appending or updating
        if created:
            flags = os.O_EXCL | os.O_CREAT
        elif writing:
            flags = os.O_CREAT | os.O_TRUNC
        elif appending:
            flags = os.O_APPEND | os.O_CREAT
        else:
            flags = 0
        if self.readable and self.writable:
            flags |= os.O_RDWR
        elif self.readable:
            flags |= os.O_RDONLY
        else:
            flags |= os.O_WRONLY
        self.flags = flags | os.O_CLOEXEC


def _check_str_arg(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"open() argument '{name}' must be str or None, not {type(value).__name__}")


def _text_encoding(encoding: str | None) -> str:
    if encoding is None:
        # Same default and EncodingWarning (under -X warn_default_encoding) as open().
        encoding = io.text_encoding(None, 4)
    if encoding == "locale":
        encoding = "utf-8" if sys.flags.utf8_mode else locale.getencoding()
    if not codecs.lookup(encoding)._is_text_encoding:
        raise LookupError(
            f"{encoding!r} is not a text encoding; use codecs.open() to handle arbitrary codecs"
        )
    return encoding


async def _open_in_thread(path: str | bytes, flags: int) -> int:
    op = _ops.pool_only(os.open, path, flags, 0o666, name="open")
    op.on_abandoned = _close_result_fd  # nobody waits for it any more: close what it opens
    return await _run_op(op)  # type: ignore[no-any-return]


def _close_result_fd(op: Any) -> None:
    fd = op.result
    if isinstance(fd, int) and fd >= 0:
        op.result = None
        try:
            os.close(fd)
        except OSError:
            pass


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: OpenTextMode = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[str, int], int] | None = None,
) -> AsyncTextFile: ...


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: OpenBinaryMode,
    buffering: int = -1,
    encoding: None = None,
    errors: None = None,
    newline: None = None,
    closefd: bool = True,
    opener: Callable[[str, int], int] | None = None,
) -> AsyncBufferedFile | AsyncFileIO: ...


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: str,
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[str, int], int] | None = None,
) -> Any: ...


async def open_file(
    file: Any,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[Any, int], int] | None = None,
) -> Any:
    """Open a file for async I/O; the arguments and their meaning are those of :func:`open`.

    Returns an :class:`AsyncTextFile` for text modes, an :class:`AsyncBufferedFile` for
    binary modes, and an :class:`AsyncFileIO` for ``buffering=0``. The same misuse raises
    the same exceptions as :func:`open` (checked before anything touches the disk).

    The open, the reads and writes run on the run's file engine (io_uring where available,
    otherwise worker threads): see the module docstring of ``nursery_io._file_io``. An
    integer ``file`` is an fd to wrap (closed on ``aclose`` unless ``closefd=False``);
    ``opener(path, flags)`` is called in a worker thread.

    Use it as ``async with await open_file(path) as f: ...``.
    """
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    _check_str_arg("encoding", encoding)
    _check_str_arg("errors", errors)
    _check_str_arg("newline", newline)
    buffering = operator.index(buffering)
    spec = _ModeSpec(mode)
    if spec.binary:
        if encoding is not None:
            raise ValueError("binary mode doesn't take an encoding argument")
        if errors is not None:
            raise ValueError("binary mode doesn't take an errors argument")
        if newline is not None:
            raise ValueError("binary mode doesn't take a newline argument")
        if buffering == 1:
            warnings.warn(
                "line buffering (buffering=1) isn't supported in binary mode, "
                "the default buffer size will be used",
                RuntimeWarning,
                stacklevel=2,
            )
    else:
        if buffering == 0:
            raise ValueError("can't have unbuffered text I/O")
        if newline not in _NEWLINES:
            raise ValueError(f"illegal newline value: {newline}")
        encoding = _text_encoding(encoding)
        errors = "strict" if errors is None else errors

    name: str | bytes | int
    on_ring = False  # opened by an io_uring OPENAT (non-blocking first: see FIFOs below)
    if isinstance(file, int):
        if file < 0:
            raise ValueError("negative file descriptor")
        await _checkpoint()  # nothing below yields for an fd
        fd = file
        name = file
        own_fd = closefd
    else:
        path: str | bytes = os.fspath(file)
        name = path
        if not closefd:
            raise ValueError("Cannot use closefd=False with file name")
        if opener is None:
            open_op = _ops.openat(path, spec.flags, 0o666)
            try:
                fd = await _run_op(open_op)
                on_ring = open_op.engine == "io_uring"
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                # io_uring tries every open non-blocking first, and a write-only open of
                # a FIFO with no reader then fails with ENXIO where open() would wait for
                # a reader. Wait in a thread, as open() would.
                fd = await _open_in_thread(path, spec.flags)
                on_ring = False
        else:
            op = _ops.pool_only(opener, path, spec.flags, name="opener")
            op.on_abandoned = _close_result_fd  # the run ended while the opener ran
            fd = await _run_op(op)
            if not isinstance(fd, int):
                raise TypeError(f"expected integer from opener, got {type(fd).__name__}")
            if fd < 0:
                raise ValueError(f"opener returned {fd}")
        own_fd = True
    try:
        # Inline, not a STATX op: the fd pins the inode, so fstat only copies in-memory
        # attributes, while io_uring always punts STATX to a kernel worker thread (~90 us
        # and an extra thread per open, measured).
        st = os.fstat(fd)
        if on_ring and _stat.S_ISFIFO(st.st_mode) and not (spec.readable and spec.writable):
            # The ring's (non-blocking) read-only open of a FIFO returns at once, so a read
            # would see end-of-file before any writer arrived; open() waits for a writer.
            # Do that in a thread, keeping the first fd open meanwhile, so a writer that
            # connects to it now isn't left without a reader. (A writer that connects,
            # writes and closes in the microseconds before the thread's open starts would
            # be missed: that open then waits for the next writer.)
            first = fd
            fd = -1  # nothing for the handler below to close if this fails
            try:
                fd = await _open_in_thread(path, spec.flags)
            finally:
                os.close(first)
            st = os.fstat(fd)
        if _stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        regular = _stat.S_ISREG(st.st_mode)
        if spec.append:
            # The kernel keeps the position of appending files; start it at the end.
            pos: int | None = os.lseek(fd, 0, os.SEEK_END)
        elif not regular:
            pos = None
        elif isinstance(file, int) or opener is not None:
            pos = os.lseek(fd, 0, os.SEEK_CUR)  # not opened by us: it may not be at 0
        else:
            pos = 0
        raw = AsyncFileIO(
            fd,
            name,
            readable=spec.readable,
            writable=spec.writable,
            append=spec.append,
            created=spec.created,
            closefd=closefd,
            st=st,
            pos=pos,
        )
    except BaseException:
        if own_fd and fd >= 0:
            os.close(fd)
        raise
    try:
        line_buffering = False
        if buffering == 1 or (buffering < 0 and not regular and os.isatty(fd)):
            line_buffering = True
            buffering = -1
        if buffering < 0:
            buffering = raw._blksize
        if buffering == 0:
            return raw
        buffered = AsyncBufferedFile(raw, buffering)
        if spec.binary:
            return buffered
        assert encoding is not None and errors is not None
        return AsyncTextFile(buffered, encoding, errors, newline, line_buffering, mode)
    except BaseException:
        raw._fd = -1
        if own_fd:
            os.close(fd)
        raise


# --------------------------------------------------------------------------------------------
# wrap_file: foreign file objects, in threads
# --------------------------------------------------------------------------------------------

_FILE_SYNC_ATTRS: Final = frozenset(
    {
        "closed",
        "encoding",
        "errors",
        "fileno",
        "isatty",
        "newlines",
        "readable",
        "seekable",
        "writable",
        "buffer",
        "raw",
        "line_buffering",
        "closefd",
        "name",
        "mode",
        "getvalue",
        "getbuffer",
    }
)
_FILE_ASYNC_METHODS: Final = frozenset(
    {
        "flush",
        "read",
        "read1",
        "readall",
        "readinto",
        "readinto1",
        "readline",
        "readlines",
        "seek",
        "tell",
        "truncate",
        "write",
        "writelines",
        "peek",
    }
)


async def _in_thread(fn: Callable[[], _T]) -> _T:
    return await _run_op(_ops.pool_only(fn))  # type: ignore[no-any-return]


class AsyncIOWrapper(AsyncResource, Generic[_FileT]):
    """An async view of a file object we did not open (see :func:`wrap_file`).

    Its sync attributes (``name``, ``closed``, ``fileno()``, ...) are the wrapped object's;
    its I/O methods (``read``, ``write``, ``seek``, ...) are async and run the wrapped
    object's method in a worker thread, since only that object knows what its buffers hold.
    """

    def __init__(self, file: _FileT) -> None:
        self._wrapped = file

    @property
    def wrapped(self) -> _FileT:
        """The file object being wrapped."""
        return self._wrapped

    def __getattr__(self, name: str) -> Any:
        if name in _FILE_SYNC_ATTRS:
            return getattr(self._wrapped, name)
        if name in _FILE_ASYNC_METHODS:
            method = getattr(self._wrapped, name)

            @wraps(method)
            async def in_thread(*args: Any, **kwargs: Any) -> Any:
                return await _in_thread(partial(method, *args, **kwargs))

            # Cache it: the next lookup finds it on the instance.
            setattr(self, name, in_thread)
            return in_thread
        raise AttributeError(name)

    def __dir__(self) -> Iterable[str]:
        attrs = set(super().__dir__())
        attrs.update(a for a in _FILE_SYNC_ATTRS if hasattr(self._wrapped, a))
        attrs.update(a for a in _FILE_ASYNC_METHODS if hasattr(self._wrapped, a))
        return attrs

    def __aiter__(self) -> AsyncIOWrapper[_FileT]:
        return self

    async def __anext__(self) -> Any:
        line = await self.readline()
        if line:
            return line
        raise StopAsyncIteration

    async def detach(self) -> AsyncIOWrapper[object]:
        """Detach the underlying buffer (``io`` semantics) and return it wrapped."""
        raw = await _in_thread(self._wrapped.detach)  # type: ignore[attr-defined]
        return wrap_file(raw)

    async def aclose(self) -> None:
        """Close the wrapped file in a thread; shielded, so the file is closed even if
        the call is cancelled (``Cancelled`` is raised afterwards)."""
        with CancelScope(shield=True):
            await _in_thread(self._wrapped.close)  # type: ignore[attr-defined]
        await lowlevel.checkpoint_if_cancelled()

    def __repr__(self) -> str:
        return f"<nursery_io.AsyncIOWrapper of {self._wrapped!r}>"


def wrap_file(file: _FileT) -> AsyncIOWrapper[_FileT]:
    """Wrap a file object (anything with ``close`` and ``read`` or ``write``) so its
    methods can be awaited; they run in worker threads. For files you open yourself,
    :func:`open_file` is much faster."""

    def has(attr: str) -> bool:
        return hasattr(file, attr) and callable(getattr(file, attr))

    if not (has("close") and (has("read") or has("write"))):
        raise TypeError(
            f"{file} does not implement required duck-file methods: close and (read or write)"
        )
    return AsyncIOWrapper(file)
