"""Async generator finalization inside the run."""

from __future__ import annotations

import asyncio
import gc
import importlib
import math
import queue
import sys
import warnings
from collections.abc import AsyncGenerator
from functools import partial
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing

import nursery_io
import nursery_io.testing
from nursery_io import lowlevel

ABANDONED = "Async generator .* was garbage collected before it had been exhausted"
LIBS = pytest.mark.parametrize("lib", [trio, nursery_io], ids=lambda lib: lib.__name__)


@LIBS
def test_abandoned_generator_is_closed_in_a_cancelled_system_task(lib: ModuleType) -> None:
    # As in Trio: a ResourceWarning, then the close runs in a system task named after the
    # generator, in a cancelled (shielded) scope, so an await in its finally is cancelled.
    events: list[Any] = []

    async def agen() -> AsyncGenerator[int, None]:
        try:
            yield 1
            yield 2
        finally:
            task = lib.lowlevel.current_task()
            events.append(("closing task", "abandoned" in task.name, "agen" in task.name))
            events.append(("deadline", lib.current_effective_deadline()))
            try:
                await lib.sleep(0)
                events.append("await in finally completed")
            except lib.Cancelled:
                events.append("await in finally cancelled")

    async def main() -> None:
        gen = agen()
        assert await gen.__anext__() == 1
        with pytest.warns(ResourceWarning, match=ABANDONED):
            del gen  # abandoned mid-iteration: refcount drops to zero right here
            gc.collect()
        await _testing(lib).wait_all_tasks_blocked()
        events.append("main continues")

    lib.run(main)
    assert events == [
        ("closing task", True, True),
        ("deadline", -math.inf),
        "await in finally cancelled",
        "main continues",
    ]


@LIBS
def test_abandoned_generator_in_a_reference_cycle(lib: ModuleType) -> None:
    events = []

    async def agen() -> AsyncGenerator[int, None]:
        try:
            yield 1
        finally:
            await lib.lowlevel.cancel_shielded_checkpoint()
            events.append("finalized")

    async def main() -> None:
        gen = agen()
        await gen.__anext__()
        holder: dict[str, Any] = {"gen": gen}
        holder["self"] = holder  # only the cycle collector can free it
        with pytest.warns(ResourceWarning, match=ABANDONED):
            del gen, holder
            gc.collect()
        await _testing(lib).wait_all_tasks_blocked()

    lib.run(main)
    assert events == ["finalized"]


@LIBS
def test_break_out_of_async_for_finalizes(lib: ModuleType) -> None:
    events = []

    async def numbers() -> AsyncGenerator[int, None]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            events.append("numbers closed")

    async def main() -> None:
        with pytest.warns(ResourceWarning, match=ABANDONED):
            async for n in numbers():
                if n == 3:
                    break
        await _testing(lib).wait_all_tasks_blocked()

    lib.run(main)
    assert events == ["numbers closed"]


def test_generators_alive_at_the_end_are_closed() -> None:
    events: list[Any] = []
    keep: list[AsyncGenerator[int, None]] = []

    async def agen(name: str) -> AsyncGenerator[int, None]:
        try:
            yield 1
            yield 2
        finally:
            events.append((name, "finally", lowlevel.in_task()))
            try:
                await nursery_io.sleep(0)
                events.append((name, "await completed"))
            except nursery_io.Cancelled:
                # After the main task: awaits are cancelled, so cleanup can't hang the run.
                events.append((name, "await cancelled"))
                raise

    async def main() -> None:
        for name in ("a", "b"):
            gen = agen(name)
            await gen.__anext__()
            keep.append(gen)
        events.append("main done")

    nursery_io.run(main)
    assert events[0] == "main done"
    assert sorted(events[1:]) == [
        ("a", "await cancelled"),
        ("a", "finally", True),
        ("b", "await cancelled"),
        ("b", "finally", True),
    ]
    for gen in keep:
        assert gen.ag_frame is None  # closed


def test_generator_created_while_finalizing_is_closed_too() -> None:
    events = []
    keep = []

    async def inner() -> AsyncGenerator[int, None]:
        try:
            yield 1
        finally:
            events.append("inner closed")

    async def outer() -> AsyncGenerator[int, None]:
        try:
            yield 1
        finally:
            late = inner()
            await late.__anext__()
            keep.append(late)
            events.append("outer closed")

    async def main() -> None:
        gen = outer()
        await gen.__anext__()
        keep.append(gen)

    nursery_io.run(main)
    assert events == ["outer closed", "inner closed"]


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # Trio warns about `late` too
def test_generator_abandoned_during_shutdown_is_closed() -> None:
    events = []
    keep = []

    async def inner() -> AsyncGenerator[int, None]:
        try:
            yield 1
        finally:
            events.append("inner closed")

    async def outer() -> AsyncGenerator[int, None]:
        try:
            yield 1
        finally:
            late = inner()
            await late.__anext__()
            del late  # garbage during the final phase: must still be finalized
            gc.collect()
            events.append("outer closed")

    async def main() -> None:
        gen = outer()
        await gen.__anext__()
        keep.append(gen)

    nursery_io.run(main)
    assert events == ["outer closed", "inner closed"]


