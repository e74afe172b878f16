"""Guest mode: ``lowlevel.start_guest_run`` inside an asyncio loop and a callback-driven host.

Two hosts:

* :class:`CallbackHost`, a minimal loop of our own that stands in for a GUI toolkit's: a
  queue of callbacks, run one at a time on the thread that runs the loop. It checks that the
  run calls ``run_sync_soon_not_threadsafe`` only from the host thread and
  ``run_sync_soon_threadsafe`` only from other threads, as Trio does;
* asyncio (``asyncio.run`` with ``loop.call_soon_threadsafe``).

The side-by-side scenarios run the same program as a guest of Trio and of nursery_io, on the
same host, and compare what they observe.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
import warnings
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import outcome
import pytest
import sniffio
import trio
import trio.lowlevel
import trio.testing

import nursery_io
import nursery_io.lowlevel
import nursery_io.testing
from nursery_io._core import _guest
from nursery_io._core._context import current_runner
from nursery_io._core._runner import Runner
from nursery_io._kernel.kernel import Kernel

InHost = Callable[[Callable[[], object]], None]
Trace = list[Any]

# Seconds a host waits for its guest's next callback before declaring the run stuck.
HOST_PATIENCE = 30.0


# ----- hosts -----


class CallbackHost:
    """A host loop driven by a queue of callbacks, like a GUI toolkit's."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Callable[[], object]] = queue.Queue()
        self.thread = threading.current_thread()
        self.misuse: list[str] = []

    def threadsafe(self, fn: Callable[[], object]) -> None:
        if threading.current_thread() is self.thread:
            self.misuse.append("run_sync_soon_threadsafe called from the host thread")
        self.queue.put(fn)

    def not_threadsafe(self, fn: Callable[[], object]) -> None:
        if threading.current_thread() is not self.thread:
            self.misuse.append("run_sync_soon_not_threadsafe called from another thread")
        self.queue.put(fn)

    def in_host(self, fn: Callable[[], object]) -> None:
        self.queue.put(fn)

    def run(
        self,
        lib: ModuleType,
        async_fn: Callable[..., Awaitable[object]],
        *args: object,
        after_start: Callable[[], object] | None = None,
        **kwargs: Any,
    ) -> outcome.Outcome[Any]:
        done: list[outcome.Outcome[Any]] = []
        lib.lowlevel.start_guest_run(
            async_fn,
            *args,
            run_sync_soon_threadsafe=self.threadsafe,
            run_sync_soon_not_threadsafe=self.not_threadsafe,
            done_callback=done.append,
            **kwargs,
        )
        try:
            if after_start is not None:
                after_start()
            while not done:
                # A run that stops asking for callbacks is stuck: fail instead of hanging.
                self.queue.get(timeout=HOST_PATIENCE)()
        except BaseException:
            # The host stops: its pending callbacks, the only references to an unfinished
            # run, go away (the run's tasks may still refer to this host object).
            self.queue = queue.Queue()
            raise
        assert self.misuse == []
        return done[0]


def run_on_callback_host(
    lib: ModuleType, fn: Callable[[InHost], Awaitable[object]], **kwargs: Any
) -> outcome.Outcome[Any]:
    host = CallbackHost()
    return host.run(lib, fn, host.in_host, **kwargs)


def run_on_asyncio(
    lib: ModuleType,
    fn: Callable[[InHost], Awaitable[object]],
    *,
    pass_not_threadsafe: bool = True,
    **kwargs: Any,
) -> outcome.Outcome[Any]:
    async def host_main() -> outcome.Outcome[Any]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[outcome.Outcome[Any]] = loop.create_future()
        kwargs.setdefault("host_uses_signal_set_wakeup_fd", True)
        lib.lowlevel.start_guest_run(
            fn,
            loop.call_soon_threadsafe,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon if pass_not_threadsafe else None,
            done_callback=done.set_result,
            **kwargs,
        )
        return await asyncio.wait_for(done, HOST_PATIENCE)

    return asyncio.run(host_main())


HOSTS = {"callbacks": run_on_callback_host, "asyncio": run_on_asyncio}


@pytest.fixture(params=sorted(HOSTS))
def host(request: pytest.FixtureRequest) -> Callable[..., outcome.Outcome[Any]]:
    return HOSTS[request.param]  # type: ignore[return-value]


