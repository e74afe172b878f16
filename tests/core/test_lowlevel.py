"""nursery_io.lowlevel: traps, reschedule, Task, RunVar, ParkingLot, instruments,
statistics, run tokens and system tasks."""

from __future__ import annotations

import contextvars
import logging
import math
import threading
from typing import Any

import outcome
import pytest

import nursery_io
from nursery_io import lowlevel
from nursery_io.abc import Instrument
from nursery_io.testing import MockClock, wait_all_tasks_blocked

# ----- traps and reschedule -----


async def test_reschedule_with_value_error_and_default() -> None:
    task = lowlevel.current_task()
    token = lowlevel.current_token()
    abort = lambda _: lowlevel.Abort.SUCCEEDED  # noqa: E731

    token.run_sync_soon(lowlevel.reschedule, task, outcome.Value(42))
    assert await lowlevel.wait_task_rescheduled(abort) == 42

    token.run_sync_soon(lowlevel.reschedule, task, outcome.Error(KeyError("x")))
    with pytest.raises(KeyError):
        await lowlevel.wait_task_rescheduled(abort)

    token.run_sync_soon(lowlevel.reschedule, task)
    assert await lowlevel.wait_task_rescheduled(abort) is None


async def test_reschedule_of_a_task_that_is_not_parked_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not parked"):
        lowlevel.reschedule(lowlevel.current_task())


async def test_abort_succeeded_delivers_cancelled() -> None:
    aborts = []

    def abort(raise_cancel: lowlevel.RaiseCancelT) -> lowlevel.Abort:
        aborts.append(raise_cancel)
        return lowlevel.Abort.SUCCEEDED

    with nursery_io.CancelScope() as scope:
        lowlevel.current_token().run_sync_soon(scope.cancel)
        await lowlevel.wait_task_rescheduled(abort)
    assert scope.cancelled_caught
    assert len(aborts) == 1


async def test_abort_failed_keeps_waiting_until_rescheduled() -> None:
    task = lowlevel.current_task()
    events = []

    def abort(raise_cancel: lowlevel.RaiseCancelT) -> lowlevel.Abort:
        events.append("abort")

        def finish_later() -> None:
            events.append("finished")
            lowlevel.reschedule(task, outcome.capture(raise_cancel))

        lowlevel.current_token().run_sync_soon(finish_later)
        return lowlevel.Abort.FAILED

    with nursery_io.CancelScope() as scope:
        scope.cancel()
        await lowlevel.wait_task_rescheduled(abort)
    assert events == ["abort", "finished"]
    assert scope.cancelled_caught


async def test_abort_failed_then_real_result_wins() -> None:
    task = lowlevel.current_task()

    def abort(raise_cancel: lowlevel.RaiseCancelT) -> lowlevel.Abort:
        lowlevel.current_token().run_sync_soon(lowlevel.reschedule, task, outcome.Value("done"))
        return lowlevel.Abort.FAILED

    with nursery_io.CancelScope() as scope:
        scope.cancel()
        assert await lowlevel.wait_task_rescheduled(abort) == "done"
        # but the scope is still cancelled: the next checkpoint raises
        await lowlevel.checkpoint()
    assert scope.cancelled_caught


async def test_abort_is_called_once_per_wait() -> None:
    calls = []
    task = lowlevel.current_task()

    def abort(raise_cancel: lowlevel.RaiseCancelT) -> lowlevel.Abort:
        calls.append(1)
        return lowlevel.Abort.FAILED

    with nursery_io.CancelScope() as outer:
        with nursery_io.CancelScope() as inner:
            lowlevel.current_token().run_sync_soon(inner.cancel)
            lowlevel.current_token().run_sync_soon(outer.cancel)
            lowlevel.current_token().run_sync_soon(lowlevel.reschedule, task)
            await lowlevel.wait_task_rescheduled(abort)
    assert calls == [1]


