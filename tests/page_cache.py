"""Test helper: take a file out of the page cache, so that the next read waits for the disk."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nursery_io._kernel.cachestat import cached_pages, cachestat_supported


def evict(file: Path | int, offset: int = 0, length: int = 0) -> bool:
    """Drop ``[offset, offset + length)`` of ``file`` (a path or an fd; length 0: to the end)
    from the page cache, as far as the kernel lets us. True if none of it is cached now
    (or if that can't be checked: no ``cachestat``).

    Dirty pages can't be dropped, so they are written back first. A page somebody else
    holds (another CPU's LRU batch not drained yet, a pipe buffer a splice filled) survives
    an attempt, so try a few times. Tests that only want the disk involved can ignore the
    answer; tests that count cache misses must check it."""
    fd = os.open(file, os.O_RDONLY) if isinstance(file, Path) else file
    try:
        for _ in range(10):
            os.fsync(fd)
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
            if not cachestat_supported() or cached_pages(fd, offset, length) == 0:
                return True
            time.sleep(0.01)
        return False
    finally:
        if fd is not file:
            os.close(fd)


def cold_copy(data: bytes, path: Path) -> Path:
    """Write ``data`` to a new file at ``path`` and take it out of the page cache.

    For tests that need cold data more than once: a file that was just sent to a socket
    can stay partly cached for a while whatever we ask (TCP keeps references to the pages
    it sent until they are acknowledged), but a new file's pages are ours alone.
    """
    with open(path, "wb") as f:
        f.write(data)
    if not evict(path):
        pytest.skip("the kernel kept a freshly written file in the page cache")
    return path