def shape(result: outcome.Outcome[Any] | BaseException) -> Any:
    """What an outcome or exception looks like, minus anything that names the library."""
    if isinstance(result, outcome.Value):
        return ("value", result.value)
    exc = result.error if isinstance(result, outcome.Error) else result
    if isinstance(exc, BaseExceptionGroup):
        return (type(exc).__name__, sorted((shape(e) for e in exc.exceptions), key=repr))
    context = shape(exc.__context__) if exc.__context__ is not None else None
    return (type(exc).__name__, exc.args, context)


def _testing(lib: ModuleType) -> Any:
    return importlib.import_module(lib.__name__ + ".testing")


def _normalize(lib: ModuleType, value: Any) -> Any:
    if isinstance(value, str):
        return "LIB" if value == lib.__name__ else value
    if isinstance(value, (list, tuple)):
        return type(value)(_normalize(lib, v) for v in value)
    return value


@pytest.fixture(autouse=True)
def _no_run_left_behind() -> Iterator[None]:
    # A guest run that got stuck (a failing test) stays the thread's current run, with its
    # SIGINT handler and async generator hooks installed: undo that here, so one failure
    # doesn't fail every test after it.
    hooks = sys.get_asyncgen_hooks()
    yield
    leaked = []
    for context in (
        nursery_io._core._context.GLOBAL_RUN_CONTEXT,
        trio._core._run.GLOBAL_RUN_CONTEXT,
    ):
        if hasattr(context, "runner"):
            leaked.append(context)
            del context.runner
    if leaked:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.set_asyncgen_hooks(*hooks)
        signal.set_wakeup_fd(-1)
        pytest.fail("the test left a run behind")


# ----- side by side with Trio -----

