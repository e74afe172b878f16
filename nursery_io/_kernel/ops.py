"""``Op``: one disk operation, runnable by either engine (DESIGN.md, "One Op, two engines").

An Op carries everything both engines need:

- the SQE fields for the ring (``opcode``, ``fd``, ``off``, ``addr``, ``length``, ``op_flags``),
- ``keep``: the Python objects the kernel reads or writes through ``addr`` (encoded paths, the
  read buffer and its ctypes export, the statx buffer). The Op holds them until its CQE has
  been reaped: the kernel may write into a buffer right up to that CQE, even after a cancel
  request, so dropping it earlier would be a use-after-free,
- ``blocking()``: the same operation done with ``os.*`` calls, for the worker pool,
- a converter from the ring's raw result (``res >= 0``) to what ``blocking()`` returns, so
  callers get the same value (bytes, fd, ``os.stat_result``, None) from both engines.

Constructors are module functions named after the ``os`` call they mirror (``stat``,
``rename``, ...), with the same argument conventions; ``pool_only()`` wraps any blocking
callable (listdir, chmod, realpath, ...) for operations io_uring can't do.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from typing import Any, Final

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
    "inline_read_buffer",
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

#: ``Op.opcode`` of an op that only the worker pool can run.
NO_OPCODE: Final = -1

_U64: Final = 0xFFFFFFFFFFFFFFFF
_U32: Final = 0xFFFFFFFF
# Linux caps one read/write at MAX_RW_COUNT and returns a short count beyond it; the SQE's
# len field is 32 bits, so clamp rather than fail to pack.
_MAX_RW: Final = 0x7FFFF000
_AT_FDCWD_U32: Final = abi.AT_FDCWD & _U32  # dirfds travel in the u32 len field for *at2 ops

_addressof = ctypes.addressof
_c_char = ctypes.c_char
_string_buffer = ctypes.create_string_buffer

# Address of a bytes object's data. ctypes.cast() costs ~0.5 us per call; on CPython the data
# lives at a fixed offset inside the object (PyBytesObject.ob_sval, NUL-terminated), so
# id() + offset gives the same address in ~0.05 us. The offset is measured here with
# ctypes, not hard-coded, and other implementations use ctypes.cast().
if sys.implementation.name == "cpython":
    _probe_bytes = b"nursery_io"
    _BYTES_DATA_OFFSET: int | None = (
        ctypes.cast(ctypes.c_char_p(_probe_bytes), ctypes.c_void_p).value or 0
    ) - id(_probe_bytes)
    del _probe_bytes
else:  # pragma: no cover
    _BYTES_DATA_OFFSET = None


def _bytes_address(data: bytes) -> int:
    if _BYTES_DATA_OFFSET is not None:
        return id(data) + _BYTES_DATA_OFFSET
    return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0  # pragma: no cover


class Op:
    """One operation. Engine-owned fields (``user_data``, ``_state``, ``_on_complete``) are
    written only by the engine; callers read ``result`` / ``error`` / ``cancelled`` in their
    ``on_complete`` callback."""

    __slots__ = (
        "_args",
        "_convert",
        "_fn",
        "_on_complete",
        "_ring_errno",
        "_state",
        "addr",
        "cancel_requested",
        "cancelled",
        "engine",
        "error",
        "fd",
        "filename",
        "filename2",
        "keep",
        "length",
        "name",
        "off",
        "on_abandoned",
        "op_flags",
        "opcode",
        "result",
        "user_data",
    )

    def __init__(
        self,
        opcode: int,
        name: str,
        fd: int,
        off: int,
        addr: int,
        length: int,
        op_flags: int,
        keep: object,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        convert: Callable[[Op, int], Any] | None = None,
        filename: object = None,
        filename2: object = None,
    ) -> None:
        self.opcode = opcode
        self.name = name
        self.fd = fd
        self.off = off
        self.addr = addr
        self.length = length
        self.op_flags = op_flags
        self.keep = keep
        self._fn = fn
        self._args = args
        self._convert = convert
        self.filename = filename
        self.filename2 = filename2
        #: The outcome, set before on_complete runs: exactly one of these is meaningful.
        self.result: Any = None
        self.error: BaseException | None = None
        self.cancelled = False
        #: True once cancel() was called (the result may still be a real one).
        self.cancel_requested = False
        #: Which engine produced the outcome: "io_uring" or "threads" (None: not yet).
        self.engine: str | None = None
        #: Called with the op when its result can't reach a waiter (see ``discard()``).
        self.on_abandoned: Callable[[Op], None] | None = None
        self.user_data = 0
        self._state = 0
        self._on_complete: Callable[[Op], None] | None = None
        # Set by the engine when the ring answered EOPNOTSUPP/EINVAL and the op was rerun.
        self._ring_errno = 0

    def blocking(self) -> Any:
        """Do the operation with plain blocking ``os`` calls (the worker pool's way)."""
        return self._fn(*self._args)

    def convert(self, res: int) -> Any:
        """The result ``blocking()`` would have returned, from a ring result ``res >= 0``."""
        convert = self._convert
        return res if convert is None else convert(self, res)

    def make_error(self, err: int) -> OSError:
        """The exception ``blocking()`` would have raised for ``errno`` ``err``."""
        if self.filename2 is not None:
            return OSError(err, os.strerror(err), self.filename, None, self.filename2)
        if self.filename is not None:
            return OSError(err, os.strerror(err), self.filename)
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


# --- helpers ----------------------------------------------------------------------------------


def _path(path: str | bytes | os.PathLike[Any]) -> bytes:
    encoded = os.fsencode(path)
    if b"\0" in encoded:  # the kernel would silently stop at it; os.* raises
        raise ValueError("embedded null byte")
    return encoded


def _dirfd(dir_fd: int | None) -> int:
    return abi.AT_FDCWD if dir_fd is None else dir_fd


def _off(offset: int | None) -> int:
    # -1 (all ones) means "the current file position" (FEAT_RW_CUR_POS).
    return _U64 if offset is None else offset & _U64


def _conv_none(op: Op, res: int) -> None:
    return None


def _conv_read(op: Op, res: int) -> bytes:
    raw: bytes = op.keep.raw  # type: ignore[attr-defined]
    return raw if res == len(raw) else raw[:res]


def _conv_statx(op: Op, res: int) -> os.stat_result:
    return abi.statx_to_stat_result(op.keep[1])  # type: ignore[index]


def close_result_fd(op: Op) -> None:
    """``on_abandoned`` for an op whose result is a new fd: nobody will use it, close it."""
    fd = op.result
    if isinstance(fd, int):
        op.result = None
        try:
            os.close(fd)
        except OSError:
            pass


# --- constructors -----------------------------------------------------------------------------


def nop() -> Op:
    """A no-op (measures the ring's own overhead)."""
    return Op(abi.OP_NOP, "NOP", -1, 0, 0, 0, 0, None, int, ())


def _os_open(path: Any, flags: int, mode: int, dir_fd: int | None) -> int:
    if flags & (os.O_NONBLOCK | os.O_PATH):  # O_PATH: nothing is opened, nothing waits
        return os.open(path, flags, mode, dir_fd=dir_fd)
    # Non-blocking first, as io_uring's OPENAT does, so that the engines agree on what
    # opening a FIFO does (see openat). Like io_uring, an EAGAIN (a lease held by another
    # process, which a blocking open waits to break) gets a normal blocking open.
    try:
        fd = os.open(path, flags | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    except BlockingIOError:
        return os.open(path, flags, mode, dir_fd=dir_fd)
    try:
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


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
    path = os.fspath(path)  # os.* errors name the fspath() of the argument
    encoded = _path(path)
    op = Op(
        abi.OP_OPENAT,
        "OPENAT",
        _dirfd(dir_fd),
        0,
        _bytes_address(encoded),
        mode,
        flags | os.O_CLOEXEC,
        encoded,
        _os_open,
        (path, flags, mode, dir_fd),
        None,
        path,
    )
    op.on_abandoned = close_result_fd
    return op


def close(fd: int) -> Op:
    """``os.close(fd)`` -> None."""
    return Op(abi.OP_CLOSE, "CLOSE", fd, 0, 0, 0, 0, None, os.close, (fd,), _conv_none)


def read(fd: int, length: int, offset: int | None = None) -> Op:
    """``os.pread(fd, length, offset)`` (or ``os.read`` when offset is None) -> bytes."""
    if length < 0:
        raise ValueError("negative length")
    buf = _string_buffer(length)
    if offset is None:
        fn: Callable[..., Any] = os.read
        args: tuple[Any, ...] = (fd, length)
    else:
        fn = os.pread
        args = (fd, length, offset)
    return Op(
        abi.OP_READ,
        "READ",
        fd,
        _off(offset),
        _addressof(buf),
        min(length, _MAX_RW),
        0,
        buf,
        fn,
        args,
        _conv_read,
    )


def _readv_into(fd: int, buffer: Any, offset: int | None) -> int:
    if offset is None:
        return os.readv(fd, [buffer])
    return os.preadv(fd, [buffer], offset)


def readinto(fd: int, buffer: Any, offset: int | None = None) -> Op:
    """Read into the caller's writable buffer (bytearray, memoryview, mmap, array...) -> count.

    The Op holds the buffer and a ctypes export of it until the CQE: while the export lives a
    ``bytearray`` can't be resized (``BufferError``), so its memory can't move under the kernel.
    """
    view = memoryview(buffer)
    if view.readonly:
        raise TypeError("readinto() needs a writable buffer")
    view = view.cast("B")  # also rejects non-contiguous buffers, as os.readv does
    nbytes = view.nbytes
    cbuf = (_c_char * nbytes).from_buffer(view)
    return Op(
        abi.OP_READ,
        "READ",
        fd,
        _off(offset),
        _addressof(cbuf),
        min(nbytes, _MAX_RW),
        0,
        (buffer, view, cbuf),
        _readv_into,
        (fd, buffer, offset),
    )


def inline_read_buffer(op: Op) -> Any:
    """The buffer a positional READ op fills, or None when the op can't be tried inline.

    Only reads at an explicit offset qualify: an inline ``preadv2(RWF_NOWAIT)`` at the
    current file position would move it, unlike the ring's read.
    """
    if op.opcode != abi.OP_READ or op.off == _U64:
        return None
    if op._fn is os.pread:
        return op.keep
    if op._fn is _readv_into:
        return op.keep[1]  # type: ignore[index]
    return None


def _os_write(fd: int, data: Any, offset: int | None) -> int:
    if offset is None:
        return os.write(fd, data)
    return os.pwrite(fd, data, offset)


def write(fd: int, data: Any, offset: int | None = None) -> Op:
    """``os.pwrite(fd, data, offset)`` (or ``os.write`` when offset is None) -> count."""
    keep: object
    if type(data) is bytes:
        addr = _bytes_address(data)
        nbytes = len(data)
        keep = data
    else:
        view = memoryview(data).cast("B")
        nbytes = view.nbytes
        if view.readonly:  # no way to take the address of a read-only export: copy it
            data = view.tobytes()
            addr = _bytes_address(data)
            keep = data
        else:
            cbuf = (_c_char * nbytes).from_buffer(view)
            addr = _addressof(cbuf)
            keep = (data, view, cbuf)
    return Op(
        abi.OP_WRITE,
        "WRITE",
        fd,
        _off(offset),
        addr,
        min(nbytes, _MAX_RW),
        0,
        keep,
        _os_write,
        (fd, data, offset),
    )


def fsync(fd: int) -> Op:
    """``os.fsync(fd)`` -> None."""
    return Op(abi.OP_FSYNC, "FSYNC", fd, 0, 0, 0, 0, None, os.fsync, (fd,), _conv_none)


def fdatasync(fd: int) -> Op:
    """``os.fdatasync(fd)`` -> None."""
    return Op(
        abi.OP_FSYNC,
        "FSYNC",
        fd,
        0,
        0,
        0,
        abi.FSYNC_DATASYNC,
        None,
        os.fdatasync,
        (fd,),
        _conv_none,
    )


def _os_stat(path: Any, dir_fd: int | None, follow_symlinks: bool) -> os.stat_result:
    return os.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)


def stat(
    path: str | bytes | os.PathLike[Any] | int,
    *,
    dir_fd: int | None = None,
    follow_symlinks: bool = True,
) -> Op:
    """``os.stat(path, dir_fd=..., follow_symlinks=...)`` -> ``os.stat_result`` (STATX)."""
    if isinstance(path, int):
        return fstat(path)
    path = os.fspath(path)  # os.* errors name the fspath() of the argument
    encoded = _path(path)
    buf = _string_buffer(abi.STATX_BUFFER_SIZE)
    flags = 0 if follow_symlinks else abi.AT_SYMLINK_NOFOLLOW
    return Op(
        abi.OP_STATX,
        "STATX",
        _dirfd(dir_fd),
        _addressof(buf),  # the statx output pointer travels in the off/addr2 field
        _bytes_address(encoded),
        abi.STATX_MASK,
        flags,
        (encoded, buf),
        _os_stat,
        (path, dir_fd, follow_symlinks),
        _conv_statx,
        path,
    )


def lstat(path: str | bytes | os.PathLike[Any], *, dir_fd: int | None = None) -> Op:
    """``os.lstat(path)`` -> ``os.stat_result``."""
    return stat(path, dir_fd=dir_fd, follow_symlinks=False)


_EMPTY_PATH: Final = b""


def fstat(fd: int) -> Op:
    """``os.fstat(fd)`` -> ``os.stat_result`` (STATX on ``(fd, "", AT_EMPTY_PATH)``)."""
    buf = _string_buffer(abi.STATX_BUFFER_SIZE)
    return Op(
        abi.OP_STATX,
        "STATX",
        fd,
        _addressof(buf),
        _bytes_address(_EMPTY_PATH),
        abi.STATX_MASK,
        abi.AT_EMPTY_PATH,
        (_EMPTY_PATH, buf),
        os.fstat,
        (fd,),
        _conv_statx,
    )


# renameat2(2) flags (RENAME_NOREPLACE, ...) have no os.* equivalent: call libc directly.
_libc = ctypes.CDLL(None, use_errno=True)


def _renameat2(
    src: Any, dst: Any, src_dir_fd: int | None, dst_dir_fd: int | None, flags: int
) -> None:
    if not flags:
        os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        return
    if _libc.renameat2(
        _dirfd(src_dir_fd), _path(src), _dirfd(dst_dir_fd), _path(dst), ctypes.c_uint(flags)
    ):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), src, None, dst)


