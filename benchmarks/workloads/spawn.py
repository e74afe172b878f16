"""Spawn many tasks that each yield a few times: raw scheduler and nursery cost."""

# Each worker process imports only the library under test, so imports stay inside variants.

from __future__ import annotations

from types import ModuleType

from benchmarks.workloads import Context, Target

TITLE = "spawn N tasks that each do K sleep(0), then join"
UNIT = "tasks"
ICOUNT_PARAM = "tasks"  # benchmarks.icount scales this
SIZES = {"full": {"tasks": 20_000, "yields": 10}, "quick": {"tasks": 2_000, "yields": 10}}
REFERENCE = "trio"
TARGETS = (
    Target("nursery_io >= 2x faster than trio", peer="trio", min_speedup=2.0),
    Target("nursery_io no slower than asyncio", peer="asyncio", min_speedup=1.0),
)


async def run_trio_like(lib: ModuleType, ctx: Context) -> int:
    tasks, yields = ctx.params["tasks"], ctx.params["yields"]

    async def child() -> None:
        for _ in range(yields):
            await lib.sleep(0)

    async with lib.open_nursery() as nursery:
        for _ in range(tasks):
            nursery.start_soon(child)
    return int(tasks)


async def run_asyncio(ctx: Context) -> int:
    import asyncio

    tasks, yields = ctx.params["tasks"], ctx.params["yields"]

    async def child() -> None:
        for _ in range(yields):
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as group:
        for _ in range(tasks):
            group.create_task(child())
    return int(tasks)


async def run_anyio(ctx: Context) -> int:
    import anyio

    tasks, yields = ctx.params["tasks"], ctx.params["yields"]

    async def child() -> None:
        for _ in range(yields):
            await anyio.sleep(0)

    async with anyio.create_task_group() as group:
        for _ in range(tasks):
            group.start_soon(child)
    return int(tasks)