Scenario = Callable[[ModuleType, InHost, Trace], Awaitable[object]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


@scenario
async def returns_a_value(lib: ModuleType, in_host: InHost, trace: Trace) -> object:
    await lib.lowlevel.checkpoint()
    return "ok"


@scenario
async def raises_from_the_main_task(lib: ModuleType, in_host: InHost, trace: Trace) -> object:
    await lib.sleep(0.001)
    raise KeyError("whoopsiedaisy")


@scenario
async def raises_an_exception_group(lib: ModuleType, in_host: InHost, trace: Trace) -> object:
    async def fail(exc: Exception) -> None:
        raise exc  # both in their first step, so neither is cancelled by the other

    async with lib.open_nursery() as nursery:
        nursery.start_soon(fail, ValueError("a"))
        nursery.start_soon(fail, KeyError("b"))
    return "unreachable"


@scenario
async def host_wakes_a_task(lib: ModuleType, in_host: InHost, trace: Trace) -> object:
    event = lib.Event()

    def set_it() -> None:
        trace.append("host sets the event")
        event.set()

    in_host(set_it)
    await event.wait()
    trace.append("task woke")
    return "ok"


@scenario
async def host_moves_deadlines(lib: ModuleType, in_host: InHost, trace: Trace) -> object:
    def set_deadline(scope: Any, deadline: float) -> None:
        scope.deadline = deadline

    start = time.monotonic()
    with lib.CancelScope() as scope:
        in_host(lambda: set_deadline(scope, -math.inf))
        await lib.sleep_forever()
    trace.append(("first scope", scope.cancelled_caught))
    with lib.CancelScope() as scope:
        # A move that doesn't change the earliest deadline, then one that does.
        in_host(lambda: set_deadline(scope, 1e6))
        in_host(lambda: set_deadline(scope, lib.current_time() + 0.05))
        await lib.sleep(999)
    trace.append(("second scope", scope.cancelled_caught))
    trace.append(("quick", time.monotonic() - start < 5))
    return "ok"


@scenario
async def host_cancels_a_scope(lib: ModuleType, in_host: InHost, trace: Trace) -> object:
    with lib.CancelScope() as scope:
        in_host(scope.cancel)
        try:
            await lib.sleep_forever()
        except lib.Cancelled as exc:
            trace.append(("cancelled", exc.source, exc.reason, exc.source_task))
            raise
    trace.append(("caught", scope.cancelled_caught))
    return "ok"


@scenario
async def context_detection(lib: ModuleType, in_host: InHost, trace: Trace) -> object:
    trace.append(("task", lib.lowlevel.in_trio_run(), lib.lowlevel.in_trio_task()))
    event = lib.Event()

    def in_the_host() -> None:
        trace.append(("host", lib.lowlevel.in_trio_run(), lib.lowlevel.in_trio_task()))
        trace.append(("host time is the run's", lib.current_time() >= 0))
        event.set()

    in_host(in_the_host)
    await event.wait()
    return "ok"


@scenario
async def sniffio_answers(lib: ModuleType, in_host: InHost, trace: Trace) -> object:
    async def synchronize() -> None:
        event = lib.Event()
        in_host(event.set)
        await event.wait()

    in_host(partial(setattr, sniffio.thread_local, "name", "hostio"))
    await synchronize()
    trace.append(("guest", sniffio.current_async_library()))
    in_host(lambda: trace.append(("host", sniffio.current_async_library())))
    await synchronize()
    trace.append(("guest again", sniffio.current_async_library()))
    in_host(partial(setattr, sniffio.thread_local, "name", None))
    await synchronize()
    return "ok"


@scenario
async def idle_waiters_ignore_host_wakeups(
    lib: ModuleType, in_host: InHost, trace: Trace
) -> object:
    # A wake-up caused by the host moving a deadline (with nothing becoming runnable) must
    # not count as "all tasks blocked".
    testing = _testing(lib)

    async def sit_in_wait_all_tasks_blocked(scope: Any) -> None:
        with scope:
            await testing.wait_all_tasks_blocked(cushion=9999)
            trace.append("wait_all_tasks_blocked returned")
        trace.append(("idle waiter cancelled", scope.cancelled_caught))

    async def get_woken_by_host_deadline(idle_scope: Any) -> None:
        with lib.CancelScope() as scope:

            class Helper(lib.abc.Instrument):  # type: ignore[name-defined,misc]
                primed = False

                def before_io_wait(self, timeout: float) -> None:
                    if timeout == 9999 and not self.primed:
                        in_host(lambda: setattr(scope, "deadline", 1e9))
                        self.primed = True

                def after_io_wait(self, timeout: float) -> None:
                    if self.primed:
                        in_host(scope.cancel)
                        lib.lowlevel.remove_instrument(self)

            lib.lowlevel.add_instrument(Helper())
            await lib.sleep_forever()
        trace.append(("woken by the host", scope.cancelled_caught))
        idle_scope.cancel()

    async with lib.open_nursery() as nursery:
        idle_scope = lib.CancelScope()
        nursery.start_soon(sit_in_wait_all_tasks_blocked, idle_scope)
        await testing.wait_all_tasks_blocked()
        nursery.start_soon(get_woken_by_host_deadline, idle_scope)
    return "ok"


@scenario
async def notify_closing_between_wait_and_dispatch(
    lib: ModuleType, in_host: InHost, trace: Trace
) -> object:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        # Runs after the run has seen the socket writable but before it acts on that.
        in_host(lambda: lib.lowlevel.notify_closing(a))
        try:
            await lib.lowlevel.wait_writable(a)
            trace.append("writable")
        except lib.ClosedResourceError:
            trace.append("closed")
    return "ok"


@scenario
async def timeouts(lib: ModuleType, in_host: InHost, trace: Trace) -> object:
    start = time.monotonic()
    await lib.sleep(0.02)
    trace.append(("slept long enough", time.monotonic() - start >= 0.02))
    with lib.move_on_after(0.02) as scope:
        await lib.sleep_forever()
    trace.append(("moved on", scope.cancelled_caught))
    try:
        with lib.fail_after(0.02):
            await lib.sleep_forever()
    except lib.TooSlowError:
        trace.append("too slow")
    trace.append(("quick", time.monotonic() - start < 5))
    return "ok"


@scenario
async def sockets(lib: ModuleType, in_host: InHost, trace: Trace) -> object:
    a, b = lib.socket.socketpair()
    with a, b:
        received = []

        async def receive() -> None:
            received.append(await a.recv(10))

        async with lib.open_nursery() as nursery:
            nursery.start_soon(receive)
            await _testing(lib).wait_all_tasks_blocked()
            await b.send(b"x")
        trace.append(("socketpair", received))

    listeners = await lib.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with listeners[0]:
        client = await lib.open_tcp_stream("127.0.0.1", port)
        server = await listeners[0].accept()
        async with client, server:
            await client.send_all(b"ping")
            trace.append(("server got", await server.receive_some(10)))
            await server.send_all(b"pong")
            trace.append(("client got", await client.receive_some(10)))
    return "ok"


@scenario
async def threads_both_ways(lib: ModuleType, in_host: InHost, trace: Trace) -> object:
    def in_thread() -> int:
        return int(lib.from_thread.run_sync(lambda: 20)) + 1

    trace.append(("thread", await lib.to_thread.run_sync(in_thread)))
    token = lib.lowlevel.current_trio_token()
    event = lib.Event()
    threading.Thread(target=token.run_sync_soon, args=(event.set,)).start()
    await event.wait()
    trace.append("woken from a thread")
    return "ok"


@scenario
async def mock_clock_threshold_changed_by_host(
    lib: ModuleType, in_host: InHost, trace: Trace
) -> object:
    clock = lib.lowlevel.current_clock()
    trace.append(("starts at", lib.current_time()))
    start = time.monotonic()
    in_host(lambda: setattr(clock, "autojump_threshold", 0))
    await lib.sleep(120)
    trace.append(("virtual", lib.current_time()))
    trace.append(("quick", time.monotonic() - start < 30))
    return "ok"


SCENARIO_KWARGS: dict[str, Callable[[ModuleType], dict[str, Any]]] = {
    "mock_clock_threshold_changed_by_host": lambda lib: {"clock": _testing(lib).MockClock()},
}


def run_scenario(
    lib: ModuleType, name: str, run_host: Callable[..., outcome.Outcome[Any]]
) -> Trace:
    trace: Trace = []
    kwargs = SCENARIO_KWARGS.get(name, lambda lib: {})(lib)
    result = run_host(lib, partial(SCENARIOS[name], lib, trace=trace), **kwargs)
    trace.append(shape(result))
    return _normalize(lib, trace)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_side_by_side_with_trio(name: str, host: Callable[..., outcome.Outcome[Any]]) -> None:
    expected = run_scenario(trio, name, host)
    assert run_scenario(nursery_io, name, host) == expected


def test_scenarios_observe_what_they_should() -> None:
    # The side-by-side comparison only proves agreement; pin a few answers down too.
    run = partial(run_scenario, nursery_io, run_host=run_on_callback_host)
    assert run("returns_a_value") == [("value", "ok")]
    assert run("raises_from_the_main_task") == [("KeyError", ("whoopsiedaisy",), None)]
    assert run("host_moves_deadlines")[:3] == [
        ("first scope", True),
        ("second scope", True),
        ("quick", True),
    ]
    assert run("sniffio_answers")[:3] == [
        ("guest", "LIB"),
        ("host", "hostio"),
        ("guest again", "LIB"),
    ]
    assert run("context_detection")[:2] == [("task", True, True), ("host", True, False)]
    assert run("idle_waiters_ignore_host_wakeups")[:2] == [
        ("woken by the host", True),
        ("idle waiter cancelled", True),
    ]
    assert run("mock_clock_threshold_changed_by_host")[:3] == [
        ("starts at", 0.0),
        ("virtual", 120.0),
        ("quick", True),
    ]


# ----- start-up -----


def test_initialized_when_start_returns() -> None:
    record: list[str] = []
    token = None

    async def main(in_host: InHost) -> str:
        record.append("main task ran")
        await nursery_io.lowlevel.checkpoint()
        assert nursery_io.lowlevel.current_token() is token
        return "ok"

    def after_start() -> None:
        # Back in the host before the main task ran, and the run is usable from here.
        assert record == []
        nonlocal token
        token = nursery_io.lowlevel.current_token()
        token.run_sync_soon(record.append, "run_sync_soon callback ran")

        async def early() -> None:
            record.append("system task ran")
            await nursery_io.lowlevel.checkpoint()

        nursery_io.lowlevel.spawn_system_task(early)

    host = CallbackHost()
    result = host.run(nursery_io, main, host.in_host, after_start=after_start)
    assert result.unwrap() == "ok"
    assert sorted(record) == ["main task ran", "run_sync_soon callback ran", "system task ran"]


def test_failure_during_start_is_raised_from_start_guest_run() -> None:
    class BadClock(nursery_io.abc.Clock):
        def start_clock(self) -> None:
            raise ValueError("whoops")

        def current_time(self) -> float:  # pragma: no cover
            raise NotImplementedError

        def deadline_to_sleep_time(self, deadline: float) -> float:  # pragma: no cover
            raise NotImplementedError

    async def main(in_host: InHost) -> None:  # pragma: no cover
        raise AssertionError("never runs")

    before = sys.get_asyncgen_hooks()
    with pytest.raises(nursery_io.InternalError) as excinfo:
        run_on_callback_host(nursery_io, main, clock=BadClock())
    assert isinstance(excinfo.value.__cause__, ValueError)
    # Nothing left behind: not in a run, hooks and SIGINT handler restored.
    assert not nursery_io.lowlevel.in_run()
    assert sys.get_asyncgen_hooks() == before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_cannot_start_inside_a_run() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="inside a run"):
            nursery_io.lowlevel.start_guest_run(
                nursery_io.sleep,
                0,
                run_sync_soon_threadsafe=lambda fn: None,
                done_callback=lambda result: None,
            )

    nursery_io.run(main)