def rename(
    src: str | bytes | os.PathLike[Any],
    dst: str | bytes | os.PathLike[Any],
    *,
    src_dir_fd: int | None = None,
    dst_dir_fd: int | None = None,
    flags: int = 0,
) -> Op:
    """``os.rename(src, dst)`` / ``os.replace`` -> None. ``flags``: ``abi.RENAME_*``."""
    src = os.fspath(src)
    dst = os.fspath(dst)
    old = _path(src)
    new = _path(dst)
    return Op(
        abi.OP_RENAMEAT,
        "RENAMEAT",
        _dirfd(src_dir_fd),
        _bytes_address(new),
        _bytes_address(old),
        _dirfd(dst_dir_fd) & _U32,
        flags,
        (old, new),
        _renameat2,
        (src, dst, src_dir_fd, dst_dir_fd, flags),
        _conv_none,
        src,
        dst,
    )


def _os_unlink(path: Any, dir_fd: int | None) -> None:
    os.unlink(path, dir_fd=dir_fd)


def _os_rmdir(path: Any, dir_fd: int | None) -> None:
    os.rmdir(path, dir_fd=dir_fd)


def unlink(path: str | bytes | os.PathLike[Any], *, dir_fd: int | None = None) -> Op:
    """``os.unlink(path)`` -> None."""
    path = os.fspath(path)  # os.* errors name the fspath() of the argument
    encoded = _path(path)
    return Op(
        abi.OP_UNLINKAT,
        "UNLINKAT",
        _dirfd(dir_fd),
        0,
        _bytes_address(encoded),
        0,
        0,
        encoded,
        _os_unlink,
        (path, dir_fd),
        _conv_none,
        path,
    )