async def test_checkpoint_variants() -> None:
    await lowlevel.checkpoint()
    await lowlevel.checkpoint_if_cancelled()
    await lowlevel.cancel_shielded_checkpoint()
    with nursery_io.CancelScope() as scope:
        scope.cancel()
        await lowlevel.cancel_shielded_checkpoint()  # never raises
        with pytest.raises(nursery_io.Cancelled):
            await lowlevel.checkpoint_if_cancelled()
        with pytest.raises(nursery_io.Cancelled):
            await lowlevel.checkpoint()
        await lowlevel.checkpoint()
    assert scope.cancelled_caught


async def test_checkpoint_if_cancelled_does_not_yield_when_not_cancelled() -> None:
    ran = []

    async def other() -> None:
        ran.append(True)

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(other)
        await lowlevel.checkpoint_if_cancelled()
        assert ran == []  # no schedule point happened
        await lowlevel.cancel_shielded_checkpoint()
        assert ran == [True]  # this one is a schedule point


async def test_checkpoint_lets_every_other_runnable_task_run_first() -> None:
    # Fairness: a task that checkpoints goes behind everyone already runnable.
    order = []

    async def worker(name: str) -> None:
        for i in range(3):
            order.append((name, i))
            await lowlevel.checkpoint()

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(worker, "a")
        nursery.start_soon(worker, "b")
    rounds = [sorted(order[i : i + 2]) for i in range(0, 6, 2)]
    assert rounds == [[("a", i), ("b", i)] for i in range(3)]


# ----- Task -----


def test_task_attributes_and_repr() -> None:
    # Needs to be the run's main task itself: under the pytest plugin the test's coroutine
    # is awaited by the plugin's own task. The inner function keeps the test's name.
    async def test_task_attributes_and_repr() -> None:
        task = lowlevel.current_task()
        assert "test_task_attributes_and_repr" in task.name
        assert repr(task).startswith("<Task ")
        assert task.coro.cr_code.co_name == "test_task_attributes_and_repr"
        assert task.custom_sleep_data is None
        task.custom_sleep_data = "mine"
        assert task.custom_sleep_data == "mine"
        assert lowlevel.in_task()

    nursery_io.run(test_task_attributes_and_repr)


async def test_custom_sleep_data_cleared_on_reschedule() -> None:
    task = lowlevel.current_task()
    task.custom_sleep_data = "parked here"
    lowlevel.current_token().run_sync_soon(lowlevel.reschedule, task)
    await lowlevel.wait_task_rescheduled(lambda _: lowlevel.Abort.SUCCEEDED)
    assert task.custom_sleep_data is None


async def test_task_context_assignment_takes_effect_at_next_step() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="default")
    seen = []

    task = lowlevel.current_task()
    new_context = contextvars.copy_context()
    new_context.run(var.set, "assigned")
    task.context = new_context
    seen.append(var.get())  # still running in the old context for this step
    await nursery_io.sleep(0)
    seen.append(var.get())
    var.set("changed in new context")
    assert new_context[var] == "changed in new context"
    assert seen == ["default", "assigned"]


async def test_children_inherit_a_copy_of_the_spawner_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")
    var.set("parent")
    seen = []

    async def child() -> None:
        seen.append(var.get())
        var.set("child")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(child)
    assert seen == ["parent"]
    assert var.get() == "parent"


def test_iter_await_frames() -> None:
    # Needs to be the run's main task itself: under the pytest plugin the test's coroutine
    # is awaited by the plugin's own task. The inner function keeps the test's name.
    async def test_iter_await_frames() -> None:
        async def leaf() -> None:
            await nursery_io.sleep_forever()

        async def middle() -> None:
            await leaf()

        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(middle)
            await wait_all_tasks_blocked()
            (task,) = nursery.child_tasks
            frames = list(task.iter_await_frames())
            names = [frame.f_code.co_name for frame, _ in frames]
            assert names[:3] == ["middle", "leaf", "sleep_forever"]
            assert names[-1] == "wait_task_rescheduled"
            for frame, lineno in frames:
                assert lineno == frame.f_lineno
            nursery.cancel_scope.cancel()
        me = lowlevel.current_task()
        assert [f.f_code.co_name for f, _ in me.iter_await_frames()] == ["test_iter_await_frames"]

    nursery_io.run(test_iter_await_frames)


