"""MockClock: virtual time, rate, jumps and autojump."""

from __future__ import annotations

import math
import random
import threading

import pytest

import nursery_io
from nursery_io import lowlevel
from nursery_io.abc import Clock
from nursery_io.testing import MockClock, wait_all_tasks_blocked


def test_basics_outside_a_run() -> None:
    clock = MockClock()
    assert isinstance(clock, Clock)
    assert clock.rate == 0
    assert clock.autojump_threshold == math.inf
    assert clock.current_time() == 0
    clock.jump(2.5)
    assert clock.current_time() == 2.5
    assert "time=2.5000000" in repr(clock)
    with pytest.raises(ValueError, match="backwards"):
        clock.jump(-1)
    with pytest.raises(ValueError):
        clock.rate = -1
    with pytest.raises(ValueError):
        clock.autojump_threshold = -1
    with pytest.raises(ValueError):
        MockClock(rate=-2)


def test_deadline_to_sleep_time() -> None:
    clock = MockClock()
    # time stands still: only a jump can bring a future deadline closer
    assert clock.deadline_to_sleep_time(10) >= 86400
    assert clock.deadline_to_sleep_time(0) == 0
    assert clock.deadline_to_sleep_time(-5) == 0
    clock.rate = 2
    sleep = clock.deadline_to_sleep_time(clock.current_time() + 10)
    assert 2.5 < sleep <= 5  # 10 virtual seconds at 2 virtual seconds per real second


def test_changing_rate_never_makes_time_jump() -> None:
    clock = MockClock(rate=1000)
    before = clock.current_time()
    clock.rate = 0
    frozen = clock.current_time()
    assert frozen >= before
    assert clock.current_time() == frozen
    clock.rate = 0  # re-anchoring at rate 0 keeps the same time
    assert clock.current_time() == frozen


async def test_time_stands_still_without_rate_or_autojump(mock_clock: MockClock) -> None:
    start = nursery_io.current_time()
    for _ in range(10):
        await nursery_io.sleep(0)
    assert nursery_io.current_time() == start
    with nursery_io.move_on_after(1) as scope:
        # nothing but a manual jump will end this
        lowlevel.current_token().run_sync_soon(mock_clock.jump, 1)
        await nursery_io.sleep_forever()
    assert scope.cancelled_caught
    assert nursery_io.current_time() == start + 1


async def test_rate_runs_virtual_time_faster_than_real_time(mock_clock: MockClock) -> None:
    mock_clock.rate = 10_000
    start = nursery_io.current_time()
    await nursery_io.sleep(20)  # 2 ms of real time
    assert nursery_io.current_time() >= start + 20


async def test_autojump_with_many_sleepers_wakes_in_deadline_order(
    autojump_clock: MockClock,
) -> None:
    # 1,000 tasks sleeping random virtual times up to ten hours: they must wake in
    # deadline order, each at exactly its deadline, without the test taking real hours.
    rng = random.Random(1234)
    durations = [rng.uniform(0, 36_000) for _ in range(1000)]
    woke: list[tuple[float, float]] = []

    async def sleeper(seconds: float) -> None:
        start = nursery_io.current_time()
        await nursery_io.sleep(seconds)
        woke.append((seconds, nursery_io.current_time() - start))

    async with nursery_io.open_nursery() as nursery:
        for seconds in durations:
            nursery.start_soon(sleeper, seconds)
    elapsed = nursery_io.current_time()
    assert [seconds for seconds, _ in woke] == sorted(durations)
    for seconds, slept in woke:
        assert slept == pytest.approx(seconds, abs=1e-6)
    assert elapsed == pytest.approx(max(durations))
    assert elapsed > 3600 * 9


async def test_autojump_threshold_is_real_idle_time(mock_clock: MockClock) -> None:
    mock_clock.autojump_threshold = 0.001
    start = nursery_io.current_time()
    await nursery_io.sleep(3600)
    assert nursery_io.current_time() == start + 3600


async def test_autojump_enabled_during_the_run(mock_clock: MockClock) -> None:
    mock_clock.autojump_threshold = 0
    await nursery_io.sleep(100)
    assert nursery_io.current_time() == 100


async def test_autojump_enabled_while_the_loop_is_asleep(mock_clock: MockClock) -> None:
    # Set by a system task after the main task went to sleep with no autojump: the
    # loop must recompute how long it may sleep.
    async def enable() -> None:
        await wait_all_tasks_blocked()
        mock_clock.autojump_threshold = 0

    lowlevel.spawn_system_task(enable)
    await nursery_io.sleep(50)
    assert nursery_io.current_time() == 50


async def test_autojump_does_not_jump_past_activity_or_without_deadlines(
    autojump_clock: MockClock,
) -> None:
    lot = lowlevel.ParkingLot()

    async def waker() -> None:
        await nursery_io.sleep(1)
        lot.unpark_all()

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(nursery_io.sleep, 5)
        nursery.start_soon(waker)
        await lot.park()
        # woken at 1: the jump went to the nearest deadline, not the last one
        assert nursery_io.current_time() == 1
    assert nursery_io.current_time() == 5


async def test_wait_all_tasks_blocked_runs_before_autojump(autojump_clock: MockClock) -> None:
    events = []

    async def sleeper() -> None:
        await nursery_io.sleep(10)
        events.append(("slept", nursery_io.current_time()))

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await wait_all_tasks_blocked()
        events.append(("idle", nursery_io.current_time()))
        # the cushion is real time, even under a MockClock
        await wait_all_tasks_blocked(0.001)
        events.append(("idle with cushion", nursery_io.current_time()))
    assert events == [("idle", 0.0), ("idle with cushion", 0.0), ("slept", 10.0)]


async def test_jump_inside_a_run_fires_deadlines(mock_clock: MockClock) -> None:
    async with nursery_io.open_nursery() as nursery:
        with nursery_io.move_on_after(5) as scope:

            async def jumper() -> None:
                await wait_all_tasks_blocked()
                mock_clock.jump(4)
                await wait_all_tasks_blocked()
                assert not scope.cancel_called
                mock_clock.jump(1)

            nursery.start_soon(jumper)
            await nursery_io.sleep_forever()
    assert scope.cancelled_caught


def test_one_clock_can_be_reused_across_runs() -> None:
    clock = MockClock(autojump_threshold=0)

    async def main() -> float:
        await nursery_io.sleep(10)
        return nursery_io.current_time()

    assert nursery_io.run(main, clock=clock) == 10
    assert nursery_io.run(main, clock=clock) == 20


async def test_autojump_without_deadlines_sleeps_instead_of_spinning(
    autojump_clock: MockClock,
) -> None:
    # Waiting on another thread with an autojump clock and no deadline at all: nothing to
    # jump to, so the loop must block in the kernel, not poll with a zero timeout.
    task = lowlevel.current_task()
    token = lowlevel.current_token()
    threading.Timer(0.05, token.run_sync_soon, (lowlevel.reschedule, task)).start()
    await lowlevel.wait_task_rescheduled(lambda _: lowlevel.Abort.SUCCEEDED)
    polls = lowlevel.current_statistics().kernel_polls
    assert polls < 20