def rmdir(path: str | bytes | os.PathLike[Any], *, dir_fd: int | None = None) -> Op:
    """``os.rmdir(path)`` -> None (UNLINKAT with ``AT_REMOVEDIR``)."""
    path = os.fspath(path)  # os.* errors name the fspath() of the argument
    encoded = _path(path)
    return Op(
        abi.OP_UNLINKAT,
        "UNLINKAT",
        _dirfd(dir_fd),
        0,
        _bytes_address(encoded),
        0,
        abi.AT_REMOVEDIR,
        encoded,
        _os_rmdir,
        (path, dir_fd),
        _conv_none,
        path,
    )


def _os_mkdir(path: Any, mode: int, dir_fd: int | None) -> None:
    os.mkdir(path, mode, dir_fd=dir_fd)


def mkdir(
    path: str | bytes | os.PathLike[Any], mode: int = 0o777, *, dir_fd: int | None = None
) -> Op:
    """``os.mkdir(path, mode)`` -> None (the umask applies, as with ``os.mkdir``)."""
    path = os.fspath(path)  # os.* errors name the fspath() of the argument
    encoded = _path(path)
    return Op(
        abi.OP_MKDIRAT,
        "MKDIRAT",
        _dirfd(dir_fd),
        0,
        _bytes_address(encoded),
        mode,
        0,
        encoded,
        _os_mkdir,
        (path, mode, dir_fd),
        _conv_none,
        path,
    )


