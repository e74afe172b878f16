"""The core side by side: cancellation, deadlines, nurseries and exception groups, scheduling
and lowlevel, under trio.run and nursery_io.run (see harness.py).

A scenario here is ``fn(lib, trace)`` on virtual time unless it says otherwise; what ``run``
returned or raised ends its trace.
"""

from __future__ import annotations

import functools
import math
import signal
from types import ModuleType
from typing import Any

from . import harness
from .harness import Scenario, Scenarios, Trace, lib_testing, run_under, same_under_both

scenario = Scenarios(autojump=True)


def shape(exc: BaseException) -> Any:
    """What an exception looks like, minus anything that names the library."""

    def leaf(exc: BaseException) -> Any:
        if type(exc).__name__ == "Cancelled":
            return (exc.source, exc.reason)  # type: ignore[attr-defined]
        return exc.args

    return harness.shape(exc, leaf)


def run_recording(lib: ModuleType, scenario: Scenario) -> Trace:
    """Run a scenario ``fn(lib, trace)``: what ``run`` returned or raised ends its trace."""
    trace: Trace = []
    try:
        result = run_under(lib, scenario.fn, lib, trace, autojump=scenario.autojump)
        trace.append(("returned", result))
    except BaseException as exc:
        trace.append(("raised", shape(exc)))
    return trace


# ----- cancellation -----


@scenario
async def cancellation_order_and_sources(lib: ModuleType, trace: Trace) -> None:
    async def child(name: str, delay: float) -> None:
        try:
            await lib.sleep(delay)
            trace.append((name, "finished", lib.current_time()))
        except lib.Cancelled as exc:
            trace.append((name, "cancelled", exc.source, lib.current_time()))
            raise
        finally:
            with lib.CancelScope(shield=True):
                await lib.sleep(1)
            trace.append((name, "cleanup done", lib.current_time()))

    with lib.move_on_after(5) as outer:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(child, "quick", 2)
            nursery.start_soon(child, "slow", 10)
            with lib.CancelScope() as inner:
                await lib.sleep(3)
                inner.cancel()
                await lib.sleep(100)
            trace.append(("inner", inner.cancel_called, inner.cancelled_caught))
            await lib.sleep_forever()
    trace.append(("outer", outer.cancel_called, outer.cancelled_caught, lib.current_time()))


@scenario
async def outermost_cancelled_scope_catches(lib: ModuleType, trace: Trace) -> None:
    with lib.CancelScope() as a:
        with lib.CancelScope() as b:
            with lib.CancelScope() as c:
                c.cancel(reason="c")
                a.cancel(reason="a")
                try:
                    await lib.sleep(0)
                except lib.Cancelled as exc:
                    # Not the reason: Trio reports the innermost scope's, nursery_io the
                    # reason of the scope that will catch it (a deliberate difference).
                    trace.append(exc.source)
                    raise
    trace.append([(s.cancel_called, s.cancelled_caught) for s in (a, b, c)])


@scenario
async def shield_toggling(lib: ModuleType, trace: Trace) -> None:
    with lib.CancelScope() as outer:
        outer.cancel()
        with lib.CancelScope(shield=True) as shielded:
            await lib.sleep(1)
            trace.append(("slept shielded", lib.current_time(), lib.current_effective_deadline()))
            shielded.shield = False
            trace.append(lib.current_effective_deadline())
            try:
                await lib.sleep(1)
            except lib.Cancelled:
                trace.append("cancelled once unshielded")
                shielded.shield = True
                await lib.sleep(1)
                trace.append(("shield back up", lib.current_time()))
                raise
    trace.append((outer.cancelled_caught, shielded.cancelled_caught))


@scenario
async def level_triggered_cancellation(lib: ModuleType, trace: Trace) -> None:
    with lib.CancelScope() as scope:
        scope.cancel()
        for _ in range(3):
            try:
                await lib.lowlevel.checkpoint()
            except lib.Cancelled:
                trace.append("cancelled")
        await lib.lowlevel.cancel_shielded_checkpoint()
        trace.append("shielded checkpoint passed")
        await lib.lowlevel.checkpoint_if_cancelled()
    trace.append(scope.cancelled_caught)


@scenario
async def cancelling_exited_and_unentered_scopes(lib: ModuleType, trace: Trace) -> None:
    with lib.CancelScope() as done:
        pass
    done.cancel()
    trace.append((done.cancel_called, done.cancelled_caught))
    early = lib.CancelScope()
    early.cancel()
    with early:
        trace.append("entered cancelled scope")
        await lib.sleep(0)
    trace.append((early.cancel_called, early.cancelled_caught))


