"""lowlevel.UnboundedQueue: Trio's deprecated batch queue, side by side with Trio's."""

from __future__ import annotations

import re
import warnings
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing

import nursery_io
import nursery_io.testing

LIBS = pytest.mark.parametrize("lib", [trio, nursery_io], ids=["trio", "nursery_io"])


def _new_queue(lib: ModuleType) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lib.TrioDeprecationWarning)
        return lib.lowlevel.UnboundedQueue()


def _run_both(fn: Any) -> Any:
    """Run ``fn(lib)`` under both libraries; the results must agree."""
    expected = trio.run(fn, trio)
    got = nursery_io.run(fn, nursery_io)
    assert got == expected
    return got


def test_constructing_warns_like_trio() -> None:
    messages = {}
    for lib in (trio, nursery_io):
        with pytest.warns(lib.TrioDeprecationWarning) as record:
            lib.lowlevel.UnboundedQueue()
        (warning,) = record
        # Attributed to the line that constructed the queue, as in Trio.
        assert warning.filename == __file__
        messages[lib.__name__] = str(warning.message)
    assert messages["trio"] == messages["nursery_io"].replace("nursery_io.", "trio.")
    assert re.search(r"open_memory_channel\(math\.inf\)", messages["nursery_io"])


def test_trio_deprecation_warning_is_a_future_warning() -> None:
    assert issubclass(nursery_io.TrioDeprecationWarning, FutureWarning)
    assert not issubclass(nursery_io.TrioDeprecationWarning, DeprecationWarning)


def test_basics() -> None:
    async def main(lib: ModuleType) -> Any:
        queue = _new_queue(lib)
        trace: list[Any] = [repr(queue), queue.empty(), queue.qsize()]
        with pytest.raises(lib.WouldBlock):
            queue.get_batch_nowait()
        queue.put_nowait("a")
        trace.append(await queue.get_batch())
        for i in range(3):
            queue.put_nowait(i)
        stats = queue.statistics()
        trace += [repr(queue), queue.empty(), queue.qsize(), stats.qsize, stats.tasks_waiting]
        trace.append(queue.get_batch_nowait())
        trace.append(queue.empty())
        return trace

    assert _run_both(main)[0] == "<UnboundedQueue holding 0 items>"


def test_blocking_batches_and_async_iteration() -> None:
    async def main(lib: ModuleType) -> Any:
        queue = _new_queue(lib)
        batches: list[Any] = []

        async def consumer() -> None:
            async for batch in queue:
                batches.append(batch)
                if batch[-1] == "stop":
                    return

        async with lib.open_nursery() as nursery:
            nursery.start_soon(consumer)
            await lib.testing.wait_all_tasks_blocked()
            waiting = queue.statistics().tasks_waiting
            queue.put_nowait(1)
            queue.put_nowait(2)  # same batch: the consumer hasn't run yet
            await lib.testing.wait_all_tasks_blocked()
            queue.put_nowait("stop")
        return waiting, batches

    assert _run_both(main) == (1, [[1, 2], ["stop"]])


def test_a_woken_getter_keeps_its_batch() -> None:
    # Once put_nowait has woken a waiting getter, get_batch_nowait must not steal the
    # batch before the woken task runs.
    async def main(lib: ModuleType) -> Any:
        queue = _new_queue(lib)
        got: list[Any] = []

        async def getter() -> None:
            got.append(await queue.get_batch())

        async with lib.open_nursery() as nursery:
            nursery.start_soon(getter)
            await lib.testing.wait_all_tasks_blocked()
            queue.put_nowait("x")
            with pytest.raises(lib.WouldBlock):
                queue.get_batch_nowait()
            queue.put_nowait("y")
        return got

    assert _run_both(main) == [["x", "y"]]


def test_get_batch_is_a_checkpoint() -> None:
    async def main(lib: ModuleType) -> Any:
        queue = _new_queue(lib)
        queue.put_nowait(1)
        with lib.testing.assert_checkpoints():
            await queue.get_batch()
        with lib.CancelScope() as scope:
            scope.cancel()
            queue.put_nowait(2)
            await queue.get_batch()
        # A cancelled get_batch takes nothing.
        return scope.cancelled_caught, queue.get_batch_nowait()

    assert _run_both(main) == (True, [2])


@LIBS
def test_put_nowait_outside_a_run(lib: ModuleType) -> None:
    queue = _new_queue(lib)
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert queue.get_batch_nowait() == [1, 2]
    assert queue.statistics().qsize == 0


@LIBS
def test_is_generic(lib: ModuleType) -> None:
    with pytest.warns(lib.TrioDeprecationWarning):
        queue = lib.lowlevel.UnboundedQueue[int]()
    queue.put_nowait(3)
    assert queue.get_batch_nowait() == [3]