def _os_symlink(src: Any, dst: Any, dir_fd: int | None) -> None:
    os.symlink(src, dst, dir_fd=dir_fd)


def symlink(
    src: str | bytes | os.PathLike[Any],
    dst: str | bytes | os.PathLike[Any],
    *,
    dir_fd: int | None = None,
) -> Op:
    """``os.symlink(src, dst)``: create ``dst`` pointing at ``src`` -> None."""
    src = os.fspath(src)
    dst = os.fspath(dst)
    target = _path(src)
    linkpath = _path(dst)
    return Op(
        abi.OP_SYMLINKAT,
        "SYMLINKAT",
        _dirfd(dir_fd),
        _bytes_address(linkpath),
        _bytes_address(target),
        0,
        0,
        (target, linkpath),
        _os_symlink,
        (src, dst, dir_fd),
        _conv_none,
        src,
        dst,
    )


def _os_link(
    src: Any, dst: Any, src_dir_fd: int | None, dst_dir_fd: int | None, follow: bool
) -> None:
    os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=follow)


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
    src = os.fspath(src)
    dst = os.fspath(dst)
    old = _path(src)
    new = _path(dst)
    return Op(
        abi.OP_LINKAT,
        "LINKAT",
        _dirfd(src_dir_fd),
        _bytes_address(new),
        _bytes_address(old),
        _dirfd(dst_dir_fd) & _U32,
        abi.AT_SYMLINK_FOLLOW if follows else 0,
        (old, new),
        _os_link,
        (src, dst, src_dir_fd, dst_dir_fd, follow_symlinks),
        _conv_none,
        src,
        dst,
    )