@scenario
async def group_with_cancelled_and_error(lib: ModuleType, trace: Trace) -> None:
    async def fails_on_cancel() -> None:
        try:
            await lib.sleep_forever()
        except lib.Cancelled:
            raise KeyError("cleanup") from None

    try:
        with lib.CancelScope() as scope:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(fails_on_cancel)
                nursery.start_soon(lib.sleep_forever)
                await lib_testing(lib).wait_all_tasks_blocked()
                scope.cancel()
    except BaseException as exc:
        trace.append(("escaped", shape(exc)))
    trace.append(scope.cancelled_caught)


# ----- deadlines -----


@scenario
async def deadline_moves(lib: ModuleType, trace: Trace) -> None:
    async with lib.open_nursery() as nursery:
        with lib.CancelScope(deadline=lib.current_time() + 10) as scope:

            async def mover() -> None:
                await lib.sleep(1)
                scope.deadline = lib.current_time() + 20  # later
                trace.append(("moved later", lib.current_time(), scope.deadline))
                await lib.sleep(5)
                scope.deadline -= 10  # earlier, still in the future
                trace.append(("moved earlier", lib.current_time(), scope.deadline))

            nursery.start_soon(mover)
            await lib.sleep_forever()
        trace.append(("woke", lib.current_time(), scope.cancelled_caught))
    with lib.CancelScope() as scope:
        scope.deadline = lib.current_time() - 1  # in the past
        trace.append(scope.cancel_called)
        await lib.sleep(0)
    trace.append(scope.cancelled_caught)


@scenario
async def effective_and_relative_deadlines(lib: ModuleType, trace: Trace) -> None:
    trace.append(lib.current_effective_deadline())
    with lib.move_on_after(5):
        trace.append(lib.current_effective_deadline())
        with lib.move_on_after(10):
            trace.append(lib.current_effective_deadline())
        with lib.CancelScope(shield=True):
            trace.append(lib.current_effective_deadline())
        with lib.CancelScope() as cancelled:
            cancelled.cancel()
            trace.append(lib.current_effective_deadline())
    relative = lib.CancelScope(relative_deadline=3)
    trace.append((relative.relative_deadline, relative.is_relative))
    for probe in (
        lambda: relative.deadline,
        lambda: setattr(relative, "deadline", 1),
        lambda: lib.CancelScope(deadline=1).relative_deadline,
        lambda: setattr(lib.CancelScope(deadline=1), "relative_deadline", 1),
        lambda: lib.CancelScope(deadline=1, relative_deadline=1),
        lambda: lib.CancelScope(relative_deadline=-1),
        lambda: lib.CancelScope(deadline=math.nan),
    ):
        try:
            probe()
            trace.append("no error")
        except Exception as exc:
            trace.append(type(exc).__name__)
    await lib.sleep(7)
    with relative:
        trace.append((relative.deadline, relative.is_relative, relative.relative_deadline))
        await lib.sleep_forever()
    trace.append((lib.current_time(), relative.cancelled_caught))


@scenario
async def timeouts(lib: ModuleType, trace: Trace) -> None:
    with lib.move_on_after(1) as scope:
        await lib.sleep(2)
    trace.append((lib.current_time(), scope.cancelled_caught))
    try:
        with lib.fail_after(1):
            await lib.sleep(2)
    except lib.TooSlowError as exc:
        trace.append(("too slow", lib.current_time(), type(exc.__context__).__name__))
    try:
        with lib.fail_at(lib.current_time() + 1):
            raise KeyError("inner")
    except KeyError:
        trace.append("error passes through fail_at")
    await lib.sleep_until(lib.current_time() - 10)
    await lib.sleep_until(lib.current_time() + 0.5)
    trace.append(lib.current_time())
    for bad in (
        lambda: lib.move_on_after(-1),
        lambda: lib.fail_after(math.nan),
        lambda: lib.move_on_at(math.nan),
    ):
        try:
            with bad():
                trace.append("entered")
        except ValueError:
            trace.append("ValueError")
    for sleep in (lambda: lib.sleep(-1), lambda: lib.sleep_until(math.nan)):
        try:
            await sleep()
            trace.append("no error")
        except ValueError:
            trace.append("ValueError")


# ----- nurseries and exception groups -----


