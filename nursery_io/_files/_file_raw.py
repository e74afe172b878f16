"""The unbuffered layer of async files: :class:`AsyncFileIO`, the async ``io.FileIO``. It
also holds the state all three layers share: the fd, the position, whose turn it is."""

from __future__ import annotations

import errno
import io
import operator
import os
import stat as _stat
import warnings
from collections.abc import Iterable
from io import UnsupportedOperation
from typing import Any, Final

from .._core import ParkingLot
from .._core import checkpoint as _checkpoint
from .._core._ops import read_at as _read_at
from .._core._ops import run_op as _run_op
from .._kernel import ops as _ops
from ._file_base import (
    SEEK_DATA_HOLE,
    BinaryFileBase,
    byte_view,
    closed_error,
    exclusive,
    ring_data,
    size_arg,
)

__all__ = ["AsyncFileIO"]

# A read larger than the file (by this much) is capped, so read(huge) on a small file does not
# allocate ``huge`` bytes first.
_READ_SLACK: Final = 1 << 20
# readall() reads at most this much per op, so a huge file isn't first read into a buffer
# the size of the file and then copied out of it.
_READALL_CHUNK: Final = 1 << 26


# --------------------------------------------------------------------------------------------
# Unbuffered binary files (buffering=0): one op per call, like io.FileIO
# --------------------------------------------------------------------------------------------


class AsyncFileIO(BinaryFileBase):
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
        # Our own position for regular files; None means "the kernel's" (see the package docstring).
        self._pos: int | None = pos if self._regular and not append else None
        self._size_hint = st.st_size
        self._blksize = st.st_blksize if st.st_blksize > 1 else io.DEFAULT_BUFFER_SIZE
        # Bytes read from a non-seekable file and handed back by a cancelled multi-op read.
        self._pending = b""
        # Turn-taking: _busy while one task owns the position/buffers; waiters park in
        # _turn_lot and are handed the turn in order. _positional counts pread/pwrite in
        # flight (they don't take turns), so aclose can wait for them.
        self._busy = False
        self._turn_lot: ParkingLot | None = None
        self._positional = 0
        self._idle_lot: ParkingLot | None = None

    # --- turn-taking ---

    async def _wait_turn(self) -> None:
        lot = self._turn_lot
        if lot is None:
            lot = self._turn_lot = ParkingLot()
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
            lot = self._idle_lot = ParkingLot()
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
        if fd >= 0 and getattr(self, "_closefd", False):
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
            raise closed_error()
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
            raise UnsupportedOperation("File not open for reading")

    def _check_writable(self) -> None:
        if not self._writable:
            raise UnsupportedOperation("File not open for writing")

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
        data: bytes = await _read_at(self._fd, size, pos)
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
        want = min(want, _READALL_CHUNK)
        try:
            while True:
                data = await self._read(want)
                if not data:
                    break
                chunks.append(data)
                total += len(data)
                if len(data) < want and self._regular:
                    break
                want = min(max(total, 8192), _READALL_CHUNK)
        except BaseException:
            self._unread(b"".join(chunks))
            raise
        if pos is not None and self._pos is not None and self._pos > self._size_hint:
            self._size_hint = self._pos
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    async def _readinto(self, buffer: Any) -> int:
        view = byte_view(buffer)
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
            n = await self._write(ring_data(data))
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
        elif whence in SEEK_DATA_HOLE:
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

    @exclusive
    async def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes with one op (all of the rest with ``size < 0``).
        Returns ``b""`` at end of file."""
        self._check_readable()
        size = size_arg(size)
        if size < 0:
            return await self._readall()
        if size == 0:
            await _checkpoint()
            return b""
        return await self._read(self._cap(size))

    @exclusive
    async def readinto(self, buffer: Any) -> int:
        """Read into a writable buffer with one op, without copying; returns the count."""
        self._check_readable()
        return await self._readinto(buffer)

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

    @exclusive
    async def write(self, data: Any) -> int:
        """Write with one op; returns how many bytes were written (possibly fewer)."""
        self._check_writable()
        view = byte_view(data)
        if not view.nbytes:
            await _checkpoint()
            return 0
        return await self._write(ring_data(view))

    async def writelines(self, lines: Iterable[Any]) -> None:
        """Write each item of ``lines`` in full (no newlines are added)."""
        for line in lines:
            await self._write_fully(line)

    @exclusive
    async def _write_fully(self, data: Any) -> None:
        self._check_writable()
        await self._write_all(byte_view(data))

    @exclusive
    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the file position; returns the new absolute position."""
        return await self._seek(offset, whence)

    @exclusive
    async def truncate(self, size: int | None = None) -> int:
        """Resize the file to ``size`` bytes (default: the current position); the position
        doesn't move. Returns the new size."""
        self._check_writable()
        return await self._truncate(size)

    async def flush(self) -> None:
        """Nothing to flush in an unbuffered file; a checkpoint all the same."""
        if self._fd < 0:
            raise closed_error()
        await _checkpoint()