def test_host_code_cannot_start_a_second_run() -> None:
    async def main(in_host: InHost) -> str:
        event = nursery_io.Event()
        seen = []

        def try_run() -> None:
            with pytest.raises(RuntimeError, match="inside a run"):
                nursery_io.run(nursery_io.sleep, 0)
            seen.append("refused")
            event.set()

        in_host(try_run)
        await event.wait()
        return seen[0]

    assert run_on_callback_host(nursery_io, main).unwrap() == "refused"


# ----- the host keeps its thread -----


def test_asyncio_keeps_running_while_the_guest_sleeps() -> None:
    async def host_main() -> tuple[int, Any]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[outcome.Outcome[Any]] = loop.create_future()
        ticks = 0

        async def count_ticks() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(count_ticks())
        nursery_io.lowlevel.start_guest_run(
            nursery_io.sleep,
            0.3,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
        )
        result = await done
        ticker.cancel()
        return ticks, result.unwrap()

    ticks, result = asyncio.run(host_main())
    assert result is None
    assert ticks >= 10  # about 30 if the host was never blocked


def test_blocking_waits_happen_off_the_host_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    host_thread = threading.current_thread()
    waits: list[tuple[float, bool]] = []
    original_wait = Kernel.wait

    def recording_wait(self: Kernel, timeout: float) -> list[tuple[int, int]]:
        waits.append((timeout, threading.current_thread() is host_thread))
        return original_wait(self, timeout)

    monkeypatch.setattr(Kernel, "wait", recording_wait)

    async def main(in_host: InHost) -> None:
        for _ in range(3):
            await nursery_io.sleep(0.01)
        for _ in range(100):
            await nursery_io.lowlevel.checkpoint()

    run_on_callback_host(nursery_io, main).unwrap()
    assert any(timeout != 0 for timeout, _ in waits)
    # Only non-blocking looks happen on the host thread; every real sleep is a worker's.
    assert all(timeout == 0 for timeout, on_host in waits if on_host)
    assert all(not on_host for timeout, on_host in waits if timeout != 0)