@scenario
async def exception_group_shapes(lib: ModuleType, trace: Trace) -> None:
    async def fail(exc: BaseException) -> None:
        raise exc

    async def nested() -> None:
        async with lib.open_nursery() as inner:
            inner.start_soon(fail, KeyError("deep"))
            inner.start_soon(fail, ValueError("deep"))

    for body in ("nothing", "raise"):
        try:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(nested)
                nursery.start_soon(fail, IndexError("shallow"))
                if body == "raise":
                    raise LookupError("body")
        except BaseException as exc:
            trace.append(shape(exc))
    try:
        async with lib.open_nursery():
            raise ValueError("lone body error")
    except BaseException as exc:
        trace.append(shape(exc))
    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(fail, KeyboardInterrupt())
            nursery.start_soon(lib.sleep_forever)
    except BaseException as exc:
        trace.append(shape(exc))


@scenario
async def start_and_started(lib: ModuleType, trace: Trace) -> None:
    async def service(name: str, task_status: Any = lib.TASK_STATUS_IGNORED) -> None:
        me = lib.lowlevel.current_task()
        trace.append(
            (name, "before", me.parent_nursery is nursery, me.eventual_parent_nursery is nursery)
        )
        await lib.sleep(1)
        task_status.started(f"{name} ready")
        trace.append((name, "after", me.parent_nursery is nursery, me.eventual_parent_nursery))
        await lib.sleep(1)
        trace.append((name, "done", lib.current_time()))

    async def no_started(task_status: Any) -> None:
        await lib.sleep(1)

    async def fails_early(task_status: Any) -> None:
        raise KeyError("early")

    async def twice(task_status: Any) -> None:
        task_status.started(1)
        try:
            task_status.started(2)
        except RuntimeError:
            trace.append("second started() refused")

    async with lib.open_nursery() as nursery:
        trace.append(await nursery.start(service, "a"))
        trace.append(len(nursery.child_tasks))
        for fn in (no_started, fails_early, twice):
            try:
                trace.append(await nursery.start(fn))
            except BaseException as exc:
                trace.append(shape(exc))
    await service("direct")
    try:
        await nursery.start(service, "late")
    except RuntimeError:
        trace.append("closed nursery refuses start")


@scenario
async def start_cancelled_before_and_after_started(lib: ModuleType, trace: Trace) -> None:
    async def child(started_first: bool, task_status: Any) -> None:
        if started_first:
            task_status.started("early value")
        try:
            await lib.sleep(10)
            trace.append(("child slept", started_first))
        except lib.Cancelled as exc:
            trace.append(("child cancelled", started_first, exc.source))
            raise

    async with lib.open_nursery() as nursery:
        for started_first in (False, True):
            with lib.move_on_after(1) as scope:
                if started_first:
                    scope.cancel()
                result = await nursery.start(child, started_first)
                trace.append(("start returned", result))
            trace.append(("caller", scope.cancelled_caught, lib.current_time()))


@scenario
async def nursery_cancel_scope_and_children(lib: ModuleType, trace: Trace) -> None:
    cancelled: list[Any] = []

    async def child(n: int) -> None:
        try:
            await lib.sleep(n)
            trace.append(("child finished", n))
        except lib.Cancelled as exc:
            cancelled.append((n, exc.source))  # simultaneous: order is not defined
            raise

    async with lib.open_nursery() as nursery:
        for n in (1, 5, 6):
            nursery.start_soon(child, n)
        await lib.sleep(2)
        trace.append(len(nursery.child_tasks))
        nursery.cancel_scope.cancel()
        trace.append("cancelled nursery")
    trace.append(sorted(cancelled))
    trace.append((nursery.cancel_scope.cancelled_caught, len(nursery.child_tasks)))


# ----- scheduling and lowlevel -----


@scenario
async def instrument_hooks(lib: ModuleType, trace: Trace) -> None:
    class Recorder(lib.abc.Instrument):  # type: ignore[name-defined,misc]
        def _name(self, task: Any) -> str | None:
            name = task.name
            return name if name in ("main-child", "other") else None

        def task_spawned(self, task: Any) -> None:
            if self._name(task):
                trace.append(("spawned", task.name))

        def task_scheduled(self, task: Any) -> None:
            if self._name(task):
                trace.append(("scheduled", task.name))

        def before_task_step(self, task: Any) -> None:
            if self._name(task):
                trace.append(("before step", task.name))

        def after_task_step(self, task: Any) -> None:
            if self._name(task):
                trace.append(("after step", task.name))

        def task_exited(self, task: Any) -> None:
            if self._name(task):
                trace.append(("exited", task.name))

    recorder = Recorder()
    lib.lowlevel.add_instrument(recorder)

    async def child() -> None:
        await lib.sleep(1)
        await lib.lowlevel.checkpoint()

    async with lib.open_nursery() as nursery:
        nursery.start_soon(child, name="main-child")
        await lib.sleep(0.5)
        nursery.start_soon(child, name="other")
    lib.lowlevel.remove_instrument(recorder)


