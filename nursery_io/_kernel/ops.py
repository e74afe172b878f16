"""``Op``: one disk operation, runnable by either engine (docs/design.rst, "One Op, two
engines").

An Op is the operation, not its SQE: a :class:`~.kinds.Kind` plus named fields (``fd``,
``path``, ``offset``, ``length``, ``flags``, ...). The kind says how the ring encodes those
fields, which blocking ``os`` call the worker pool makes instead, and how a ring result
becomes what that call returns, so callers get the same value (bytes, fd,
``os.stat_result``, None) from both engines (see ``kinds.py``).

The memory the kernel reads or writes by address (``buffer``, and the encoded paths
``c_path`` / ``c_path2``) is held by the Op until its CQE has been reaped: the kernel may
write into a buffer right up to that CQE, even after a cancel request, so dropping it
earlier would be a use-after-free.

Constructors are module functions named after the ``os`` call they mirror (``stat``,
``rename``, ...), with the same argument conventions; ``pool_only()`` wraps any blocking
callable (listdir, chmod, realpath, ...) for operations io_uring can't do.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from . import kinds
from .kinds import NO_OPCODE, Kind
from .uring import abi

__all__ = [
    "NO_OPCODE",
    "Op",
    "SpliceOp",
    "close",
    "fallocate",
    "fdatasync",
    "fstat",
    "fsync",
    "ftruncate",
    "link",
    "lstat",
    "mkdir",
    "nop",
    "openat",
    "pool_only",
    "read",
    "readinto",
    "rename",
    "rmdir",
    "sendfile",
    "splice",
    "stat",
    "symlink",
    "unlink",
    "write",
]

_c_char = ctypes.c_char
_string_buffer = ctypes.create_string_buffer

if TYPE_CHECKING:
    PathArg = str | bytes | os.PathLike[Any]


class OpHolder(Protocol):
    """What holds a submitted op until it completes (an engine): it can be asked to cancel."""

    def cancel(self, op: Op) -> None: ...


def _fspath_and_encoded(path: Any) -> tuple[Any, bytes]:
    """``os.fspath(path)`` and its NUL-terminated encoding for the kernel."""
    path = os.fspath(path)
    encoded = os.fsencode(path)
    if b"\0" in encoded:  # the kernel would silently stop at it; os.* raises
        raise ValueError("embedded null byte")
    return path, encoded


class Op:
    """One operation. Engine-owned fields (``user_data``, ``_owner``, ``_on_complete``) are
    written only by the engine; callers read ``result`` / ``error`` / ``cancelled`` in their
    ``on_complete`` callback."""

    __slots__ = (
        "_on_complete",
        "_owner",
        "_ring_errno",
        "args",
        "buffer",
        "c_path",
        "c_path2",
        "call",
        "cancel_requested",
        "cancelled",
        "data",
        "dir_fd",
        "dir_fd2",
        "engine",
        "error",
        "fd",
        "fd_in",
        "flags",
        "kind",
        "length",
        "mode",
        "name",
        "offset",
        "offset_in",
        "on_abandoned",
        "path",
        "path2",
        "result",
        "user_data",
    )

    kind: Kind
    name: str
    fd: int
    path: Any  # str | bytes (what os.* calls get and errors name) or None
    path2: Any
    c_path: bytes | None
    c_path2: bytes | None
    dir_fd: int | None
    dir_fd2: int | None
    offset: int | None
    length: int
    flags: int
    mode: int
    buffer: Any
    data: Any
    fd_in: int
    offset_in: int | None
    call: Callable[..., Any] | None
    args: tuple[Any, ...]
    result: Any
    error: BaseException | None
    cancelled: bool
    cancel_requested: bool
    engine: str | None
    on_abandoned: Callable[[Op], None] | None
    user_data: int
    _owner: OpHolder | None
    _on_complete: Callable[[Op], None] | None
    _ring_errno: int

    def __init__(
        self,
        kind: Kind,
        *,
        fd: int = -1,
        path: PathArg | None = None,
        dir_fd: int | None = None,
        path2: PathArg | None = None,
        dir_fd2: int | None = None,
        offset: int | None = None,
        length: int = 0,
        flags: int = 0,
        mode: int = 0,
        buffer: Any = None,
        data: Any = None,
        name: str | None = None,
    ) -> None:
        self.kind = kind
        self.name = kind.name if name is None else name
        #: The file the op works on (-1: none).
        self.fd = fd
        #: The path(s), as given to ``os`` (``os.fspath()`` of the argument: errors name it),
        #: and the directories they are relative to (None: the working directory).
        self.path = self.c_path = self.path2 = self.c_path2 = None
        if path is not None:
            self.path, self.c_path = _fspath_and_encoded(path)
            if path2 is not None:
                self.path2, self.c_path2 = _fspath_and_encoded(path2)
        self.dir_fd = dir_fd
        self.dir_fd2 = dir_fd2
        #: Where in the file (None: at the current position), and how many bytes.
        self.offset = offset
        self.length = length
        #: The operation's own flags (open flags, AT_* flags, RENAME_*, SPLICE_F_*) and mode.
        self.flags = flags
        self.mode = mode
        #: The memory the kernel reads or writes by address; None once it is done with it.
        self.buffer = buffer
        #: The caller's buffer (what a write writes, what ``readinto`` fills).
        self.data = data
        self.fd_in = -1
        self.offset_in = None
        self.call = None
        self.args = ()
        #: The outcome, set before on_complete runs: exactly one of these is meaningful.
        self.result = None
        self.error = None
        self.cancelled = False
        #: True once cancel() was called (the result may still be a real one).
        self.cancel_requested = False
        #: Which engine produced the outcome: "io_uring", "threads" or "inline" (None: not yet).
        self.engine = None
        #: Called with the op when its result can't reach a waiter (see ``discard()``).
        self.on_abandoned = None
        self.user_data = 0  # 0: never submitted
        self._owner = None  # the engine holding it, until it completes
        self._on_complete = None
        # Set by the engine when the ring answered EOPNOTSUPP/EINVAL and the op was rerun.
        self._ring_errno = 0

    @property
    def opcode(self) -> int:
        """The io_uring opcode (``NO_OPCODE``: the worker pool only)."""
        return self.kind.opcode

    @property
    def filename(self) -> Any:
        """The path an error names (as ``OSError.filename``)."""
        return self.path

    @property
    def filename2(self) -> Any:
        return self.path2

    def blocking(self) -> Any:
        """Do the operation with plain blocking ``os`` calls (the worker pool's way)."""
        return self.kind.blocking(self)

    def convert(self, res: int) -> Any:
        """The result ``blocking()`` would have returned, from a ring result ``res >= 0``."""
        convert = self.kind.convert
        return res if convert is None else convert(self, res)

    def release(self) -> None:
        """Drop the memory the kernel reads or writes: it is done with it (its CQE was
        reaped) or never saw it. A caller's buffer is resizable again afterwards."""
        self.buffer = self.c_path = self.c_path2 = None

    def make_error(self, err: int) -> OSError:
        """The exception ``blocking()`` would have raised for ``errno`` ``err``."""
        if self.path2 is not None:
            return OSError(err, os.strerror(err), self.path, None, self.path2)
        if self.path is not None:
            return OSError(err, os.strerror(err), self.path)
        return OSError(err, os.strerror(err))

    def discard(self) -> None:
        """Undo a result nobody will receive (e.g. close the fd an ``openat`` returned after
        its waiter was cancelled and went away). Calls ``on_abandoned`` once, if the op
        succeeded; safe to call more than once."""
        hook = self.on_abandoned
        if hook is not None and self.error is None and not self.cancelled and self.engine:
            self.on_abandoned = None
            hook(self)

    def __repr__(self) -> str:
        if self.cancelled:
            state = "cancelled"
        elif self.error is not None:
            state = f"error={self.error!r}"
        elif self.engine is not None:
            state = f"result={self.result!r:.60}"
        else:
            state = "pending"
        return f"<Op {self.name} {state}>"


def close_result_fd(op: Op) -> None:
    """``on_abandoned`` for an op whose result is a new fd: nobody will use it, close it."""
    fd = op.result
    if isinstance(fd, int):
        op.result = None
        try:
            os.close(fd)
        except OSError:
            pass


def _writable_export(buffer: Any) -> tuple[memoryview, Any]:
    """A byte view of a writable buffer and a ctypes export of it. While the export lives a
    ``bytearray`` can't be resized (``BufferError``), so its memory can't move under the
    kernel."""
    view = memoryview(buffer).cast("B")  # also rejects non-contiguous buffers, as os.* does
    return view, (_c_char * view.nbytes).from_buffer(view)


# --- constructors -----------------------------------------------------------------------------


def nop() -> Op:
    """A no-op (measures the ring's own overhead)."""
    return Op(kinds.NOP)


def openat(
    path: str | bytes | os.PathLike[Any],
    flags: int,
    mode: int = 0o777,
    *,
    dir_fd: int | None = None,
) -> Op:
    """``os.open(path, flags, mode, dir_fd=dir_fd)`` -> fd.

    Like ``os.open`` the fd is non-inheritable (``O_CLOEXEC`` is added). ``on_abandoned``
    closes the fd, so an open that completes after its waiter gave up does not leak it.

    Unlike ``os.open``, the open is tried with ``O_NONBLOCK`` first (cleared again afterwards
    unless ``flags`` has it), as io_uring does: a FIFO's read end then opens at once, and
    its write end fails with ``ENXIO`` while there is no reader. (The ring waits for the peer
    instead when it retries the open in a kernel worker, e.g. with ``O_CREAT``; the worker
    pool never waits.) :func:`nursery_io.open_file` waits for the peer, as ``open()`` does.
    """
    op = Op(kinds.OPENAT, path=path, dir_fd=dir_fd, flags=flags, mode=mode)
    op.on_abandoned = close_result_fd
    return op


def close(fd: int) -> Op:
    """``os.close(fd)`` -> None."""
    return Op(kinds.CLOSE, fd=fd)


def read(fd: int, length: int, offset: int | None = None) -> Op:
    """``os.pread(fd, length, offset)`` (or ``os.read`` when offset is None) -> bytes."""
    if length < 0:
        raise ValueError("negative length")
    return Op(kinds.READ, fd=fd, offset=offset, length=length, buffer=_string_buffer(length))


def readinto(fd: int, buffer: Any, offset: int | None = None) -> Op:
    """Read into the caller's writable buffer (bytearray, memoryview, mmap, array...) -> count.

    The Op holds the buffer and a ctypes export of it until the CQE: while the export lives a
    ``bytearray`` can't be resized (``BufferError``), so its memory can't move under the kernel.
    """
    if memoryview(buffer).readonly:
        raise TypeError("readinto() needs a writable buffer")
    view, export = _writable_export(buffer)
    return Op(kinds.READ_INTO, fd=fd, offset=offset, length=view.nbytes, buffer=export, data=buffer)


def write(fd: int, data: Any, offset: int | None = None) -> Op:
    """``os.pwrite(fd, data, offset)`` (or ``os.write`` when offset is None) -> count."""
    if type(data) is bytes:
        return Op(kinds.WRITE, fd=fd, offset=offset, length=len(data), buffer=data, data=data)
    view = memoryview(data).cast("B")
    if view.readonly:  # no way to take the address of a read-only export: copy it
        data = view.tobytes()
        return Op(kinds.WRITE, fd=fd, offset=offset, length=len(data), buffer=data, data=data)
    view, export = _writable_export(data)
    return Op(kinds.WRITE, fd=fd, offset=offset, length=view.nbytes, buffer=export, data=data)


def fsync(fd: int) -> Op:
    """``os.fsync(fd)`` -> None."""
    return Op(kinds.FSYNC, fd=fd)


def fdatasync(fd: int) -> Op:
    """``os.fdatasync(fd)`` -> None."""
    return Op(kinds.FDATASYNC, fd=fd)


def stat(
    path: str | bytes | os.PathLike[Any] | int,
    *,
    dir_fd: int | None = None,
    follow_symlinks: bool = True,
) -> Op:
    """``os.stat(path, dir_fd=..., follow_symlinks=...)`` -> ``os.stat_result`` (STATX)."""
    if isinstance(path, int):
        return fstat(path)
    return Op(
        kinds.STAT,
        path=path,
        dir_fd=dir_fd,
        flags=0 if follow_symlinks else abi.AT_SYMLINK_NOFOLLOW,
        buffer=_string_buffer(abi.STATX_BUFFER_SIZE),
    )


def lstat(path: str | bytes | os.PathLike[Any], *, dir_fd: int | None = None) -> Op:
    """``os.lstat(path)`` -> ``os.stat_result``."""
    return stat(path, dir_fd=dir_fd, follow_symlinks=False)


def fstat(fd: int) -> Op:
    """``os.fstat(fd)`` -> ``os.stat_result`` (STATX on ``(fd, "", AT_EMPTY_PATH)``)."""
    return Op(kinds.FSTAT, fd=fd, buffer=_string_buffer(abi.STATX_BUFFER_SIZE))


def rename(
    src: str | bytes | os.PathLike[Any],
    dst: str | bytes | os.PathLike[Any],
    *,
    src_dir_fd: int | None = None,
    dst_dir_fd: int | None = None,
    flags: int = 0,
) -> Op:
    """``os.rename(src, dst)`` / ``os.replace`` -> None. ``flags``: ``abi.RENAME_*``."""
    return Op(kinds.RENAME, path=src, dir_fd=src_dir_fd, path2=dst, dir_fd2=dst_dir_fd, flags=flags)


def unlink(path: str | bytes | os.PathLike[Any], *, dir_fd: int | None = None) -> Op:
    """``os.unlink(path)`` -> None."""
    return Op(kinds.UNLINK, path=path, dir_fd=dir_fd)


def rmdir(path: str | bytes | os.PathLike[Any], *, dir_fd: int | None = None) -> Op:
    """``os.rmdir(path)`` -> None (UNLINKAT with ``AT_REMOVEDIR``)."""
    return Op(kinds.RMDIR, path=path, dir_fd=dir_fd)


def mkdir(
    path: str | bytes | os.PathLike[Any], mode: int = 0o777, *, dir_fd: int | None = None
) -> Op:
    """``os.mkdir(path, mode)`` -> None (the umask applies, as with ``os.mkdir``)."""
    return Op(kinds.MKDIR, path=path, dir_fd=dir_fd, mode=mode)


def symlink(
    src: str | bytes | os.PathLike[Any],
    dst: str | bytes | os.PathLike[Any],
    *,
    dir_fd: int | None = None,
) -> Op:
    """``os.symlink(src, dst)``: create ``dst`` pointing at ``src`` -> None."""
    return Op(kinds.SYMLINK, path=src, path2=dst, dir_fd2=dir_fd)


def link(
    src: str | bytes | os.PathLike[Any],
    dst: str | bytes | os.PathLike[Any],
    *,
    src_dir_fd: int | None = None,
    dst_dir_fd: int | None = None,
    follow_symlinks: bool = True,
) -> Op:
    """``os.link(src, dst)``: hard link -> None.

    Mirrors CPython 3.11's ``os.link`` exactly, quirk included: without dir fds it calls
    ``link(2)``, which on Linux does *not* follow a symlink ``src`` even though
    ``follow_symlinks`` defaults to True (bpo-41355); with a dir fd it calls ``linkat`` with
    ``AT_SYMLINK_FOLLOW``. The ring op uses the same flags so both engines agree.
    """
    follows = follow_symlinks and (src_dir_fd is not None or dst_dir_fd is not None)
    return Op(
        kinds.LINK,
        path=src,
        dir_fd=src_dir_fd,
        path2=dst,
        dir_fd2=dst_dir_fd,
        flags=abi.AT_SYMLINK_FOLLOW if follows else 0,
    )


def fallocate(fd: int, offset: int, length: int, mode: int = 0) -> Op:
    """``fallocate(fd, mode, offset, length)``; mode 0 is ``os.posix_fallocate`` -> None."""
    return Op(kinds.FALLOCATE, fd=fd, offset=offset, length=length, mode=mode)


def ftruncate(fd: int, length: int) -> Op:
    """``os.ftruncate(fd, length)`` -> None (FTRUNCATE needs Linux 6.9; the engine gates it)."""
    return Op(kinds.FTRUNCATE, fd=fd, length=length)


def pool_only(fn: Callable[..., Any], *args: Any, name: str | None = None) -> Op:
    """Run ``fn(*args)`` on the worker pool (listdir, chmod, realpath, ...); its return value
    becomes the result and whatever it raises becomes ``op.error``."""
    op = Op(kinds.CALL, name=name or getattr(fn, "__name__", None) or "pool op")
    op.call = fn
    op.args = args
    return op


# --- splice / sendfile ------------------------------------------------------------------------


class SpliceOp(Op):
    """A SPLICE op: it needs one SQE field more than other ops (``splice_fd_in``), so the
    engine runs it on the ring only in a chain (``FileEngine.submit_linked``); submitted
    alone it runs ``os.splice`` on the worker pool."""

    __slots__ = ()


def splice(
    fd_in: int,
    off_in: int | None,
    fd_out: int,
    off_out: int | None,
    nbytes: int,
    flags: int = 0,
) -> SpliceOp:
    """``os.splice(fd_in, fd_out, nbytes, off_in, off_out, flags)`` -> bytes moved.

    One side must be a pipe; an offset is None for a pipe or socket (io_uring's -1). The
    ring's SPLICE always runs in a kernel worker thread (io-wq), which may block on the
    disk or on a full pipe: give the pipe side ``abi.SPLICE_F_NONBLOCK`` where it must not.
    """
    if nbytes < 0:
        raise ValueError("negative length")
    op = SpliceOp(kinds.SPLICE, fd=fd_out, offset=off_out, length=nbytes, flags=flags)
    op.fd_in = fd_in
    op.offset_in = off_in
    return op


def sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> Op:
    """``os.sendfile(out_fd, in_fd, offset, count)`` -> bytes sent, on the worker pool (no
    ring opcode: the ring's way is a SPLICE chain through a pipe)."""
    return pool_only(os.sendfile, out_fd, in_fd, offset, count, name="sendfile")
