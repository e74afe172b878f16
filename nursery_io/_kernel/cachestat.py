"""``PageCacheCheck``: whether a file range can be read right now without waiting for the disk.

``cachestat(2)`` (Linux 6.5+) counts the pages of a file range that are in the page cache,
in one system call and without touching the data. A ``sendfile(2)`` from such a range to a
non-blocking socket can't wait for the disk: it moves what fits in the socket buffer and
returns. So a transfer can run it right on the loop thread, like the inline reads of
:mod:`nursery_io._kernel.inline`, and skip the ring's SPLICE chain (two hand-offs to io-wq
workers per chunk) or the worker thread.

A page that readahead has just put in the cache is counted although its read is still in
flight (measured on 6.18: ``cachestat`` reports a range fully cached right after
``POSIX_FADV_WILLNEED`` while a ``pread`` of it still waits ~10 ms). So a range is only
called ready if, besides, one-byte ``preadv2(RWF_NOWAIT)`` reads of its first and last
pages succeed: those fail with ``EAGAIN`` on a page that is not up to date yet.

Without ``cachestat`` (older kernel: ``ENOSYS``; seccomp: ``EPERM``) every range is
"not ready" and transfers go to the ring or a worker thread as before; the first such
refusal turns the check off for the life of the process.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Final

__all__ = ["NR_CACHESTAT", "PageCacheCheck", "cached_pages", "cachestat_supported"]

#: cachestat's number in the unified syscall table (x86-64 and arm64 alike).
NR_CACHESTAT: Final = 451

_PAGE: Final = os.sysconf("SC_PAGE_SIZE")
_RWF_NOWAIT: Final = getattr(os, "RWF_NOWAIT", 0)
_PROBE_STEP: Final = 256 * 1024
# Refusals that are properties of the kernel or the sandbox, not of one file.
_UNSUPPORTED: Final = frozenset({errno.ENOSYS, errno.EPERM})


class _Range(ctypes.Structure):  # struct cachestat_range (include/uapi/linux/mman.h)
    _fields_ = (("off", ctypes.c_uint64), ("len", ctypes.c_uint64))


class _Stat(ctypes.Structure):  # struct cachestat
    _fields_ = (
        ("nr_cache", ctypes.c_uint64),
        ("nr_dirty", ctypes.c_uint64),
        ("nr_writeback", ctypes.c_uint64),
        ("nr_evicted", ctypes.c_uint64),
        ("nr_recently_evicted", ctypes.c_uint64),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc["syscall"]
_syscall.restype = ctypes.c_long
_syscall.argtypes = (ctypes.c_long, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint)

# Reused by every call (loop thread only; the kernel copies them in and out at once).
_range = _Range()
_stat = _Stat()
_range_addr: Final = ctypes.addressof(_range)
_stat_addr: Final = ctypes.addressof(_stat)

_supported: bool | None = None  # None: not asked yet


def cached_pages(fd: int, offset: int, length: int) -> int:
    """``cachestat(fd, {offset, length}, 0).nr_cache``: pages of the range in the page cache
    (``length`` 0: to the end of the file). Raises ``OSError``."""
    _range.off = offset
    _range.len = length
    if _syscall(NR_CACHESTAT, fd, _range_addr, _stat_addr, 0) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(_stat.nr_cache)


def cachestat_supported() -> bool:
    """Whether this process may call ``cachestat`` (asked once, on ``/``'s descriptor)."""
    global _supported
    if _supported is None:
        fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            cached_pages(fd, 0, 0)
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                _supported = False
                return False
            # EBADF/EOPNOTSUPP for a directory on some file systems: the call exists.
        finally:
            os.close(fd)
        _supported = True
    return _supported


class PageCacheCheck:
    """Answers "can this range be sent inline?" and counts the answers; loop thread only."""

    __slots__ = ("_byte", "enabled", "misses", "served")

    def __init__(self, enabled: bool) -> None:
        self.enabled = bool(enabled and _RWF_NOWAIT and _supported is not False)
        #: Inline sendfile calls made (counted by the caller through :meth:`count_sent`).
        self.served = 0
        #: Ranges found not ready, which went to the ring or a worker thread instead.
        self.misses = 0
        self._byte = bytearray(1)

    def ready(self, fd: int, offset: int, length: int) -> bool:
        """Whether every page of ``[offset, offset + length)`` (which must lie inside the
        file) is cached and up to date. False also when the check can't be made."""
        global _supported
        if not self.enabled or length <= 0:
            return False
        first = offset // _PAGE
        last = (offset + length - 1) // _PAGE
        try:
            cached = cached_pages(fd, offset, length)
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                _supported = False
                self.enabled = False
            return False  # EBADF, EOPNOTSUPP (hugetlbfs), ...: let the engine decide
        if cached < last - first + 1 or not self._all_up_to_date(fd, offset, length):
            self.misses += 1
            return False
        return True

    def _all_up_to_date(self, fd: int, offset: int, length: int) -> bool:
        # Readahead inserts a batch of pages and reads them in, mostly in order: a page
        # every _PROBE_STEP bytes and the last one stand for the rest.
        end = offset + length - 1
        for position in range(offset, end, _PROBE_STEP):
            if not self._up_to_date(fd, position):
                return False
        return self._up_to_date(fd, end)

    def _up_to_date(self, fd: int, position: int) -> bool:
        try:
            return os.preadv(fd, (self._byte,), position, _RWF_NOWAIT) == 1
        except OSError:  # EAGAIN: still being read in; EOPNOTSUPP: no nowait here
            return False

    def count_sent(self) -> None:
        self.served += 1
