"""Random 4 KiB reads of a page-cached file from many tasks, through each file API."""

# Each worker process imports only the library under test, so imports stay inside variants.

from __future__ import annotations

import os
import random
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.workloads import Context, Params, Target
from benchmarks.workloads._files import MIB, check, make_file

TITLE = "T tasks x R random 4 KiB reads of a page-cached file, each task its own file object"
UNIT = "reads"
SIZES = {
    "full": {"file_mib": 64, "tasks": 64, "reads": 400, "block": 4096},
    "quick": {"file_mib": 8, "tasks": 8, "reads": 50, "block": 4096},
}
REFERENCE = "trio"
TARGETS = (
    Target("nursery_io >= 20x faster than trio", peer="trio", min_speedup=20.0),
    Target("nursery_io >= 10x faster than aiofiles", peer="asyncio", min_speedup=10.0),
    Target("nursery_io within 5x of the sync os.pread loop", peer="sync", min_speedup=0.2),
    Target("nursery_io uses 1 thread", max_threads=1),
)
NOTES = {"asyncio": "aiofiles", "uvloop": "aiofiles", "sync": "os.pread loop"}


def prepare(params: Params, workdir: Path) -> Params:
    path = workdir / "random_read.bin"
    make_file(path, params["file_mib"] * MIB)
    return {"path": str(path)}


def setup(ctx: Context) -> list[list[int]]:
    # Same offsets for every library; generated outside the timed region.
    p = ctx.params
    blocks = p["file_mib"] * MIB // p["block"]
    rngs = [random.Random(task) for task in range(p["tasks"])]
    return [[rng.randrange(blocks) * p["block"] for _ in range(p["reads"])] for rng in rngs]


async def run_trio_like(lib: ModuleType, ctx: Context) -> int:
    path, block = ctx.params["path"], ctx.params["block"]
    api = "seek+read"

    async def reader(offsets: list[int]) -> None:
        nonlocal api
        async with await lib.open_file(path, "rb") as f:
            # Prefer a positional read when the file object has one (no seek round trip).
            pread: Any = getattr(f, "pread", None)
            if pread is not None:
                api = "pread"
                for offset in offsets:
                    check(await pread(block, offset), block)
            else:
                for offset in offsets:
                    await f.seek(offset)
                    check(await f.read(block), block)

    async with lib.open_nursery() as nursery:
        for offsets in ctx.state:
            nursery.start_soon(reader, offsets)
    ctx.notes.append(api)
    return sum(map(len, ctx.state))


async def run_asyncio(ctx: Context) -> int:
    import asyncio

    import aiofiles  # type: ignore[import-untyped]

    path, block = ctx.params["path"], ctx.params["block"]

    async def reader(offsets: list[int]) -> None:
        async with aiofiles.open(path, "rb") as f:
            for offset in offsets:
                await f.seek(offset)
                check(await f.read(block), block)

    async with asyncio.TaskGroup() as group:
        for offsets in ctx.state:
            group.create_task(reader(offsets))
    return sum(map(len, ctx.state))


async def run_anyio(ctx: Context) -> int:
    import anyio

    path, block = ctx.params["path"], ctx.params["block"]

    async def reader(offsets: list[int]) -> None:
        async with await anyio.open_file(path, "rb") as f:
            for offset in offsets:
                await f.seek(offset)
                check(await f.read(block), block)

    async with anyio.create_task_group() as group:
        for offsets in ctx.state:
            group.start_soon(reader, offsets)
    return sum(map(len, ctx.state))


def run_sync(ctx: Context) -> int:
    path, block = ctx.params["path"], ctx.params["block"]
    for offsets in ctx.state:
        fd = os.open(path, os.O_RDONLY)
        try:
            for offset in offsets:
                check(os.pread(fd, block, offset), block)
        finally:
            os.close(fd)
    return sum(map(len, ctx.state))
