"""Sending files: :meth:`SocketType.sendfile <nursery_io.socket.SocketType.sendfile>` and
:func:`send_file`.

Zero-copy on io_uring. ``splice(2)`` moves page references, not bytes, but one side of it
must be a pipe, so each chunk is two SPLICE ops linked in one submission (``IOSQE_IO_LINK``):
file -> pipe, then pipe -> socket, which the kernel starts as soon as the first completed
in full. Both run in the kernel's io-wq worker threads: a cold read waits for the disk
there, never in the loop thread, and the process itself stays single-threaded. The pipe is
the run's (``FileEngine.pipes``), borrowed for one transfer.

The socket is non-blocking, so the second splice sends what fits and reports a short count
or ``EAGAIN`` when the socket buffer is full; the rest stays in the pipe. We then wait for
writability on epoll like any send and resubmit a pipe -> socket splice for what is left,
before reading more of the file. A short first splice (end of file) ends the chain, its
second half completes as cancelled, and what it read goes out the same way. The pipe side
of a send never blocks either (``SPLICE_F_NONBLOCK``), so no kernel worker ever waits on
the network.

Cancellation: every op of the chain in flight is asked to stop and awaited, as for any op.
Bytes the file splice already put in the pipe are never sent later: a pipe that is not
empty at the end of a transfer is closed (that discards them) instead of being reused.

Without the ring (``NURSERY_IO_URING=0``, no io_uring, or no SPLICE in the probe) each chunk
is an ``os.sendfile`` in a worker thread, with the same results.

Cached data skips both: when ``cachestat(2)`` says the next chunk is in the page cache and
up to date (:mod:`nursery_io._kernel.cachestat`), an ``os.sendfile`` right on the loop
thread can't wait for the disk, so it runs there, like the inline ``RWF_NOWAIT`` reads: no
io-wq hand-off, no thread (``inline_sendfiles`` in the statistics). The check is made right
before each call; after the first chunk found missing, the rest of the transfer goes to the
ring or the threads, because their reads start readahead of what follows, which the cache
counts before it is read in. Inline sends follow the inline reads' switch (off with
``NURSERY_IO_INLINE_READS=0`` or ``NURSERY_IO_URING=0``) and need Linux 6.5.
"""

from __future__ import annotations

import errno
import fcntl
import inspect
import io
import os
import socket as _stdlib_socket
import stat as _stat
import termios
from typing import TYPE_CHECKING, Any, Final

from .._core import (
    BrokenResourceError,
    BusyResourceError,
    CancelScope,
    ClosedResourceError,
    checkpoint,
    wait_writable,
)
from .._core._context import current_runner
from .._core._ops import read_at, run_linked, run_op
from .._kernel import ops as _ops
from .._kernel.uring import abi
from ._highlevel_socket import _BROKEN_BY_SEND_FILE, _BUSY_SENDING, SocketStream, _stream_error

if TYPE_CHECKING:
    from ..abc import Stream
    from ._socket import SocketType

__all__ = ["send_file", "sock_sendfile"]

_PAGE: Final = os.sysconf("SC_PAGE_SIZE")
# What one os.sendfile (thread engine) or read + send_all (other streams) moves at most.
_THREAD_CHUNK: Final = 1 << 20
# What one inline os.sendfile of cached data tries to send (it sends what fits).
_INLINE_WINDOW: Final = 1 << 20
_STREAM_CHUNK: Final = 1 << 18
_MAX_COUNT: Final = 1 << 30  # CPython caps sendfile blocks at 1 GiB too (bpo-38319)
_TAIL_FLAGS: Final = abi.SPLICE_F_NONBLOCK
# A file splice that fails like this before anything was sent means "this file can't be
# spliced" (no splice_read): fall back to reading it.
_NO_SPLICE_ERRNOS: Final = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS})


class _NotSpliceable(Exception):
    pass


def _pipe_bytes(fd: int) -> int:
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, "little")


