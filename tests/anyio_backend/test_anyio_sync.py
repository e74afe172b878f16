"""anyio's synchronization primitives on the nursery_io backend."""

from __future__ import annotations

import anyio
import pytest
from anyio import (
    CapacityLimiter,
    Condition,
    Event,
    Lock,
    Semaphore,
    WouldBlock,
    create_task_group,
    get_current_task,
    wait_all_tasks_blocked,
)

import nursery_io
from nursery_io import to_thread
from nursery_io.anyio_backend import _sync

pytestmark = pytest.mark.anyio


async def test_primitives_are_the_backends() -> None:
    assert isinstance(Event(), _sync.Event)
    assert isinstance(Lock(), _sync.Lock)
    assert isinstance(Semaphore(1), _sync.Semaphore)
    assert isinstance(CapacityLimiter(1), _sync.CapacityLimiter)


async def test_event() -> None:
    event = Event()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await event.wait()
        woken.append(n)

    async with create_task_group() as tg:
        for n in range(3):
            tg.start_soon(waiter, n)
        await wait_all_tasks_blocked()
        assert event.statistics().tasks_waiting == 3
        assert not event.is_set()
        event.set()
    assert sorted(woken) == [0, 1, 2]
    assert event.is_set()
    await event.wait()  # already set: returns (after a checkpoint)


@pytest.mark.parametrize("fast_acquire", [False, True])
async def test_lock_ownership_and_fifo_hand_off(fast_acquire: bool) -> None:
    lock = Lock(fast_acquire=fast_acquire)
    order: list[int] = []

    async def worker(n: int) -> None:
        async with lock:
            order.append(n)
            await anyio.sleep(0)

    await lock.acquire()
    with pytest.raises(RuntimeError, match="already held"):
        await lock.acquire()
    with pytest.raises(RuntimeError, match="already held"):
        lock.acquire_nowait()
    async with create_task_group() as tg:
        for n in range(3):
            tg.start_soon(worker, n)
            await wait_all_tasks_blocked()
        stats = lock.statistics()
        assert stats.locked
        assert stats.owner == get_current_task()
        assert stats.tasks_waiting == 3
        lock.release()
        # Handed straight to the first waiter: nobody can barge in.
        with pytest.raises(WouldBlock):
            lock.acquire_nowait()
    assert order == [0, 1, 2]
    assert not lock.locked()
    assert lock.statistics().owner is None


async def test_lock_release_by_another_task_and_cancelled_waiter() -> None:
    lock = Lock()

    async def hold(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with lock:
            task_status.started()
            await anyio.sleep_forever()

    async with create_task_group() as tg:
        await tg.start(hold)
        with pytest.raises(RuntimeError, match="not holding"):
            lock.release()
        with anyio.move_on_after(0.01) as scope:
            await lock.acquire()
        assert scope.cancelled_caught
        assert lock.statistics().tasks_waiting == 0
        tg.cancel_scope.cancel()
    lock.acquire_nowait()
    lock.release()


async def test_fast_acquire_does_not_yield_when_free() -> None:
    # With fast_acquire a free lock is taken without letting other tasks run.
    ran: list[str] = []
    lock = Lock(fast_acquire=True)

    async def other() -> None:
        ran.append("other")

    async with create_task_group() as tg:
        tg.start_soon(other)
        async with lock:
            assert ran == []
        await wait_all_tasks_blocked()
        assert ran == ["other"]


@pytest.mark.parametrize("fast_acquire", [False, True])
async def test_semaphore(fast_acquire: bool) -> None:
    semaphore = Semaphore(2, max_value=2, fast_acquire=fast_acquire)
    running = 0
    peak = 0

    async def worker() -> None:
        nonlocal running, peak
        async with semaphore:
            running += 1
            peak = max(peak, running)
            await anyio.sleep(0.001)
            running -= 1

    async with create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(worker)
    assert peak == 2
    assert semaphore.value == 2
    assert semaphore.max_value == 2
    with pytest.raises(ValueError, match="too many"):
        semaphore.release()
    semaphore.acquire_nowait()
    semaphore.acquire_nowait()
    with pytest.raises(WouldBlock):
        semaphore.acquire_nowait()
    async with create_task_group() as tg:
        tg.start_soon(semaphore.acquire)
        await wait_all_tasks_blocked()
        assert semaphore.statistics().tasks_waiting == 1
        semaphore.release()  # goes to the waiter, not back to the counter
    assert semaphore.value == 0
    with pytest.raises(ValueError):
        Semaphore(-1)


async def test_capacity_limiter_and_its_errors() -> None:
    limiter = CapacityLimiter(1)
    await limiter.acquire()
    with pytest.raises(RuntimeError, match="already holding one"):
        await limiter.acquire()
    with pytest.raises(RuntimeError, match="already holding one"):
        limiter.acquire_nowait()
    with pytest.raises(WouldBlock):
        limiter.acquire_on_behalf_of_nowait("someone else")
    stats = limiter.statistics()
    assert stats.borrowed_tokens == 1 and stats.total_tokens == 1
    limiter.release()
    with pytest.raises(RuntimeError, match="isn't holding any"):
        limiter.release()
    limiter.total_tokens = 3
    assert limiter.available_tokens == 3
    limiter.total_tokens = 0  # allowed: pauses the limiter
    with pytest.raises(WouldBlock):
        limiter.acquire_nowait()
    with pytest.raises(TypeError):
        limiter.total_tokens = 1.5
    with pytest.raises(ValueError):
        limiter.total_tokens = -1


async def test_default_thread_limiter_is_nursery_ios() -> None:
    limiter = anyio.to_thread.current_default_thread_limiter()
    assert limiter is anyio.to_thread.current_default_thread_limiter()
    native = to_thread.current_default_thread_limiter()
    assert limiter.total_tokens == native.total_tokens
    limiter.total_tokens = 7
    try:
        assert native.total_tokens == 7
    finally:
        limiter.total_tokens = 40


async def test_condition() -> None:
    condition = Condition()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        async with condition:
            await condition.wait()
            woken.append(n)

    async with create_task_group() as tg:
        for n in range(3):
            tg.start_soon(waiter, n)
            await wait_all_tasks_blocked()  # wait in a known order
        async with condition:
            condition.notify(2)
        await wait_all_tasks_blocked()
        assert sorted(woken) == [0, 1]
        async with condition:
            condition.notify_all()
    assert sorted(woken) == [0, 1, 2]


async def test_primitives_created_outside_a_run_adapt() -> None:
    # anyio creates adapters when there is no loop; they bind to us on first use.
    event = await nursery_io.to_thread.run_sync(Event)
    event.set()
    await event.wait()