@scenario
async def parking_lot(lib: ModuleType, trace: Trace) -> None:
    lot = lib.lowlevel.ParkingLot()
    lot2 = lib.lowlevel.ParkingLot()

    broken: list[int] = []

    async def waiter(n: int) -> None:
        try:
            await lot.park()
            trace.append(("woke", n))
        except lib.BrokenResourceError:
            broken.append(n)  # all at once: order is not defined

    async with lib.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(waiter, n)
            await lib.sleep(1)  # park in a known order
        trace.append(lot.statistics().tasks_waiting)
        trace.append(len(lot.unpark()))
        await lib.sleep(1)
        lot.repark(lot2, count=2)
        trace.append((len(lot), len(lot2)))
        trace.append(len(lot2.unpark(count=1)))
        await lib.sleep(1)
        lot2.repark_all(lot)
        lot.break_lot()
    trace.append(sorted(broken))
    trace.append((len(lot), len(lot.broken_by)))


@scenario
async def runvar_and_reschedule(lib: ModuleType, trace: Trace) -> None:
    import outcome

    var = lib.lowlevel.RunVar("v")
    try:
        var.get()
    except LookupError:
        trace.append("unset")
    token = var.set(1)
    var.set(2)
    trace.append(var.get())
    var.reset(token)
    try:
        var.get()
    except LookupError:
        trace.append("reset to unset")
    task = lib.lowlevel.current_task()
    lib.lowlevel.current_trio_token().run_sync_soon(
        lib.lowlevel.reschedule, task, outcome.Value("value")
    )
    trace.append(await lib.lowlevel.wait_task_rescheduled(lambda _: lib.lowlevel.Abort.SUCCEEDED))

    def abort(raise_cancel: Any) -> Any:
        trace.append("abort called")
        lib.lowlevel.current_trio_token().run_sync_soon(
            lib.lowlevel.reschedule, task, outcome.capture(raise_cancel)
        )
        return lib.lowlevel.Abort.FAILED

    with lib.move_on_after(1) as scope:
        await lib.lowlevel.wait_task_rescheduled(abort)
    trace.append((scope.cancelled_caught, lib.current_time()))


@scenario
async def wait_all_tasks_blocked_cushions(lib: ModuleType, trace: Trace) -> None:
    testing = lib_testing(lib)

    async def waiter(cushion: float, name: str) -> None:
        await testing.wait_all_tasks_blocked(cushion)
        trace.append((name, lib.current_time()))

    async def sleeper() -> None:
        await lib.sleep(3)
        trace.append(("sleeper", lib.current_time()))

    async with lib.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        nursery.start_soon(waiter, 0.002, "slow")
        nursery.start_soon(waiter, 0.001, "medium")
        nursery.start_soon(waiter, 0, "fast")


@scenario(autojump=False)
async def keyboard_interrupt_protection(lib: ModuleType, trace: Trace) -> None:
    protect = lib.lowlevel.enable_ki_protection

    @protect
    def interrupt_protected() -> str:
        signal.raise_signal(signal.SIGINT)
        return "survived"

    trace.append(lib.lowlevel.currently_ki_protected())
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        trace.append("interrupted in user code")
    trace.append(interrupt_protected())
    try:
        await lib.sleep(0)
    except KeyboardInterrupt:
        trace.append("interrupted at checkpoint")

    async def child() -> None:
        interrupt_protected()
        await lib.sleep_forever()

    async with lib.open_nursery() as nursery:
        nursery.start_soon(child)


@scenario
async def cancelled_escaping_a_child(lib: ModuleType, trace: Trace) -> str:
    saved = []
    with lib.CancelScope() as scope:
        scope.cancel()
        try:
            await lib.sleep(1)
        except lib.Cancelled as exc:
            saved.append(exc)

    async def child() -> None:
        raise saved[0]

    async with lib.open_nursery() as nursery:
        nursery.start_soon(child)
    return "absorbed"


