"""nursery_io.run itself: results, misuse errors, crashes, resource hygiene, threads."""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import socket
import threading
import traceback
from typing import Any

import pytest
import sniffio

import nursery_io
from nursery_io import lowlevel
from nursery_io.testing import MockClock, wait_all_tasks_blocked

# ----- results and arguments -----


def test_returns_value_and_passes_args() -> None:
    async def main(a: int, b: int) -> tuple[int, int]:
        await nursery_io.sleep(0)
        return a, b

    assert nursery_io.run(main, 1, 2) == (1, 2)


def test_accepts_partial_and_async_callable_object() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    class AsyncCallable:
        async def __call__(self, x: int) -> int:
            return x * 2

    assert nursery_io.run(functools.partial(add, 1), 2) == 3
    assert nursery_io.run(AsyncCallable(), 21) == 42


def test_sequential_runs_are_independent() -> None:
    seen = []

    async def main() -> None:
        seen.append((lowlevel.current_root_task(), lowlevel.current_token()))

    nursery_io.run(main)
    nursery_io.run(main)
    assert seen[0][0] is not seen[1][0]
    assert seen[0][1] is not seen[1][1]


def test_exception_from_main_propagates_with_traceback() -> None:
    async def inner() -> None:
        await nursery_io.sleep(0)
        raise ValueError("boom")

    async def main() -> None:
        await inner()

    with pytest.raises(ValueError, match="boom") as info:
        nursery_io.run(main)
    names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert names[-2:] == ["main", "inner"]


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_base_exceptions_from_main_propagate(exc_type: type[BaseException]) -> None:
    async def main() -> None:
        raise exc_type

    with pytest.raises(exc_type):
        nursery_io.run(main)


# ----- misuse -----


def test_coroutine_object_is_rejected_without_never_awaited_warning() -> None:
    async def main() -> None:
        pass

    coro = main()
    with pytest.raises(TypeError, match="coroutine object") as info:
        nursery_io.run(coro)  # type: ignore[arg-type]
    assert str(info.value).startswith(
        "nursery_io was expecting an async function, but instead it got a coroutine object <"
    )
    assert "run(main, ...)" in str(info.value)
    # closed, so no "coroutine was never awaited" RuntimeWarning (an error under our config)
    assert coro.cr_frame is None


def test_sync_function_is_rejected() -> None:
    def not_async() -> int:
        return 1

    with pytest.raises(TypeError, match="async def"):
        nursery_io.run(not_async)  # type: ignore[arg-type]


def test_async_generator_function_is_rejected() -> None:
    async def agen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="async generator"):
        nursery_io.run(agen)


def test_foreign_awaitable_returned_is_rejected() -> None:
    loop = asyncio.new_event_loop()
    try:

        def returns_future() -> Any:
            return loop.create_future()

        with pytest.raises(TypeError, match="asyncio/twisted/tornado"):
            nursery_io.run(returns_future)
    finally:
        loop.close()


def test_messages_name_trio_in_trio_mode() -> None:
    from nursery_io._core import _context

    async def main() -> None:
        pass

    def not_async() -> None:
        pass

    _context.set_library_name("trio")
    try:
        coro = main()
        with pytest.raises(TypeError, match="^Trio was expecting an async function, but instead"):
            nursery_io.run(coro)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="^Trio expected an async function, but 'test_"):
            nursery_io.run(not_async)  # type: ignore[arg-type]
    finally:
        _context.set_library_name("nursery_io")


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # abandoned generators (Trio warns too)
def test_frameless_awaitable_runs_unprotected() -> None:
    """An async generator's ``__anext__()`` has no frame of its own; its body still runs as
    user code, where Ctrl-C may land (as in Trio)."""
    seen: list[bool] = []

    async def agen() -> Any:
        seen.append(nursery_io.lowlevel.currently_ki_protected())
        yield

    nursery_io.run(agen().__anext__)

    async def main() -> None:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(agen().__anext__)

    nursery_io.run(main)
    assert seen == [False, False]


def test_sync_function_sees_the_library_in_sniffio() -> None:
    import sniffio

    seen: list[str] = []

    async def body() -> None:
        pass

    def returns_coroutine() -> Any:
        seen.append(sniffio.current_async_library())
        return body()

    nursery_io.run(returns_coroutine)
    assert seen == ["nursery_io"]


def test_run_inside_run_is_rejected() -> None:
    async def inner() -> None:
        pass

    async def main() -> None:
        with pytest.raises(RuntimeError, match="from inside a run"):
            nursery_io.run(inner)

    nursery_io.run(main)