@LIBS
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_exception_from_a_finalizer_is_logged_not_raised(
    lib: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    async def agen() -> AsyncGenerator[int, None]:
        try:
            yield 1
        finally:
            raise ValueError("cleanup failed")

    async def main() -> None:
        gen = agen()
        await gen.__anext__()
        del gen
        gc.collect()
        await _testing(lib).wait_all_tasks_blocked()
        # the run carries on unaffected: the error was only logged
        events.append("main continues")

    events: list[str] = []
    lib.run(main)
    assert events == ["main continues"]
    (record,) = caplog.records
    assert record.name == f"{lib.__name__}.async_generator_errors"
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError
    assert "during finalization of async generator" in record.getMessage()


def test_hooks_are_installed_for_the_run_and_restored_after() -> None:
    seen = []

    def firstiter(agen: Any) -> None:
        seen.append("foreign firstiter")

    def finalizer(agen: Any) -> None:
        seen.append("foreign finalizer")

    old = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)
    try:

        async def main() -> None:
            hooks = sys.get_asyncgen_hooks()
            assert hooks.firstiter is not firstiter
            assert hooks.finalizer is not finalizer

        nursery_io.run(main)
        hooks = sys.get_asyncgen_hooks()
        assert hooks.firstiter is firstiter
        assert hooks.finalizer is finalizer
        assert seen == []
    finally:
        sys.set_asyncgen_hooks(*old)


def test_generator_from_an_earlier_run_is_closed_synchronously() -> None:
    # Iterated in one run, kept (and not finished) until after that run: when it dies it
    # can't go back to its run, so it is closed on the spot.
    events = []
    box: list[AsyncGenerator[int, None]] = []

    async def agen() -> AsyncGenerator[int, None]:
        try:
            yield 1
            yield 2
        finally:
            events.append("closed")

    async def first() -> None:
        gen = agen()
        await gen.__anext__()
        box.append(gen)

    nursery_io.run(first)
    # the run closed it at the end already
    assert events == ["closed"]
    box.clear()
    gc.collect()
    assert events == ["closed"]


# ----- generators that aren't the run's go to the hooks installed before it -----