@scenario
async def tasks_spawned_into_the_temporary_start_nursery(lib: ModuleType, trace: Trace) -> None:
    # Misuse reaching start()'s temporary nursery through parent_nursery: with more than
    # one failure in it, Trio reports an internal error caused by all of them.
    async def fail() -> None:
        raise ValueError("in the old nursery")

    async def spawns_into_old_nursery(task_status: Any) -> None:
        old = lib.lowlevel.current_task().parent_nursery
        old.start_soon(fail)
        old.start_soon(fail)

    async with lib.open_nursery() as nursery:
        try:
            await nursery.start(spawns_into_old_nursery)
        except lib.TrioInternalError as exc:
            cause = exc.__cause__
            assert isinstance(cause, BaseExceptionGroup)
            trace.append(("internal error", str(exc), [repr(e) for e in cause.exceptions]))


@scenario
async def past_deadline_fires_in_the_loop_not_in_the_setter(lib: ModuleType, trace: Trace) -> None:
    # Setting a deadline that has already passed doesn't cancel on the spot: the loop does,
    # outside every task, before any task runs again (abort functions see no current task).
    def abort_fn(_: object) -> Any:
        trace.append(("abort fn in a task", lib.lowlevel.in_trio_task()))
        return lib.lowlevel.Abort.SUCCEEDED

    async with lib.open_nursery() as nursery:
        nursery.start_soon(lib.lowlevel.wait_task_rescheduled, abort_fn)
        await lib_testing(lib).wait_all_tasks_blocked()
        nursery.cancel_scope.deadline = lib.current_time()
        trace.append("deadline set")
        trace.append(("cancel_called", nursery.cancel_scope.cancel_called))
    trace.append(("cancelled_caught", nursery.cancel_scope.cancelled_caught))


@scenario
async def reattach_with_the_wrong_task(lib: ModuleType, trace: Trace) -> None:
    other: list[Any] = []

    async def detached() -> None:
        got = await lib.lowlevel.temporarily_detach_coroutine_object(
            lambda _: lib.lowlevel.Abort.FAILED
        )
        trace.append(("foreign runner sent", got))
        try:
            await lib.lowlevel.reattach_detached_coroutine_object(other[0], None)
        except RuntimeError as exc:
            trace.append(("does not match" in str(exc), str(exc).split(":")[0]))
        await lib.lowlevel.reattach_detached_coroutine_object(task, "bye")
        trace.append("back in the run")

    async def record_other() -> None:
        other.append(lib.lowlevel.current_task())

    async with lib.open_nursery() as nursery:
        nursery.start_soon(record_other)
        await lib_testing(lib).wait_all_tasks_blocked()
        nursery.start_soon(detached)
        await lib_testing(lib).wait_all_tasks_blocked()
        (task,) = (t for t in nursery.child_tasks if t.coro.cr_code.co_name == "detached")
        trace.append(task.coro.send("hello"))


# ----- spawning: task names and what start_soon accepts -----


class _Label:
    """A name object whose text changes: a task's name is taken when it is spawned."""

    def __init__(self) -> None:
        self.text = "first"

    def __repr__(self) -> str:
        return f"<label {self.text}>"


async def _named_child(*args: object) -> None:
    pass


class _Service:
    async def serve(self) -> None:
        pass


@scenario
async def task_names(lib: ModuleType, trace: Trace) -> None:
    def local_part(name: str) -> str:
        # "tests.parity.test_core.x" under both libraries, whatever the import path.
        return name.rsplit(".", 1)[-1] if "." in name else name

    label = _Label()
    sync_returning_coro: Any = lambda: _named_child()  # noqa: E731, PLW0108 (a sync function)
    spawns: list[tuple[Any, dict[str, Any]]] = [
        (_named_child, {}),
        (functools.partial(_named_child, 1), {}),
        (functools.partial(functools.partial(_named_child, 1), 2), {}),
        (_Service().serve, {}),
        (sync_returning_coro, {}),
        (_named_child, {"name": "explicit"}),
        (_named_child, {"name": label}),
        (_named_child, {"name": _Service}),
    ]
    async with lib.open_nursery() as nursery:
        for fn, kwargs in spawns:
            nursery.start_soon(fn, **kwargs)
        label.text = "second"
        children = sorted(nursery.child_tasks, key=lambda t: str(t.name))
        trace.append(sorted(local_part(t.name) for t in children))
        renamed = children[0]
        renamed.name = "renamed"
        trace.append(("renamed", renamed.name, "renamed" in repr(renamed)))
        try:
            nursery.start_soon(_Service().serve, "unexpected")
        except TypeError as exc:
            trace.append(("TypeError", str(exc)))


@scenario.parametrize()
def test_same_trace_as_trio(scenario: Scenario) -> None:
    same_under_both(lambda lib: run_recording(lib, scenario))