async def test_iter_await_frames_through_async_generator() -> None:
    async def agen() -> Any:
        await nursery_io.sleep_forever()
        yield

    async def consumer() -> None:
        async for _ in agen():
            pass

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await wait_all_tasks_blocked()
        (task,) = nursery.child_tasks
        names = [frame.f_code.co_name for frame, _ in task.iter_await_frames()]
        # what follows the generator's asend wrapper can't be introspected
        assert names[0] == "consumer"
        nursery.cancel_scope.cancel()


async def test_finished_task_has_no_frames() -> None:
    async def quick() -> None:
        pass

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(quick)
        (task,) = nursery.child_tasks
    assert list(task.iter_await_frames()) == []


# ----- system tasks -----


async def test_spawn_system_task() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("main")
    events = []

    async def system(arg: str) -> None:
        events.append((arg, var.get(), lowlevel.currently_ki_protected()))
        try:
            await nursery_io.sleep_forever()
        except nursery_io.Cancelled as exc:
            events.append(exc.source)
            raise

    task = lowlevel.spawn_system_task(system, "arg", name="my system task")
    assert task.name == "my system task"
    root = lowlevel.current_root_task()
    assert root is not None
    assert task.parent_nursery is not None and task.parent_nursery.parent_task is root
    await wait_all_tasks_blocked()
    # system tasks don't inherit the spawner's context
    assert events == [("arg", "unset", True)]


def test_system_tasks_are_cancelled_when_main_exits() -> None:
    events = []

    async def system() -> None:
        try:
            await nursery_io.sleep_forever()
        finally:
            events.append("system cleanup")

    async def main() -> str:
        lowlevel.spawn_system_task(system)
        await wait_all_tasks_blocked()
        return "main result"

    assert nursery_io.run(main) == "main result"
    assert events == ["system cleanup"]


async def test_spawn_system_task_with_explicit_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    context = contextvars.copy_context()
    context.run(var.set, "given")
    seen = []

    async def system() -> None:
        seen.append(var.get())

    lowlevel.spawn_system_task(system, context=context)
    await wait_all_tasks_blocked()
    assert seen == ["given"]


# ----- RunVar -----


def test_runvar_is_per_run() -> None:
    var = lowlevel.RunVar[int]("counter")
    with_default = lowlevel.RunVar("with_default", default="d")
    seen = []

    async def main() -> None:
        with pytest.raises(LookupError):
            var.get()
        assert var.get(99) == 99
        assert with_default.get() == "d"
        assert with_default.get("override") == "override"
        first = var.set(1)
        second = var.set(2)
        assert second.previous_value == 1 and second.var is var
        assert var.get() == 2
        var.reset(second)
        assert var.get() == 1
        with pytest.raises(ValueError, match="already been used"):
            var.reset(second)
        with pytest.raises(ValueError, match="not for this RunVar"):
            with_default.reset(first)  # type: ignore[arg-type]
        var.reset(first)
        with pytest.raises(LookupError):
            var.get()
        var.set(len(seen))
        seen.append(var.get())

    nursery_io.run(main)
    nursery_io.run(main)  # a fresh run starts empty
    assert seen == [0, 1]
    with pytest.raises(RuntimeError):
        var.get()
    assert "counter" in repr(var)


async def test_runvar_shared_by_tasks_of_one_run() -> None:
    var = lowlevel.RunVar[str]("shared")

    async def setter() -> None:
        var.set("from child")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(setter)
    assert var.get() == "from child"


