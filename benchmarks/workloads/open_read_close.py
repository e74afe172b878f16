"""Open, read and close many existing small files, with bounded concurrency."""

# Each worker process imports only the library under test, so imports stay inside variants.

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from benchmarks.workloads import Context, Params, Target
from benchmarks.workloads._files import batches, check, make_small_files, small_file_names

TITLE = "open + read + close of N existing 1 KiB files; C tasks at a time"
UNIT = "files"
SIZES = {
    "full": {"files": 2_000, "size": 1024, "concurrency": 64},
    "quick": {"files": 200, "size": 1024, "concurrency": 64},
}
REFERENCE = "trio"
TARGETS: tuple[Target, ...] = ()
NOTES = {"asyncio": "aiofiles", "uvloop": "aiofiles", "sync": "open/read loop"}


def prepare(params: Params, workdir: Path) -> Params:
    directory = workdir / "open_read_close"
    make_small_files(directory, params["files"], params["size"])
    return {"directory": str(directory)}


def setup(ctx: Context) -> list[str]:
    return small_file_names(Path(ctx.params["directory"]), ctx.params["files"])


async def run_trio_like(lib: ModuleType, ctx: Context) -> int:
    size = ctx.params["size"]

    async def read_all(names: list[str]) -> None:
        for name in names:
            async with await lib.open_file(name, "rb") as f:
                check(await f.read(), size)

    async with lib.open_nursery() as nursery:
        for batch in batches(ctx.state, ctx.params["concurrency"]):
            nursery.start_soon(read_all, batch)
    return len(ctx.state)


async def run_asyncio(ctx: Context) -> int:
    import asyncio

    import aiofiles  # type: ignore[import-untyped]

    size = ctx.params["size"]

    async def read_all(names: list[str]) -> None:
        for name in names:
            async with aiofiles.open(name, "rb") as f:
                check(await f.read(), size)

    async with asyncio.TaskGroup() as group:
        for batch in batches(ctx.state, ctx.params["concurrency"]):
            group.create_task(read_all(batch))
    return len(ctx.state)


async def run_anyio(ctx: Context) -> int:
    import anyio

    size = ctx.params["size"]

    async def read_all(names: list[str]) -> None:
        for name in names:
            async with await anyio.open_file(name, "rb") as f:
                check(await f.read(), size)

    async with anyio.create_task_group() as group:
        for batch in batches(ctx.state, ctx.params["concurrency"]):
            group.start_soon(read_all, batch)
    return len(ctx.state)


def run_sync(ctx: Context) -> int:
    size = ctx.params["size"]
    for name in ctx.state:
        with open(name, "rb") as f:
            check(f.read(), size)
    return len(ctx.state)
