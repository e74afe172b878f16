"""Task groups, cancel scopes and task introspection through anyio's API."""

from __future__ import annotations

import contextvars
import gc
import math

import anyio
import pytest
from anyio import (
    CancelScope,
    create_task_group,
    fail_after,
    get_cancelled_exc_class,
    get_current_task,
    get_running_tasks,
    move_on_after,
    wait_all_tasks_blocked,
)
from anyio.abc import TaskStatus

import nursery_io

pytestmark = pytest.mark.anyio

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def test_cancelled_exception_class_is_ours() -> None:
    assert get_cancelled_exc_class() is nursery_io.Cancelled


async def test_start_soon_runs_children_and_waits_for_them() -> None:
    done: list[int] = []

    async def child(n: int) -> None:
        await anyio.sleep(0)
        done.append(n)

    async with create_task_group() as tg:
        for n in range(5):
            tg.start_soon(child, n)
    assert sorted(done) == [0, 1, 2, 3, 4]


async def test_errors_come_out_as_an_exception_group() -> None:
    async def fail(exc: Exception) -> None:
        raise exc

    with pytest.raises(ExceptionGroup) as info:
        async with create_task_group() as tg:
            tg.start_soon(fail, ValueError("a"))
            tg.start_soon(fail, KeyError("b"))
            await anyio.sleep_forever()
    assert {type(e) for e in info.value.exceptions} == {ValueError, KeyError}
    # The group replaces the cancelled body rather than decorating it.
    assert info.value.__suppress_context__


async def test_a_group_of_cancellations_leaves_as_one_cancellation() -> None:
    with CancelScope() as outer:
        try:
            async with create_task_group() as tg:
                tg.start_soon(anyio.sleep_forever)
                tg.start_soon(anyio.sleep_forever)
                await wait_all_tasks_blocked()
                outer.cancel()
                await anyio.sleep_forever()
        except BaseException as exc:
            assert isinstance(exc, nursery_io.Cancelled)
            caught = exc
            raise
    assert outer.cancelled_caught
    # No reference cycle keeps the cancellation (or the group it came from) alive: only
    # our local refers to it (Python 3.11 frames don't show up as referrers).
    assert gc.get_referrers(caught) == []


async def test_start_returns_the_started_value_and_reparents() -> None:
    async def server(*, task_status: TaskStatus[int]) -> None:
        starter = get_current_task().parent_id
        task_status.started(starter)
        await anyio.sleep_forever()

    async def starter(tg: anyio.abc.TaskGroup, results: list[int | None]) -> None:
        results.append(await tg.start(server))
        results.append(get_current_task().id)

    results: list[int | None] = []
    async with create_task_group() as tg:
        tg.start_soon(starter, tg, results)
        await wait_all_tasks_blocked()
        tasks = {info.name: info for info in get_running_tasks()}
        tg.cancel_scope.cancel()
    # While starting, the child's parent is the starter; afterwards, the group's owner.
    assert results[0] == results[1]
    assert any(name.endswith("server") for name in tasks)
    server_info = next(info for name, info in tasks.items() if name.endswith("server"))
    assert server_info.parent_id == get_current_task().id


async def test_started_may_be_called_before_the_task_runs() -> None:
    def early(*, task_status: TaskStatus[str]) -> object:
        task_status.started("early")  # while the coroutine is being created
        return anyio.sleep(0)

    async with create_task_group() as tg:
        assert await tg.start(early) == "early"


async def test_start_with_a_handle_and_errors() -> None:
    async def worker(x: int, *, task_status: TaskStatus[str]) -> int:
        task_status.started("ready")
        await anyio.sleep(0)
        return x * 2

    async def never_starts(*, task_status: TaskStatus[None]) -> None:
        pass

    async def fails_first(*, task_status: TaskStatus[None]) -> None:
        raise ValueError("before started")

    async with create_task_group() as tg:
        handle = await tg.start(worker, 21, return_handle=True)
        assert handle.start_value == "ready"
        assert await handle == 42
        with pytest.raises(RuntimeError, match="without calling"):
            await tg.start(never_starts)
        with pytest.raises(ValueError, match="before started"):
            await tg.start(fails_first)