def test_runvar_is_per_thread_run() -> None:
    var = lowlevel.RunVar[str]("who")
    results = {}
    barrier = threading.Barrier(2, timeout=30)

    def thread_main(name: str) -> None:
        async def main() -> str:
            var.set(name)
            barrier.wait()  # both runs have set their value
            await nursery_io.sleep(0)
            return var.get()

        results[name] = nursery_io.run(main)

    threads = [threading.Thread(target=thread_main, args=(n,)) for n in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == {"x": "x", "y": "y"}


# ----- ParkingLot -----


async def test_parking_lot_fifo_and_counts() -> None:
    lot = lowlevel.ParkingLot()
    woke: list[int] = []

    async def waiter(n: int) -> None:
        await lot.park()
        woke.append(n)

    async with nursery_io.open_nursery() as nursery:
        for n in range(6):
            nursery.start_soon(waiter, n)
            await wait_all_tasks_blocked()  # park in a known order
        assert len(lot) == 6 and bool(lot)
        assert lot.statistics().tasks_waiting == 6
        unparked = lot.unpark()
        assert len(unparked) == 1
        await wait_all_tasks_blocked()
        assert woke == [0]
        assert len(lot.unpark(count=2)) == 2
        await wait_all_tasks_blocked()
        assert woke == [0, 1, 2]
        assert len(lot.unpark_all()) == 3
    assert sorted(woke[3:]) == [3, 4, 5]
    assert not lot and lot.statistics().tasks_waiting == 0
    assert lot.unpark() == []
    # As in Trio: a negative count wakes no one; a fractional one is an error.
    assert lot.unpark(count=-1) == []
    with pytest.raises(ValueError, match="non-integer"):
        lot.unpark(count=1.5)


async def test_parking_lot_unpark_returns_the_tasks() -> None:
    lot = lowlevel.ParkingLot()
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(lot.park, name="parker")
        await wait_all_tasks_blocked()
        (task,) = lot.unpark()
        assert task.name == "parker"


async def test_parking_lot_repark() -> None:
    lot1 = lowlevel.ParkingLot()
    lot2 = lowlevel.ParkingLot()
    woke: list[int] = []

    async def waiter(lot: lowlevel.ParkingLot, n: int) -> None:
        await lot.park()
        woke.append(n)

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(waiter, lot2, 0)
        await wait_all_tasks_blocked()
        for n in (1, 2, 3):
            nursery.start_soon(waiter, lot1, n)
            await wait_all_tasks_blocked()
        lot1.repark(lot2)  # moves 1 to the back of lot2
        assert (len(lot1), len(lot2)) == (2, 2)
        lot2.unpark_all()
        await wait_all_tasks_blocked()
        assert woke == [0, 1]
        lot1.repark_all(lot2)
        assert (len(lot1), len(lot2)) == (0, 2)
        lot2.unpark(count=math.inf)
    assert woke == [0, 1, 2, 3]
    with pytest.raises(TypeError):
        lot1.repark([])  # type: ignore[arg-type]


async def test_cancelled_parker_leaves_the_lot_even_after_repark() -> None:
    lot1 = lowlevel.ParkingLot()
    lot2 = lowlevel.ParkingLot()
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(lot1.park)
        await wait_all_tasks_blocked()
        lot1.repark(lot2)
        nursery.cancel_scope.cancel()
    assert not lot1 and not lot2


async def test_parking_lot_break_lot() -> None:
    lot = lowlevel.ParkingLot()
    errors = []

    async def waiter() -> None:
        try:
            await lot.park()
        except nursery_io.BrokenResourceError as exc:
            errors.append(exc)

    async with nursery_io.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(waiter)
        await wait_all_tasks_blocked()
        lot.break_lot()
    me = lowlevel.current_task()
    # every waiter gets its own exception
    assert len(errors) == 3 and len({id(e) for e in errors}) == 3
    assert lot.broken_by == [me]
    with pytest.raises(nursery_io.BrokenResourceError, match="broken by"):
        await lot.park()
    lot.break_lot(me)
    assert lot.broken_by == [me, me]  # every call is recorded, as in Trio


async def test_parking_lot_park_is_cancellable() -> None:
    lot = lowlevel.ParkingLot()
    with nursery_io.CancelScope() as scope:
        lowlevel.current_token().run_sync_soon(scope.cancel)
        await lot.park()
    assert scope.cancelled_caught and not lot


# ----- instruments -----


class _Recorder(Instrument):
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def before_run(self) -> None:
        self.events.append(("before_run",))

    def after_run(self) -> None:
        self.events.append(("after_run",))

    def task_spawned(self, task: lowlevel.Task) -> None:
        self.events.append(("task_spawned", task.name))

    def task_scheduled(self, task: lowlevel.Task) -> None:
        self.events.append(("task_scheduled", task.name))

    def before_task_step(self, task: lowlevel.Task) -> None:
        self.events.append(("before_task_step", task.name))

    def after_task_step(self, task: lowlevel.Task) -> None:
        self.events.append(("after_task_step", task.name))

    def task_exited(self, task: lowlevel.Task) -> None:
        self.events.append(("task_exited", task.name))

    def before_io_wait(self, timeout: float) -> None:
        self.events.append(("before_io_wait",))

    def after_io_wait(self, timeout: float) -> None:
        self.events.append(("after_io_wait",))


def test_instruments_see_every_hook() -> None:
    recorder = _Recorder()

    async def child() -> None:
        await nursery_io.sleep(0)

    async def main() -> None:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(child, name="child")
        await nursery_io.sleep(0.001)

    nursery_io.run(main, instruments=[recorder])
    events = recorder.events
    assert events[0] == ("before_run",)
    assert events[-1] == ("after_run",)
    kinds = {event[0] for event in events}
    assert kinds == {
        "before_run",
        "after_run",
        "task_spawned",
        "task_scheduled",
        "before_task_step",
        "after_task_step",
        "task_exited",
        "before_io_wait",
        "after_io_wait",
    }
    child_events = [event[0] for event in events if event[1:] == ("child",)]
    assert child_events == [
        "task_spawned",
        "task_scheduled",
        "before_task_step",
        "task_scheduled",
        "after_task_step",
        "before_task_step",
        "task_exited",
        "after_task_step",
    ]
    # every spawned task (the root too) is seen exiting
    spawned = sorted(e[1] for e in events if e[0] == "task_spawned")
    exited = sorted(e[1] for e in events if e[0] == "task_exited")
    assert spawned == exited
    # steps come in before/after pairs
    steps = [e for e in events if e[0] in ("before_task_step", "after_task_step")]
    assert all(
        a[0] == "before_task_step" and b == ("after_task_step", a[1])
        for a, b in zip(steps[::2], steps[1::2])
    )


def test_raising_instrument_is_removed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    class Broken(Instrument):
        def before_task_step(self, task: lowlevel.Task) -> None:
            calls.append("before")
            raise ValueError("instrument bug")

        def after_task_step(self, task: lowlevel.Task) -> None:
            calls.append("after")

    async def main() -> None:
        for _ in range(3):
            await nursery_io.sleep(0)

    with caplog.at_level(logging.ERROR, logger="nursery_io.instruments"):
        nursery_io.run(main, instruments=[Broken()])
    assert calls == ["before"]  # removed entirely, not just the hook that raised
    (record,) = caplog.records
    assert "before_task_step" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ValueError


async def test_add_and_remove_instrument_during_run() -> None:
    recorder = _Recorder()
    lowlevel.add_instrument(recorder)
    lowlevel.add_instrument(recorder)  # idempotent
    await nursery_io.sleep(0)
    lowlevel.remove_instrument(recorder)
    count = len(recorder.events)
    steps = [e for e in recorder.events if e[0] == "before_task_step"]
    assert len(steps) == 1  # not doubled
    await nursery_io.sleep(0)
    assert len(recorder.events) == count
    with pytest.raises(KeyError):
        lowlevel.remove_instrument(recorder)


async def test_instrument_without_hooks_and_duck_typed_instrument() -> None:
    class Empty(Instrument):
        pass

    class Duck:
        def __init__(self) -> None:
            self.steps = 0

        def after_task_step(self, task: lowlevel.Task) -> None:
            self.steps += 1

    empty = Empty()
    lowlevel.add_instrument(empty)
    lowlevel.remove_instrument(empty)
    duck = Duck()
    lowlevel.add_instrument(duck)  # type: ignore[arg-type]
    await nursery_io.sleep(0)
    lowlevel.remove_instrument(duck)  # type: ignore[arg-type]
    assert duck.steps == 1


# ----- statistics -----


async def test_statistics_fields(mock_clock: MockClock) -> None:
    stats = lowlevel.current_statistics()
    base_tasks = stats.tasks_living
    assert stats.seconds_to_next_deadline == math.inf
    assert stats.tasks_runnable == 0
    assert stats.run_sync_soon_queue_size == 0
    assert stats.io_statistics is not None
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(nursery_io.sleep, 5)
        nursery.start_soon(nursery_io.sleep_forever)
        nursery.start_soon(nursery_io.sleep, 0)
        stats = lowlevel.current_statistics()
        assert stats.tasks_living == base_tasks + 3
        assert stats.tasks_runnable == 3
        await wait_all_tasks_blocked()
        stats = lowlevel.current_statistics()
        assert stats.tasks_living == base_tasks + 2
        assert stats.tasks_runnable == 0
        assert stats.seconds_to_next_deadline == 5
        token = lowlevel.current_token()
        token.run_sync_soon(lambda: None)
        token.run_sync_soon(lambda: None)
        assert lowlevel.current_statistics().run_sync_soon_queue_size == 2
        before = lowlevel.current_statistics()
        await wait_all_tasks_blocked()
        after = lowlevel.current_statistics()
        assert after.run_sync_soon_queue_size == 0
        assert after.task_steps > before.task_steps
        assert after.kernel_polls >= before.kernel_polls
        nursery.cancel_scope.cancel()


# ----- run tokens -----


async def test_token_identity() -> None:
    token = lowlevel.current_token()
    assert lowlevel.current_token() is token
    assert lowlevel.current_trio_token() is token
    assert lowlevel.TrioToken is lowlevel.RunToken
    assert hash(token) == hash(lowlevel.current_token())
    assert "RunToken" in repr(token)


async def test_run_sync_soon_from_threads_runs_in_the_loop_thread() -> None:
    token = lowlevel.current_token()
    loop_thread = threading.get_ident()
    seen: list[tuple[int, int]] = []
    lot = lowlevel.ParkingLot()

    def callback(n: int) -> None:
        seen.append((n, threading.get_ident()))
        lot.unpark_all()

    threads = [threading.Thread(target=token.run_sync_soon, args=(callback, n)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    while len(seen) < 8:
        await lot.park()
    assert sorted(n for n, _ in seen) == list(range(8))
    assert {ident for _, ident in seen} == {loop_thread}


async def test_run_sync_soon_callbacks_run_in_fifo_order() -> None:
    token = lowlevel.current_token()
    order: list[int] = []
    for n in range(20):
        token.run_sync_soon(order.append, n)
    await wait_all_tasks_blocked()
    assert order == list(range(20))


async def test_run_sync_soon_idempotent() -> None:
    token = lowlevel.current_token()
    calls: list[str] = []

    def record(tag: str) -> None:
        calls.append(tag)

    for _ in range(3):
        token.run_sync_soon(record, "idem", idempotent=True)
    token.run_sync_soon(record, "other", idempotent=True)
    for _ in range(2):
        token.run_sync_soon(record, "plain")
    await wait_all_tasks_blocked()
    assert sorted(calls) == ["idem", "other", "plain", "plain"]
    # once it ran, the same call may be queued again
    token.run_sync_soon(record, "idem", idempotent=True)
    await wait_all_tasks_blocked()
    assert calls.count("idem") == 2


def test_run_sync_soon_after_the_run_raises_run_finished_error() -> None:
    async def main() -> lowlevel.RunToken:
        return lowlevel.current_token()

    token = nursery_io.run(main)
    with pytest.raises(nursery_io.RunFinishedError):
        token.run_sync_soon(lambda: None)
    assert issubclass(nursery_io.RunFinishedError, RuntimeError)


def test_run_sync_soon_queued_just_before_the_end_still_runs() -> None:
    ran = []

    async def main() -> None:
        lowlevel.current_token().run_sync_soon(ran.append, "late")

    nursery_io.run(main)
    assert ran == ["late"]


async def test_run_sync_soon_wakes_a_sleeping_loop() -> None:
    # The loop sleeps in the kernel with no deadline; only the cross-thread wake-up can
    # end it.
    token = lowlevel.current_token()
    task = lowlevel.current_task()
    threading.Timer(0.01, token.run_sync_soon, (lowlevel.reschedule, task)).start()
    await lowlevel.wait_task_rescheduled(lambda _: lowlevel.Abort.SUCCEEDED)


async def test_start_thread_soon_delivers_in_the_worker() -> None:
    token = lowlevel.current_token()
    task = lowlevel.current_task()
    main_thread = threading.get_ident()

    def deliver(result: outcome.Outcome[int]) -> None:
        token.run_sync_soon(
            lowlevel.reschedule, task, outcome.Value((result, threading.get_ident()))
        )

    lowlevel.start_thread_soon(lambda: 6 * 7, deliver)
    result, deliver_thread = await lowlevel.wait_task_rescheduled(lambda _: lowlevel.Abort.FAILED)
    assert result.unwrap() == 42
    assert deliver_thread != main_thread


# ----- wait_all_tasks_blocked -----


async def test_wait_all_tasks_blocked_waits_for_busy_tasks() -> None:
    progress = []

    async def busy() -> None:
        for n in range(10):
            progress.append(n)
            await nursery_io.sleep(0)

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(busy)
        await wait_all_tasks_blocked()
        assert progress == list(range(10))


async def test_wait_all_tasks_blocked_cushion_and_ordering() -> None:
    order = []

    async def waiter(cushion: float, name: str) -> None:
        await wait_all_tasks_blocked(cushion)
        order.append(name)

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(waiter, 0.02, "slow")
        nursery.start_soon(waiter, 0.01, "medium")
        nursery.start_soon(waiter, 0, "fast")
    assert order == ["fast", "medium", "slow"]


async def test_wait_all_tasks_blocked_cushion_restarts_when_someone_wakes() -> None:
    # A task that wakes up during the cushion means the run wasn't idle: wait again.
    events = []

    async def sleeper() -> None:
        await nursery_io.sleep(0.01)
        events.append("sleeper woke")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await wait_all_tasks_blocked(0.05)
        events.append("idle")
    assert events == ["sleeper woke", "idle"]


async def test_wait_all_tasks_blocked_is_cancellable() -> None:
    with nursery_io.move_on_after(0.01) as scope:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(nursery_io.sleep, 0)
            await wait_all_tasks_blocked(10)
    assert scope.cancelled_caught


def test_ops_is_importable_by_its_documented_name() -> None:
    import importlib

    ops = importlib.import_module("nursery_io.lowlevel.ops")
    assert ops is nursery_io.lowlevel.ops
    from nursery_io.lowlevel.ops import read  # the documented spelling

    assert read is nursery_io.lowlevel.ops.read
