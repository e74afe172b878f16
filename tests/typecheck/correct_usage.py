"""The correct twins of the calls in mistakes.py: ``mypy --strict`` must accept all of this,
and infer the types that ``assert_type`` states. Only ever type-checked, never run."""

from __future__ import annotations

import functools
from typing import Any, assert_type

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


async def startable_positional_status(
    x: int, task_status: nursery_io.TaskStatus[list[int]] = nursery_io.TASK_STATUS_IGNORED
) -> None:
    task_status.started([x])


async def startable_required_status(x: int, *, task_status: nursery_io.TaskStatus[int]) -> None:
    task_status.started(x)


async def startable_bare_status(
    *, task_status: nursery_io.TaskStatus = nursery_io.TASK_STATUS_IGNORED
) -> None:
    # A bare TaskStatus is a TaskStatus[None], which may omit the value (as in Trio).
    task_status.started()


async def startable_many(
    a: int,
    b: str,
    c: bytes,
    d: float,
    e: bool,
    *,
    task_status: nursery_io.TaskStatus[int] = nursery_io.TASK_STATUS_IGNORED,
) -> None:
    task_status.started(a)


async def handles_stream(stream: nursery_io.SocketStream) -> None:
    pass


async def start_soon_usage() -> None:
    async with nursery_io.open_nursery() as nursery:
        assert_type(nursery, nursery_io.Nursery)
        nursery.start_soon(takes_int, 1)
        nursery.start_soon(takes_int, 1, name="worker")
        nursery.start_soon(takes_int_and_str, 1, "a")
        nursery.start_soon(returns_int)
        nursery.start_soon(startable, 1)  # task_status has a default
        nursery.start_soon(functools.partial(takes_int_and_str, 1), "a")


async def start_usage() -> None:
    async with nursery_io.open_nursery() as nursery:
        assert_type(await nursery.start(startable, 1), str)
        assert_type(await nursery.start(startable, 1, name="starter"), str)
        assert_type(await nursery.start(startable_no_args), str)
        assert_type(await nursery.start(startable_positional_status, 1), list[int])
        assert_type(await nursery.start(startable_required_status, 1), int)
        assert_type(await nursery.start(startable_bare_status), None)
        assert_type(await nursery.start(startable_many, 1, "b", b"c", 1.0, True), Any)
        listeners = await nursery.start(nursery_io.serve_tcp, handles_stream, 0)
        assert_type(listeners, list[nursery_io.SocketListener])
        served = await nursery.start(nursery_io.serve_listeners, handles_stream, listeners)
        assert_type(served, list[nursery_io.SocketListener])
        await nursery.start(functools.partial(startable, 1))


async def task_status_usage(
    *, task_status: nursery_io.TaskStatus[int] = nursery_io.TASK_STATUS_IGNORED
) -> None:
    task_status.started(1)


def run_usage() -> None:
    assert_type(nursery_io.run(returns_int), int)
    assert_type(nursery_io.run(takes_int, 1), None)
    nursery_io.run(takes_int_and_str, 1, "a")
    nursery_io.run(takes_int, 1, strict_exception_groups=False)
    assert_type(lowlevel.SteppedRun(takes_int, 1), lowlevel.SteppedRun)


async def thread_usage() -> None:
    assert_type(await to_thread.run_sync(sync_takes_int, 1), int)
    await to_thread.run_sync(sync_takes_int, 1, abandon_on_cancel=True)


def in_worker_thread_usage() -> None:
    assert_type(from_thread.run(takes_int, 1), None)
    assert_type(from_thread.run(returns_int), int)
    assert_type(from_thread.run_sync(sync_takes_int, 1), int)
    from_thread.run_sync(sync_takes_int, 1, trio_token=None)


async def lowlevel_usage() -> None:
    token = lowlevel.current_trio_token()
    token.run_sync_soon(sync_takes_int, 1)
    token.run_sync_soon(sync_takes_int, 1, idempotent=True)
    assert_type(lowlevel.spawn_system_task(takes_int, 1), lowlevel.Task)
    lowlevel.spawn_system_task(takes_int, 1, name="system")
