"""Side by side with Trio: cancel reasons, misnesting, and what comes out of ``run()``.

Every scenario is a plain function of ``lib`` (the ``trio`` or the ``nursery_io`` module)
that runs whatever it needs and returns a trace; both libraries must produce the same
trace. Exceptions are described with their messages, minus what names the library: the
library's own name, object addresses, and the advice paragraph that follows the first line
of a "stack corrupted" message.
"""

from __future__ import annotations

import gc
import math
import pickle
import re
import signal
import subprocess
import sys
from collections.abc import AsyncGenerator, Callable
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from types import ModuleType, TracebackType
from typing import Any

import pytest

import nursery_io

from .harness import Scenario, Scenarios, Trace, autojump_clock, lib_testing, same_under_both

scenario = Scenarios()


@scenario.parametrize()
def test_same_as_trio(scenario: Scenario) -> None:
    # These scenarios call ``lib.run`` themselves, some of them more than once.
    assert same_under_both(scenario.fn), "a scenario must record something"


# ----- describing what happened, without the library's name in it -----

# Names of runtime-internal tasks differ (Trio's entry-queue task has no counterpart here).
_INTERNAL_TASK = re.compile(r"<Task '(?:trio|nursery_io)\.[^']*kill_everything'>")


_TYPE_NAMES = {"TrioInternalError": "InternalError"}


def text(value: object) -> str:
    result = str(value).split("\n", 1)[0]
    result = re.sub(r" at 0x[0-9a-f]+", "", result)
    result = result.replace("nursery_io", "LIB").replace("trio", "LIB").replace("Trio", "LIB")
    return _INTERNAL_TASK.sub("<internal task>", result)


def describe(exc: BaseException | None, *, chain: bool = True) -> Any:
    """An exception as data: type and message, group members (sorted), cause and context."""
    if exc is None:
        return None
    described: dict[str, Any] = {
        "type": _TYPE_NAMES.get(type(exc).__name__, type(exc).__name__),
        "message": text(exc),
    }
    if isinstance(exc, BaseExceptionGroup):
        described["members"] = sorted((describe(e, chain=chain) for e in exc.exceptions), key=repr)
        described["message"] = text(exc.message)
    if type(exc).__name__ == "Cancelled":
        described["fields"] = (exc.source, text(exc.source_task), exc.reason)  # type: ignore[attr-defined]
    if chain:
        described["cause"] = describe(exc.__cause__)
        described["context"] = None if exc.__suppress_context__ else describe(exc.__context__)
    return described


