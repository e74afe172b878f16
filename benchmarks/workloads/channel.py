"""One sender and one receiver passing messages through an unbuffered channel."""

# Each worker process imports only the library under test, so imports stay inside variants.

from __future__ import annotations

from types import ModuleType

from benchmarks.workloads import Context, Target

TITLE = "messages through an unbuffered memory channel, 1 sender + 1 receiver"
UNIT = "msgs"
ICOUNT_PARAM = "messages"  # benchmarks.icount scales this
SIZES = {"full": {"messages": 100_000}, "quick": {"messages": 5_000}}
REFERENCE = "trio"
TARGETS = (Target("nursery_io >= 1.5x faster than trio", peer="trio", min_speedup=1.5),)
NOTES = {"asyncio": "Queue(1)", "uvloop": "Queue(1)"}


async def run_trio_like(lib: ModuleType, ctx: Context) -> int:
    messages: int = ctx.params["messages"]
    send_channel, receive_channel = lib.open_memory_channel(0)
    received = 0

    async def sender() -> None:
        async with send_channel:
            for i in range(messages):
                await send_channel.send(i)

    async def receiver() -> None:
        nonlocal received
        async with receive_channel:
            async for _ in receive_channel:
                received += 1

    async with lib.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(receiver)
    assert received == messages
    return received


async def run_asyncio(ctx: Context) -> int:
    import asyncio

    messages: int = ctx.params["messages"]
    # maxsize=1 is the closest asyncio gets to a rendezvous channel.
    queue: asyncio.Queue[int | None] = asyncio.Queue(1)
    received = 0

    async def sender() -> None:
        for i in range(messages):
            await queue.put(i)
        await queue.put(None)

    async def receiver() -> None:
        nonlocal received
        while await queue.get() is not None:
            received += 1

    async with asyncio.TaskGroup() as group:
        group.create_task(sender())
        group.create_task(receiver())
    assert received == messages
    return received


async def run_anyio(ctx: Context) -> int:
    import anyio

    messages: int = ctx.params["messages"]
    send_stream, receive_stream = anyio.create_memory_object_stream[int](0)
    received = 0

    async def sender() -> None:
        async with send_stream:
            for i in range(messages):
                await send_stream.send(i)

    async def receiver() -> None:
        nonlocal received
        async with receive_stream:
            async for _ in receive_stream:
                received += 1

    async with anyio.create_task_group() as group:
        group.start_soon(sender)
        group.start_soon(receiver)
    assert received == messages
    return received
