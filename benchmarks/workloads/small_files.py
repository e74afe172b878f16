"""Write many small files, then read them all back, with bounded concurrency."""

# Each worker process imports only the library under test, so imports stay inside variants.

from __future__ import annotations

import os
from types import ModuleType

from benchmarks.workloads import Context, Target
from benchmarks.workloads._files import batches, check, small_file_names

TITLE = "write N files of 1 KiB, then read them back; C tasks at a time"
UNIT = "files"
SIZES = {
    "full": {"files": 2_000, "size": 1024, "concurrency": 64},
    "quick": {"files": 200, "size": 1024, "concurrency": 64},
}
REFERENCE = "trio"
TARGETS = (Target("nursery_io >= 5x faster than trio", peer="trio", min_speedup=5.0),)
NOTES = {"asyncio": "aiofiles", "uvloop": "aiofiles", "sync": "open/write/read loop"}


def setup(ctx: Context) -> list[str]:
    # A fresh directory per run, so every run creates its files from scratch.
    directory = ctx.workdir / f"small_files-{os.getpid()}"
    directory.mkdir()
    return small_file_names(directory, ctx.params["files"])


# No teardown: the files stay until the harness removes the whole scratch directory at the
# end. Deleting them after each run would slow down the *next* runs' creates: ext4 avoids
# reusing an inode freed in the last minutes, and each create then scans past every
# recently freed one (measured with perf here: 130-215 us per create of a plain
# open/write/close loop after a few runs, against 45 us on a quiet file system). That cost
# lands on whichever library runs next and says nothing about any of them.


async def run_trio_like(lib: ModuleType, ctx: Context) -> int:
    size = ctx.params["size"]
    payload = b"x" * size

    async def write_all(names: list[str]) -> None:
        for name in names:
            async with await lib.open_file(name, "wb") as f:
                await f.write(payload)

    async def read_all(names: list[str]) -> None:
        for name in names:
            async with await lib.open_file(name, "rb") as f:
                check(await f.read(), size)

    for phase in (write_all, read_all):
        async with lib.open_nursery() as nursery:
            for batch in batches(ctx.state, ctx.params["concurrency"]):
                nursery.start_soon(phase, batch)
    return len(ctx.state)


async def run_asyncio(ctx: Context) -> int:
    import asyncio

    import aiofiles  # type: ignore[import-untyped]

    size = ctx.params["size"]
    payload = b"x" * size

    async def write_all(names: list[str]) -> None:
        for name in names:
            async with aiofiles.open(name, "wb") as f:
                await f.write(payload)

    async def read_all(names: list[str]) -> None:
        for name in names:
            async with aiofiles.open(name, "rb") as f:
                check(await f.read(), size)

    for phase in (write_all, read_all):
        async with asyncio.TaskGroup() as group:
            for batch in batches(ctx.state, ctx.params["concurrency"]):
                group.create_task(phase(batch))
    return len(ctx.state)


async def run_anyio(ctx: Context) -> int:
    import anyio

    size = ctx.params["size"]
    payload = b"x" * size

    async def write_all(names: list[str]) -> None:
        for name in names:
            async with await anyio.open_file(name, "wb") as f:
                await f.write(payload)

    async def read_all(names: list[str]) -> None:
        for name in names:
            async with await anyio.open_file(name, "rb") as f:
                check(await f.read(), size)

    for phase in (write_all, read_all):
        async with anyio.create_task_group() as group:
            for batch in batches(ctx.state, ctx.params["concurrency"]):
                group.start_soon(phase, batch)
    return len(ctx.state)


def run_sync(ctx: Context) -> int:
    size = ctx.params["size"]
    payload = b"x" * size
    for name in ctx.state:
        with open(name, "wb") as f:
            f.write(payload)
    for name in ctx.state:
        with open(name, "rb") as f:
            check(f.read(), size)
    return len(ctx.state)