def test_awaiting_asyncio_future_in_a_task_raises_type_error() -> None:
    loop = asyncio.new_event_loop()
    try:

        async def main() -> None:
            with pytest.raises(TypeError, match="asyncio"):
                await loop.create_future()
            # the task survives the mistake and can keep going
            await nursery_io.sleep(0)

        nursery_io.run(main)
    finally:
        loop.close()


def test_async_apis_outside_a_run_raise_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="inside a nursery_io run"):
        nursery_io.current_time()
    with pytest.raises(RuntimeError, match="inside a nursery_io run"):
        lowlevel.current_task()
    with pytest.raises(RuntimeError, match="inside a nursery_io run"):
        lowlevel.current_token()
    with pytest.raises(RuntimeError, match="inside a nursery_io run"):
        nursery_io.open_nursery()
    with pytest.raises(RuntimeError, match="inside a nursery_io run"):
        with nursery_io.CancelScope():
            pass
    coro = nursery_io.sleep(1)
    with pytest.raises(RuntimeError, match="inside a nursery_io run"):
        coro.send(None)
    coro = lowlevel.checkpoint_if_cancelled()
    with pytest.raises(RuntimeError, match="inside a nursery_io run"):
        coro.send(None)
    assert not lowlevel.in_run()
    assert not lowlevel.in_task()


def test_nursery_io_awaitables_under_asyncio_fail_loudly() -> None:
    async def main() -> None:
        await lowlevel.checkpoint()

    with pytest.raises(RuntimeError):
        asyncio.run(main())


# ----- Cancelled never escapes -----


def test_cancelled_raised_by_hand_from_main_propagates() -> None:
    # As in Trio: a stray Cancelled comes out of run() as it is.
    async def main() -> None:
        saved = None
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            try:
                await nursery_io.sleep(1)
            except nursery_io.Cancelled as exc:
                saved = exc
        assert saved is not None
        raise saved

    with pytest.raises(nursery_io.Cancelled):
        nursery_io.run(main)
    assert nursery_io.TrioInternalError is nursery_io.InternalError


def test_stray_cancelled_inside_a_group_from_main_propagates() -> None:
    async def main() -> None:
        saved = None
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            try:
                await nursery_io.sleep(1)
            except nursery_io.Cancelled as exc:
                saved = exc
        assert saved is not None
        raise BaseExceptionGroup("stray", [saved])

    with pytest.raises(BaseExceptionGroup) as info:
        nursery_io.run(main)
    assert isinstance(info.value.exceptions[0], nursery_io.Cancelled)


def test_cancelled_child_of_uncancelled_nursery_does_not_escape() -> None:
    # A child re-raising a stale Cancelled: the nursery cancels itself because a child
    # failed, and then its own scope absorbs the Cancelled (same as Trio).
    async def main() -> str:
        saved = []
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            try:
                await nursery_io.sleep(1)
            except nursery_io.Cancelled as exc:
                saved.append(exc)

        async def child() -> None:
            raise saved[0]

        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(child)
        return "done"

    assert nursery_io.run(main) == "done"


# ----- crashes -----


def test_system_task_crash_is_internal_error_and_main_is_cancelled() -> None:
    events = []

    async def crashes() -> None:
        await nursery_io.sleep(0)
        raise ValueError("system task failed")

    async def main() -> None:
        lowlevel.spawn_system_task(crashes)
        try:
            await nursery_io.sleep_forever()
        finally:
            events.append(("main cleanup in task", lowlevel.in_task()))

    with pytest.raises(nursery_io.InternalError) as info:
        nursery_io.run(main)
    cause = info.value.__cause__
    assert isinstance(cause, BaseExceptionGroup)
    assert cause.subgroup(ValueError) is not None
    assert events == [("main cleanup in task", True)]


def test_run_sync_soon_callback_crash_cancels_everything_gracefully() -> None:
    events = []

    def bad() -> None:
        raise ValueError("callback failed")

    async def child() -> None:
        try:
            await nursery_io.sleep_forever()
        finally:
            events.append("child cleanup")

    async def main() -> None:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(child)
            await wait_all_tasks_blocked()
            lowlevel.current_token().run_sync_soon(bad)
            try:
                await nursery_io.sleep_forever()
            finally:
                events.append(("main cleanup in task", lowlevel.in_task()))

    # Trio's shape: the failure surfaces through the system nursery and the one around it.
    with pytest.raises(nursery_io.InternalError) as info:
        nursery_io.run(main)
    cause = info.value.__cause__
    assert isinstance(cause, BaseExceptionGroup)
    assert cause.subgroup(ValueError) is not None
    assert sorted(map(str, events)) == ["('main cleanup in task', True)", "child cleanup"]


