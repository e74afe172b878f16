"""Nurseries: spawning, start()/started(), error collection, strictness."""

from __future__ import annotations

import traceback

import pytest

import nursery_io
from nursery_io import lowlevel
from nursery_io.testing import MockClock, wait_all_tasks_blocked

# ----- start_soon and the task tree -----


async def test_nursery_waits_for_all_children() -> None:
    done = []

    async def child(n: int) -> None:
        for _ in range(n):
            await nursery_io.sleep(0)
        done.append(n)

    async with nursery_io.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(child, n)
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert not nursery.child_tasks


async def test_child_tasks_parent_task_and_parent_nursery() -> None:
    me = lowlevel.current_task()
    async with nursery_io.open_nursery() as nursery:
        assert nursery.parent_task is me
        assert me.child_nurseries == [nursery]
        nursery.start_soon(nursery_io.sleep_forever, name="a")
        nursery.start_soon(nursery_io.sleep_forever, name="b")
        # start_soon doesn't run the child yet, but it is already a child
        assert sorted(task.name for task in nursery.child_tasks) == ["a", "b"]
        for task in nursery.child_tasks:
            assert task.parent_nursery is nursery
            assert task.eventual_parent_nursery is None
            assert task.child_nurseries == []
        async with nursery_io.open_nursery() as inner:
            assert me.child_nurseries == [nursery, inner]
        nursery.cancel_scope.cancel()
    assert me.child_nurseries == []
    assert isinstance(nursery.child_tasks, frozenset)


async def test_closed_nursery_refuses_new_tasks() -> None:
    async def started(task_status: nursery_io.TaskStatus[None]) -> None:
        task_status.started()

    async with nursery_io.open_nursery() as nursery:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        nursery.start_soon(nursery_io.sleep, 0)
    with pytest.raises(RuntimeError, match="closed"):
        await nursery.start(started)


async def test_nursery_stays_open_while_children_run() -> None:
    # A child may spawn siblings into its own nursery after the body finished.
    order = []

    async def spawner(nursery: nursery_io.Nursery) -> None:
        await nursery_io.sleep(0)
        nursery.start_soon(late)

    async def late() -> None:
        order.append("late ran")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(spawner, nursery)
    assert order == ["late ran"]


async def test_start_soon_misuse_raises_synchronously() -> None:
    async def coro_fn() -> None:
        pass

    def sync_fn() -> None:
        pass

    async with nursery_io.open_nursery() as nursery:
        coro = coro_fn()
        with pytest.raises(TypeError, match="coroutine object"):
            nursery.start_soon(coro)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="async def"):
            nursery.start_soon(sync_fn)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            nursery.start_soon(coro_fn, "unexpected argument")
        assert not nursery.child_tasks


async def test_sync_with_open_nursery_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        with nursery_io.open_nursery():  # type: ignore[attr-defined]
            pass


# ----- start() and task_status -----


async def test_start_returns_started_value_and_moves_task() -> None:
    events = []

    async def server(task_status: nursery_io.TaskStatus[str]) -> None:
        me = lowlevel.current_task()
        events.append(("before", me.parent_nursery is nursery, me.eventual_parent_nursery))
        await nursery_io.sleep(0)
        task_status.started("listening")
        events.append(("after", me.parent_nursery is nursery, me.eventual_parent_nursery))
        await nursery_io.sleep_forever()

    async with nursery_io.open_nursery() as nursery:
        assert await nursery.start(server, name="server") == "listening"
        (task,) = nursery.child_tasks
        assert task.name == "server"
        nursery.cancel_scope.cancel()
    assert events == [("before", False, nursery), ("after", True, None)]


async def test_started_without_value_returns_none() -> None:
    async def fn(task_status: nursery_io.TaskStatus[None]) -> None:
        task_status.started()

    async with nursery_io.open_nursery() as nursery:
        assert await nursery.start(fn) is None


