"""Sequential round trips to a worker thread and back."""

# Each worker process imports only the library under test, so imports stay inside variants.

from __future__ import annotations

import importlib
from types import ModuleType

from benchmarks.workloads import Context, Target

TITLE = "sequential to_thread.run_sync(int) round trips"
UNIT = "calls"
SIZES = {"full": {"calls": 10_000}, "quick": {"calls": 500}}
REFERENCE = "trio"
TARGETS = (Target("nursery_io >= 1.5x faster than trio", peer="trio", min_speedup=1.5),)


async def run_trio_like(lib: ModuleType, ctx: Context) -> int:
    calls: int = ctx.params["calls"]
    # Import the submodule explicitly: a package need not import it in __init__.
    run_sync = importlib.import_module(f"{lib.__name__}.to_thread").run_sync
    for _ in range(calls):
        await run_sync(int)
    return calls


async def run_asyncio(ctx: Context) -> int:
    import asyncio

    calls: int = ctx.params["calls"]
    for _ in range(calls):
        await asyncio.to_thread(int)
    return calls


async def run_anyio(ctx: Context) -> int:
    import anyio.to_thread

    calls: int = ctx.params["calls"]
    for _ in range(calls):
        await anyio.to_thread.run_sync(int)
    return calls
