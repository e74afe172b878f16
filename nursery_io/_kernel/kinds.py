"""What each kind of :class:`~.ops.Op` is, in one table: how the ring runs it (the SQE
fields), how the worker pool runs it (a blocking ``os`` call), and how a ring result becomes
what that ``os`` call returns. See docs/design.rst, "One Op, two engines".

An Op carries the operation's meaning in named fields (``fd``, ``path``, ``offset``,
``buffer``, ``flags``, ...); only this module knows which SQE field each one travels in.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .uring import abi

if TYPE_CHECKING:
    from .ops import Op

__all__ = [
    "NO_OPCODE",
    "Kind",
    "Sqe",
    "address",
    "dirfd",
    "open_nonblocking_first",
    "restore_blocking",
    "rw_count",
]

#: ``Kind.opcode`` of an op that only the worker pool can run.
NO_OPCODE: Final = -1

#: The SQE fields an op fills: ``(fd, off, addr, len, op_flags, splice_fd_in)``. ``off`` is
#: also ``addr2`` and ``addr`` also ``splice_off_in``; the kernel reads them per opcode.
Sqe = tuple[int, int, int, int, int, int]

_U64: Final = 0xFFFFFFFFFFFFFFFF
_U32: Final = 0xFFFFFFFF
# Linux caps one read/write at MAX_RW_COUNT and returns a short count beyond it; the SQE's
# len field is 32 bits, so clamp rather than fail to pack.
_MAX_RW: Final = 0x7FFFF000


class Kind:
    """One kind of operation: its name (the io_uring opcode's), the opcode, its SQE
    encoding, its blocking equivalent, and the converter of a ring result ``res >= 0``
    (None: the result is ``res`` itself)."""

    __slots__ = ("blocking", "convert", "name", "opcode", "sqe")

    def __init__(
        self,
        name: str,
        opcode: int,
        sqe: Callable[[Op], Sqe] | None,
        blocking: Callable[[Op], Any],
        convert: Callable[[Op, int], Any] | None = None,
    ) -> None:
        self.name = name
        self.opcode = opcode
        self.sqe = sqe
        self.blocking = blocking
        self.convert = convert

    def __repr__(self) -> str:
        return f"<Kind {self.name}>"


# --- field encodings --------------------------------------------------------------------------

_addressof = ctypes.addressof

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


def address(memory: Any) -> int:
    """Address of the data of ``memory``: a bytes object or a ctypes array."""
    if type(memory) is bytes:
        if _BYTES_DATA_OFFSET is not None:
            return id(memory) + _BYTES_DATA_OFFSET
        return ctypes.cast(ctypes.c_char_p(memory), ctypes.c_void_p).value or 0  # pragma: no cover
    return _addressof(memory)


def dirfd(dir_fd: int | None) -> int:
    """An ``os``-style ``dir_fd`` (None: the working directory) as the kernel's dirfd."""
    return abi.AT_FDCWD if dir_fd is None else dir_fd


def _off(offset: int | None) -> int:
    # -1 (all ones) means "the current file position" (FEAT_RW_CUR_POS).
    return _U64 if offset is None else offset & _U64


def rw_count(length: int) -> int:
    """How many bytes one read or write may move (Linux's MAX_RW_COUNT)."""
    return length if length <= _MAX_RW else _MAX_RW


def _none(op: Op, res: int) -> None:
    return None


# --- FIFOs: opening without waiting for the other end ----------------------------------------
#
# open() of a FIFO waits until its other end is opened too; on the loop thread (the inline
# path) or in a kernel worker that a cancel can't always reach, that wait must not happen.
# io_uring's OPENAT tries a non-blocking open first, so every engine does the same:
#
# - ring: OPENAT as it is (the kernel's own non-blocking first attempt; only a retry in an
#   io-wq worker, e.g. with O_CREAT, may wait, and a cancel interrupts that wait);
# - pool: open_nonblocking_first() below, so that both engines agree;
# - inline (inline.py): openat2 with O_NONBLOCK, keeping the fd of a FIFO;
# - then, O_NONBLOCK is cleared again unless the caller asked for it (restore_blocking).
#
# A FIFO's read end therefore opens at once, and its write end fails with ENXIO while there
# is no reader. nursery_io.open_file turns both back into what open() does (waiting for the
# peer in a worker thread that can be woken when cancelled): see the ``_fifo`` module.


def restore_blocking(fd: int, flags: int) -> None:
    """Clear the ``O_NONBLOCK`` an open added, unless ``flags`` asked for it (closes ``fd``
    if that fails)."""
    if flags & os.O_NONBLOCK:
        return
    try:
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise


def open_nonblocking_first(path: Any, flags: int, mode: int, dir_fd: int | None) -> int:
    """``os.open`` tried with ``O_NONBLOCK`` first, as io_uring's OPENAT does (see above).

    Like io_uring, an ``EAGAIN`` (a lease held by another process, which a blocking open
    waits to break) gets a normal blocking open."""
    if flags & (os.O_NONBLOCK | os.O_PATH):  # O_PATH: nothing is opened, nothing waits
        return os.open(path, flags, mode, dir_fd=dir_fd)
    try:
        fd = os.open(path, flags | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    except BlockingIOError:
        return os.open(path, flags, mode, dir_fd=dir_fd)
    restore_blocking(fd, flags)
    return fd


# --- pool callables that need more than one os call -------------------------------------------


def _sqe_read(op: Op) -> Sqe:
    # READ's SQE, spelled out: the hot path of every read that misses the page cache.
    offset = op.offset
    length = op.length
    return (
        op.fd,
        _U64 if offset is None else offset & _U64,
        _addressof(op.buffer),
        length if length <= _MAX_RW else _MAX_RW,
        0,
        0,
    )


def _read(op: Op) -> bytes:
    if op.offset is None:
        return os.read(op.fd, op.length)
    return os.pread(op.fd, op.length, op.offset)


def _bytes_read(op: Op, res: int) -> bytes:
    raw: bytes = op.buffer.raw
    return raw if res == len(raw) else raw[:res]


def _read_into(op: Op) -> int:
    if op.offset is None:
        return os.readv(op.fd, [op.data])
    return os.preadv(op.fd, [op.data], op.offset)


def _write(op: Op) -> int:
    if op.offset is None:
        return os.write(op.fd, op.data)
    return os.pwrite(op.fd, op.data, op.offset)


def _stat_result(op: Op, res: int) -> os.stat_result:
    return abi.statx_to_stat_result(op.buffer)


# renameat2(2) flags (RENAME_NOREPLACE, ...) and fallocate(2) modes have no os.* equivalent:
# call libc directly.
_libc = ctypes.CDLL(None, use_errno=True)


def _libc_error(filename: Any = None, filename2: Any = None) -> OSError:
    err = ctypes.get_errno()
    if filename is None:
        return OSError(err, os.strerror(err))
    return OSError(err, os.strerror(err), filename, None, filename2)


def _rename(op: Op) -> None:
    if not op.flags:
        os.rename(op.path, op.path2, src_dir_fd=op.dir_fd, dst_dir_fd=op.dir_fd2)
    elif _libc.renameat2(
        dirfd(op.dir_fd), op.c_path, dirfd(op.dir_fd2), op.c_path2, ctypes.c_uint(op.flags)
    ):
        raise _libc_error(op.path, op.path2)


def _fallocate(op: Op) -> None:
    if not op.mode:
        # glibc emulates by writing zeros where the filesystem lacks fallocate: that is
        # why a ring -EOPNOTSUPP is rerun here.
        os.posix_fallocate(op.fd, op.offset or 0, op.length)
    elif _libc.fallocate(op.fd, op.mode, ctypes.c_long(op.offset or 0), ctypes.c_long(op.length)):
        raise _libc_error()


def _call(op: Op) -> Any:
    assert op.call is not None
    return op.call(*op.args)


def _splice(op: Op) -> int:
    return os.splice(op.fd_in, op.fd, op.length, op.offset_in, op.offset, op.flags)


# --- the table --------------------------------------------------------------------------------
#
# sqe: (fd, off/addr2, addr/splice_off_in, len, op_flags, splice_fd_in), as each opcode's
# io_uring prep reads them. Paths travel as addresses of the Op's NUL-terminated c_path /
# c_path2; the memory the kernel reads or writes is the Op's ``buffer``.

# fmt: off
NOP = Kind(
    "NOP", abi.OP_NOP,
    sqe=lambda op: (-1, 0, 0, 0, 0, 0),
    blocking=lambda op: 0,
)
OPENAT = Kind(
    "OPENAT", abi.OP_OPENAT,
    sqe=lambda op: (dirfd(op.dir_fd), 0, address(op.c_path), op.mode,
                    op.flags | os.O_CLOEXEC, 0),
    blocking=lambda op: open_nonblocking_first(op.path, op.flags, op.mode, op.dir_fd),
)
CLOSE = Kind(
    "CLOSE", abi.OP_CLOSE,
    sqe=lambda op: (op.fd, 0, 0, 0, 0, 0),
    blocking=lambda op: os.close(op.fd),
    convert=_none,
)
# Into a buffer of the Op's own; the result is the bytes read.
READ = Kind(
    "READ", abi.OP_READ,
    sqe=_sqe_read,  # (fd, offset, buffer address, count, 0, 0)
    blocking=_read,
    convert=_bytes_read,
)
# Into the caller's buffer (``data``; ``buffer`` is its ctypes export); the result is a count.
READ_INTO = Kind(
    "READ", abi.OP_READ,
    sqe=_sqe_read,
    blocking=_read_into,
)
WRITE = Kind(
    "WRITE", abi.OP_WRITE,
    sqe=lambda op: (op.fd, _off(op.offset), address(op.buffer), rw_count(op.length), 0, 0),
    blocking=_write,
)
FSYNC = Kind(
    "FSYNC", abi.OP_FSYNC,
    sqe=lambda op: (op.fd, 0, 0, 0, 0, 0),
    blocking=lambda op: os.fsync(op.fd),
    convert=_none,
)
FDATASYNC = Kind(
    "FSYNC", abi.OP_FSYNC,
    sqe=lambda op: (op.fd, 0, 0, 0, abi.FSYNC_DATASYNC, 0),
    blocking=lambda op: os.fdatasync(op.fd),
    convert=_none,
)
# statx(2): the output buffer travels in off (addr2), the mask in len, AT_* flags in op_flags.
STAT = Kind(
    "STATX", abi.OP_STATX,
    sqe=lambda op: (dirfd(op.dir_fd), _addressof(op.buffer), address(op.c_path),
                    abi.STATX_MASK, op.flags, 0),
    blocking=lambda op: os.stat(op.path, dir_fd=op.dir_fd,
                                follow_symlinks=not op.flags & abi.AT_SYMLINK_NOFOLLOW),
    convert=_stat_result,
)
FSTAT = Kind(
    "STATX", abi.OP_STATX,
    sqe=lambda op: (op.fd, _addressof(op.buffer), address(b""), abi.STATX_MASK,
                    abi.AT_EMPTY_PATH, 0),
    blocking=lambda op: os.fstat(op.fd),
    convert=_stat_result,
)
# Two-path ops: the second path in off (addr2) and its dirfd in len.
RENAME = Kind(
    "RENAMEAT", abi.OP_RENAMEAT,
    sqe=lambda op: (dirfd(op.dir_fd), address(op.c_path2), address(op.c_path),
                    dirfd(op.dir_fd2) & _U32, op.flags, 0),
    blocking=_rename,
    convert=_none,
)
UNLINK = Kind(
    "UNLINKAT", abi.OP_UNLINKAT,
    sqe=lambda op: (dirfd(op.dir_fd), 0, address(op.c_path), 0, 0, 0),
    blocking=lambda op: os.unlink(op.path, dir_fd=op.dir_fd),
    convert=_none,
)
RMDIR = Kind(
    "UNLINKAT", abi.OP_UNLINKAT,
    sqe=lambda op: (dirfd(op.dir_fd), 0, address(op.c_path), 0, abi.AT_REMOVEDIR, 0),
    blocking=lambda op: os.rmdir(op.path, dir_fd=op.dir_fd),
    convert=_none,
)
MKDIR = Kind(
    "MKDIRAT", abi.OP_MKDIRAT,
    sqe=lambda op: (dirfd(op.dir_fd), 0, address(op.c_path), op.mode, 0, 0),
    blocking=lambda op: os.mkdir(op.path, op.mode, dir_fd=op.dir_fd),
    convert=_none,
)
# symlinkat(target, newdirfd, linkpath): path is the target, path2 the link (in dir_fd2).
SYMLINK = Kind(
    "SYMLINKAT", abi.OP_SYMLINKAT,
    sqe=lambda op: (dirfd(op.dir_fd2), address(op.c_path2), address(op.c_path), 0, 0, 0),
    blocking=lambda op: os.symlink(op.path, op.path2, dir_fd=op.dir_fd2),
    convert=_none,
)
LINK = Kind(
    "LINKAT", abi.OP_LINKAT,
    sqe=lambda op: (dirfd(op.dir_fd), address(op.c_path2), address(op.c_path),
                    dirfd(op.dir_fd2) & _U32, op.flags, 0),
    blocking=lambda op: os.link(op.path, op.path2, src_dir_fd=op.dir_fd,
                                dst_dir_fd=op.dir_fd2,
                                follow_symlinks=bool(op.flags & abi.AT_SYMLINK_FOLLOW)),
    convert=_none,
)
# fallocate(2): the length travels in addr and the mode in len.
FALLOCATE = Kind(
    "FALLOCATE", abi.OP_FALLOCATE,
    sqe=lambda op: (op.fd, (op.offset or 0) & _U64, op.length & _U64, op.mode, 0, 0),
    blocking=_fallocate,
    convert=_none,
)
# ftruncate: the new length travels in off.
FTRUNCATE = Kind(
    "FTRUNCATE", abi.OP_FTRUNCATE,
    sqe=lambda op: (op.fd, op.length & _U64, 0, 0, 0, 0),
    blocking=lambda op: os.ftruncate(op.fd, op.length),
    convert=_none,
)
# splice: fd/offset are the output side; the input's offset travels in addr, its fd in
# splice_fd_in (only prepared in a linked chain: see RingEngine.submit_linked).
SPLICE = Kind(
    "SPLICE", abi.OP_SPLICE,
    sqe=lambda op: (op.fd, _off(op.offset), _off(op.offset_in), rw_count(op.length),
                    op.flags, op.fd_in),
    blocking=_splice,
)
# Any blocking callable (listdir, chmod, sendfile, ...): the worker pool only.
CALL = Kind(
    "CALL", NO_OPCODE,
    sqe=None,
    blocking=_call,
)
# fmt: on
