"""Inline fast paths: disk operations that complete at once, without the ring or a thread.

Two system calls can be asked to fail instead of blocking, which makes them safe to run
right on the loop thread:

* ``preadv2(..., RWF_NOWAIT)`` copies data only if it is already in the page cache and
  answers ``EAGAIN`` rather than wait for the disk;
* ``openat2(..., RESOLVE_CACHED)`` (Linux 5.12+) opens a path only if every component
  resolves from the dentry cache, and answers ``EAGAIN`` otherwise. It refuses
  ``O_CREAT``/``O_TRUNC``/``O_TMPFILE``, which may have to write.

The second also gives a cheap ``stat``: an ``O_PATH`` open (which opens nothing, just
names the inode) and ``fstat``, whose answer is in memory for an inode that is open.

When they succeed, a cached read, open or stat costs a syscall or three: no SQE, no
``io_uring_enter``, no completion to reap, no task switch. The ring still does what they
refuse: creating or truncating opens (which io_uring hands to a kernel worker thread,
io-wq) and the opens, stats and reads that need the disk. Every miss is harmless: nothing
happened, and the Op goes to an engine exactly as it would have.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from typing import Any, Final

from . import kinds
from .kinds import dirfd
from .ops import Op
from .uring import abi

__all__ = ["INLINE_ENV_VAR", "InlineOps"]

#: Set to "0" to turn the inline fast paths off.
INLINE_ENV_VAR: Final = "NURSERY_IO_INLINE_READS"

_RWF_NOWAIT: Final = getattr(os, "RWF_NOWAIT", 0)
# openat2(2) is 437 on every architecture with the unified syscall table (x86-64, arm64).
_SYS_OPENAT2: Final = 437
_RESOLVE_CACHED: Final = 0x20
# stat errors an O_PATH lookup gives as final answers (other errors: let an engine rerun
# the op, which reports them exactly as os.stat would).
_STAT_CACHED_ERRORS: Final = frozenset({errno.ENOENT, errno.ENOTDIR})
_NOT_CACHEABLE: Final = os.O_CREAT | os.O_TRUNC | getattr(os, "O_TMPFILE", 0)


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


_OPEN_HOW_SIZE: Final = ctypes.sizeof(_OpenHow)

_libc = ctypes.CDLL(None, use_errno=True)
_openat2 = _libc["syscall"]
_openat2.restype = ctypes.c_long
_openat2.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


def _at_end_of_file(fd: int, position: int) -> bool:
    """Whether a short inline read stopped at the end of the file, not at the end of what
    the page cache held (RWF_NOWAIT returns whatever prefix is cached)."""
    try:
        return os.fstat(fd).st_size <= position
    except OSError:
        return False


_openat2_works: bool | None = None
# No openat2 (old kernel, seccomp: ENOSYS or EPERM), or no RESOLVE_CACHED (EINVAL).
_OPENAT2_UNSUPPORTED: Final = frozenset({errno.ENOSYS, errno.EPERM, errno.EINVAL})


def _probe_openat2() -> bool:
    # Once per process: the answer depends on the kernel and seccomp, not on the run.
    global _openat2_works
    if _openat2_works is None:
        how = _OpenHow(os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY, 0, _RESOLVE_CACHED)
        fd = _openat2(_SYS_OPENAT2, abi.AT_FDCWD, b"/", ctypes.addressof(how), _OPEN_HOW_SIZE)
        if fd >= 0:
            os.close(fd)
            _openat2_works = True
        elif ctypes.get_errno() in _OPENAT2_UNSUPPORTED:
            _openat2_works = False
        else:
            return False  # EMFILE, ENOMEM, ...: may work next time
    return _openat2_works


class InlineOps:
    """Tries Ops inline; counts what it served and what it had to pass on."""

    __slots__ = ("_how", "_how_addr", "enabled", "misses", "open_enabled", "served")

    def __init__(self, enabled: bool) -> None:
        self.enabled = bool(enabled and _RWF_NOWAIT)
        self.open_enabled = bool(enabled and _probe_openat2())
        self.served = 0
        self.misses = 0
        # One open_how, reused: the syscall copies it in before returning.
        self._how = _OpenHow(0, 0, _RESOLVE_CACHED)
        self._how_addr = ctypes.addressof(self._how)

    def try_op(self, op: Op) -> bool:
        """Complete ``op`` here if it can be done without blocking. True: ``op.result`` is
        set. False: nothing happened (submit the op to an engine)."""
        kind = op.kind
        if kind is kinds.READ or kind is kinds.READ_INTO:
            return self._try_read(op)
        if kind is kinds.OPENAT:
            return self._try_open(op)
        if kind is kinds.STAT:
            return self._try_stat(op)
        if kind is kinds.FSTAT:
            return self._try_fstat(op)
        return False

    def _pread_nowait(self, fd: int, buffer: Any, offset: int, length: int) -> int | None:
        """The one inline read: ``preadv2(RWF_NOWAIT)`` of ``length`` bytes into ``buffer``.
        The count read (all of it, or up to the end of the file), or None: not all cached,
        or an error an engine should report the usual way (nothing was read)."""
        try:
            count = os.preadv(fd, (buffer,), offset, _RWF_NOWAIT)
        except BlockingIOError:
            self.misses += 1
            return None
        except OSError:
            # EOPNOTSUPP (no nowait support on this file system), EBADF, EISDIR...
            return None
        if count != length and not _at_end_of_file(fd, offset + count):
            self.misses += 1
            return None
        self.served += 1
        return count

    def _try_read(self, op: Op) -> bool:
        # Only reads at an explicit offset qualify: an inline read at the current file
        # position would move it, unlike the ring's read.
        offset = op.offset
        if not self.enabled or offset is None:
            return False
        count = self._pread_nowait(op.fd, op.buffer, offset, kinds.rw_count(op.length))
        if count is None:
            return False
        op.result = op.convert(count)
        return True

    def read(self, fd: int, length: int, offset: int) -> bytes | None:
        """A cached ``pread`` without an Op: the bytes, or None (run ``ops.read`` instead)."""
        if not self.enabled or offset < 0 or length <= 0:
            return None
        buffer = bytearray(length)
        count = self._pread_nowait(fd, buffer, offset, length)
        if count is None:
            return None
        if count != length:
            del buffer[count:]
        return bytes(buffer)

    def _openat2_cached(self, op: Op, flags: int) -> int:
        """``openat2(RESOLVE_CACHED)`` of the op's path: an fd, or -1 (see ``ctypes.get_errno``)."""
        self._how.flags = flags
        return int(
            _openat2(_SYS_OPENAT2, dirfd(op.dir_fd), op.c_path, self._how_addr, _OPEN_HOW_SIZE)
        )

    def _try_open(self, op: Op) -> bool:
        flags = op.flags
        if not self.open_enabled or flags & _NOT_CACHEABLE:
            return False
        # RESOLVE_CACHED makes the *lookup* non-blocking, not the open: opening a FIFO (or
        # some devices) would still wait, right here on the loop thread. So open with
        # O_NONBLOCK (kinds.py, "FIFOs"), and keep the fd for a regular file or a FIFO.
        # Anything else goes to the engine. (openat2 also insists on mode 0 unless the open
        # creates a file, which inline opens never do.)
        fd = self._openat2_cached(op, flags | os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            # EAGAIN: not all in the dentry cache. Anything else (ENOENT, EACCES, ...): the
            # engine reruns it and reports the error with the usual filename details.
            if ctypes.get_errno() == errno.EAGAIN:
                self.misses += 1
            return False
        try:
            mode = os.fstat(fd).st_mode
            keep = stat.S_ISREG(mode) or stat.S_ISFIFO(mode)
            if keep and not flags & os.O_NONBLOCK:
                os.set_blocking(fd, True)
        except OSError:
            keep = False
        if not keep:
            os.close(fd)
            self.misses += 1
            return False
        op.result = fd
        self.served += 1
        return True

    def _try_fstat(self, op: Op) -> bool:
        # An open fd pins its inode, whose attributes are in memory: fstat() can't wait for
        # the disk (the same reasoning open_file relies on).
        if not self.open_enabled:
            return False
        try:
            op.result = os.fstat(op.fd)
        except OSError:
            return False  # the engine reports it the usual way
        self.served += 1
        return True

    def _try_stat(self, op: Op) -> bool:
        # io_uring always hands STATX to a kernel worker thread (~90 us here). But a path
        # whose every component is in the dentry cache can be opened with O_PATH and
        # RESOLVE_CACHED, which neither blocks nor opens the file itself (no FIFO or device
        # side effects), then fstat'd (see _try_fstat).
        if not self.open_enabled:
            return False
        open_flags = os.O_PATH | os.O_CLOEXEC
        if op.flags & abi.AT_SYMLINK_NOFOLLOW:
            open_flags |= os.O_NOFOLLOW  # O_PATH | O_NOFOLLOW: the symlink itself
        fd = self._openat2_cached(op, open_flags)
        if fd < 0:
            err = ctypes.get_errno()
            if err in _STAT_CACHED_ERRORS:
                # Answered from a cached negative dentry: as final as os.stat's answer.
                op.error = op.make_error(err)
                self.served += 1
                return True
            if err == errno.EAGAIN:
                self.misses += 1
            return False
        try:
            op.result = os.fstat(fd)
        except OSError:
            return False
        finally:
            os.close(fd)
        self.served += 1
        return True
