"""SteppedRun: a run driven one loop turn at a time by its host."""

from __future__ import annotations

import threading

import pytest
import sniffio

import nursery_io
from nursery_io import lowlevel


def drive(run: lowlevel.SteppedRun, timeout: float | None = 0.01, limit: int = 10_000) -> int:
    turns = 0
    while run.turn(timeout):
        turns += 1
        assert turns < limit, "run did not finish"
    return turns


def test_returns_the_main_result_and_is_not_in_run_between_turns() -> None:
    seen_between_turns: list[bool] = []

    async def main(x: int) -> int:
        async with nursery_io.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(nursery_io.sleep, 0.001)
        assert sniffio.current_async_library() == "nursery_io"
        return x * 2

    run = lowlevel.SteppedRun(main, 21)
    while run.turn(0.01):
        seen_between_turns.append(lowlevel.in_run())
    assert run.done
    assert run.result() == 42
    assert seen_between_turns and not any(seen_between_turns)


def test_exception_comes_out_of_result() -> None:
    async def main() -> None:
        await nursery_io.sleep(0)
        raise KeyError("boom")

    run = lowlevel.SteppedRun(main)
    drive(run)
    with pytest.raises(KeyError, match="boom"):
        run.result()


def test_result_before_done_is_an_error() -> None:
    run = lowlevel.SteppedRun(nursery_io.sleep, 0)
    with pytest.raises(RuntimeError, match="not finished"):
        run.result()
    drive(run)
    assert run.result() is None


def test_host_wakes_the_run_through_its_token_between_turns() -> None:
    # The host (this thread) posts work into the run between turns, the way a test runner
    # hands one fixture or test after another to a long-lived run.
    requests: list[int] = []
    answers: list[int] = []

    async def main() -> None:
        wakeup = nursery_io.Event()
        holder["wakeup"] = wakeup
        while True:
            await wakeup.wait()
            wakeup = holder["wakeup"] = nursery_io.Event()
            while requests:
                value = requests.pop(0)
                if value < 0:
                    return
                await nursery_io.sleep(0)
                answers.append(value * 10)

    holder: dict[str, nursery_io.Event] = {}
    run = lowlevel.SteppedRun(main)
    while "wakeup" not in holder:
        run.turn(0)
    for value in (1, 2, 3):
        requests.append(value)
        # A lambda on purpose: the run replaces holder["wakeup"], so look it up when called.
        run.token.run_sync_soon(lambda: holder["wakeup"].set())  # noqa: PLW0108
        while len(answers) < value:
            assert run.turn(1.0)
    requests.append(-1)
    run.token.run_sync_soon(lambda: holder["wakeup"].set())  # noqa: PLW0108
    drive(run, None)
    assert answers == [10, 20, 30]


def test_turn_timeout_bounds_the_sleep() -> None:
    # A run sleeping for an hour must still hand control back after each short turn.
    run = lowlevel.SteppedRun(nursery_io.sleep, 3600)
    for _ in range(3):
        assert run.turn(0.001)
    assert not run.done
    run.cancel()
    drive(run)
    with pytest.raises(nursery_io.RunFinishedError, match="cancelled by its host"):
        run.result()


def test_cancel_runs_cleanup_inside_the_run() -> None:
    cleanup: list[str] = []

    async def main() -> None:
        try:
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(nursery_io.sleep_forever)
                await nursery_io.sleep_forever()
        finally:
            with nursery_io.CancelScope(shield=True):
                await nursery_io.sleep(0)
                cleanup.append(sniffio.current_async_library())

    run = lowlevel.SteppedRun(main)
    run.cancel()  # before the first turn: applied once the run is up
    drive(run)
    assert cleanup == ["nursery_io"]
    with pytest.raises(nursery_io.RunFinishedError):
        run.result()


def test_another_run_may_use_the_thread_between_turns() -> None:
    async def inner() -> str:
        await nursery_io.sleep(0)
        return "inner"

    async def outer() -> str:
        await nursery_io.sleep(0.01)
        return "outer"

    run = lowlevel.SteppedRun(outer)
    run.turn(0)
    assert nursery_io.run(inner) == "inner"
    drive(run)
    assert run.result() == "outer"


def test_runs_in_a_worker_thread() -> None:
    results: list[object] = []

    def thread_main() -> None:
        run = lowlevel.SteppedRun(nursery_io.sleep, 0.001)
        drive(run)
        results.append(run.result())

    thread = threading.Thread(target=thread_main)
    thread.start()
    thread.join(10)
    assert results == [None]