async def test_task_status_ignored_lets_function_run_directly() -> None:
    async def fn(task_status: nursery_io.TaskStatus[int] = nursery_io.TASK_STATUS_IGNORED) -> str:
        task_status.started(1)
        task_status.started(2)  # no-op, even twice
        return "ran"

    async def once(
        task_status: nursery_io.TaskStatus[int] = nursery_io.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started(1)

    assert await fn() == "ran"
    assert repr(nursery_io.TASK_STATUS_IGNORED) == "TASK_STATUS_IGNORED"
    async with nursery_io.open_nursery() as nursery:
        assert await nursery.start(once) == 1
        nursery.start_soon(fn)


async def test_started_twice_is_an_error() -> None:
    errors = []

    async def fn(task_status: nursery_io.TaskStatus[int]) -> None:
        task_status.started(1)
        try:
            task_status.started(2)
        except RuntimeError as exc:
            errors.append(str(exc))

    async with nursery_io.open_nursery() as nursery:
        assert await nursery.start(fn) == 1
    assert errors == ["called 'started' twice on the same task status"]


async def test_start_child_exits_without_started() -> None:
    async def fn(task_status: nursery_io.TaskStatus[None]) -> None:
        await nursery_io.sleep(0)

    async with nursery_io.open_nursery() as nursery:
        with pytest.raises(RuntimeError, match="without calling task_status.started"):
            await nursery.start(fn)


async def test_start_error_before_started_comes_out_of_start_bare() -> None:
    async def fn(task_status: nursery_io.TaskStatus[None]) -> None:
        await nursery_io.sleep(0)
        raise KeyError("early")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(nursery_io.sleep_forever)
        with pytest.raises(KeyError, match="early"):
            await nursery.start(fn)
        # the target nursery was not affected: its other child still runs
        assert not nursery.cancel_scope.cancel_called
        assert len(nursery.child_tasks) == 1
        nursery.cancel_scope.cancel()


async def test_start_error_after_started_goes_to_the_nursery() -> None:
    async def fn(task_status: nursery_io.TaskStatus[None]) -> None:
        task_status.started()
        await nursery_io.sleep(0)
        raise KeyError("late")

    with pytest.RaisesGroup(pytest.RaisesExc(KeyError, match="late")):
        async with nursery_io.open_nursery() as nursery:
            await nursery.start(fn)
            await nursery_io.sleep_forever()


async def test_start_without_task_status_parameter() -> None:
    async def fn() -> None:
        pass

    async with nursery_io.open_nursery() as nursery:
        with pytest.raises(TypeError, match="task_status"):
            await nursery.start(fn)


async def test_nursery_does_not_close_while_start_is_pending() -> None:
    # The body ends while start() is still waiting (from another task): the nursery must
    # stay open so the started task can move in.
    order = []

    async def slow_start(task_status: nursery_io.TaskStatus[None]) -> None:
        await nursery_io.sleep(0)
        await nursery_io.sleep(0)
        task_status.started()
        order.append("started")
        await nursery_io.sleep(0)
        order.append("finished in target")

    async with nursery_io.open_nursery() as outer:
        async with nursery_io.open_nursery() as target:
            outer.start_soon(target.start, slow_start)
            # Two batches: start() has surely been called by then, whichever way the
            # first batch ran.
            await nursery_io.sleep(0)
            await nursery_io.sleep(0)
        order.append("target closed")
    assert order == ["started", "finished in target", "target closed"]


async def test_start_cancelled_before_started(autojump_clock: MockClock) -> None:
    events = []

    async def fn(task_status: nursery_io.TaskStatus[None]) -> None:
        try:
            await nursery_io.sleep_forever()
        finally:
            events.append("child cleanup")

    async with nursery_io.open_nursery() as nursery:
        with nursery_io.move_on_after(1) as scope:
            await nursery.start(fn)
        assert scope.cancelled_caught
        assert not nursery.child_tasks
    assert events == ["child cleanup"]


async def test_start_cancelled_after_started_before_start_returns(
    autojump_clock: MockClock,
) -> None:
    # The caller's scope is cancelled when started() runs: the child stays with the
    # caller and is cancelled with it rather than escaping into the target nursery.
    events = []

    async def fn(task_status: nursery_io.TaskStatus[str]) -> None:
        task_status.started("value")
        try:
            await nursery_io.sleep(10)
            events.append("slept")
        except nursery_io.Cancelled:
            events.append("child cancelled")
            raise

    async with nursery_io.open_nursery() as nursery:
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            await nursery.start(fn)
            events.append("not reached")
        assert scope.cancelled_caught
    assert events == ["child cancelled"]


async def test_started_task_is_not_cancelled_by_callers_scope_later(
    autojump_clock: MockClock,
) -> None:
    events = []

    async def fn(task_status: nursery_io.TaskStatus[None]) -> None:
        task_status.started()
        await nursery_io.sleep(5)
        events.append("child finished")

    async with nursery_io.open_nursery() as nursery:
        with nursery_io.CancelScope() as scope:
            await nursery.start(fn)
            scope.cancel()
        assert scope.cancelled_caught is False  # nothing inside checkpointed after cancel
    assert events == ["child finished"]


async def test_start_into_cancelled_nursery() -> None:
    events = []

    async def fn(task_status: nursery_io.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await nursery_io.sleep_forever()
        except nursery_io.Cancelled:
            events.append("cancelled in target")
            raise

    async with nursery_io.open_nursery() as nursery:
        nursery.cancel_scope.cancel()
        with nursery_io.CancelScope(shield=True):
            await nursery.start(fn)
    assert events == ["cancelled in target"]


# ----- errors -----


def _names(exc: BaseException) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(exc.__traceback__)]


async def test_several_failing_children_all_reported_with_tracebacks() -> None:
    async def fail(n: int) -> None:
        # Fail in the first step: nobody gets a chance to be cancelled first.
        raise ValueError(n)

    async def fail_when_cancelled() -> None:
        try:
            await nursery_io.sleep_forever()
        except nursery_io.Cancelled:
            raise KeyError("cleanup failed") from None

    with pytest.raises(BaseExceptionGroup) as info:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(fail_when_cancelled)
            await wait_all_tasks_blocked()
            for n in range(3):
                nursery.start_soon(fail, n)
    group = info.value
    assert type(group) is ExceptionGroup
    values = sorted(exc.args[0] for exc in group.exceptions if isinstance(exc, ValueError))
    assert values == [0, 1, 2]
    assert [type(exc) for exc in group.exceptions].count(KeyError) == 1
    for exc in group.exceptions:
        names = _names(exc)
        assert names[-1] in ("fail", "fail_when_cancelled"), names
    # the group's own traceback points at the nursery block
    assert "test_several_failing_children_all_reported_with_tracebacks" in _names(group)


async def test_body_error_and_child_errors_together() -> None:
    async def fail() -> None:
        raise KeyError("child")

    with pytest.RaisesGroup(KeyError, ValueError):
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(fail)
            with nursery_io.CancelScope(shield=True):
                await wait_all_tasks_blocked()  # the child fails meanwhile
            raise ValueError("body")  # before the body notices it is cancelled


async def test_body_error_cancels_children_and_is_wrapped() -> None:
    cancelled = []

    async def child() -> None:
        try:
            await nursery_io.sleep_forever()
        except nursery_io.Cancelled as exc:
            cancelled.append(exc.source)
            raise

    with pytest.RaisesGroup(ValueError):
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(child)
            await wait_all_tasks_blocked()
            raise ValueError
    assert cancelled == ["nursery"]


async def test_nursery_cancelled_result_is_absorbed() -> None:
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(nursery_io.sleep_forever)
        nursery.start_soon(nursery_io.sleep_forever)
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
        await nursery_io.sleep_forever()
    assert nursery.cancel_scope.cancelled_caught


async def test_child_error_cancels_siblings_with_nursery_source() -> None:
    sources = []

    async def sibling() -> None:
        try:
            await nursery_io.sleep_forever()
        except nursery_io.Cancelled as exc:
            sources.append((exc.source, exc.reason is not None))
            raise

    async def fail() -> None:
        await wait_all_tasks_blocked()
        raise RuntimeError("fail")

    with pytest.RaisesGroup(RuntimeError):
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(sibling)
            nursery.start_soon(fail)
    assert sources == [("nursery", True)]


async def test_nested_nursery_errors_nest_groups() -> None:
    async def fail() -> None:
        raise KeyError

    with pytest.RaisesGroup(pytest.RaisesGroup(KeyError), ValueError):
        async with nursery_io.open_nursery() as outer:

            async def inner_nursery() -> None:
                async with nursery_io.open_nursery() as inner:
                    inner.start_soon(fail)

            async def other() -> None:
                raise ValueError

            outer.start_soon(inner_nursery)
            outer.start_soon(other)


async def test_keyboard_interrupt_in_child_is_a_base_exception_group() -> None:
    async def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(BaseExceptionGroup) as info:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(interrupt)
            nursery.start_soon(nursery_io.sleep_forever)
    assert type(info.value) is BaseExceptionGroup
    assert [type(e) for e in info.value.exceptions] == [KeyboardInterrupt]


@pytest.mark.filterwarnings(
    "ignore::nursery_io.TrioDeprecationWarning"
)  # the deprecated mode itself
async def test_non_strict_nursery() -> None:
    async def fail(exc: BaseException) -> None:
        raise exc

    with pytest.raises(KeyError):
        async with nursery_io.open_nursery(strict_exception_groups=False) as nursery:
            nursery.start_soon(fail, KeyError())
    with pytest.RaisesGroup(KeyError, ValueError):
        async with nursery_io.open_nursery(strict_exception_groups=False) as nursery:
            nursery.start_soon(fail, KeyError())
            nursery.start_soon(fail, ValueError())
    with pytest.raises(ValueError):
        async with nursery_io.open_nursery(strict_exception_groups=False):
            raise ValueError
    # no errors at all: nothing raised in either mode
    async with nursery_io.open_nursery(strict_exception_groups=False):
        pass


@pytest.mark.filterwarnings(
    "ignore::nursery_io.TrioDeprecationWarning"
)  # the deprecated mode itself
def test_non_strict_run_default_and_strict_override() -> None:
    async def fail() -> None:
        raise KeyError

    async def main() -> None:
        with pytest.raises(KeyError):
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(fail)
        with pytest.RaisesGroup(KeyError):
            async with nursery_io.open_nursery(strict_exception_groups=True) as nursery:
                nursery.start_soon(fail)

    nursery_io.run(main, strict_exception_groups=False)


async def test_strict_body_error_is_wrapped() -> None:
    with pytest.RaisesGroup(ValueError):
        async with nursery_io.open_nursery():
            raise ValueError


async def test_nursery_exit_is_a_schedule_point_even_with_no_children() -> None:
    other_ran = []

    async def other() -> None:
        other_ran.append(True)

    task = lowlevel.current_task()
    async with nursery_io.open_nursery() as outer:
        outer.start_soon(other)
        schedule_points = task._schedule_points
        async with nursery_io.open_nursery():
            pass
        assert task._schedule_points == schedule_points + 1
    assert other_ran == [True]


async def test_nursery_exit_is_not_a_cancel_point_when_empty() -> None:
    # Exiting an empty nursery in a cancelled scope doesn't raise Cancelled (Trio's rule:
    # it's a schedule point but not a cancel point).
    with nursery_io.CancelScope() as scope:
        scope.cancel()
        async with nursery_io.open_nursery():
            pass
        reached = True
    assert reached
    assert not scope.cancelled_caught


def test_misnested_nursery_exit_is_reported() -> None:
    # As in Trio: the out-of-order exit fails, and the task's exit then reports the
    # nursery it left open. (tests/parity/test_cancel.py compares the details.)
    async def main() -> None:
        first = nursery_io.open_nursery()
        second = nursery_io.open_nursery()
        await first.__aenter__()
        await second.__aenter__()
        await first.__aexit__(None, None, None)

    with pytest.raises(RuntimeError, match="^Nursery stack corrupted: Nursery surrounding") as info:
        nursery_io.run(main)
    assert isinstance(info.value.__context__, AssertionError)


async def test_nursery_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="^nursery_io.Nursery has no public constructor$"):
        nursery_io.Nursery()
    with pytest.raises(TypeError, match="no public constructor"):
        nursery_io.Nursery(lowlevel.current_task(), nursery_io.CancelScope(), True)  # type: ignore[call-arg]
    async with nursery_io.open_nursery() as nursery:
        assert type(nursery) is nursery_io.Nursery


async def test_the_open_nursery_stack_reads_as_trios() -> None:
    # Code written for trio sometimes reads the private ``_child_nurseries``; we allocate the
    # stack lazily, so both spellings must still show a list, innermost nursery last.
    task = nursery_io.lowlevel.current_task()
    assert task.child_nurseries == [] and task._child_nurseries == []
    async with nursery_io.open_nursery() as outer:
        async with nursery_io.open_nursery() as inner:
            assert task.child_nurseries == [outer, inner]
            assert task._child_nurseries == [outer, inner]
        assert task._child_nurseries == [outer]
    assert task.child_nurseries == [] and task._child_nurseries == []