class _Transfer:
    """One file -> socket transfer. ``sent`` is exact at every moment, exceptions included:
    it only grows by what the kernel reported as sent."""

    __slots__ = ("count", "in_fd", "offset", "sent", "sock", "sock_fd")

    def __init__(self, sock: Any, sock_fd: int, in_fd: int, offset: int, count: int) -> None:
        self.sock = sock  # what wait_writable waits on
        self.sock_fd = sock_fd
        self.in_fd = in_fd
        self.offset = offset
        self.count = count  # bytes to send at most
        self.sent = 0

    async def run(self) -> int:
        engine = current_runner().kernel.engine
        try:
            await self._send(engine, engine.splice_on_ring)
        except _NotSpliceable:
            if not engine.splice_on_ring:
                raise
            await self._send(engine, False)
        return self.sent

    async def _send(self, engine: Any, on_ring: bool) -> None:
        """Chunk after chunk: inline from the page cache when ``cachestat`` says the next
        one is there, else a ring SPLICE chain (``on_ring``) or ``os.sendfile`` in a worker
        thread. A chunk's leftovers in the pipe go out before anything else is read."""
        cache = engine.page_cache
        inline = cache.enabled
        pipes = engine.pipes if on_ring else None
        pipe: tuple[int, int, int] | None = None
        in_pipe = 0  # read from the file into the pipe, not yet sent
        must_wait = False  # the socket was full: wait for room before sending more
        end_of_file = False
        try:
            while True:
                if in_pipe:
                    assert pipe is not None
                    if must_wait:
                        await wait_writable(self.sock)
                    op = _ops.splice(pipe[0], None, self.sock_fd, None, in_pipe, _TAIL_FLAGS)
                    try:
                        await run_linked((op,))
                    finally:
                        n = self._sent_by(op)
                        in_pipe -= n
                    must_wait = bool(in_pipe)
                    continue
                todo = self.count - self.sent
                if end_of_file or not todo:
                    return
                waited = must_wait
                if must_wait:
                    await wait_writable(self.sock)
                pos = self.offset + self.sent
                if inline:
                    if not waited:
                        await checkpoint()  # every chunk is a checkpoint
                    # Checked right before the call, with no await in between: pages can be
                    # evicted at any time, so an answer from before a wait means nothing.
                    window = min(todo, _INLINE_WINDOW)
                    if cache.ready(self.in_fd, pos, window):
                        must_wait, end_of_file = self._send_inline(pos, window)
                        cache.count_sent()
                        continue
                    # A miss: this file is being read from the disk, and the ring's reads
                    # start readahead of what follows, which the cache then counts before
                    # it is read in. So the rest of this transfer stays off the loop.
                    inline = False
                if pipes is None:
                    must_wait, end_of_file = await self._thread_chunk(pos, todo)
                    continue
                if pipe is None:
                    pipe = pipes.take()
                in_pipe, must_wait, end_of_file = await self._ring_chunk(pipe, pos, todo)
        finally:
            if pipe is not None:
                assert pipes is not None
                # Reuse the pipe only if it is verifiably empty: a cancelled or failed
                # transfer may have left file data in it, which must never go out with the
                # next one.
                try:
                    empty = _pipe_bytes(pipe[0]) == 0
                except OSError:
                    empty = False
                pipes.give_back(pipe, empty=empty)

    def _send_inline(self, pos: int, want: int) -> tuple[bool, bool]:
        """One ``os.sendfile`` on the loop thread, of a cached range: the socket is
        non-blocking, so it sends what fits and returns. -> (must_wait, end_of_file)."""
        try:
            n = os.sendfile(self.sock_fd, self.in_fd, pos, want)
        except BlockingIOError:
            return True, False
        except OSError as exc:
            if not self.sent and exc.errno in _NO_SPLICE_ERRNOS:
                raise _NotSpliceable from None
            raise
        self.sent += n
        return n < want, not n  # 0: the file ended early (it shrank)

    async def _ring_chunk(
        self, pipe: tuple[int, int, int], pos: int, todo: int
    ) -> tuple[int, bool, bool]:
        """file -> pipe -> socket as one linked pair of SPLICE ops.
        -> (bytes left in the pipe, must_wait, end_of_file)."""
        r, w, capacity = pipe
        # Start every chunk but the first on a page boundary: a chunk of `capacity` bytes
        # then needs exactly capacity/PAGE pipe slots, so only the end of the file can make
        # the file splice short.
        want = min(todo, capacity - pos % _PAGE if capacity > _PAGE else capacity)
        more = abi.SPLICE_F_MORE if want < todo else 0
        head = _ops.splice(self.in_fd, pos, w, None, want, 0)
        tail = _ops.splice(r, None, self.sock_fd, None, want, _TAIL_FLAGS | more)
        try:
            await run_linked((head, tail))
        finally:
            got = head.result if head.error is None and not head.cancelled else 0
            n = self._sent_by(tail) if got else 0
        error = head.error
        if error is not None:
            if not self.sent and isinstance(error, OSError) and error.errno in _NO_SPLICE_ERRNOS:
                raise _NotSpliceable
            raise error
        in_pipe = got - n
        return in_pipe, bool(in_pipe) and not tail.cancelled, got < want

    def _sent_by(self, op: _ops.Op) -> int:
        """What a pipe -> socket splice sent (0 if it didn't run or the socket was full);
        raises its error otherwise."""
        if op.cancelled:
            return 0
        error = op.error
        if error is not None:
            if isinstance(error, BlockingIOError):
                return 0
            raise error
        n: int = op.result
        self.sent += n
        return n

    async def _thread_chunk(self, pos: int, todo: int) -> tuple[bool, bool]:
        """One ``os.sendfile`` in a worker thread. -> (must_wait, end_of_file)."""
        want = min(todo, _THREAD_CHUNK)
        op = _ops.sendfile(self.sock_fd, self.in_fd, pos, want)
        try:
            n: int = await run_op(op)
        except BlockingIOError:
            return True, False
        except OSError as exc:
            if not self.sent and exc.errno in _NO_SPLICE_ERRNOS:
                raise _NotSpliceable from None
            raise
        self.sent += n
        return n < want, not n