def _fallocate(fd: int, offset: int, length: int, mode: int) -> None:
    if not mode:
        # glibc emulates by writing zeros where the filesystem lacks fallocate: that is
        # why a ring -EOPNOTSUPP is rerun here.
        os.posix_fallocate(fd, offset, length)
        return
    if _libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length)):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def fallocate(fd: int, offset: int, length: int, mode: int = 0) -> Op:
    """``fallocate(fd, mode, offset, length)``; mode 0 is ``os.posix_fallocate`` -> None."""
    return Op(
        abi.OP_FALLOCATE,
        "FALLOCATE",
        fd,
        offset & _U64,
        length & _U64,  # the length travels in addr and the mode in len
        mode,
        0,
        None,
        _fallocate,
        (fd, offset, length, mode),
        _conv_none,
    )


def ftruncate(fd: int, length: int) -> Op:
    """``os.ftruncate(fd, length)`` -> None (FTRUNCATE needs Linux 6.9; the engine gates it)."""
    return Op(
        abi.OP_FTRUNCATE,
        "FTRUNCATE",
        fd,
        length & _U64,
        0,
        0,
        0,
        None,
        os.ftruncate,
        (fd, length),
        _conv_none,
    )


def pool_only(fn: Callable[..., Any], *args: Any, name: str | None = None) -> Op:
    """Run ``fn(*args)`` on the worker pool (listdir, chmod, realpath, ...); its return value
    becomes the result and whatever it raises becomes ``op.error``."""
    label = name or getattr(fn, "__name__", None) or "pool op"
    return Op(NO_OPCODE, label, -1, 0, 0, 0, 0, None, fn, args)


# --- splice / sendfile ------------------------------------------------------------------------


class SpliceOp(Op):
    """A SPLICE op: it needs one SQE field more than other ops (``splice_fd_in``), so the
    engine runs it on the ring only in a chain (``FileEngine.submit_linked``); submitted
    alone it runs ``os.splice`` on the worker pool."""

    __slots__ = ("fd_in",)

    fd_in: int


def _os_splice(fd_in: int, off_in: int | None, fd_out: int, off_out: int | None, n: int,
               flags: int) -> int:  # fmt: skip
    return os.splice(fd_in, fd_out, n, off_in, off_out, flags)


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
    op = SpliceOp(
        abi.OP_SPLICE,
        "SPLICE",
        fd_out,
        _off(off_out),
        _off(off_in),  # splice_off_in travels in the addr field
        min(nbytes, _MAX_RW),
        flags,
        None,
        _os_splice,
        (fd_in, off_in, fd_out, off_out, nbytes, flags),
    )
    op.fd_in = fd_in
    return op


def sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> Op:
    """``os.sendfile(out_fd, in_fd, offset, count)`` -> bytes sent, on the worker pool (no
    ring opcode: the ring's way is a SPLICE chain through a pipe)."""
    return Op(NO_OPCODE, "sendfile", -1, 0, 0, 0, 0, None, os.sendfile,
              (out_fd, in_fd, offset, count))  # fmt: skip