def test_host_changed_deadline_wakes_a_long_wait() -> None:
    # The run is asleep in a worker thread with a long timeout when the host, much later,
    # shortens the deadline: the wait must end right away, not after 60 seconds.
    async def host_main() -> float:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[outcome.Outcome[Any]] = loop.create_future()
        scope = nursery_io.CancelScope(deadline=math.inf)

        async def guest() -> float:
            start = time.monotonic()
            with scope:
                await nursery_io.sleep(60)
            assert scope.cancelled_caught
            return time.monotonic() - start

        nursery_io.lowlevel.start_guest_run(
            guest,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
        )
        # Still in the future: only the wake-up makes the run notice it in time.
        loop.call_later(0.2, lambda: setattr(scope, "deadline", nursery_io.current_time() + 0.1))
        return (await asyncio.wait_for(done, HOST_PATIENCE)).unwrap()  # type: ignore[no-any-return]

    elapsed = asyncio.run(host_main())
    assert 0.25 < elapsed < 5


def test_on_asyncio_with_only_call_soon_threadsafe() -> None:
    async def ping_pong(in_host: InHost) -> int:
        send, receive = nursery_io.open_memory_channel[int](math.inf)
        to_asyncio: asyncio.Queue[int] = asyncio.Queue()

        async def asyncio_side() -> None:
            while True:
                send.send_nowait(await to_asyncio.get() + 1)

        task = asyncio.ensure_future(asyncio_side())
        await nursery_io.lowlevel.checkpoint()
        to_asyncio.put_nowait(0)
        async for n in receive:
            if n >= 10:
                task.cancel()
                return n
            to_asyncio.put_nowait(n + 1)
        raise AssertionError("unreachable")  # pragma: no cover

    assert run_on_asyncio(nursery_io, ping_pong).unwrap() == 11
    assert run_on_asyncio(nursery_io, ping_pong, pass_not_threadsafe=False).unwrap() == 11


