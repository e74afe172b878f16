"""Calls that ``mypy --strict`` must reject: every line marked ``# error`` must produce a
type error, and no other line may. Only ever type-checked by test_typecheck.py, never run.

Each mistake has a correct twin in correct_usage.py, so an error here can only come from
the mistake itself (a typo would show up there too).
"""

from __future__ import annotations

import nursery_io
from nursery_io import from_thread, lowlevel, to_thread


async def takes_int(x: int) -> None:
    pass


async def takes_int_and_str(x: int, s: str) -> None:
    pass


async def returns_int() -> int:
    return 1


def sync_takes_int(x: int) -> int:
    return x


async def startable(
    x: int, *, task_status: nursery_io.TaskStatus[str] = nursery_io.TASK_STATUS_IGNORED
) -> None:
    task_status.started(str(x))


async def startable_no_args(
    *, task_status: nursery_io.TaskStatus[str] = nursery_io.TASK_STATUS_IGNORED
) -> None:
    task_status.started("ready")


def sync_startable(*, task_status: nursery_io.TaskStatus[str]) -> None:
    task_status.started("ready")


async def handles_bytes(stream: bytes) -> None:
    pass


async def handles_stream(stream: nursery_io.SocketStream) -> None:
    pass


async def start_soon_mistakes() -> None:
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(takes_int, "1")  # error: wrong argument type
        nursery.start_soon(takes_int)  # error: missing argument
        nursery.start_soon(takes_int, 1, 2)  # error: extra argument
        nursery.start_soon(takes_int_and_str, "a", 1)  # error: swapped arguments
        nursery.start_soon(sync_takes_int, 1)  # error: sync function
        nursery.start_soon(takes_int(1))  # error: a coroutine object, not a function
        nursery.start_soon(takes_int, 1, nmae="typo")  # error: unknown keyword


async def start_mistakes() -> None:
    async with nursery_io.open_nursery() as nursery:
        await nursery.start(takes_int, 1)  # error: no task_status parameter
        await nursery.start(startable, "1")  # error: wrong argument type
        await nursery.start(startable)  # error: missing argument
        await nursery.start(startable, 1, 2)  # error: extra argument
        await nursery.start(startable_no_args, 1)  # error: extra argument
        await nursery.start(sync_startable)  # error: sync function
        number: int = await nursery.start(startable, 1)  # error: started() reports a str
        await nursery.start(nursery_io.serve_tcp, handles_bytes, 0)  # error: handler type
        await nursery.start(nursery_io.serve_tcp, 0, handles_stream)  # error: swapped
        serve_tcp = nursery_io.serve_tcp
        listeners: list[str] = await nursery.start(serve_tcp, handles_stream, 0)  # error
        print(number, listeners)


async def task_status_mistakes(
    *, task_status: nursery_io.TaskStatus[int] = nursery_io.TASK_STATUS_IGNORED
) -> None:
    task_status.started("1")  # error: wrong value type
    task_status.started()  # error: only a TaskStatus[None] may omit the value


def run_mistakes() -> None:
    text: str = nursery_io.run(returns_int)  # error: run() returns an int here
    nursery_io.run(takes_int, "1")  # error: wrong argument type
    nursery_io.run(takes_int)  # error: missing argument
    nursery_io.run(takes_int, 1, 2)  # error: extra argument
    nursery_io.run(takes_int_and_str, "a", 1)  # error: swapped arguments
    nursery_io.run(sync_takes_int, 1)  # error: sync function
    nursery_io.run(takes_int, 1, strict_exception_groups=None)  # error: keyword type
    lowlevel.SteppedRun(takes_int, "1")  # error: wrong argument type
    lowlevel.SteppedRun(takes_int)  # error: missing argument
    print(text)


async def thread_mistakes() -> None:
    await to_thread.run_sync(sync_takes_int, "1")  # error: wrong argument type
    await to_thread.run_sync(sync_takes_int)  # error: missing argument
    await to_thread.run_sync(sync_takes_int, 1, 2)  # error: extra argument
    text: str = await to_thread.run_sync(sync_takes_int, 1)  # error: returns an int
    print(text)


def in_worker_thread_mistakes() -> None:
    from_thread.run(takes_int, "1")  # error: wrong argument type
    from_thread.run(takes_int)  # error: missing argument
    from_thread.run(sync_takes_int, 1)  # error: sync function where async expected
    text: str = from_thread.run(returns_int)  # error: returns an int
    from_thread.run_sync(sync_takes_int, "1")  # error: wrong argument type
    from_thread.run_sync(sync_takes_int, 1, 2)  # error: extra argument
    print(text)


async def lowlevel_mistakes() -> None:
    token = lowlevel.current_trio_token()
    token.run_sync_soon(sync_takes_int, "1")  # error: wrong argument type
    token.run_sync_soon(sync_takes_int)  # error: missing argument
    token.run_sync_soon(sync_takes_int, 1, 2)  # error: extra argument
    lowlevel.spawn_system_task(takes_int, "1")  # error: wrong argument type
    lowlevel.spawn_system_task(takes_int)  # error: missing argument
    lowlevel.spawn_system_task(sync_takes_int, 1)  # error: sync function