# --- the file argument ------------------------------------------------------------------------


def _file_fd(file: Any) -> int | None:
    """The descriptor behind ``file`` (an int, or anything with ``fileno()``), or None."""
    if isinstance(file, int) and not isinstance(file, bool):
        return file
    fileno = getattr(file, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
    except (AttributeError, io.UnsupportedOperation, OSError):
        return None
    return fd if isinstance(fd, int) else None


async def _prepare_file(file: Any) -> None:
    # Buffered writes of one of our files must be in the file before the kernel reads it.
    if hasattr(file, "_has_unflushed") and file._has_unflushed():
        await file.flush()


async def _set_position(file: Any, position: int) -> None:
    """``file.seek(position)`` for sync and async file objects, even while ``Cancelled`` is
    on its way out (the stdlib moves the position in a ``finally`` too). Plain fds are left
    alone, as ``os.sendfile`` leaves them."""
    if isinstance(file, int) or not hasattr(file, "seek"):
        return
    result = file.seek(position)
    if inspect.isawaitable(result):
        with CancelScope(shield=True):
            await result


def _check_count(count: int | None) -> None:
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")


# --- socket.sendfile --------------------------------------------------------------------------


async def sock_sendfile(
    sock: SocketType, file: Any, offset: int = 0, count: int | None = None
) -> int:
    """:meth:`nursery_io.socket.SocketType.sendfile`."""
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if not sock.type & _stdlib_socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    _check_count(count)
    raw = getattr(sock, "_sock", None)
    fd = _file_fd(file)
    size = None
    if fd is not None:
        await _prepare_file(file)
        try:
            st = os.fstat(fd)  # an open fd's inode is in memory: never waits for the disk
        except OSError:
            fd = None
        else:
            if not st.st_size:
                await checkpoint()
                return 0  # as the stdlib does, for an empty file (and a pipe)
            if _stat.S_ISREG(st.st_mode):
                size = st.st_size
    if fd is None or size is None or offset < 0:
        return await _sock_sendfile_by_send(sock, file, offset, count)
    todo = max(0, size - offset)
    if count:
        todo = min(todo, count)
    transfer = _Transfer(raw if raw is not None else sock, sock.fileno(), fd, offset, todo)
    try:
        if not todo:
            await checkpoint()
        else:
            await transfer.run()
    except _NotSpliceable:
        return await _sock_sendfile_by_send(sock, file, offset, count)
    finally:
        if transfer.sent:
            await _set_position(file, offset + transfer.sent)
    return transfer.sent


async def _read_file(file: Any, size: int) -> bytes:
    result = file.read(size)
    if inspect.isawaitable(result):
        result = await result
    return bytes(result)


async def _sock_sendfile_by_send(
    sock: SocketType, file: Any, offset: int, count: int | None
) -> int:
    # The stdlib's fallback for what os.sendfile can't send: seek, read, send.
    if isinstance(file, int):
        raise ValueError(f"can't send fd {file}: not a regular file")
    if offset:
        await _set_position(file, offset)
    block = min(count, 8192) if count else 8192
    sent = 0
    try:
        while True:
            if count:
                block = min(count - sent, block)
                if block <= 0:
                    break
            data = await _read_file(file, block)
            if not data:
                break
            with memoryview(data) as view:
                done = 0
                while done < len(view):
                    n = await sock.send(view[done:])
                    done += n
                    sent += n
        return sent
    finally:
        if sent:
            await _set_position(file, offset + sent)


# --- send_file --------------------------------------------------------------------------------


async def send_file(stream: Stream, file: Any, offset: int = 0, count: int | None = None) -> int:
    """Send ``count`` bytes of ``file`` (all of it to the end of the file if None) starting
    at ``offset`` on ``stream``; returns the number of bytes sent.

    ``file`` is a file descriptor or a file object with ``fileno()``: one of nursery_io's
    async files, a stdlib binary file, ... Its position ends up after the last byte sent
    (``offset`` + the result), as :meth:`socket.socket.sendfile` leaves it; a plain fd's
    position is not touched.

    On a :class:`~nursery_io.SocketStream` the data goes from the page cache to the socket
    without passing through Python (zero-copy splice on io_uring, ``os.sendfile`` in a
    worker thread otherwise). On any other stream (:class:`~nursery_io.SSLStream`, ...) it
    is read in chunks by the file engine and sent with ``send_all``.

    Like ``send_all``: if cancelled, or if the peer goes away, a prefix of the data may have
    been sent. The stream is then broken (:class:`~nursery_io.BrokenResourceError` from
    later sends), since nobody can know how much of the file the peer got.
    """
    _check_count(count)
    if offset < 0:
        raise ValueError(f"offset must be a non-negative integer (got {offset!r})")
    fd = _file_fd(file)
    if fd is None:
        raise TypeError(
            f"send_file() needs a file descriptor or a file with fileno(), not {file!r}"
        )
    await _prepare_file(file)
    regular = False
    size = 0
    try:
        st = os.fstat(fd)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise ClosedResourceError("the file was already closed") from None
        raise
    regular = _stat.S_ISREG(st.st_mode)
    size = st.st_size
    todo = max(0, size - offset) if regular else _MAX_COUNT * 1024
    if count:
        todo = min(todo, count)
    progress = _Transfer(None, -1, fd, offset, todo)
    try:
        if type(stream) is SocketStream:
            await _send_file_zero_copy(stream, progress, regular)
        else:
            await _send_file_by_reading(stream, progress, regular)
    finally:
        if progress.sent:
            await _set_position(file, offset + progress.sent)
    return progress.sent


async def _send_file_zero_copy(stream: SocketStream, transfer: _Transfer, regular: bool) -> None:
    if stream._send_broken:
        raise BrokenResourceError(_BROKEN_BY_SEND_FILE)
    if stream.socket.did_shutdown_SHUT_WR:
        raise ClosedResourceError("can't send data after sending EOF")
    if stream._sending:
        raise BusyResourceError(_BUSY_SENDING)
    sock = stream.socket
    if sock.fileno() == -1:
        raise ClosedResourceError("this socket was already closed")
    if not regular or not transfer.count:
        await _send_file_by_reading(stream, transfer, regular)
        return
    stream._sending = True
    raw = stream._raw
    transfer.sock = raw if raw is not None else sock
    transfer.sock_fd = sock.fileno()
    try:
        await transfer.run()
    except OSError as exc:
        error = _stream_error(exc)
        if isinstance(error, BrokenResourceError):
            stream._send_broken = True
        raise error  # noqa: B904  (the cause is set inside)
    except BaseException:
        # Cancelled (or KeyboardInterrupt) after part of the file went out: the peer has
        # a prefix of it and no way to tell, so the stream can't carry anything else.
        if transfer.sent:
            stream._send_broken = True
        raise
    finally:
        stream._sending = False


async def _send_file_by_reading(stream: Stream, transfer: _Transfer, regular: bool) -> None:
    fd = transfer.in_fd
    while transfer.sent < transfer.count:
        size = min(transfer.count - transfer.sent, _STREAM_CHUNK)
        if regular:
            data = await read_at(fd, size, transfer.offset + transfer.sent)
        else:
            data = await run_op(_ops.read(fd, size, None))
        if not data:
            break
        await stream.send_all(data)
        transfer.sent += len(data)
    if not transfer.sent:
        await checkpoint()
