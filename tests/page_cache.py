"""Test helper: take a file out of the page cache, so that the next read waits for the disk."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nursery_io._kernel.cachestat import cached_pages, cachestat_supported


def evict(file: Path | int, offset: int = 0, length: int = 0) -> None:
    """Drop ``[offset, offset + length)`` of ``file`` (a path or an fd; length 0: to the end)
    from the page cache.

    Dirty pages can't be dropped, so they are written back first. A page that another CPU
    holds for a moment (an LRU batch not drained yet) survives one attempt, so try again;
    skip the calling test if the kernel keeps the range cached all the same."""
    fd = os.open(file, os.O_RDONLY) if isinstance(file, Path) else file
    try:
        for _ in range(20):
            os.fsync(fd)
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
            if not cachestat_supported() or cached_pages(fd, offset, length) == 0:
                return
            time.sleep(0.01)
    finally:
        if fd is not file:
            os.close(fd)
    pytest.skip("the kernel kept the file in the page cache despite POSIX_FADV_DONTNEED")
