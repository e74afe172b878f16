"""to_thread / from_thread: worker threads as seen from tasks."""

from __future__ import annotations

import contextvars
import threading
import time
from functools import partial

import pytest
import sniffio

import nursery_io
from nursery_io import from_thread, lowlevel, to_thread
from nursery_io._kernel.workers import worker_statistics
from nursery_io.testing import assert_checkpoints, wait_all_tasks_blocked

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


async def test_result_and_exception_come_back() -> None:
    assert await to_thread.run_sync(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        await to_thread.run_sync(lambda: 1 / 0)


async def test_runs_in_another_thread_with_the_given_name() -> None:
    main = threading.get_ident()
    ident, name = await to_thread.run_sync(
        lambda: (threading.get_ident(), threading.current_thread().name), thread_name="hashing"
    )
    assert ident != main
    assert name == "hashing"


async def test_contextvars_are_copied_and_sniffio_sees_no_library() -> None:
    request_id.set("abc")

    def in_thread() -> tuple[str, str | None]:
        try:
            library: str | None = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            library = None
        # A write in the worker must not leak back into the task.
        value = request_id.get()
        request_id.set("changed in thread")
        return value, library

    assert await to_thread.run_sync(in_thread) == ("abc", None)
    assert request_id.get() == "abc"
    assert sniffio.current_async_library() == "nursery_io"


async def test_default_limiter_is_per_run_and_caps_concurrency() -> None:
    limiter = to_thread.current_default_thread_limiter()
    assert limiter.total_tokens == 40
    assert to_thread.current_default_thread_limiter() is limiter
    limiter.total_tokens = 2
    running = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(5)
        with lock:
            running -= 1

    async with nursery_io.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(to_thread.run_sync, work)
        await wait_all_tasks_blocked()
        await nursery_io.sleep(0.05)
        assert limiter.borrowed_tokens == 2
        assert limiter.statistics().tasks_waiting == 3
        release.set()
    assert peak == 2
    assert limiter.borrowed_tokens == 0


async def test_is_a_checkpoint_with_or_without_a_free_token() -> None:
    with assert_checkpoints():
        await to_thread.run_sync(int)
    # Already cancelled: raises before any thread runs.
    ran = threading.Event()
    with nursery_io.CancelScope() as scope:
        scope.cancel()
        await to_thread.run_sync(ran.set)
    assert scope.cancelled_caught and not ran.is_set()
    # Waiting for a token is cancellable, and nothing runs.
    limiter = nursery_io.CapacityLimiter(1)
    await limiter.acquire()
    with nursery_io.move_on_after(0.02) as scope:
        await to_thread.run_sync(ran.set, limiter=limiter)
    assert scope.cancelled_caught and not ran.is_set()
    limiter.release()
    assert limiter.borrowed_tokens == 0


async def test_waiters_for_a_token_are_served_in_order() -> None:
    limiter = nursery_io.CapacityLimiter(1)
    order: list[int] = []
    await limiter.acquire()
    async with nursery_io.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(partial(to_thread.run_sync, order.append, i, limiter=limiter))
            await wait_all_tasks_blocked()
        limiter.release()
    assert order == [0, 1, 2, 3]


def test_default_limiter_is_fresh_in_each_run() -> None:
    async def get() -> object:
        return to_thread.current_default_thread_limiter()

    assert nursery_io.run(get) is not nursery_io.run(get)


async def test_custom_limiter() -> None:
    limiter = nursery_io.CapacityLimiter(1)
    assert await to_thread.run_sync(lambda: limiter.borrowed_tokens, limiter=limiter) == 1
    assert limiter.borrowed_tokens == 0


async def test_not_cancellable_once_started_without_abandon() -> None:
    finished = threading.Event()

    def slow() -> str:
        time.sleep(0.1)
        finished.set()
        return "done"

    with nursery_io.CancelScope() as scope:
        scope.cancel()
        # Already cancelled before starting: nothing runs.
        with pytest.raises(nursery_io.Cancelled):
            await to_thread.run_sync(slow)
    assert not finished.is_set()

    with nursery_io.move_on_after(0.01) as scope:
        result = await to_thread.run_sync(slow)
    # The deadline passed while the thread ran; the call still returned its result.
    assert result == "done"
    assert finished.is_set()


async def test_abandon_on_cancel_returns_immediately() -> None:
    release = threading.Event()
    limiter = nursery_io.CapacityLimiter(1)
    with nursery_io.move_on_after(0.01) as scope:
        await to_thread.run_sync(release.wait, 5, abandon_on_cancel=True, limiter=limiter)
    assert scope.cancelled_caught
    # The abandoned thread keeps its token until it really finishes.
    assert limiter.borrowed_tokens == 1
    release.set()
    with nursery_io.fail_after(5):
        while limiter.borrowed_tokens:
            await nursery_io.sleep(0.001)


async def test_threads_are_reused() -> None:
    await to_thread.run_sync(int)
    before = worker_statistics()
    for _ in range(50):
        await to_thread.run_sync(int)
    after = worker_statistics()
    assert after.jobs_run - before.jobs_run == 50
    assert after.threads_alive <= before.threads_alive + 1


async def test_from_thread_is_served_by_the_waiting_task() -> None:
    request_id.set("outer")
    parent = lowlevel.current_task()

    async def async_part(x: int) -> tuple[object, str, int]:
        await nursery_io.sleep(0)
        return lowlevel.current_task(), request_id.get(), x * 2

    def in_thread() -> tuple[object, object]:
        sync_result = from_thread.run_sync(lambda: (lowlevel.current_task(), request_id.get()))
        async_result = from_thread.run(async_part, 21)
        return sync_result, async_result

    sync_result, async_result = await to_thread.run_sync(in_thread)
    assert sync_result == (parent, "outer")
    assert async_result == (parent, "outer", 42)


async def test_from_thread_inherits_cancellation_of_the_waiting_task() -> None:
    entered = threading.Event()

    def in_thread() -> str:
        entered.set()
        try:
            from_thread.run(nursery_io.sleep_forever)
        except nursery_io.Cancelled:
            return "cancelled inside the callback"
        return "not cancelled"

    async with nursery_io.open_nursery() as nursery:
        results: list[str] = []

        async def caller() -> None:
            results.append(await to_thread.run_sync(in_thread))

        nursery.start_soon(caller)
        await wait_all_tasks_blocked()
        await to_thread.run_sync(entered.wait, 5)
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert results == ["cancelled inside the callback"]


async def test_check_cancelled_in_worker() -> None:
    started = threading.Event()
    seen: list[str] = []

    def loop() -> None:
        started.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                from_thread.check_cancelled()
            except nursery_io.Cancelled:
                seen.append("cancelled")
                raise
            time.sleep(0.001)

    with nursery_io.CancelScope() as scope:
        async with nursery_io.open_nursery() as nursery:

            async def canceller() -> None:
                await to_thread.run_sync(started.wait, 5)
                scope.cancel()

            nursery.start_soon(canceller)
            await to_thread.run_sync(loop)
    assert scope.cancelled_caught
    assert seen == ["cancelled"]


def test_from_thread_with_explicit_token_from_a_foreign_thread() -> None:
    results: list[object] = []

    async def main() -> None:
        token = lowlevel.current_token()
        done = nursery_io.Event()

        def foreign() -> None:
            results.append(from_thread.run_sync(lowlevel.in_run, token=token))

            async def double(x: int) -> int:
                await nursery_io.sleep(0)
                return 2 * x

            results.append(from_thread.run(double, 5, token=token))
            results.append(from_thread.run(double, 6, trio_token=token))
            token.run_sync_soon(done.set)

        thread = threading.Thread(target=foreign)
        thread.start()
        await done.wait()
        thread.join()

    nursery_io.run(main)
    assert results == [True, 10, 12]


def test_from_thread_errors() -> None:
    async def main() -> None:
        # In the run's own thread: no worker, so no run to call back into (Trio's texts).
        with pytest.raises(RuntimeError, match="wasn't created by Trio, pass kwarg trio_token"):
            from_thread.run_sync(int)
        with pytest.raises(RuntimeError, match="blocking function; call it from a thread"):
            from_thread.run_sync(int, token=lowlevel.current_token())
        with pytest.raises(RuntimeError, match="can't check for cancellation"):
            from_thread.check_cancelled()

    nursery_io.run(main)
    # A thread that no run started must name the run it wants.
    with pytest.raises(RuntimeError, match="token"):
        from_thread.run_sync(int)


def test_from_thread_after_run_finished() -> None:
    async def main() -> lowlevel.RunToken:
        return lowlevel.current_token()

    token = nursery_io.run(main)
    with pytest.raises(nursery_io.RunFinishedError):
        from_thread.run_sync(int, token=token)


async def test_active_thread_count_and_waiting_for_threads() -> None:
    from nursery_io.testing import active_thread_count, wait_all_threads_completed

    assert active_thread_count() == 0
    with assert_checkpoints():
        await wait_all_threads_completed()  # nothing running: returns, but checkpoints
    release = threading.Event()
    async with nursery_io.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(to_thread.run_sync, release.wait)
        await wait_all_tasks_blocked()
        assert active_thread_count() == 3
        waited = nursery_io.Event()

        async def waiter() -> None:
            await wait_all_threads_completed()
            waited.set()

        nursery.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert not waited.is_set()
        release.set()
    assert waited.is_set()
    assert active_thread_count() == 0


async def test_abandoned_threads_still_count_until_they_finish() -> None:
    from nursery_io.testing import active_thread_count, wait_all_threads_completed

    release = threading.Event()
    with nursery_io.move_on_after(0.01):
        await to_thread.run_sync(release.wait, abandon_on_cancel=True)
    assert active_thread_count() == 1  # the task stopped waiting; the thread did not
    release.set()
    with nursery_io.fail_after(10):
        await wait_all_threads_completed()
    assert active_thread_count() == 0
