"""Detaching a task's coroutine to a foreign runner and back (greenback-style bridges).

Each scenario runs under trio.run and nursery_io.run and must leave the same trace. The
"foreign runner" is a few lines driving ``task.coro`` by hand, from another task.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine
from typing import Any

import outcome
import pytest

import nursery_io
import nursery_io.testing

Scenario = Callable[[types.ModuleType, list[str]], Coroutine[Any, Any, None]]


def _drive(coro: Any, first: object, log: list[str]) -> None:
    """A toy foreign runner: send values in until the coroutine yields "stop"."""
    value = first
    while True:
        yielded = coro.send(value)
        log.append(f"foreign runner got {yielded!r}")
        if yielded == "stop":
            return
        value = f"reply to {yielded}"


async def round_trip(lib: types.ModuleType, log: list[str]) -> None:
    ll = lib.lowlevel
    handoff: list[Any] = []

    async def detached() -> None:
        task = ll.current_task()
        handoff.append(task)
        log.append("detaching")
        got = await ll.temporarily_detach_coroutine_object(lambda _: ll.Abort.FAILED)
        log.append(f"detached; first value {got!r}")
        log.append(f"foreign reply {await _ask('ping')!r}")
        await ll.reattach_detached_coroutine_object(task, "stop")
        log.append("back in the run")
        await lib.sleep(0)
        log.append("task done")

    async with lib.open_nursery() as nursery:
        nursery.start_soon(detached)
        await lib.testing.wait_all_tasks_blocked()
        (task,) = handoff
        _drive(task.coro, "hello", log)
    log.append("nursery done")


@types.coroutine
def _ask(what: str) -> Any:
    return (yield what)


async def cancel_while_detached(lib: types.ModuleType, log: list[str]) -> None:
    ll = lib.lowlevel
    handoff: list[Any] = []

    def abort(raise_cancel: Any) -> Any:
        log.append("abort called")
        handoff.append(raise_cancel)
        return ll.Abort.FAILED

    async def detached() -> None:
        task = ll.current_task()
        handoff.append(task)
        await ll.temporarily_detach_coroutine_object(abort)
        await ll.reattach_detached_coroutine_object(task, "stop")
        log.append("reattached")
        try:
            await lib.sleep(10)
        except lib.Cancelled:
            log.append("cancelled after reattaching")
            raise

    with lib.move_on_after(0.05) as scope:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(detached)
            await lib.testing.wait_all_tasks_blocked()
            with lib.CancelScope(shield=True):
                await lib.sleep(0.1)  # the deadline passes while the task is detached
            task = handoff[0]
            _drive(task.coro, None, log)
    log.append(f"cancelled_caught={scope.cancelled_caught}")


async def permanent(lib: types.ModuleType, log: list[str]) -> None:
    ll = lib.lowlevel
    coros: list[Any] = []

    async def leaves() -> None:
        coros.append(ll.current_task().coro)
        got = await ll.permanently_detach_coroutine_object(outcome.Value(None))
        log.append(f"now foreign; got {got!r}")
        await _ask("stop")

    async with lib.open_nursery() as nursery:
        nursery.start_soon(leaves)
    log.append("nursery done: the task counts as finished")
    _drive(coros[0], "first value", log)
    coros[0].close()


SCENARIOS = [round_trip, cancel_while_detached, permanent]


def _trace(lib: types.ModuleType, scenario: Scenario) -> list[str]:
    log: list[str] = []

    async def main() -> None:
        try:
            await scenario(lib, log)
        except BaseException as exc:  # noqa: BLE001 - recorded in the trace
            log.append(f"raised {type(exc).__name__}: {exc}")

    lib.run(main)
    return log


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_same_trace_as_trio(scenario: Scenario) -> None:
    import trio.testing  # noqa: F401 - the scenarios use lib.testing

    import nursery_io.testing  # noqa: F401

    ours = _trace(nursery_io, scenario)
    assert ours == _trace(trio, scenario)
    assert not any(line.startswith("raised") for line in ours), ours


def test_round_trip_trace() -> None:
    import nursery_io.testing  # noqa: F401

    assert _trace(nursery_io, round_trip) == [
        "detaching",
        "detached; first value 'hello'",
        "foreign runner got 'ping'",
        "foreign reply 'reply to ping'",
        "foreign runner got 'stop'",
        "back in the run",
        "task done",
        "nursery done",
    ]


async def test_misuse() -> None:
    # Not detached (the task is running, not parked): refused.
    task = nursery_io.lowlevel.current_task()
    with pytest.raises(RuntimeError, match="not parked"):
        await nursery_io.lowlevel.reattach_detached_coroutine_object(task, None)
    # Not from inside the task's coroutine.
    parked: list[nursery_io.lowlevel.Task] = []

    async def sleeper() -> None:
        parked.append(nursery_io.lowlevel.current_task())
        await nursery_io.sleep_forever()

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await nursery_io.testing.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="does not match calling coroutine"):
            await nursery_io.lowlevel.reattach_detached_coroutine_object(parked[0], None)
        nursery.cancel_scope.cancel()
    async with nursery_io.open_nursery():
        with pytest.raises(RuntimeError, match="open nurseries"):
            await nursery_io.lowlevel.permanently_detach_coroutine_object(outcome.Value(None))
