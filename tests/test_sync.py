"""Tests for nursery_io._sync: Event, CapacityLimiter, Semaphore, Lock, StrictFIFOLock,
Condition."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import pytest

import nursery_io
from nursery_io import (
    BrokenResourceError,
    CancelScope,
    CapacityLimiter,
    CapacityLimiterStatistics,
    Condition,
    ConditionStatistics,
    Event,
    EventStatistics,
    Lock,
    LockStatistics,
    Semaphore,
    StrictFIFOLock,
    WouldBlock,
)
from nursery_io.lowlevel import ParkingLotStatistics, current_task
from nursery_io.testing import assert_checkpoints, wait_all_tasks_blocked


async def _spawn_in_order(nursery: nursery_io.Nursery, fns: list[Callable[[], Any]]) -> None:
    # Start the tasks one at a time, letting each block before the next starts, so their
    # arrival order at the primitive is known.
    for fn in fns:
        nursery.start_soon(fn)
        await wait_all_tasks_blocked()


# ----- Event -----


async def test_event_basics() -> None:
    event = Event()
    assert not event.is_set()
    assert "unset" in repr(event)
    woken: list[int] = []

    async def waiter(i: int) -> None:
        await event.wait()
        woken.append(i)

    async with nursery_io.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(waiter, i)
        await wait_all_tasks_blocked()
        assert event.statistics() == EventStatistics(tasks_waiting=3)
        assert woken == []
        event.set()
        assert event.is_set()
        event.set()  # idempotent
    assert sorted(woken) == [0, 1, 2]
    assert event.statistics().tasks_waiting == 0
    assert ", set>" in repr(event)
    # Waiting on a set event returns at once, but is still a checkpoint.
    with assert_checkpoints():
        await event.wait()
    with CancelScope() as scope:
        scope.cancel()
        await event.wait()
    assert scope.cancelled_caught


async def test_event_wait_cancelled() -> None:
    event = Event()
    caught: list[bool] = []

    async def waiter() -> None:
        with CancelScope() as scope:
            scopes.append(scope)
            await event.wait()
        caught.append(scope.cancelled_caught)

    scopes: list[CancelScope] = []
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(waiter)
        nursery.start_soon(waiter)
        await wait_all_tasks_blocked()
        scopes[0].cancel()
        await wait_all_tasks_blocked()
        assert event.statistics().tasks_waiting == 1
        event.set()
    assert sorted(caught) == [False, True]


# ----- CapacityLimiter -----


def test_capacity_limiter_total_tokens_validation() -> None:
    for bad_type in (1.5, "2", None, 2.0):
        with pytest.raises(TypeError):
            CapacityLimiter(bad_type)  # type: ignore[arg-type]
    for bad_value in (-1, -math.inf):
        with pytest.raises((ValueError, TypeError)):
            CapacityLimiter(bad_value)
    with pytest.raises(ValueError):
        CapacityLimiter(-1)
    # Zero is allowed (as in current Trio): nobody gets a token until it is raised.
    assert CapacityLimiter(0).available_tokens == 0
    limiter = CapacityLimiter(math.inf)
    assert limiter.total_tokens == math.inf
    limiter.total_tokens = 3
    assert limiter.total_tokens == 3
    with pytest.raises(ValueError):
        limiter.total_tokens = -2
    with pytest.raises(TypeError):
        limiter.total_tokens = 2.5
    assert limiter.total_tokens == 3


async def test_capacity_limiter_basics() -> None:
    limiter = CapacityLimiter(2)
    assert (limiter.borrowed_tokens, limiter.available_tokens) == (0, 2)
    limiter.acquire_nowait()
    assert (limiter.borrowed_tokens, limiter.available_tokens) == (1, 1)
    with pytest.raises(RuntimeError, match="already holding"):
        limiter.acquire_nowait()
    with pytest.raises(RuntimeError, match="already holding"):
        await limiter.acquire()
    limiter.acquire_on_behalf_of_nowait("other")
    with pytest.raises(WouldBlock):
        limiter.acquire_on_behalf_of_nowait("third")
    stats = limiter.statistics()
    assert isinstance(stats, CapacityLimiterStatistics)
    assert stats.borrowed_tokens == 2
    assert stats.total_tokens == 2
    assert set(stats.borrowers) == {current_task(), "other"}
    assert stats.tasks_waiting == 0
    assert "2/2 with 0 waiting" in repr(limiter)
    limiter.release()
    with pytest.raises(RuntimeError, match="isn't holding"):
        limiter.release()
    with pytest.raises(RuntimeError, match="isn't holding"):
        limiter.release_on_behalf_of("nobody")
    limiter.release_on_behalf_of("other")
    assert limiter.borrowed_tokens == 0
    # acquire is a checkpoint even when a token is free, and honours a pending cancel
    # without taking the token.
    with assert_checkpoints():
        async with limiter:
            assert limiter.borrowed_tokens == 1
    with CancelScope() as scope:
        scope.cancel()
        await limiter.acquire()
    assert scope.cancelled_caught
    assert limiter.borrowed_tokens == 0


async def test_capacity_limiter_fifo_and_resize() -> None:
    limiter = CapacityLimiter(1)
    order: list[int] = []
    release = Event()

    async def worker(i: int) -> None:
        async with limiter:
            order.append(i)
            await release.wait()

    async with nursery_io.open_nursery() as nursery:
        await _spawn_in_order(nursery, [functools.partial(worker, i) for i in range(5)])
        assert order == [0]
        assert limiter.statistics().tasks_waiting == 4
        # Raising the limit wakes waiters right away, oldest first.
        limiter.total_tokens = 3
        await wait_all_tasks_blocked()
        assert order == [0, 1, 2]
        # Lowering it doesn't take tokens back, it only delays new borrowers.
        limiter.total_tokens = 1
        assert limiter.borrowed_tokens == 3
        assert limiter.available_tokens == -2
        release.set()
    assert order == [0, 1, 2, 3, 4]
    assert limiter.borrowed_tokens == 0


async def test_capacity_limiter_no_barging() -> None:
    # A free token can't be taken by a newcomer while others are queued.
    limiter = CapacityLimiter(1)
    limiter.acquire_on_behalf_of_nowait("holder")
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(limiter.acquire_on_behalf_of, "waiter")
        await wait_all_tasks_blocked()
        limiter.release_on_behalf_of("holder")
        # The token already belongs to the waiter, even though it hasn't run yet.
        assert limiter.statistics().borrowers == ["waiter"]
        with pytest.raises(WouldBlock):
            limiter.acquire_on_behalf_of_nowait("newcomer")
    limiter.release_on_behalf_of("waiter")


async def test_capacity_limiter_cancel_while_waiting() -> None:
    limiter = CapacityLimiter(1)
    limiter.acquire_on_behalf_of_nowait("holder")
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(limiter.acquire_on_behalf_of, "cancelled")
        await wait_all_tasks_blocked()
        assert limiter.statistics().tasks_waiting == 1
        nursery.cancel_scope.cancel()
    assert limiter.statistics().tasks_waiting == 0
    limiter.release_on_behalf_of("holder")
    # The cancelled waiter never got a token and left nothing behind.
    assert limiter.borrowed_tokens == 0
    limiter.acquire_on_behalf_of_nowait("cancelled")


# ----- Semaphore -----


def test_semaphore_validation() -> None:
    with pytest.raises(TypeError):
        Semaphore(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Semaphore(-1)
    with pytest.raises(TypeError):
        Semaphore(1, max_value=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Semaphore(3, max_value=2)
    sem = Semaphore(2, max_value=5)
    assert (sem.value, sem.max_value) == (2, 5)
    assert "Semaphore(2, max_value=5)" in repr(sem)
    assert Semaphore(0).max_value is None


async def test_semaphore_basics() -> None:
    sem = Semaphore(1, max_value=1)
    with assert_checkpoints():
        await sem.acquire()
    assert sem.value == 0
    with pytest.raises(WouldBlock):
        sem.acquire_nowait()
    sem.release()
    with pytest.raises(ValueError, match="too many"):
        sem.release()
    assert sem.value == 1
    # Anyone may release; without max_value there is no upper bound.
    unbounded = Semaphore(0)
    for _ in range(3):
        unbounded.release()
    assert unbounded.value == 3
    with CancelScope() as scope:
        scope.cancel()
        await unbounded.acquire()
    assert scope.cancelled_caught
    assert unbounded.value == 3
    async with unbounded:
        assert unbounded.value == 2
    assert unbounded.value == 3


async def test_semaphore_fifo_handoff() -> None:
    sem = Semaphore(0, max_value=1)
    order: list[int] = []

    async def worker(i: int) -> None:
        await sem.acquire()
        order.append(i)

    async with nursery_io.open_nursery() as nursery:
        await _spawn_in_order(nursery, [functools.partial(worker, i) for i in range(4)])
        assert sem.statistics() == ParkingLotStatistics(tasks_waiting=4)
        for _ in range(4):
            # Each release goes straight to the oldest waiter; the value stays 0, so it
            # never trips max_value.
            sem.release()
            assert sem.value == 0
            await wait_all_tasks_blocked()
    assert order == [0, 1, 2, 3]


# ----- Lock / StrictFIFOLock -----


@pytest.mark.parametrize("lock_type", [Lock, StrictFIFOLock])
async def test_lock_basics(lock_type: type[Lock]) -> None:
    lock = lock_type()
    assert not lock.locked()
    assert "unlocked" in repr(lock)
    with pytest.raises(RuntimeError, match="don't own"):
        lock.release()
    with assert_checkpoints():
        await lock.acquire()
    assert lock.locked()
    assert lock.statistics() == LockStatistics(locked=True, owner=current_task(), tasks_waiting=0)
    with pytest.raises(RuntimeError, match="re-acquire"):
        lock.acquire_nowait()
    with pytest.raises(RuntimeError, match="re-acquire"):
        await lock.acquire()

    async def try_release() -> None:
        with pytest.raises(RuntimeError, match="don't own"):
            lock.release()
        with pytest.raises(WouldBlock):
            lock.acquire_nowait()

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(try_release)
    lock.release()
    assert lock.statistics() == LockStatistics(locked=False, owner=None, tasks_waiting=0)
    with CancelScope() as scope:
        scope.cancel()
        await lock.acquire()
    assert scope.cancelled_caught
    assert not lock.locked()


@pytest.mark.parametrize("lock_type", [Lock, StrictFIFOLock])
async def test_lock_fifo_and_cancel(lock_type: type[Lock]) -> None:
    lock = lock_type()
    order: list[int] = []
    scopes: dict[int, CancelScope] = {}

    async def worker(i: int) -> None:
        with CancelScope() as scopes[i]:
            async with lock:
                order.append(i)
                assert lock.statistics().owner is current_task()

    async with nursery_io.open_nursery() as nursery:
        await lock.acquire()
        await _spawn_in_order(nursery, [functools.partial(worker, i) for i in range(6)])
        assert lock.statistics().tasks_waiting == 6
        assert "with 6 waiters" in repr(lock)
        # A cancelled waiter leaves the queue; the others keep their places.
        scopes[2].cancel()
        await wait_all_tasks_blocked()
        assert lock.statistics().tasks_waiting == 5
        lock.release()
        # Ownership passed straight to the first waiter.
        assert lock.locked()
    assert order == [0, 1, 3, 4, 5]
    assert not lock.locked()


# ----- Condition -----


def test_condition_lock_type() -> None:
    with pytest.raises(TypeError):
        Condition(StrictFIFOLock())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Condition(Semaphore(1))  # type: ignore[arg-type]
    Condition(Lock())


async def test_condition_misuse() -> None:
    cond = Condition()
    with pytest.raises(RuntimeError, match="hold"):
        await cond.wait()
    with pytest.raises(RuntimeError, match="hold"):
        cond.notify()
    with pytest.raises(RuntimeError, match="hold"):
        cond.notify_all()
    with pytest.raises(RuntimeError):
        cond.release()
    cond.acquire_nowait()
    assert cond.locked()
    cond.release()
    assert not cond.locked()


async def test_condition_notify_order() -> None:
    lock = Lock()
    cond = Condition(lock)
    woken: list[int] = []

    async def waiter(i: int) -> None:
        async with cond:
            await cond.wait()
            # wait() returns holding the lock.
            assert lock.statistics().owner is current_task()
            woken.append(i)

    async with nursery_io.open_nursery() as nursery:
        await _spawn_in_order(nursery, [functools.partial(waiter, i) for i in range(5)])
        assert cond.statistics() == ConditionStatistics(
            tasks_waiting=5,
            lock_statistics=LockStatistics(locked=False, owner=None, tasks_waiting=0),
        )
        async with cond:
            cond.notify(2)
            stats = cond.statistics()
            # Notified waiters queue for the lock; they can't run until we release it.
            assert stats.tasks_waiting == 3
            assert stats.lock_statistics.tasks_waiting == 2
            await wait_all_tasks_blocked()
            assert woken == []
        await wait_all_tasks_blocked()
        assert woken == [0, 1]
        async with cond:
            cond.notify_all()
        await wait_all_tasks_blocked()
        assert woken == [0, 1, 2, 3, 4]
        async with cond:
            cond.notify()  # nobody waiting: a no-op


async def test_condition_wait_cancelled_reacquires() -> None:
    cond = Condition()
    held_after_cancel: list[bool] = []

    async def waiter(scope_box: list[CancelScope]) -> None:
        async with cond:
            with CancelScope() as scope:
                scope_box.append(scope)
                await cond.wait()
            held_after_cancel.append(cond.locked())

    # Cancelled while waiting for the notification...
    box: list[CancelScope] = []
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(waiter, box)
        await wait_all_tasks_blocked()
        box[0].cancel()
    # ... and cancelled after being notified, while queued for the lock.
    box2: list[CancelScope] = []
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(waiter, box2)
        await wait_all_tasks_blocked()
        async with cond:
            cond.notify()
            box2[0].cancel()
            await wait_all_tasks_blocked()
    assert held_after_cancel == [True, True]
    assert not cond.locked()
    assert cond.statistics().tasks_waiting == 0


@pytest.mark.parametrize("lock_type", [Lock, StrictFIFOLock])
async def test_lock_owner_exits_without_releasing(lock_type: type[Lock]) -> None:
    lock = lock_type()
    errors: list[str] = []

    async def careless_owner() -> None:
        await lock.acquire()
        await wait_all_tasks_blocked()

    async def waiter() -> None:
        try:
            await lock.acquire()
        except BrokenResourceError as exc:
            errors.append(str(exc))

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(careless_owner)
        await wait_all_tasks_blocked()
        nursery.start_soon(waiter)
    # Both the task that was waiting and a later acquirer are told, instead of hanging.
    with pytest.raises(BrokenResourceError, match="exited without releasing"):
        await lock.acquire()
    assert len(errors) == 1
    assert "exited without releasing" in errors[0]


async def test_lock_handoff_moves_breaker_to_new_owner() -> None:
    # The breaker follows ownership: the first owner releasing properly and exiting must
    # not break the lock for the task it handed the lock to.
    lock = Lock()
    order: list[str] = []

    async def first() -> None:
        async with lock:
            await wait_all_tasks_blocked()
        order.append("first done")

    async def second() -> None:
        async with lock:
            await wait_all_tasks_blocked()
            order.append("second holds")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(first)
        await wait_all_tasks_blocked()
        nursery.start_soon(second)
    assert order == ["first done", "second holds"]
    async with lock:
        pass


def test_primitives_need_a_run() -> None:
    # Construction works outside a run (module-level locks are common); use needs one.
    lock = Lock()
    with pytest.raises(RuntimeError):
        lock.acquire_nowait()
    limiter = CapacityLimiter(1)
    with pytest.raises(RuntimeError):
        limiter.acquire_nowait()


async def test_capacity_limiter_zero_pauses() -> None:
    limiter = CapacityLimiter(0)
    with pytest.raises(WouldBlock):
        limiter.acquire_nowait()
    got: list[str] = []

    async def worker() -> None:
        async with limiter:
            got.append("in")

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(worker)
        await wait_all_tasks_blocked()
        assert got == []
        limiter.total_tokens = 1
    assert got == ["in"]