# ----- files, on both engines -----


@pytest.mark.parametrize("engine", ["default", "threads"])
def test_file_io(
    engine: str,
    host: Callable[..., outcome.Outcome[Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if engine == "threads":
        monkeypatch.setenv("NURSERY_IO_URING", "0")
    else:
        monkeypatch.delenv("NURSERY_IO_URING", raising=False)

    async def main(in_host: InHost) -> Any:
        async def worker(i: int) -> None:
            path = nursery_io.Path(tmp_path) / f"f{i}"
            data = os.urandom(100_000)
            for _ in range(5):
                async with await nursery_io.open_file(path, "wb") as f:
                    await f.write(data)
                    await f.fsync()
                async with await nursery_io.open_file(path, "rb") as f:
                    assert await f.read() == data
            assert (await path.stat()).st_size == len(data)

        async with nursery_io.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(worker, i)
        return nursery_io.lowlevel.current_statistics().io_statistics.file_engine

    stats = host(nursery_io, main).unwrap()
    if engine == "threads":
        assert stats.engine == "threads"
        assert stats.ops_by_engine["io_uring"] == 0
    elif stats.engine == "io_uring":
        # Completions of ring ops submitted on the host thread woke the worker's wait.
        assert stats.ops_by_engine["io_uring"] > 0
    assert stats.ops_in_flight == 0


# ----- cancellation, errors, KeyboardInterrupt -----


def test_cancellation_inside_the_guest(host: Callable[..., outcome.Outcome[Any]]) -> None:
    async def main(in_host: InHost) -> list[str]:
        record = []

        async def child(name: str) -> None:
            try:
                await nursery_io.sleep_forever()
            finally:
                record.append(f"{name} cleaned up")

        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(child, "a")
            nursery.start_soon(child, "b")
            await nursery_io.testing.wait_all_tasks_blocked()
            in_host(nursery.cancel_scope.cancel)
        return sorted(record)

    assert host(nursery_io, main).unwrap() == ["a cleaned up", "b cleaned up"]


def test_crash_in_the_worker_wait_is_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    host_thread = threading.current_thread()
    original_wait = Kernel.wait

    def failing_wait(self: Kernel, timeout: float) -> list[tuple[int, int]]:
        if threading.current_thread() is not host_thread:
            raise ValueError("oh no!")
        return original_wait(self, timeout)

    monkeypatch.setattr(Kernel, "wait", failing_wait)

    async def main(in_host: InHost) -> None:
        await nursery_io.sleep(1)

    result = run_on_callback_host(nursery_io, main)
    with pytest.raises(nursery_io.InternalError) as excinfo:
        result.unwrap()
    assert isinstance(excinfo.value.__cause__, ValueError)
    assert not nursery_io.lowlevel.in_run()


def test_crash_in_the_loop_is_an_internal_error() -> None:
    async def main(in_host: InHost) -> None:
        runner = current_runner()
        runner.runq = "not a list"
        await nursery_io.sleep(1)

    with pytest.raises(nursery_io.InternalError):
        run_on_callback_host(nursery_io, main).unwrap()
    assert not nursery_io.lowlevel.in_run()


def test_failing_run_sync_soon_callback_is_an_internal_error() -> None:
    async def main(in_host: InHost) -> None:
        nursery_io.lowlevel.current_token().run_sync_soon(lambda: 1 / 0)
        await nursery_io.sleep_forever()

    with pytest.raises(nursery_io.InternalError) as excinfo:
        run_on_callback_host(nursery_io, main).unwrap()
    # Trio's shape: the callback's error inside the system nursery's group, inside the run's.
    cause = excinfo.value.__cause__
    assert isinstance(cause, ExceptionGroup)
    (inner,) = cause.exceptions
    assert isinstance(inner, ExceptionGroup)
    (leaf,) = inner.exceptions
    assert isinstance(leaf, ZeroDivisionError)


@pytest.mark.parametrize("lib", [trio, nursery_io], ids=lambda lib: lib.__name__)
def test_keyboard_interrupt(lib: ModuleType) -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    async def main(in_host: InHost) -> None:
        # In a task: raised right there.
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        # In host code: delivered to the main task at its next checkpoint.
        in_host(partial(signal.raise_signal, signal.SIGINT))
        await lib.sleep(10)

    with pytest.raises(KeyboardInterrupt) as excinfo:
        run_on_callback_host(lib, main).unwrap()
    assert excinfo.value.__context__ is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    final = KeyError("whoa")

    async def main_raising(in_host: InHost) -> None:
        in_host(partial(signal.raise_signal, signal.SIGINT))
        raise final

    with pytest.raises(KeyboardInterrupt) as excinfo:
        run_on_callback_host(lib, main_raising).unwrap()
    assert excinfo.value.__context__ is final
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("lib", [trio, nursery_io], ids=lambda lib: lib.__name__)
def test_ctrl_c_while_the_guest_sleeps(lib: ModuleType) -> None:
    # The host thread is blocked waiting for callbacks and the run sleeps in a worker when
    # SIGINT arrives: it must reach the main task, not be lost or raised in the host.
    async def main(in_host: InHost) -> str:
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            await lib.sleep(20)
        except KeyboardInterrupt:
            return "interrupted in the main task"
        return "slept through it"  # pragma: no cover

    start = time.monotonic()
    assert run_on_callback_host(lib, main).unwrap() == "interrupted in the main task"
    assert time.monotonic() - start < 10


def test_keyboard_interrupt_restricted_to_checkpoints() -> None:
    async def main(in_host: InHost) -> str:
        # Not raised inside the task's own code: held until the next checkpoint.
        signal.raise_signal(signal.SIGINT)
        try:
            await nursery_io.lowlevel.checkpoint()
        except KeyboardInterrupt:
            return "at the checkpoint"
        return "never delivered"  # pragma: no cover

    result = run_on_callback_host(nursery_io, main, restrict_keyboard_interrupt_to_checkpoints=True)
    assert result.unwrap() == "at the checkpoint"


# ----- async generators under an asyncio host -----


# Trio also warns (ResourceWarning) about a generator collected before it was exhausted.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize("lib", [trio, nursery_io], ids=lambda lib: lib.__name__)
def test_asyncgens_are_finalized_by_their_own_loop(lib: ModuleType) -> None:
    record: set[tuple[str, str, bool]] = set()

    async def agen(label: str) -> AsyncGenerator[int, None]:
        class Local:
            pass

        local = Local()
        local_ref = weakref.ref(local)
        assert sniffio.current_async_library() == label
        try:
            yield 1
        finally:
            library = sniffio.current_async_library()
            with contextlib.suppress(lib.Cancelled):
                await sys.modules[library].sleep(0)
            del local
            record.add((label, library, local_ref() is None))

    async def iterate_in_asyncio() -> None:
        await agen("asyncio").asend(None)

    async def main(in_host: InHost) -> None:
        task = asyncio.ensure_future(iterate_in_asyncio())
        done = lib.Event()
        task.add_done_callback(lambda _: done.set())
        with lib.fail_after(5):
            await done.wait()
        await agen(lib.__name__).asend(None)
        gc.collect()

    run_on_asyncio(lib, main).unwrap()
    assert record == {("asyncio", "asyncio", True), (lib.__name__, lib.__name__, True)}


# ----- abandoned runs -----


def _abandon_a_guest_run(lib: ModuleType, *, with_nursery: bool = False) -> None:
    host = CallbackHost()

    async def main(in_host: InHost) -> None:
        in_host(lambda: 1 / 0)
        if not with_nursery:
            while True:
                await lib.lowlevel.checkpoint()
        async with lib.open_nursery() as nursery:
            nursery.start_soon(lib.sleep_forever)
            while True:
                await lib.lowlevel.checkpoint()

    with pytest.raises(ZeroDivisionError):
        host.run(lib, main, host.in_host)
    # The host stops (its queue of callbacks, the only thing keeping the run, goes away).
    del host


@pytest.mark.parametrize("lib", [trio, nursery_io], ids=lambda lib: lib.__name__)
def test_abandoned_run_warns_when_collected(
    lib: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if lib is trio:
        # Trio leaves its abandoned tasks to the garbage collector, which reports errors
        # from them (its own test suite lets them print instead of failing the test).
        monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    hooks_before = sys.get_asyncgen_hooks()
    with pytest.warns(RuntimeWarning, match="guest run got abandoned without properly finishing"):
        _abandon_a_guest_run(lib)
        for _ in range(3):
            gc.collect()
    with pytest.raises(RuntimeError):
        lib.current_time()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert sys.get_asyncgen_hooks() == hooks_before
    # The thread is free for a new run.
    assert lib.run(lib.sleep, 0) is None
    if lib is nursery_io:
        assert capsys.readouterr().err == ""


def test_abandoned_message_is_trios() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Tasks blocked in a nursery: Trio leaves them to the garbage collector, which
        # complains loudly; nursery_io unwinds them when the run is collected.
        _abandon_a_guest_run(nursery_io, with_nursery=True)
        for _ in range(3):
            gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert messages == [
        "Trio guest run got abandoned without properly finishing... weird stuff might happen"
    ]
    # Nothing else was left running: the tasks were unwound when the run was collected.
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_abandoned_run_is_cleaned_up_even_when_warnings_are_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    hooks_before = sys.get_asyncgen_hooks()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _abandon_a_guest_run(nursery_io, with_nursery=True)
        for _ in range(3):
            gc.collect()
    assert [type(r.exc_value) for r in reported] == [RuntimeWarning]
    assert not nursery_io.lowlevel.in_run()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert sys.get_asyncgen_hooks() == hooks_before
    assert signal.set_wakeup_fd(-1) == -1


def test_finished_run_is_collected_without_warning() -> None:
    async def main(in_host: InHost) -> None:
        await nursery_io.sleep(0.01)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_on_callback_host(nursery_io, main).unwrap()
        gc.collect()


# ----- signal.set_wakeup_fd -----


@contextlib.contextmanager
def _wakeup_fd_installed() -> Iterator[socket.socket]:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        signal.set_wakeup_fd(a.fileno())
        try:
            yield a
        finally:
            assert signal.set_wakeup_fd(-1) == a.fileno()


def _warns_about_wakeup_fd(fn: Callable[[], object]) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return any("signal handling code" in str(w.message) for w in caught)


@pytest.mark.parametrize("lib", [trio, nursery_io], ids=lambda lib: lib.__name__)
def test_set_wakeup_fd_collision(lib: ModuleType) -> None:
    assert signal.set_wakeup_fd(-1) == -1

    async def main(in_host: InHost) -> str:
        return "ok"

    async def check_wakeup_fd_untouched(in_host: InHost) -> int:
        fd = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(fd)
        return fd

    def guest(fn: Any = main, **kwargs: Any) -> Callable[[], object]:
        return lambda: run_on_callback_host(lib, fn, **kwargs).unwrap()

    observed = []
    with _wakeup_fd_installed():
        observed.append(_warns_about_wakeup_fd(guest()))
    with _wakeup_fd_installed():
        observed.append(_warns_about_wakeup_fd(guest(host_uses_signal_set_wakeup_fd=False)))
    observed.append(_warns_about_wakeup_fd(guest()))
    observed.append(_warns_about_wakeup_fd(guest(host_uses_signal_set_wakeup_fd=True)))
    with _wakeup_fd_installed() as sock:
        untouched = guest(check_wakeup_fd_untouched, host_uses_signal_set_wakeup_fd=True)
        observed.append(_warns_about_wakeup_fd(untouched))
        assert untouched() == sock.fileno()
    with _wakeup_fd_installed():
        observed.append(_warns_about_wakeup_fd(lambda: lib.run(lib.sleep, 0)))
    assert observed == [True, True, False, False, False, True]
    assert signal.set_wakeup_fd(-1) == -1


def test_guest_installs_and_restores_its_own_wakeup_fd() -> None:
    async def main(in_host: InHost) -> int:
        fd = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(fd)
        return fd

    assert run_on_callback_host(nursery_io, main).unwrap() != -1
    assert signal.set_wakeup_fd(-1) == -1


def test_signal_receiver_in_a_guest() -> None:
    async def main(in_host: InHost) -> int:
        with nursery_io.open_signal_receiver(signal.SIGUSR1) as signals:
            in_host(partial(os.kill, os.getpid(), signal.SIGUSR1))
            async for signum in signals:
                return int(signum)
        raise AssertionError("unreachable")  # pragma: no cover

    assert run_on_callback_host(nursery_io, main).unwrap() == signal.SIGUSR1
    assert run_on_asyncio(nursery_io, main).unwrap() == signal.SIGUSR1


# ----- plumbing -----


def test_runner_wakeups_are_only_for_guests() -> None:
    # A normal run must not pay for the guest's wake-up checks.
    async def main() -> type:
        return type(current_runner())

    assert nursery_io.run(main) is Runner
    assert issubclass(_guest.GuestRunner, Runner)
