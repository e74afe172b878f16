"""The buffered binary layer of async files: :class:`AsyncBufferedFile` (the async
``io.BufferedReader``/``BufferedWriter``/``BufferedRandom``)."""

from __future__ import annotations

import errno
import operator
import os
from collections.abc import Awaitable, Callable, Iterable
from io import UnsupportedOperation
from typing import Any

from .._core import CancelScope
from .._core import checkpoint as _checkpoint
from ._file_base import (
    SEEK_DATA_HOLE,
    BinaryFileBase,
    byte_view,
    exclusive,
    size_arg,
)
from ._file_raw import AsyncFileIO

__all__ = ["AsyncBufferedFile"]


# --------------------------------------------------------------------------------------------
# Buffered binary files: io.BufferedReader / BufferedWriter / BufferedRandom
# --------------------------------------------------------------------------------------------


class AsyncBufferedFile(BinaryFileBase):
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
            raise UnsupportedOperation(what)

    def _check_writable(self, what: str = "write") -> None:
        if not self._raw._writable:
            raise UnsupportedOperation(what)

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
        if avail == 0 and size >= self._bufsize:
            # Nothing buffered and a big read: straight from the raw file, no copies.
            raw = self._raw
            want = raw._cap(size)
            data = await raw._read(want)
            if len(data) >= size or not data or (len(data) < want and raw._regular):
                return data
            # Short (a pipe, or a capped read): keep it and go on filling.
            self._rbuf = data
            self._rpos = 0
            avail = len(data)
            did_io = True
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
        view = byte_view(data)
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

    @exclusive
    async def _locked_sync(self) -> None:
        await self._flush_writes()
        self._drop_read_ahead()

    # --- public API ---

    @exclusive
    async def read(self, size: int | None = -1) -> bytes:
        """Read ``size`` bytes, fewer only at end of file; everything left with ``size``
        -1 or None."""
        self._check_readable()
        size = size_arg(size)
        if size < -1:
            raise ValueError("read length must be non-negative or -1")
        return await self._read(size)

    @exclusive
    async def read1(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes with at most one op (``b""`` only at end of file)."""
        self._check_readable("read1")
        return await self._read1(size_arg(size))

    @exclusive
    async def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` (fewer bytes only at end of file); returns the count."""
        return await self._read_into(buffer, self._read)

    @exclusive
    async def readinto1(self, buffer: Any) -> int:
        """Read into ``buffer`` with at most one op; returns the count."""
        return await self._read_into(buffer, self._read1)

    async def _read_into(self, buffer: Any, read: Callable[[int], Awaitable[bytes]]) -> int:
        self._check_readable()
        view = byte_view(buffer)
        data = await read(view.nbytes)
        view[: len(data)] = data
        return len(data)

    @exclusive
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

    @exclusive
    async def write(self, data: Any) -> int:
        """Buffer ``data`` (writing out when the buffer fills); returns ``len(data)``."""
        self._check_writable()
        return await self._write(data)

    async def writelines(self, lines: Iterable[Any]) -> None:
        """Write each item of ``lines`` (no newlines are added)."""
        for line in lines:
            await self.write(line)

    @exclusive
    async def flush(self) -> None:
        """Write out buffered data. If cancelled midway, what was not written stays
        buffered (nothing is written twice)."""
        if self._wbuf:
            await self._flush_writes()
        else:
            await _checkpoint()

    @exclusive
    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position; returns the new absolute position."""
        if whence not in (0, 1, 2) and whence not in SEEK_DATA_HOLE:
            raise ValueError(f"whence value {whence} unsupported")
        raw = self._raw
        if not raw._is_seekable():
            raise UnsupportedOperation("File or stream is not seekable.")
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

    @exclusive
    async def truncate(self, size: int | None = None) -> int:
        """Flush, then resize the file to ``size`` (default: the current position). The
        position doesn't move; returns the new size."""
        self._check_writable("truncate")
        if size is None:
            size = self._tell()
        await self._flush_writes()
        self._drop_read_ahead()
        return await self._raw._truncate(size)
