"""Worker threads, calls back into the run, and blocking portals (anyio API)."""

from __future__ import annotations

import contextvars
import threading

import anyio
import pytest
import sniffio
from anyio import (
    CancelScope,
    Event,
    create_task_group,
    from_thread,
    get_cancelled_exc_class,
    to_thread,
    wait_all_tasks_blocked,
)
from anyio.from_thread import start_blocking_portal

import nursery_io

pytestmark = pytest.mark.anyio

var: contextvars.ContextVar[int] = contextvars.ContextVar("var", default=0)


async def test_run_sync_in_a_worker_without_a_library() -> None:
    def work() -> tuple[int, str | None]:
        try:
            library: str | None = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            library = None
        return threading.get_ident(), library

    ident, library = await to_thread.run_sync(work)
    assert ident != threading.get_ident()
    assert library is None


async def test_calls_back_into_the_run_see_the_threads_context() -> None:
    async def read_async() -> tuple[int, str]:
        await anyio.sleep(0)
        return var.get(), sniffio.current_async_library()

    def worker() -> tuple[tuple[int, str], int]:
        var.set(6)
        return from_thread.run(read_async), from_thread.run_sync(var.get)

    var.set(1)
    assert await to_thread.run_sync(worker) == ((6, "nursery_io"), 6)
    assert var.get() == 1  # the worker's changes don't leak back


async def test_from_thread_run_is_cancelled_with_the_waiting_task() -> None:
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    cancelled = get_cancelled_exc_class()

    def worker() -> None:
        with pytest.raises(cancelled):
            from_thread.run(forever)

    with anyio.move_on_after(0.05) as scope:
        # The thread can't be abandoned: its result comes back, and the cancellation
        # waits for the next checkpoint.
        assert await to_thread.run_sync(worker) is None
        await anyio.sleep(0)
    assert scope.cancelled_caught
    assert started.is_set()


async def test_abandoned_thread_calls_back_into_a_system_task() -> None:
    # The waiting task cancels itself and abandons the thread; what the thread runs in
    # the run must not be cancelled with it.
    release = Event()
    finished = Event()

    async def outlives_the_waiter() -> None:
        scope.cancel()
        with anyio.fail_after(5):
            await release.wait()
        finished.set()

    with CancelScope() as scope:
        await to_thread.run_sync(from_thread.run, outlives_the_waiter, abandon_on_cancel=True)
    assert scope.cancelled_caught
    release.set()
    with anyio.fail_after(5):
        await finished.wait()


async def test_check_cancelled_in_a_worker() -> None:
    entered = threading.Event()

    def polls() -> None:
        entered.set()
        while True:
            from_thread.check_cancelled()
            threading.Event().wait(0.001)

    with anyio.move_on_after(0.02) as scope:
        # The Cancelled raised in the worker is the scope's own: it propagates to it.
        await to_thread.run_sync(polls)
    assert scope.cancelled_caught and entered.is_set()


async def test_limiter_bounds_the_threads() -> None:
    limiter = anyio.CapacityLimiter(2)
    active = 0
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        threading.Event().wait(0.01)
        with lock:
            active -= 1

    async with create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(lambda: to_thread.run_sync(work, limiter=limiter))
    assert peak <= 2
    assert limiter.borrowed_tokens == 0


def test_blocking_portal_from_sync_code() -> None:
    var.set(5)

    async def add(a: int, b: int) -> tuple[int, str]:
        await anyio.sleep(0)
        return a + b + var.get(), sniffio.current_async_library()

    with start_blocking_portal("nursery_io") as portal:
        assert portal.call(add, 1, 2) == (8, "nursery_io")
        assert portal.call(var.get) == 5  # contextvars travel into the portal's run
        future = portal.start_task_soon(add, 3, 4)
        assert future.result() == (12, "nursery_io")


async def test_blocking_portal_from_async_code() -> None:
    # Blocking this run's thread on *another* run is allowed (only blocking on itself
    # would deadlock).
    with start_blocking_portal("nursery_io") as portal:
        assert portal.call(anyio.sleep, 0) is None
        token = portal.call(nursery_io.lowlevel.current_token)
    assert token is not nursery_io.lowlevel.current_token()


async def test_run_sync_soon_and_run_finished() -> None:
    token = anyio.lowlevel.current_token()
    done = Event()
    seen: list[int] = []

    def later() -> None:
        seen.append(var.get())
        done.set()

    def in_thread() -> None:
        var.set(9)
        token.backend_class.run_sync_soon(later, (), token.native_token)

    await to_thread.run_sync(in_thread)
    await done.wait()
    assert seen == [9]


def test_calling_a_finished_run_raises_run_finished_error() -> None:
    async def get_token() -> anyio.lowlevel.EventLoopToken:
        return anyio.lowlevel.current_token()

    token = anyio.run(get_token, backend="nursery_io")
    with pytest.raises(anyio.RunFinishedError):
        from_thread.run_sync(print, token=token)
    with pytest.raises(anyio.RunFinishedError):
        from_thread.run(anyio.sleep, 0, token=token)


async def test_calling_back_from_the_runs_own_thread_is_refused() -> None:
    with pytest.raises(RuntimeError):
        from_thread.run_sync(print, token=anyio.lowlevel.current_token())
    await wait_all_tasks_blocked()


def test_limiter_created_outside_any_loop_is_honoured() -> None:
    # An anyio.CapacityLimiter made before the run is not the backend's own type; when it
    # is full, a second thread must wait for the token, not fail.
    import functools
    import time

    limiter = anyio.CapacityLimiter(1)
    running = 0
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    async def main() -> None:
        async with create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(functools.partial(to_thread.run_sync, work, limiter=limiter))

    anyio.run(main, backend="nursery_io")
    assert peak == 1
