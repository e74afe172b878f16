"""The random-read workload with the file evicted from the page cache before every run."""

# Each worker process imports only the library under test, so imports stay inside variants.

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.workloads import Context, Params, Target
from benchmarks.workloads import file_random_read as _cached
from benchmarks.workloads._files import MIB, make_file
from benchmarks.workloads.file_random_read import (  # noqa: F401  (the variants, unchanged)
    SIZES,
    run_anyio,
    run_asyncio,
    run_sync,
    run_trio_like,
)

TITLE = (
    "T tasks x R random 4 KiB reads of a file evicted from the page cache first"
    " (posix_fadvise DONTNEED), each task its own file object"
)
UNIT = _cached.UNIT
REFERENCE = "trio"
TARGETS = (
    Target("nursery_io >= 2x faster than trio (cold)", peer="trio", min_speedup=2.0),
    Target("nursery_io uses 1 thread (no io-wq worker either)", max_threads=1),
)
NOTES = _cached.NOTES


def prepare(params: Params, workdir: Path) -> Params:
    # Its own file: evicting it must not make the cached workload's file cold.
    path = workdir / "random_read_cold.bin"
    make_file(path, params["file_mib"] * MIB)
    return {"path": str(path)}


def setup(ctx: Context) -> list[list[int]]:
    offsets = _cached.setup(ctx)
    # Untimed: every library starts from a cold file. fsync first: dirty pages can't be
    # dropped.
    fd = os.open(ctx.params["path"], os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return offsets
