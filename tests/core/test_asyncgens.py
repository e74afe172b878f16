"""Async generator finalization inside the run."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncGenerator
from typing import Any

import pytest

import nursery_io
from nursery_io import lowlevel
from nursery_io.testing import wait_all_tasks_blocked


async def test_abandoned_generator_is_finalized_inside_the_run() -> None:
    # Deliberate difference from Trio: while the run is live, the finalizer runs in a
    # system task where awaiting works (Trio cancels such awaits).
    events: list[Any] = []

    async def agen() -> AsyncGenerator[int, None]:
        try:
            yield 1
            yield 2
        finally:
            events.append(("finally in task", lowlevel.in_task()))
            await nursery_io.sleep(0)
            events.append("await in finally completed")

    gen = agen()
    assert await gen.__anext__() == 1
    del gen  # abandoned mid-iteration: refcount drops to zero right here
    gc.collect()
    await wait_all_tasks_blocked()
    events.append("main continues")
    assert events == [
        ("finally in task", True),
        "await in finally completed",
        "main continues",
    ]


async def test_abandoned_generator_in_a_reference_cycle() -> None:
    events = []

    async def agen() -> AsyncGenerator[int, None]:
        try:
            yield 1
        finally:
            await nursery_io.sleep(0)
            events.append("finalized")

    gen = agen()
    await gen.__anext__()
    holder: dict[str, Any] = {"gen": gen}
    holder["self"] = holder  # only the cycle collector can free it
    del gen, holder
    gc.collect()
    await wait_all_tasks_blocked()
    assert events == ["finalized"]


async def test_break_out_of_async_for_finalizes() -> None:
    events = []

    async def numbers() -> AsyncGenerator[int, None]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            events.append("numbers closed")

    async for n in numbers():
        if n == 3:
            break
    await wait_all_tasks_blocked()
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


async def test_exception_from_a_finalizer_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    async def agen() -> AsyncGenerator[int, None]:
        try:
            yield 1
        finally:
            raise ValueError("cleanup failed")

    gen = agen()
    await gen.__anext__()
    del gen
    gc.collect()
    await wait_all_tasks_blocked()
    # the run carries on unaffected: the error was only reported
    (report,) = reported
    assert isinstance(report.exc_value, ValueError)
    assert "async generator" in report.err_msg


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