def outcome_of(lib: ModuleType, main: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return ("returned", lib.run(main, *args, **kwargs))
    except BaseException as exc:
        return ("raised", describe(exc))


# ----- 1. cancel reasons -----


@scenario
def reasons_from_every_source(lib: ModuleType) -> Trace:
    trace: Trace = []

    def record(tag: str, exc: BaseException) -> None:
        trace.append((tag, describe(exc, chain=False)))

    async def sleeper(tag: str) -> None:
        try:
            await lib.sleep_forever()
        except lib.Cancelled as exc:
            record(tag, exc)
            raise

    async def crash() -> None:
        await lib.sleep(1)
        raise ValueError("boom")

    async def main() -> None:
        with lib.CancelScope() as scope:
            scope.cancel("because")
            await sleeper("explicit with a reason")
        cancelled_before_entry = lib.CancelScope()
        cancelled_before_entry.cancel()
        with cancelled_before_entry:
            await sleeper("cancelled before entry")
        with lib.move_on_after(1):
            await sleeper("deadline")
        with lib.CancelScope() as scope:
            scope.deadline = lib.current_time() - 1
            await sleeper("deadline set in the past")
        try:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(sleeper, "sibling of a crashed child", name="sibling")
                nursery.start_soon(crash, name="crasher")
                await sleeper("body of a nursery whose child crashed")
        except BaseExceptionGroup as group:
            record("child crashed", group)
        try:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(sleeper, "child of a body that raised", name="child")
                await lib.sleep(1)
                raise KeyError("from the body")
        except BaseExceptionGroup as group:
            record("body raised", group)
        with lib.move_on_after(1):
            async with lib.open_nursery() as nursery:
                nursery.start_soon(sleeper, "nursery child under a deadline", name="child")
                await sleeper("nursery body under a deadline")
        async with lib.open_nursery() as nursery:

            async def canceller() -> None:
                nursery.cancel_scope.cancel("from another task")

            nursery.start_soon(sleeper, "cancelled by another task", name="victim")
            await lib_testing(lib).wait_all_tasks_blocked()
            nursery.start_soon(canceller, name="canceller")

        async def started(task_status: Any = lib.TASK_STATUS_IGNORED) -> None:
            await sleeper("start() child")

        async with lib.open_nursery() as nursery:
            with lib.move_on_after(1):
                await nursery.start(started, name="starting")

        async def system_task() -> None:
            await sleeper("system task at shutdown")

        lib.lowlevel.spawn_system_task(system_task, name="system task")

    lib.run(main, clock=autojump_clock(lib))
    return sorted(trace, key=repr)


@scenario
def reasons_of_nested_scopes(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def main() -> None:
        async def sleep_and_record(tag: str) -> None:
            try:
                await lib.sleep(1)
            except lib.Cancelled as exc:
                trace.append((tag, describe(exc, chain=False)))
                raise

        with lib.CancelScope() as outer:
            with lib.CancelScope() as inner:
                outer.cancel("outer first")
                inner.cancel("inner second")
                await sleep_and_record("outer cancelled first")
        with lib.CancelScope() as outer:
            with lib.CancelScope() as inner:
                inner.cancel("inner first")
                outer.cancel("outer second")
                await sleep_and_record("inner cancelled first")
        with lib.CancelScope() as outer:
            outer.cancel("cancelled before the inner scope opened")
            with lib.CancelScope():
                await sleep_and_record("entered inside a cancelled scope")
        with lib.CancelScope() as outer:
            with lib.CancelScope(shield=True) as inner:
                outer.cancel("behind a shield")
                await lib.sleep(0)
                inner.shield = False
                await sleep_and_record("shield lowered")
        with lib.CancelScope() as outer:
            outer.cancel("seen by checkpoint")
            try:
                await lib.lowlevel.checkpoint()
            except lib.Cancelled as exc:
                trace.append(("checkpoint", describe(exc, chain=False)))
                raise
        with lib.CancelScope() as outer:
            outer.cancel("seen by checkpoint_if_cancelled")
            try:
                await lib.lowlevel.checkpoint_if_cancelled()
            except lib.Cancelled as exc:
                trace.append(("checkpoint_if_cancelled", describe(exc, chain=False)))
                raise
        with lib.CancelScope() as scope:
            lib.lowlevel.current_trio_token().run_sync_soon(scope.cancel, "from a callback")
            try:
                await lib.sleep_forever()
            except lib.Cancelled as exc:
                # Trio cancels from its run_sync_soon task, which nursery_io doesn't have.
                trace.append(("from a run_sync_soon callback", exc.source, exc.reason))
                raise

    lib.run(main)
    return trace


@scenario
def cancelled_object(lib: ModuleType) -> Trace:
    trace: Trace = []
    exc = lib.Cancelled._create(source="explicit", source_task="<task>", reason="why")
    trace.append(("str", str(exc)))
    trace.append(("repr", repr(exc)))
    trace.append(("args", exc.args))
    bare = lib.Cancelled._create()
    trace.append(("bare", str(bare), repr(bare)))
    copy = pickle.loads(pickle.dumps(exc))
    trace.append(("pickled", type(copy) is lib.Cancelled, copy.source, copy.source_task))
    trace.append(("reason survives pickling", copy.reason))
    return trace


# ----- 4. final classes and private constructors -----


@scenario
def final_classes_and_private_constructors(lib: ModuleType) -> Trace:
    trace: Trace = []
    for name, make in [
        ("Cancelled()", lib.Cancelled),
        ("Cancelled(reason)", lambda: lib.Cancelled("why")),
        ("Nursery()", lib.Nursery),
    ]:
        with pytest.raises(TypeError) as info:
            make()
        trace.append((name, text(info.value)))
    for cls in [lib.CancelScope, lib.Cancelled, lib.Nursery, lib.lowlevel.Task]:
        with pytest.raises(TypeError) as info:

            class Subclass(cls):  # type: ignore[misc,valid-type]
                pass

        trace.append((cls.__name__, text(info.value)))
    return trace


# ----- 5. cancel_called and repr of scopes with deadlines -----


@scenario
def scope_state_and_repr(lib: ModuleType) -> Trace:
    trace: Trace = []

    def state(scope: Any) -> str:
        return text(repr(scope)).split(", ", 1)[1]

    async def main() -> None:
        now = lib.current_time()
        for label, kwargs in [
            ("no deadline", {}),
            ("deadline ahead", {"deadline": now + 5}),
            ("deadline passed", {"deadline": now - 5}),
            ("relative", {"relative_deadline": 5}),
            ("relative zero", {"relative_deadline": 0}),
        ]:
            scope = lib.CancelScope(**kwargs)
            trace.append((label, state(scope), scope.cancel_called, state(scope)))
        scope = lib.CancelScope(relative_deadline=3)
        with scope:
            trace.append(("relative, entered", state(scope), scope.relative_deadline))
        trace.append(("relative, exited", state(scope)))
        scope = lib.CancelScope(deadline=now + 1)
        await lib.sleep(2)
        trace.append(("unbound, deadline passed while waiting", scope.cancel_called))
        scope = lib.CancelScope(deadline=now + 100)
        with scope:
            pass
        await lib.sleep(200)
        trace.append(("exited, deadline passed later", scope.cancel_called, state(scope)))
        with lib.CancelScope() as scope:
            scope.cancel()
            trace.append(("cancelled", state(scope)))
        for label, action in [
            (
                "absolute deadline of a relative scope",
                lambda: lib.CancelScope(relative_deadline=1).deadline,
            ),
            (
                "relative deadline of an absolute scope",
                lambda: lib.CancelScope(deadline=1).relative_deadline,
            ),
            ("NaN deadline", lambda: lib.CancelScope(deadline=math.nan)),
            ("NaN relative deadline", lambda: lib.CancelScope(relative_deadline=math.nan)),
            ("negative relative deadline", lambda: lib.CancelScope(relative_deadline=-1)),
            ("both deadlines", lambda: lib.CancelScope(deadline=1, relative_deadline=1)),
        ]:
            try:
                action()
            except (RuntimeError, ValueError) as exc:
                trace.append((label, type(exc).__name__, text(exc)))
        relative = lib.CancelScope(relative_deadline=1)
        for label, value in [("NaN", math.nan), ("negative", -1.0)]:
            try:
                relative.relative_deadline = value
            except ValueError as exc:
                trace.append(("set relative deadline", label, text(exc)))
        absolute = lib.CancelScope(deadline=1)
        try:
            absolute.relative_deadline = 1
        except RuntimeError as exc:
            trace.append(("set relative deadline on absolute scope", text(exc)))
        with lib.CancelScope() as scope:
            with pytest.raises(RuntimeError) as info:
                with scope:
                    pass  # pragma: no cover
            trace.append(("entered twice", text(info.value)))

    lib.run(main, clock=autojump_clock(lib))
    scope = lib.CancelScope(deadline=5)
    trace.append(("outside a run", state(scope)))
    with pytest.raises(RuntimeError):
        scope.cancel_called  # noqa: B018 - asks the clock, and there is none outside a run
    return trace


# ----- 2. misnesting -----


async def sleep_until_cancelled(lib: ModuleType, trace: Trace, tag: str) -> None:
    try:
        await lib.sleep_forever()
    except lib.Cancelled as exc:
        trace.append((tag, describe(exc, chain=False)))
        raise


async def sleep_forever_of(lib: ModuleType) -> None:
    await lib.sleep_forever()


@scenario
def misnested_scopes_in_an_exit_stack(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def main() -> None:
        with ExitStack() as stack:
            stack.enter_context(lib.CancelScope())
            with lib.CancelScope():
                try:
                    stack.close()
                except RuntimeError as exc:
                    trace.append(("outer closed first", describe(exc)))
            trace.append("inner exited quietly")
        await lib.sleep(0)
        trace.append("task still usable")

    trace.append(outcome_of(lib, main))
    return trace


@scenario
def misnesting_cancels_the_abandoned_tasks(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def in_own_scope(tag: str) -> None:
        with lib.CancelScope():
            await sleep_until_cancelled(lib, trace, tag)

    async def main() -> None:
        with ExitStack() as stack:
            stack.enter_context(lib.CancelScope())
            async with lib.open_nursery() as nursery:
                nursery.start_soon(sleep_until_cancelled, lib, trace, "plain child")
                nursery.start_soon(in_own_scope, "child in its own scope")
                await lib_testing(lib).wait_all_tasks_blocked()
                try:
                    stack.close()
                except RuntimeError as exc:
                    trace.append(("outer closed from inside the nursery", describe(exc)))
        trace.append("nursery exited")

    trace.append(outcome_of(lib, main))
    return sorted(trace, key=repr)


@scenario
def nursery_scope_exited_inside_its_nursery(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def main() -> None:
        manager = lib.open_nursery()
        nursery = await manager.__aenter__()
        try:
            nursery.start_soon(sleep_until_cancelled, lib, trace, "child")
            nursery.start_soon(sleep_forever_of, lib)  # (a task named alike under both)
            await lib_testing(lib).wait_all_tasks_blocked()
            nursery.cancel_scope.__exit__(None, None, None)
        finally:
            try:
                await manager.__aexit__(None, None, None)
            except RuntimeError as exc:
                trace.append(("nursery exit", describe(exc)))

    trace.append(outcome_of(lib, main))
    return sorted(trace, key=repr)


@scenario
def scope_exited_by_an_unrelated_task(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def owner(task_status: Any) -> None:
        with lib.CancelScope() as scope:
            task_status.started(scope)
            await sleep_until_cancelled(lib, trace, "owner")
        trace.append(("owner's scope caught it", scope.cancelled_caught))

    async def main() -> None:
        async with lib.open_nursery() as nursery:
            scope = await nursery.start(owner, name="owner")
            try:
                scope.__exit__(None, None, None)
            except RuntimeError as exc:
                trace.append(("exit from another task", describe(exc)))
            scope.cancel()

    trace.append(outcome_of(lib, main))
    return trace


@scenario
def scope_exited_twice_or_never_entered(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def main() -> None:
        with lib.CancelScope() as scope:
            pass
        for label, target in [("exited twice", scope), ("never entered", lib.CancelScope())]:
            try:
                target.__exit__(None, None, None)
            except RuntimeError as exc:
                trace.append((label, describe(exc)))
            try:
                target.__exit__(ValueError, ValueError("pending"), None)
            except RuntimeError as exc:
                trace.append((label + " while raising", describe(exc)))

    trace.append(outcome_of(lib, main))
    return trace


@scenario
def scope_left_open_by_a_child_task(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def main() -> None:
        scope = lib.CancelScope()

        async def enters_and_leaves() -> None:
            scope.__enter__()

        async def exits_the_other_tasks_scope() -> None:
            try:
                scope.__exit__(None, None, None)
            except RuntimeError as exc:
                trace.append(("exit from another task", describe(exc)))

        try:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(enters_and_leaves)
                await lib_testing(lib).wait_all_tasks_blocked()
                nursery.start_soon(exits_the_other_tasks_scope)
        except BaseExceptionGroup as group:
            trace.append(("nursery", describe(group)))

    trace.append(outcome_of(lib, main))
    return trace


@scenario
def nursery_entered_by_a_child_and_left_open(lib: ModuleType) -> Trace:
    async def main() -> None:
        inner = lib.open_nursery()

        async def opens_and_leaves() -> None:
            nursery = await inner.__aenter__()
            nursery.start_soon(lib.sleep, 1)

        async with lib.open_nursery() as outer:
            outer.start_soon(opens_and_leaves)

    return [outcome_of(lib, main)]


@scenario
def nursery_left_open_inside_another(lib: ModuleType) -> Trace:
    async def main() -> None:
        async with lib.open_nursery():
            await lib.open_nursery().__aenter__()

    return [outcome_of(lib, main)]


@scenario
def nurseries_exited_in_the_wrong_order(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def main() -> None:
        first = lib.open_nursery()
        second = lib.open_nursery()
        await first.__aenter__()
        await second.__aenter__()
        try:
            await first.__aexit__(None, None, None)
        except BaseException as exc:
            trace.append(("first exited first", describe(exc)))
            raise

    trace.append(outcome_of(lib, main))
    return trace


@scenario
def nursery_outliving_its_nursery_through_an_exit_stack(lib: ModuleType) -> Trace:
    cleanup: Trace = []

    async def main() -> None:
        async def unstarted() -> None:
            try:
                await lib.lowlevel.checkpoint()
            finally:
                cleanup.append("abandoned child cleaned up")

        async def started(task_status: Any) -> None:
            task_status.started()
            await lib.sleep_forever()

        @asynccontextmanager
        async def makes_a_nursery() -> AsyncGenerator[None]:
            async with lib.open_nursery() as nursery:
                await nursery.start(started)
                nursery.start_soon(unstarted)
                yield

        async with AsyncExitStack() as stack, lib.open_nursery() as nursery:
            nursery.start_soon(stack.enter_async_context, makes_a_nursery())

    return [outcome_of(lib, main), cleanup]


@scenario
def coroutine_detached_with_a_scope_open(lib: ModuleType) -> Trace:
    # A foreign runner exits the task's scope while the coroutine is detached, then gives
    # the coroutine back: the scope was exited from outside any task.
    trace: Trace = []

    async def main() -> None:
        task = lib.lowlevel.current_task()
        scope = lib.CancelScope()
        with scope:
            await lib.lowlevel.temporarily_detach_coroutine_object(
                lambda _: lib.lowlevel.Abort.FAILED
            )
            try:
                scope.__exit__(None, None, None)
            except RuntimeError as exc:
                trace.append(("exited while detached", type(exc).__name__))
            await lib.lowlevel.reattach_detached_coroutine_object(task, "bye")
        trace.append("scope exited after reattaching")

    async def run_detached() -> None:
        async with lib.open_nursery() as nursery:
            holder: list[Any] = []

            async def target() -> None:
                holder.append(lib.lowlevel.current_task())
                await main()

            nursery.start_soon(target)
            await lib_testing(lib).wait_all_tasks_blocked()
            coro = holder[0].coro
            assert coro.send(None) == "bye"

    trace.append(outcome_of(lib, run_detached))
    return trace


@scenario
def scope_entered_while_detached(lib: ModuleType) -> Trace:
    # The scope is entered while a foreign runner (here another task) drives the detached
    # coroutine, and exited after the coroutine is back in its own task.
    trace: Trace = []

    async def detaches() -> None:
        task = lib.lowlevel.current_task()
        await lib.lowlevel.temporarily_detach_coroutine_object(lambda _: lib.lowlevel.Abort.FAILED)
        try:
            with lib.CancelScope():
                await lib.lowlevel.reattach_detached_coroutine_object(task, "bye")
                await lib.sleep(0)
        except RuntimeError as exc:
            trace.append(("exit in its own task", describe(exc)))

    async def main() -> None:
        async with lib.open_nursery() as nursery:
            holder: list[Any] = []

            async def target() -> None:
                holder.append(lib.lowlevel.current_task())
                await detaches()

            nursery.start_soon(target, name="target")
            await lib_testing(lib).wait_all_tasks_blocked()
            assert holder[0].coro.send(None) == "bye"

    trace.append(outcome_of(lib, main))
    return trace


@scenario
def start_failing_before_started(lib: ModuleType) -> Trace:
    # The temporary nursery around a starting task doesn't show: its one error comes out
    # of start() as itself, with the context it had.
    trace: Trace = []

    async def fails_early(task_status: Any) -> None:
        try:
            raise KeyError("original context")
        except KeyError:
            raise ValueError("failed before started") from None

    async def fails_with_context(task_status: Any) -> None:
        try:
            raise KeyError("context")
        except KeyError:
            raise ValueError("failed before started")  # noqa: B904 - the context is the point

    async def main() -> None:
        async with lib.open_nursery() as nursery:
            for fn in (fails_early, fails_with_context):
                try:
                    await nursery.start(fn)
                except ValueError as exc:
                    trace.append((describe(exc), exc.__suppress_context__))

    trace.append(outcome_of(lib, main))
    return trace


# ----- 6., 7., 8. what run() raises -----


@scenario
def system_task_crash(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def crashes() -> None:
        await lib.sleep(0)
        raise ValueError("system task failed")

    async def main() -> None:
        lib.lowlevel.spawn_system_task(crashes, name="crasher")
        await sleep_until_cancelled(lib, trace, "main task")

    trace.append(outcome_of(lib, main))
    return trace


@scenario
def run_sync_soon_callback_raises_during_the_run(lib: ModuleType) -> Trace:
    trace: Trace = []

    def fails() -> None:
        raise ZeroDivisionError("callback failed")

    async def main() -> None:
        lib.lowlevel.current_trio_token().run_sync_soon(fails)
        try:
            await lib.sleep_forever()
        except lib.Cancelled as exc:
            trace.append(("main task", exc.source, text(exc.reason)))
            raise

    trace.append(outcome_of(lib, main))
    return trace


@scenario
def run_sync_soon_callback_raises_after_the_main_task(lib: ModuleType) -> Trace:
    async def main() -> str:
        token = lib.lowlevel.current_trio_token()

        async def agen() -> AsyncGenerator[int]:
            try:
                yield 1
            finally:
                # Finalized by the run after the system nursery closed.
                token.run_sync_soon(lambda: 1 / 0)
                await lib.sleep(0)

        gen = agen()
        await gen.__anext__()
        main.gen = gen  # type: ignore[attr-defined]
        return "main done"

    try:
        return [outcome_of(lib, main)]
    finally:
        del main.gen  # type: ignore[attr-defined]


@scenario
def cancelled_escaping_the_main_task(lib: ModuleType) -> Trace:
    def stray(grouped: bool) -> Any:
        async def main() -> None:
            saved = None
            with lib.CancelScope() as scope:
                scope.cancel("stray")
                try:
                    await lib.sleep(1)
                except lib.Cancelled as exc:
                    saved = exc
            assert saved is not None
            if grouped:
                raise BaseExceptionGroup("stray", [saved])
            raise saved

        return main

    return [outcome_of(lib, stray(False)), outcome_of(lib, stray(True))]


@scenario
def non_strict_group_collapses_once_cancelled_is_split_out(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def fails() -> None:
        await lib.sleep(1)
        raise ValueError("child failed")

    async def main() -> None:
        try:
            async with lib.open_nursery(strict_exception_groups=False) as nursery:
                nursery.start_soon(fails)
                nursery.start_soon(lib.sleep_forever)
        except BaseException as exc:
            trace.append(("two children, one failed", describe(exc)))
        try:
            async with lib.open_nursery(strict_exception_groups=False) as nursery:
                nursery.start_soon(fails)
                await lib.sleep_forever()
        except BaseException as exc:
            trace.append(("body cancelled, child failed", describe(exc)))

    with pytest.warns(lib.TrioDeprecationWarning):  # both deprecate non-strict nurseries
        trace.append(outcome_of(lib, main, clock=autojump_clock(lib)))
    return trace


def _frames(tb: TracebackType | None) -> list[str]:
    names = []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return names


@scenario
def traceback_out_of_run_is_as_short_as_trios(lib: ModuleType) -> Trace:
    async def main() -> None:
        raise ValueError("from main")

    trace: Trace = []
    with pytest.raises(ValueError) as info:
        lib.run(main)
    # The first frame is this test's; then run(), then main.
    trace.append(_frames(info.value.__traceback__)[1:])

    async def cancelled_main() -> None:
        with lib.CancelScope() as scope:
            scope.cancel()
            try:
                await lib.lowlevel.checkpoint()
            except lib.Cancelled as exc:
                saved = exc
        raise saved

    with pytest.raises(lib.Cancelled) as cancelled:
        lib.run(cancelled_main)
    trace.append(_frames(cancelled.value.__traceback__)[1:3])
    return trace


def test_stepped_run_traceback_is_short() -> None:
    async def main() -> None:
        raise ValueError("from main")

    run = nursery_io.lowlevel.SteppedRun(main)
    while run.turn():
        pass
    for _ in range(2):  # asking twice gives the same traceback
        with pytest.raises(ValueError) as info:
            run.result()
        assert _frames(info.value.__traceback__)[1:] == ["result", "main"]


# ----- 3. an exception from a signal handler while the loop sleeps -----


_SIGNAL_HANDLER_PROGRAM = """
import signal, sys
lib = __import__(sys.argv[1])

class Alarm(Exception):
    pass

def handler(signum, frame):
    raise Alarm("test timed out")

async def main():
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    await lib.sleep(5)

signal.signal(signal.SIGALRM, handler)
try:
    lib.run(main)
except BaseException as exc:
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    print(type(exc).__name__, exc, exc.__cause__, exc.__context__, tb.tb_frame.f_code.co_name)
"""


def test_signal_handler_exception_while_sleeping_comes_out_of_run() -> None:
    # Like pytest-timeout's SIGALRM handler raising while the loop sleeps in epoll_wait.
    # Trio lets it out of run() as it is (and leaves its run to the garbage collector,
    # which complains: hence a separate process for each library).
    results = []
    for lib in ("trio", "nursery_io"):
        done = subprocess.run(
            [sys.executable, "-c", _SIGNAL_HANDLER_PROGRAM, lib],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        results.append(done.stdout)
    assert results[0] == "Alarm test timed out None None handler\n"
    assert results[1] == results[0]


def test_signal_handler_exception_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    # Trio leaves its tasks to the garbage collector here; nursery_io unwinds them before
    # run() returns, so cleanup runs at once and nothing complains later.
    unraisable: list[Any] = []
    monkeypatch.setattr("sys.unraisablehook", unraisable.append)
    events = []

    def handler(signum: int, frame: object) -> None:
        raise TimeoutError("timed out")

    async def child() -> None:
        try:
            await nursery_io.sleep_forever()
        finally:
            events.append("child cleanup")

    async def main() -> None:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(child)
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            await nursery_io.sleep(5)

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        with pytest.raises(TimeoutError):
            nursery_io.run(main)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    gc.collect()
    assert events == ["child cleanup"]
    assert unraisable == []
    nursery_io.run(nursery_io.sleep, 0)  # and the next run is fine


# ----- KeyboardInterrupt together with cancellation -----


def _ki_run(lib: ModuleType, main: Callable[..., Any]) -> Any:
    return outcome_of(lib, main, restrict_keyboard_interrupt_to_checkpoints=True)


@scenario
def keyboard_interrupt_while_waiting_for_children(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def main() -> None:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(sleep_until_cancelled, lib, trace, "child", name="child")
            await lib_testing(lib).wait_all_tasks_blocked()
            signal.raise_signal(signal.SIGINT)

    trace.append(_ki_run(lib, main))
    return trace


@scenario
def keyboard_interrupt_in_a_cancelled_scope(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def main() -> None:
        with lib.CancelScope() as scope:
            scope.cancel("cancelled too")
            signal.raise_signal(signal.SIGINT)
            try:
                await lib.lowlevel.checkpoint()
            except BaseException as exc:
                trace.append(("at the checkpoint", describe(exc)))
                raise
        trace.append(("scope caught", scope.cancelled_caught))

    trace.append(_ki_run(lib, main))
    return trace


@scenario
def keyboard_interrupt_becomes_the_scopes_reason(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def main() -> None:
        with lib.CancelScope() as scope:
            signal.raise_signal(signal.SIGINT)
            try:
                await lib.lowlevel.checkpoint()
            except KeyboardInterrupt:
                trace.append("interrupted")
            scope.cancel("later")
            try:
                await lib.lowlevel.checkpoint()
            except lib.Cancelled as exc:
                trace.append(("later cancellation", describe(exc, chain=False)))
                raise

    trace.append(_ki_run(lib, main))
    return trace


@scenario
def keyboard_interrupt_pending_when_main_returns_or_raises(lib: ModuleType) -> Trace:
    async def returns() -> str:
        signal.raise_signal(signal.SIGINT)
        return "done"

    async def raises() -> None:
        signal.raise_signal(signal.SIGINT)
        raise ValueError("main failed")

    async def cancelled_children() -> None:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(lib.sleep_forever)
            await lib_testing(lib).wait_all_tasks_blocked()
            nursery.cancel_scope.cancel("children cancelled")
            signal.raise_signal(signal.SIGINT)

    return [_ki_run(lib, returns), _ki_run(lib, raises), _ki_run(lib, cancelled_children)]