def test_abort_function_that_raises_ends_run_with_internal_error() -> None:
    async def main() -> None:
        def abort(raise_cancel: lowlevel.RaiseCancelT) -> lowlevel.Abort:
            raise ValueError("broken abort")

        with nursery_io.CancelScope() as scope:
            lowlevel.current_token().run_sync_soon(scope.cancel)
            await lowlevel.wait_task_rescheduled(abort)

    # Must not hang: the task is woken anyway and the run ends with the error.
    with pytest.raises(nursery_io.InternalError, match="abort function") as info:
        nursery_io.run(main)
    assert isinstance(info.value.__cause__, ValueError)


def test_abort_function_returning_garbage_ends_run_with_internal_error() -> None:
    async def main() -> None:
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            await lowlevel.wait_task_rescheduled(lambda _: "nope")  # type: ignore[arg-type,return-value]

    with pytest.raises(nursery_io.InternalError, match="Abort value"):
        nursery_io.run(main)


def test_exception_escaping_the_loop_still_unwinds_every_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Something raising out of the loop itself (here a broken clock; in practice a test
    # timeout's signal handler): every task's cleanup must still run before run() returns,
    # and nothing may be left for the garbage collector to complain about later.
    unraisable: list[Any] = []
    monkeypatch.setattr("sys.unraisablehook", unraisable.append)
    events = []

    class BrokenClock(nursery_io.abc.Clock):
        # A MockClock that can break (MockClock itself is final, as in Trio).
        def __init__(self) -> None:
            self.broken = False
            self._mock = MockClock()

        def start_clock(self) -> None:
            self._mock.start_clock()

        def current_time(self) -> float:
            return self._mock.current_time()

        def deadline_to_sleep_time(self, deadline: float) -> float:
            if self.broken:
                raise ZeroDivisionError("clock broke")
            return self._mock.deadline_to_sleep_time(deadline)

    clock = BrokenClock()

    async def child() -> None:
        try:
            await nursery_io.sleep_forever()
        finally:
            events.append("child cleanup")

    async def main() -> None:
        try:
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(child)
                with nursery_io.CancelScope():
                    await wait_all_tasks_blocked()
                    clock.broken = True
                    await nursery_io.sleep(10)
        finally:
            events.append("main cleanup")

    with pytest.raises(nursery_io.InternalError) as info:
        nursery_io.run(main, clock=clock)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert sorted(events) == ["child cleanup", "main cleanup"]
    gc.collect()
    assert unraisable == []


# ----- run state visible inside -----


def test_in_run_and_in_task() -> None:
    seen = []

    def callback() -> None:
        seen.append(("callback", lowlevel.in_run(), lowlevel.in_task()))

    async def main() -> None:
        seen.append(("task", lowlevel.in_run(), lowlevel.in_task()))
        lowlevel.current_token().run_sync_soon(callback)
        await wait_all_tasks_blocked()

    nursery_io.run(main)
    assert seen == [("task", True, True), ("callback", True, False)]
    assert lowlevel.in_trio_run is lowlevel.in_run
    assert lowlevel.in_trio_task is lowlevel.in_task


def test_task_tree_and_names() -> None:
    async def main() -> None:
        me = lowlevel.current_task()
        root = lowlevel.current_root_task()
        assert root is not None and root is not me
        assert me.name.endswith("test_task_tree_and_names.<locals>.main")
        assert me.parent_nursery is not None
        assert me.parent_nursery.parent_task is root
        assert root.parent_nursery is None
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(nursery_io.sleep, 0, name="explicit")
            nursery.start_soon(functools.partial(nursery_io.sleep, 0))
            nursery.start_soon(nursery_io.sleep, 0, name=12345)
            names = sorted(task.name for task in nursery.child_tasks)
        assert names == ["12345", "explicit", "nursery_io._timeouts.sleep"]

    nursery_io.run(main)


def test_default_clock_is_offset_and_custom_clock_is_used() -> None:
    async def main() -> float:
        return nursery_io.current_time()

    # The default clock starts far from zero so code can't assume otherwise.
    assert nursery_io.run(main) >= 10_000
    clock = MockClock()

    async def with_clock() -> None:
        assert lowlevel.current_clock() is clock
        assert nursery_io.current_time() == 0.0

    nursery_io.run(with_clock, clock=clock)


@pytest.mark.filterwarnings(
    "ignore::nursery_io.TrioDeprecationWarning"
)  # the deprecated mode itself
def test_strict_exception_groups_false_unwraps_single_error() -> None:
    async def fails() -> None:
        raise KeyError("only")

    async def main() -> None:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(fails)

    with pytest.raises(KeyError):
        nursery_io.run(main, strict_exception_groups=False)
    with pytest.RaisesGroup(KeyError):
        nursery_io.run(main)


# ----- resource hygiene -----


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _busy_main() -> Any:
    async def main() -> None:
        a, b = socket.socketpair()
        try:
            a.setblocking(False)
            b.setblocking(False)
            async with nursery_io.open_nursery() as nursery:

                async def reader() -> None:
                    await lowlevel.wait_readable(a)
                    a.recv(10)

                nursery.start_soon(reader)
                await wait_all_tasks_blocked()
                b.send(b"x")
            with nursery_io.move_on_after(0.001):
                await lowlevel.wait_readable(a)
            token = lowlevel.current_token()
            done = threading.Event()
            thread = threading.Thread(target=lambda: token.run_sync_soon(done.set))
            thread.start()
            thread.join()
            while not done.is_set():
                await nursery_io.sleep(0)
        finally:
            a.close()
            b.close()

    return main


def test_no_fd_or_thread_leaked_by_runs() -> None:
    main = _busy_main()
    nursery_io.run(main)  # warm up lazily created process-wide state
    fds = _open_fds()
    threads = set(threading.enumerate())
    for _ in range(5):
        nursery_io.run(main)
    assert _open_fds() == fds
    assert set(threading.enumerate()) == threads


def test_no_fd_leaked_by_failed_or_crashed_runs() -> None:
    async def fails() -> None:
        raise ValueError

    async def crashes() -> None:
        lowlevel.current_token().run_sync_soon(lambda: 1 / 0)
        await nursery_io.sleep_forever()

    nursery_io.run(_busy_main())
    fds = _open_fds()
    with pytest.raises(ValueError):
        nursery_io.run(fails)
    with pytest.raises(nursery_io.InternalError):
        nursery_io.run(crashes)
    assert _open_fds() == fds


# ----- threads -----


def test_two_runs_in_two_threads_at_once() -> None:
    # Each run sends messages into the other through the other's token while both loops
    # are live; each must see only its own run state.
    tokens: dict[str, lowlevel.RunToken] = {}
    inboxes: dict[str, tuple[list[str], lowlevel.ParkingLot]] = {}
    both_ready = threading.Barrier(2, timeout=30)
    results: dict[str, Any] = {}
    var = lowlevel.RunVar[str]("who")

    def receive(name: str, message: str) -> None:
        assert lowlevel.current_token() is tokens[name]
        inbox, lot = inboxes[name]
        inbox.append(message)
        lot.unpark()

    def thread_main(me: str, other: str) -> None:
        async def main() -> list[str]:
            var.set(me)
            inboxes[me] = ([], lowlevel.ParkingLot())
            tokens[me] = lowlevel.current_token()
            # Blocks this loop for a moment, before anything else runs in it.
            both_ready.wait()
            for n in range(3):
                tokens[other].run_sync_soon(receive, other, f"{me}{n}")
            inbox, lot = inboxes[me]
            while len(inbox) < 3:
                await lot.park()
            assert var.get() == me
            assert sniffio.current_async_library() == "nursery_io"
            return inbox

        try:
            results[me] = nursery_io.run(main)
        except BaseException as exc:  # reported by the assertion below
            results[me] = exc

    threads = [
        threading.Thread(target=thread_main, args=names) for names in (("a", "b"), ("b", "a"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert results == {"a": ["b0", "b1", "b2"], "b": ["a0", "a1", "a2"]}
    assert tokens["a"] is not tokens["b"]


def test_run_in_a_worker_thread_leaves_signal_handling_alone() -> None:
    import signal

    before = signal.getsignal(signal.SIGINT)
    result = []

    def thread_main() -> None:
        async def main() -> str:
            await nursery_io.sleep(0)
            return "ok"

        result.append(nursery_io.run(main))

    thread = threading.Thread(target=thread_main)
    thread.start()
    thread.join()
    assert result == ["ok"]
    assert signal.getsignal(signal.SIGINT) is before