async def test_task_handles_and_names() -> None:
    async def value() -> int:
        return 7

    async with create_task_group() as tg:
        handle = tg.start_soon(value, name="the value")
        cancelled = tg.start_soon(anyio.sleep_forever)
        assert handle.name == "the value"
        await wait_all_tasks_blocked()
        cancelled.cancel()
    assert handle.return_value == 7
    assert handle.status is anyio.TaskHandle.Status.FINISHED
    assert cancelled.status is anyio.TaskHandle.Status.CANCELLED


async def test_create_task_runs_in_the_given_context() -> None:
    seen: list[str] = []

    async def read() -> None:
        seen.append(var.get())

    context = contextvars.copy_context()
    context.run(var.set, "given")
    async with create_task_group() as tg:
        tg.create_task(read(), context=context)
        tg.create_task(read())
    assert sorted(seen) == ["given", "unset"]


async def test_inactive_group_refuses_new_tasks() -> None:
    async with create_task_group() as tg:
        pass
    with pytest.raises(RuntimeError, match="not active"):
        tg.start_soon(anyio.sleep, 0)
    with pytest.raises(RuntimeError, match="not active"):
        await tg.start(anyio.sleep, 0)
    with pytest.raises(RuntimeError, match="more than once"):
        async with tg:
            pass


async def test_deadlines_shields_and_effective_deadline() -> None:
    assert anyio.current_effective_deadline() == math.inf
    with move_on_after(0.01) as scope:
        assert anyio.current_effective_deadline() == scope.deadline
        with CancelScope(shield=True) as shielded:
            assert anyio.current_effective_deadline() == math.inf
            await anyio.sleep(0.02)  # the outer deadline passes while we are shielded
        assert not shielded.cancelled_caught
        await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert scope.cancel_called

    with CancelScope() as scope:
        scope.cancel("because")
        assert anyio.current_effective_deadline() == -math.inf
        assert get_current_task().has_pending_cancellation()
        with pytest.raises(nursery_io.Cancelled) as info:
            await anyio.sleep(0)
        assert "because" in str(info.value)
        raise info.value
    assert scope.cancelled_caught

    with pytest.raises(TimeoutError):
        with fail_after(0.001):
            await anyio.sleep_forever()

    scope = CancelScope(deadline=math.inf)
    with scope:
        scope.deadline = anyio.current_time() - 1
        await anyio.sleep_forever()
    assert scope.cancelled_caught


async def test_has_pending_cancellation_of_another_task() -> None:
    infos: list[anyio.TaskInfo] = []

    async def sleeper(*, task_status: TaskStatus[None]) -> None:
        infos.append(get_current_task())
        task_status.started()
        await anyio.sleep_forever()

    async with create_task_group() as tg:
        await tg.start(sleeper)
        assert not infos[0].has_pending_cancellation()
        tg.cancel_scope.cancel()
        assert infos[0].has_pending_cancellation()
    # The task is gone: nothing is pending any more.
    assert not infos[0].has_pending_cancellation()


async def test_memory_stream_skips_a_cancelled_receiver() -> None:
    # send_nowait must not hand an item to a receiver whose cancellation is pending.
    send, receive = anyio.create_memory_object_stream[int](1)
    async with send, receive:
        async with create_task_group() as tg:

            async def receiver() -> None:
                await receive.receive()
                pytest.fail("should have been cancelled")  # pragma: no cover

            tg.start_soon(receiver)
            await wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
            send.send_nowait(1)
        assert receive.receive_nowait() == 1


async def test_running_tasks_include_the_tree() -> None:
    event = anyio.Event()
    async with create_task_group() as tg:
        tg.start_soon(event.wait, name="waiter")
        await wait_all_tasks_blocked()
        infos = get_running_tasks()
        me = get_current_task()
        waiter = next(info for info in infos if info.name == "waiter")
        assert waiter.parent_id == me.id
        assert me in infos
        assert infos[0].parent_id is None  # the root task
        event.set()