class _HookSpy:
    """Stands for the hooks a host loop installed before the run (asyncio's, say)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def firstiter(self, agen: Any) -> None:
        self.seen.append(("previous firstiter", agen.ag_frame.f_locals["name"]))

    def finalizer(self, agen: Any) -> None:
        self.seen.append(("previous finalizer", agen.ag_frame.f_locals["name"]))
        with pytest.raises(StopIteration):
            agen.aclose().send(None)


def _with_hooks(spy: _HookSpy, fn: Any) -> None:
    old = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=spy.firstiter, finalizer=spy.finalizer)
    try:
        with warnings.catch_warnings():
            # Trio also warns about generators collected before they were exhausted.
            warnings.simplefilter("ignore", ResourceWarning)
            fn()
        # Put back when the run is over.
        assert sys.get_asyncgen_hooks() == (spy.firstiter, spy.finalizer)
    finally:
        sys.set_asyncgen_hooks(*old)


def _iterate_once(agen: AsyncGenerator[str, None], seen: list[tuple[str, str]]) -> None:
    # First iteration by hand, from sync code.
    with pytest.raises(StopIteration) as stop:
        agen.asend(None).send(None)
    seen.append(("yielded", stop.value.value))


async def _named_gen(name: str, seen: list[tuple[str, str]]) -> AsyncGenerator[str, None]:
    try:
        yield name
    finally:
        seen.append(("closed", name))


@pytest.mark.parametrize("lib", [trio, nursery_io], ids=lambda lib: lib.__name__)
def test_generator_of_a_run_sync_soon_callback_is_the_runs(lib: ModuleType) -> None:
    spy = _HookSpy()

    async def main() -> None:
        kept: list[AsyncGenerator[str, None]] = []
        iterated = lib.Event()

        def callback() -> None:
            agen = _named_gen("callback's", spy.seen)
            _iterate_once(agen, spy.seen)
            kept.append(agen)
            iterated.set()

        lib.lowlevel.current_trio_token().run_sync_soon(callback)
        await iterated.wait()
        kept.clear()
        gc.collect()
        await _testing(lib).wait_all_tasks_blocked()

    _with_hooks(spy, partial(lib.run, main))
    assert spy.seen == [("yielded", "callback's"), ("closed", "callback's")]


@pytest.mark.parametrize("lib", [trio, nursery_io], ids=lambda lib: lib.__name__)
def test_guest_hands_its_hosts_generators_to_the_previous_hooks(lib: ModuleType) -> None:
    spy = _HookSpy()
    callbacks: queue.Queue[Any] = queue.Queue()

    async def main() -> None:
        # One generator iterated by the guest's task, one by host code between its turns.
        ours = _named_gen("guest's", spy.seen)
        spy.seen.append(("yielded", await ours.asend(None)))
        kept: list[AsyncGenerator[str, None]] = []
        iterated = lib.Event()

        def host_code() -> None:
            agen = _named_gen("host's", spy.seen)
            _iterate_once(agen, spy.seen)
            kept.append(agen)
            iterated.set()

        callbacks.put(host_code)
        await iterated.wait()
        kept.clear()
        del ours
        gc.collect()
        await _testing(lib).wait_all_tasks_blocked()

    def run_guest() -> None:
        done: list[Any] = []
        lib.lowlevel.start_guest_run(
            main, run_sync_soon_threadsafe=callbacks.put, done_callback=done.append
        )
        while not done:
            callbacks.get(timeout=30)()
        done[0].unwrap()

    _with_hooks(spy, run_guest)
    assert spy.seen == [
        ("yielded", "guest's"),
        ("previous firstiter", "host's"),
        ("yielded", "host's"),
        ("previous finalizer", "host's"),
        ("closed", "host's"),
        ("closed", "guest's"),
    ]


def test_guest_run_delegates_to_asyncio_hooks() -> None:
    # Under an asyncio host, the hooks installed before the guest run are asyncio's: its
    # generators are handed to them; the guest's own are not.
    handed: list[str] = []

    async def asyncio_gen() -> AsyncGenerator[int, None]:
        yield 1

    async def guest_gen() -> AsyncGenerator[int, None]:
        yield 2

    async def host_main() -> None:
        loop = asyncio.get_running_loop()
        asyncio_hooks = sys.get_asyncgen_hooks()

        def spy_firstiter(agen: Any) -> None:
            handed.append(agen.ag_code.co_name)
            assert asyncio_hooks.firstiter is not None
            asyncio_hooks.firstiter(agen)

        sys.set_asyncgen_hooks(firstiter=spy_firstiter, finalizer=asyncio_hooks.finalizer)
        done: asyncio.Future[Any] = loop.create_future()

        async def guest() -> None:
            gen = guest_gen()
            await gen.asend(None)
            await gen.aclose()
            started = nursery_io.Event()

            async def in_asyncio() -> None:
                gen = asyncio_gen()
                await gen.asend(None)
                await gen.aclose()
                started.set()

            asyncio.ensure_future(in_asyncio())
            await started.wait()

        nursery_io.lowlevel.start_guest_run(
            guest,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
        )
        (await asyncio.wait_for(done, 30)).unwrap()
        assert sys.get_asyncgen_hooks().firstiter is spy_firstiter

    asyncio.run(host_main())
    assert handed == ["asyncio_gen"]


def _testing(lib: ModuleType) -> Any:
    return importlib.import_module(lib.__name__ + ".testing")


async def _iterate_outside_any_task(lib: ModuleType, agen: AsyncGenerator[str, None]) -> str:
    """First-iterate ``agen`` from an abort function the loop calls when a deadline expires:
    loop code, outside every task, so the generator isn't the run's."""
    box: list[Any] = [agen]
    yielded: list[str] = []

    def abort_fn(_: object) -> Any:
        with pytest.raises(StopIteration) as stop:
            box.pop().asend(None).send(None)
        yielded.append(stop.value.value)
        return lib.lowlevel.Abort.SUCCEEDED

    del agen
    async with lib.open_nursery() as nursery:
        nursery.start_soon(lib.lowlevel.wait_task_rescheduled, abort_fn)
        await _testing(lib).wait_all_tasks_blocked()
        nursery.cancel_scope.deadline = lib.current_time()
    return yielded[0]


@LIBS
def test_generator_first_iterated_outside_any_task_goes_to_the_previous_hooks(
    lib: ModuleType,
) -> None:
    spy = _HookSpy()

    async def main() -> None:
        spy.seen.append(("yielded", await _iterate_outside_any_task(lib, _named_gen("x", []))))
        gc.collect()

    _with_hooks(spy, partial(lib.run, main))
    # (the generator dies with the abort function's last reference, before it returns)
    assert spy.seen == [
        ("previous firstiter", "x"),
        ("previous finalizer", "x"),
        ("yielded", "x"),
    ]


@LIBS
def test_generator_outside_any_task_without_previous_hooks(
    lib: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No hooks to hand it to: closed on the spot, and what goes wrong reaches Python's
    # unraisable hook, as it would with no hooks installed at all.
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    async def well_behaved() -> AsyncGenerator[str, None]:
        yield "well"

    async def yields_again() -> AsyncGenerator[str, None]:
        with pytest.raises(GeneratorExit):
            yield "yields"
        yield "again"

    async def awaits() -> AsyncGenerator[str, None]:
        with pytest.raises(GeneratorExit):
            yield "awaits"
        await lib.lowlevel.cancel_shielded_checkpoint()

    async def main() -> None:
        for make in (well_behaved, yields_again, awaits):
            await _iterate_outside_any_task(lib, make())
            gc.collect()
            messages.append([str(report.exc_value) for report in reported])
            reported.clear()

    messages: list[list[str]] = []
    old = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(None, None)
    try:
        lib.run(main)
    finally:
        sys.set_asyncgen_hooks(*old)
    assert messages[0] == []
    assert len(messages[1]) == 1 and "ignored GeneratorExit" in messages[1][0]
    assert len(messages[2]) == 1 and "awaited something during finalization" in messages[2][0]
