"""sleep*, move_on_*, fail_*: timeouts built on cancel scopes (virtual time throughout)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

import nursery_io
from nursery_io import lowlevel
from nursery_io.testing import MockClock, wait_all_tasks_blocked


async def test_sleep_takes_the_requested_virtual_time(autojump_clock: MockClock) -> None:
    start = nursery_io.current_time()
    await nursery_io.sleep(1.5)
    assert nursery_io.current_time() == start + 1.5
    await nursery_io.sleep_until(start + 10)
    assert nursery_io.current_time() == start + 10


async def test_sleep_zero_and_sleep_until_past_are_checkpoints(autojump_clock: MockClock) -> None:
    for call in (
        lambda: nursery_io.sleep(0),
        lambda: nursery_io.sleep_until(nursery_io.current_time() - 5),
        lambda: nursery_io.sleep_until(-math.inf),
    ):
        # a schedule point: another task gets to run
        ran = []

        async def other() -> None:
            ran.append(True)

        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(other)
            await call()
            assert ran == [True]
        # a cancel point: raises in a cancelled scope
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            await call()
        assert scope.cancelled_caught


async def test_sleep_forever_until_cancelled(autojump_clock: MockClock) -> None:
    start = nursery_io.current_time()
    with nursery_io.move_on_after(1000) as scope:
        await nursery_io.sleep_forever()
    assert scope.cancelled_caught
    assert nursery_io.current_time() == start + 1000


async def test_sleep_forever_woken_by_reschedule_is_an_error(autojump_clock: MockClock) -> None:
    task = lowlevel.current_task()
    lowlevel.current_token().run_sync_soon(lowlevel.reschedule, task)
    with pytest.raises(RuntimeError, match="Should never have been rescheduled"):
        await nursery_io.sleep_forever()


async def test_sleep_inf_is_sleep_forever(autojump_clock: MockClock) -> None:
    with nursery_io.move_on_after(5) as scope:
        await nursery_io.sleep(math.inf)
    assert scope.cancelled_caught


async def test_move_on_after_and_at(autojump_clock: MockClock) -> None:
    start = nursery_io.current_time()
    with nursery_io.move_on_after(2) as scope:
        await nursery_io.sleep(5)
        pytest.fail("not reached")
    assert scope.cancelled_caught
    assert nursery_io.current_time() == start + 2

    with nursery_io.move_on_at(start + 3) as scope:
        await nursery_io.sleep(5)
    assert scope.cancelled_caught
    assert nursery_io.current_time() == start + 3

    with nursery_io.move_on_after(5) as scope:
        await nursery_io.sleep(1)
    assert not scope.cancelled_caught and not scope.cancel_called
    assert nursery_io.current_time() == start + 4


async def test_move_on_after_counts_from_entry_not_construction(autojump_clock: MockClock) -> None:
    scope = nursery_io.move_on_after(2)
    await nursery_io.sleep(10)
    entered_at = nursery_io.current_time()
    with scope:
        await nursery_io.sleep_forever()
    assert nursery_io.current_time() == entered_at + 2


async def test_fail_after_and_fail_at(autojump_clock: MockClock) -> None:
    start = nursery_io.current_time()
    with pytest.raises(nursery_io.TooSlowError):
        with nursery_io.fail_after(1) as scope:
            await nursery_io.sleep(5)
    assert scope.cancelled_caught
    assert nursery_io.current_time() == start + 1

    with pytest.raises(nursery_io.TooSlowError) as info:
        with nursery_io.fail_at(start + 2):
            await nursery_io.sleep(5)
    # raised from the cancel scope's exit: the Cancelled is its context, for debugging
    assert isinstance(info.value.__context__, nursery_io.Cancelled)

    with nursery_io.fail_after(5) as scope:
        await nursery_io.sleep(1)
    assert not scope.cancel_called


async def test_fail_after_does_not_mask_other_errors(autojump_clock: MockClock) -> None:
    with pytest.raises(KeyError):
        with nursery_io.fail_after(1):
            raise KeyError
    # cancelled by an outer scope, not its own deadline: no TooSlowError
    with nursery_io.move_on_after(1) as outer:
        with nursery_io.fail_after(10):
            await nursery_io.sleep_forever()
    assert outer.cancelled_caught


async def test_shield_argument(autojump_clock: MockClock) -> None:
    with nursery_io.CancelScope() as outer:
        outer.cancel()
        with nursery_io.move_on_after(1, shield=True) as inner:
            await nursery_io.sleep(0)  # shielded: no Cancelled from outer
            await nursery_io.sleep_forever()
        assert inner.cancelled_caught and inner.shield
        with pytest.raises(nursery_io.TooSlowError):
            with nursery_io.fail_after(1, shield=True):
                await nursery_io.sleep_forever()
        for make in (
            lambda: nursery_io.move_on_at(nursery_io.current_time() + 1, shield=True),
            lambda: nursery_io.CancelScope(shield=True),
        ):
            with make() as scope:
                assert scope.shield


async def test_deadline_scopes_nest_earliest_wins(autojump_clock: MockClock) -> None:
    start = nursery_io.current_time()
    with nursery_io.move_on_after(10) as outer:
        with nursery_io.move_on_after(3) as inner:
            await nursery_io.sleep_forever()
        assert inner.cancelled_caught
        assert nursery_io.current_time() == start + 3
        with nursery_io.move_on_after(30) as long:
            await nursery_io.sleep_forever()
        assert not long.cancelled_caught
    assert outer.cancelled_caught
    assert nursery_io.current_time() == start + 10


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: nursery_io.move_on_after(-1), "non-negative"),
        (lambda: nursery_io.move_on_after(math.nan), "NaN"),
        (lambda: nursery_io.fail_after(-0.5), "non-negative"),
        (lambda: nursery_io.fail_after(math.nan), "NaN"),
        (lambda: nursery_io.move_on_at(math.nan), "NaN"),
        (lambda: nursery_io.fail_at(math.nan), "NaN"),
    ],
)
async def test_invalid_timeouts_raise_value_error(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        with make():
            pass


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: nursery_io.sleep(-1), "non-negative"),
        (lambda: nursery_io.sleep(math.nan), "NaN"),
        (lambda: nursery_io.sleep_until(math.nan), "NaN"),
    ],
)
async def test_invalid_sleeps_raise_value_error(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await call()


async def test_negative_and_infinite_absolute_deadlines_are_allowed(
    autojump_clock: MockClock,
) -> None:
    with nursery_io.move_on_at(-math.inf) as scope:
        await nursery_io.sleep(0)
    assert scope.cancelled_caught
    with nursery_io.move_on_at(-1) as scope:
        await nursery_io.sleep(0)
    assert scope.cancelled_caught
    with nursery_io.move_on_after(math.inf) as scope:
        assert scope.deadline == math.inf
        await nursery_io.sleep(0)
    with nursery_io.move_on_after(0) as scope:
        await nursery_io.sleep(0)
    assert scope.cancelled_caught


async def test_timeout_wakes_task_blocked_in_any_trap(autojump_clock: MockClock) -> None:
    lot = lowlevel.ParkingLot()
    with nursery_io.move_on_after(1) as scope:
        await lot.park()
    assert scope.cancelled_caught
    assert not lot  # the cancelled waiter left the lot


async def test_sleepers_wake_in_deadline_order(autojump_clock: MockClock) -> None:
    woke: list[int] = []

    async def sleeper(n: int) -> None:
        await nursery_io.sleep(n)
        woke.append(n)

    async with nursery_io.open_nursery() as nursery:
        for n in (5, 1, 4, 2, 3):
            nursery.start_soon(sleeper, n)
        await wait_all_tasks_blocked()
    assert woke == [1, 2, 3, 4, 5]


async def test_real_clock_sleep_is_short_and_real() -> None:
    # One small real sleep, to check the system clock path end to end.
    start = nursery_io.current_time()
    await nursery_io.sleep(0.01)
    assert nursery_io.current_time() - start >= 0.01
