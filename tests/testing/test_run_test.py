"""nursery_io.testing.run_test (Trio spelling: trio_test)."""

from __future__ import annotations

import pytest

import nursery_io
from nursery_io.abc import Instrument
from nursery_io.lowlevel import Task
from nursery_io.testing import MockClock, run_test, trio_test


class CountSteps(Instrument):
    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: Task) -> None:
        self.steps += 1


def test_runs_the_async_function_and_returns_its_result() -> None:
    @run_test
    async def double(x: int, *, y: int) -> int:
        """Doc."""
        await nursery_io.sleep(0)
        return 2 * (x + y)

    assert double(1, y=2) == 6
    assert double.__name__ == "double" and double.__doc__ == "Doc."
    assert trio_test is run_test


def test_clock_and_instrument_keyword_arguments_are_used_by_the_run() -> None:
    clock = MockClock(autojump_threshold=0)
    counter = CountSteps()

    @run_test
    async def check(c: MockClock, instrument: CountSteps, other: int) -> float:
        assert nursery_io.lowlevel.current_clock() is c
        start = nursery_io.current_time()
        await nursery_io.sleep(3600)
        return nursery_io.current_time() - start

    assert check(c=clock, instrument=counter, other=3) >= 3600
    assert counter.steps > 0


def test_two_clocks_are_refused() -> None:
    @run_test
    async def nothing(a: MockClock, b: MockClock) -> None:
        raise AssertionError("not reached")

    with pytest.raises(ValueError) as info:
        nothing(a=MockClock(), b=MockClock())
    assert str(info.value) == "too many clocks spoil the broth!"  # Trio's text, whole
    # The same clock under two names is one clock.
    clock = MockClock()

    @run_test
    async def same(a: MockClock, b: MockClock) -> None:
        assert nursery_io.lowlevel.current_clock() is a is b

    same(a=clock, b=clock)
