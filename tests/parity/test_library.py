"""Side-by-side behaviour tests: each scenario is written once against a library module
(``trio`` or ``nursery_io``), run under both, and must produce the same trace.

Trio's scheduler shuffles the order of tasks within a batch, so scenarios only record
things Trio defines: they order events with ``wait_all_tasks_blocked`` rather than relying
on which of two runnable tasks goes first. Exception *types* are compared, not messages
(the wording is ours), and exception groups are compared as sorted trees.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from .harness import Scenario, Scenarios, Trace, assert_same_trace, shape

scenario = Scenarios()


@scenario.parametrize()
def test_same_trace(scenario: Scenario) -> None:
    assert_same_trace(scenario)


# ----- helpers shared by the scenarios -----


def _sync(trace: Trace, label: str, fn: Callable[[], object]) -> None:
    try:
        result = fn()
    except Exception as exc:
        trace.append((label, type(exc).__name__))
    else:
        trace.append((label, "ok", result))


async def _async(trace: Trace, label: str, fn: Callable[[], Awaitable[object]]) -> None:
    try:
        result = await fn()
    except Exception as exc:
        trace.append((label, type(exc).__name__))
    else:
        trace.append((label, "ok", result))


def _channel_stats(channel: Any) -> tuple[object, ...]:
    stats = channel.statistics()
    return tuple(
        getattr(stats, name)
        for name in (
            "current_buffer_used",
            "max_buffer_size",
            "open_send_channels",
            "open_receive_channels",
            "tasks_waiting_send",
            "tasks_waiting_receive",
            "peak_buffer_used",
        )
    )


# ----- channels -----


@scenario
async def channel_close_and_clone(lib: ModuleType) -> Trace:
    trace: Trace = []
    s, r = lib.open_memory_channel(2)
    s2, r2 = s.clone(), r.clone()
    trace.append(_channel_stats(s))
    s.send_nowait(1)
    s2.send_nowait(2)
    _sync(trace, "send_nowait full", lambda: s.send_nowait(3))
    s.close()
    _sync(trace, "send_nowait closed", lambda: s.send_nowait(3))
    _sync(trace, "clone closed", s.clone)
    await s.aclose()
    trace.append(_channel_stats(r))
    _sync(trace, "receive r2", r2.receive_nowait)
    r.close()
    _sync(trace, "receive closed r", r.receive_nowait)
    await _async(trace, "async receive closed r", r.receive)
    _sync(trace, "receive r2", r2.receive_nowait)
    _sync(trace, "receive r2 empty", r2.receive_nowait)
    s2.close()
    _sync(trace, "receive after all senders closed", r2.receive_nowait)
    await _async(trace, "async receive after all senders closed", r2.receive)
    trace.append(_channel_stats(r2))

    s, r = lib.open_memory_channel(math.inf)
    s.send_nowait("x")
    r2 = r.clone()
    r.close()
    _sync(trace, "send with a receive clone open", lambda: s.send_nowait("y"))
    await r2.aclose()
    _sync(trace, "send after all receivers closed", lambda: s.send_nowait("z"))
    await _async(trace, "async send after all receivers closed", lambda: s.send("z"))
    trace.append(_channel_stats(s))

    # Blocked tasks: closing a clone wakes only that clone's tasks.
    s, r = lib.open_memory_channel(0)
    r2 = r.clone()
    async with lib.open_nursery() as nursery:
        nursery.start_soon(_async, trace, "blocked on r", r.receive)
        nursery.start_soon(_async, trace, "blocked on r2", r2.receive)
        await lib.testing.wait_all_tasks_blocked()
        r2.close()
        await lib.testing.wait_all_tasks_blocked()
        trace.append(_channel_stats(r))
        s.close()
    s, r = lib.open_memory_channel(0)
    s2 = s.clone()
    async with lib.open_nursery() as nursery:
        nursery.start_soon(_async, trace, "blocked on s", lambda: s.send(1))
        await lib.testing.wait_all_tasks_blocked()
        nursery.start_soon(_async, trace, "blocked on s2", lambda: s2.send(2))
        await lib.testing.wait_all_tasks_blocked()
        s.close()
        await lib.testing.wait_all_tasks_blocked()
        trace.append(_channel_stats(r))
        r.close()

    # async for ends at the end of the channel, with sync-context-manager closing.
    s, r = lib.open_memory_channel(3)
    with s:
        for i in range(3):
            await s.send(i)
    trace.append([v async for v in r])
    return trace


@scenario
async def channel_fifo(lib: ModuleType) -> Trace:
    trace: Trace = []
    for size in (0, 1, math.inf):
        s, r = lib.open_memory_channel(size)

        async def receiver(i: int, r: Any = r) -> None:
            trace.append(("receiver", i, await r.receive()))

        async with lib.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(receiver, i)
                await lib.testing.wait_all_tasks_blocked()
            for i in range(3):
                await s.send(f"v{i}")
                await lib.testing.wait_all_tasks_blocked()
        if size != math.inf:
            async with lib.open_nursery() as nursery:
                for i in range(3 + int(size)):
                    nursery.start_soon(s.send, f"w{i}")
                    await lib.testing.wait_all_tasks_blocked()
                trace.append(_channel_stats(s))
                trace.append([await r.receive() for _ in range(3 + int(size))])
    return trace


@scenario
async def channel_cancellation(lib: ModuleType) -> Trace:
    trace: Trace = []
    for size in (0, 1, math.inf):
        s, r = lib.open_memory_channel(size)
        # A pending cancellation is honoured before acting.
        with lib.CancelScope() as scope:
            scope.cancel()
            await s.send("pre-cancelled")
        trace.append(("pre-cancelled send", scope.cancelled_caught, _channel_stats(s)))
        s.send_nowait("available") if size else None
        with lib.CancelScope() as scope:
            scope.cancel()
            await r.receive()
        trace.append(("pre-cancelled receive", scope.cancelled_caught, _channel_stats(r)))
        if size:
            trace.append(r.receive_nowait())

        # Cancelling a parked receiver.
        async with lib.open_nursery() as nursery:
            nursery.start_soon(r.receive)
            await lib.testing.wait_all_tasks_blocked()
            trace.append(_channel_stats(r))
            nursery.cancel_scope.cancel()
        trace.append(("after cancelled receive", _channel_stats(r)))

        # A receiver that was handed a value keeps it even if cancelled right after.
        got: list[Any] = []
        receive_scope = lib.CancelScope()

        async def receiver(receive_scope: Any = receive_scope, r: Any = r) -> None:
            with receive_scope:
                got.append(await r.receive())

        async with lib.open_nursery() as nursery:
            nursery.start_soon(receiver)
            await lib.testing.wait_all_tasks_blocked()
            s.send_nowait("handed over")
            receive_scope.cancel()
        trace.append(("handed over", got, receive_scope.cancelled_caught))

        if size != math.inf:
            # Cancelling a parked sender withdraws its value...
            for _ in range(int(size)):
                s.send_nowait("filler")
            async with lib.open_nursery() as nursery:
                nursery.start_soon(s.send, "withdrawn")
                await lib.testing.wait_all_tasks_blocked()
                trace.append(_channel_stats(s))
                nursery.cancel_scope.cancel()
            trace.append([r.receive_nowait() for _ in range(int(size))])
            _sync(trace, "nothing left", r.receive_nowait)
            # ... unless a receiver took it first.
            for _ in range(int(size)):
                s.send_nowait("filler")
            send_scope = lib.CancelScope()
            sent: list[str] = []

            async def sender(send_scope: Any = send_scope, s: Any = s) -> None:
                with send_scope:
                    await s.send("taken")
                    sent.append("returned")

            async with lib.open_nursery() as nursery:
                nursery.start_soon(sender)
                await lib.testing.wait_all_tasks_blocked()
                values = [r.receive_nowait() for _ in range(int(size) + 1)]
                send_scope.cancel()
            trace.append(("taken", values, sent, send_scope.cancelled_caught))
    return trace


# ----- synchronization primitives -----


@scenario
async def lock_fairness(lib: ModuleType) -> Trace:
    trace: Trace = []
    for lock_type in (lib.Lock, lib.StrictFIFOLock):
        lock = lock_type()
        scopes: dict[int, Any] = {}

        async def worker(i: int, lock: Any = lock, scopes: dict[int, Any] = scopes) -> None:
            with lib.CancelScope() as scopes[i]:
                async with lock:
                    trace.append(("acquired", i))
                    await lib.lowlevel.checkpoint()

        async with lib.open_nursery() as nursery:
            await lock.acquire()
            for i in range(5):
                nursery.start_soon(worker, i)
                await lib.testing.wait_all_tasks_blocked()
            stats = lock.statistics()
            trace.append((stats.locked, stats.tasks_waiting))
            scopes[1].cancel()
            await lib.testing.wait_all_tasks_blocked()
            trace.append(lock.statistics().tasks_waiting)
            lock.release()
        trace.append(lock.locked())
    return trace


@scenario
async def lock_owner_exits_holding_it(lib: ModuleType) -> Trace:
    trace: Trace = []
    lock = lib.Lock()

    async def careless_owner() -> None:
        await lock.acquire()
        await lib.testing.wait_all_tasks_blocked()

    async with lib.open_nursery() as nursery:
        nursery.start_soon(careless_owner)
        await lib.testing.wait_all_tasks_blocked()
        nursery.start_soon(_async, trace, "waiting when the owner exits", lock.acquire)
    await _async(trace, "acquire after the owner exited", lock.acquire)
    trace.append(lock.locked())
    return trace


@scenario
async def primitives_fairness_and_stats(lib: ModuleType) -> Trace:
    trace: Trace = []
    sem = lib.Semaphore(0)
    limiter = lib.CapacityLimiter(1)
    cond = lib.Condition()
    event = lib.Event()

    async def sem_worker(i: int) -> None:
        await sem.acquire()
        trace.append(("sem", i))

    async def limiter_worker(i: int) -> None:
        async with limiter:
            trace.append(("limiter", i))
            await event.wait()

    async def cond_worker(i: int) -> None:
        async with cond:
            await cond.wait()
            trace.append(("cond", i, cond.locked()))

    async with lib.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(sem_worker, i)
            await lib.testing.wait_all_tasks_blocked()
            nursery.start_soon(limiter_worker, i)
            await lib.testing.wait_all_tasks_blocked()
            nursery.start_soon(cond_worker, i)
            await lib.testing.wait_all_tasks_blocked()
        stats = limiter.statistics()
        trace.append(
            ("limiter stats", stats.borrowed_tokens, stats.total_tokens, stats.tasks_waiting)
        )
        trace.append(("sem stats", sem.statistics().tasks_waiting, sem.value))
        trace.append(("cond stats", cond.statistics().tasks_waiting))
        trace.append(("event stats", event.statistics().tasks_waiting))
        for _ in range(3):
            sem.release()
            await lib.testing.wait_all_tasks_blocked()
        trace.append(("sem value", sem.value))
        async with cond:
            cond.notify(2)
            trace.append(("notified", cond.statistics().tasks_waiting))
        await lib.testing.wait_all_tasks_blocked()
        async with cond:
            cond.notify_all()
        await lib.testing.wait_all_tasks_blocked()
        limiter.total_tokens = 2
        await lib.testing.wait_all_tasks_blocked()
        trace.append(("limiter", limiter.borrowed_tokens, limiter.available_tokens))
        event.set()
    trace.append(("event", event.is_set(), event.statistics().tasks_waiting))
    return trace


@scenario
async def misuse_errors(lib: ModuleType) -> Trace:
    trace: Trace = []
    lock = lib.Lock()
    _sync(trace, "release unheld lock", lock.release)
    await lock.acquire()
    _sync(trace, "re-acquire lock", lock.acquire_nowait)
    await _async(trace, "re-acquire lock async", lock.acquire)

    async def other_task() -> None:
        _sync(trace, "release lock held by another task", lock.release)
        _sync(trace, "acquire held lock", lock.acquire_nowait)

    async with lib.open_nursery() as nursery:
        nursery.start_soon(other_task)
    lock.release()

    sem = lib.Semaphore(1, max_value=1)
    _sync(trace, "over-release", sem.release)
    await sem.acquire()
    _sync(trace, "acquire empty", sem.acquire_nowait)
    for args, kwargs in (
        ((-1,), {}),
        ((1.0,), {}),
        ((2,), {"max_value": 1}),
        ((1,), {"max_value": 1.5}),
    ):
        _sync(
            trace,
            f"Semaphore{args}{kwargs}",
            lambda a=args, k=kwargs: lib.Semaphore(*a, **k) and None,
        )

    limiter = lib.CapacityLimiter(1)
    _sync(trace, "release unheld token", limiter.release)
    _sync(trace, "release for unknown borrower", lambda: limiter.release_on_behalf_of("x"))
    limiter.acquire_nowait()
    _sync(trace, "acquire twice", limiter.acquire_nowait)
    _sync(trace, "acquire for other while full", lambda: limiter.acquire_on_behalf_of_nowait("y"))
    for bad in (0, -1, 1.5, "2", math.inf):

        def set_tokens(bad: object = bad) -> object:
            limiter.total_tokens = bad
            return limiter.total_tokens

        _sync(trace, f"total_tokens={bad!r}", set_tokens)

    cond = lib.Condition()
    await _async(trace, "wait without lock", cond.wait)
    _sync(trace, "notify without lock", cond.notify)
    _sync(trace, "notify_all without lock", cond.notify_all)
    _sync(trace, "Condition(StrictFIFOLock)", lambda: lib.Condition(lib.StrictFIFOLock()) and None)

    for bad in (-1, 1.5, "3"):
        _sync(
            trace,
            f"open_memory_channel({bad!r})",
            lambda bad=bad: lib.open_memory_channel(bad) and None,
        )
    return trace


@scenario
async def condition_cancelled_wait(lib: ModuleType) -> Trace:
    trace: Trace = []
    cond = lib.Condition()

    async def waiter(label: str, scope: Any) -> None:
        async with cond:
            with scope:
                await cond.wait()
            trace.append((label, scope.cancelled_caught, cond.locked()))

    first, second = lib.CancelScope(), lib.CancelScope()
    async with lib.open_nursery() as nursery:
        nursery.start_soon(waiter, "cancelled while waiting", first)
        await lib.testing.wait_all_tasks_blocked()
        first.cancel()
        await lib.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "cancelled after notify", second)
        await lib.testing.wait_all_tasks_blocked()
        async with cond:
            cond.notify()
            second.cancel()
            await lib.testing.wait_all_tasks_blocked()
            trace.append(cond.statistics().lock_statistics.tasks_waiting)
    trace.append((cond.locked(), cond.statistics().tasks_waiting))
    return trace


# ----- nurseries and exception groups -----


async def _fail(exc: BaseException) -> None:
    raise exc


@scenario
async def exception_group_shapes(lib: ModuleType) -> Trace:
    trace: Trace = []

    async def capture(label: str, body: Callable[[], Awaitable[None]]) -> None:
        try:
            await body()
        except BaseException as exc:
            trace.append((label, shape(exc)))
        else:
            trace.append((label, "no error"))

    async def one_child() -> None:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(_fail, ValueError("a"))

    async def two_children() -> None:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(_fail, ValueError("a"))
            nursery.start_soon(_fail, KeyError("b"))

    async def body_and_child() -> None:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(_fail, ValueError("child"))
            await lib.testing.wait_all_tasks_blocked()
            raise RuntimeError("body")

    async def body_fails_before_child_runs() -> None:
        # The child still starts (inside a cancelled scope) and its error is kept too.
        async with lib.open_nursery() as nursery:
            nursery.start_soon(_fail, ValueError("child"))
            raise RuntimeError("body")

    async def body_blocked_child_fails() -> None:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(lib.sleep_forever)
            nursery.start_soon(_fail, ValueError("child"))
            await lib.sleep_forever()

    async def nested() -> None:
        async with lib.open_nursery() as outer:
            outer.start_soon(_fail, KeyError("outer child"))

            async def inner_nursery() -> None:
                async with lib.open_nursery() as inner:
                    inner.start_soon(_fail, ValueError("inner 1"))
                    inner.start_soon(_fail, TypeError("inner 2"))

            outer.start_soon(inner_nursery)

    async def cancelled_nursery() -> None:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(lib.sleep_forever)
            nursery.cancel_scope.cancel()

    async def start_fails_before_started() -> None:
        async def task(*, task_status: Any) -> None:
            raise ValueError("before started")

        async with lib.open_nursery() as nursery:
            await nursery.start(task)

    async def start_fails_after_started() -> None:
        async def task(*, task_status: Any) -> None:
            task_status.started("ready")
            await lib.lowlevel.checkpoint()
            raise ValueError("after started")

        async with lib.open_nursery() as nursery:
            trace.append(await nursery.start(task))

    async def start_without_started() -> None:
        async def task(*, task_status: Any) -> None:
            pass

        async with lib.open_nursery() as nursery:
            await nursery.start(task)

    async def timeout_in_child() -> None:
        async def slow() -> None:
            with lib.fail_after(0):
                await lib.sleep_forever()

        async with lib.open_nursery() as nursery:
            nursery.start_soon(slow)

    async def move_on_in_nursery() -> None:
        with lib.move_on_after(0) as scope:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(lib.sleep_forever)
                nursery.start_soon(lib.sleep_forever)
        trace.append(("move_on cancelled_caught", scope.cancelled_caught))

    for fn in (
        one_child,
        two_children,
        body_and_child,
        body_fails_before_child_runs,
        body_blocked_child_fails,
        nested,
        cancelled_nursery,
        start_fails_before_started,
        start_fails_after_started,
        start_without_started,
        timeout_in_child,
        move_on_in_nursery,
    ):
        await capture(fn.__name__, fn)
    return trace


# ----- memory streams (trio.testing vs nursery_io.testing) -----


@scenario
async def memory_streams(lib: ModuleType) -> Trace:
    trace: Trace = []
    testing = lib.testing
    a, b = testing.memory_stream_pair()
    await a.send_all(b"ping")
    trace.append(bytes(await b.receive_some()))
    await a.send_eof()
    trace.append(bytes(await b.receive_some()))
    await _async(trace, "send after eof", lambda: a.send_all(b"x"))
    await b.send_all(b"pong")
    trace.append(bytes(await a.receive_some(2)))
    trace.append(bytes(await a.receive_some()))
    await b.aclose()
    await _async(trace, "receive on closed", b.receive_some)
    await _async(trace, "receive_some(0)", lambda: a.receive_some(0))

    send, receive = testing.memory_stream_one_way_pair()
    await receive.aclose()
    await _async(trace, "send to closed receiver", lambda: send.send_all(b"x"))

    send, receive = testing.lockstep_stream_one_way_pair()
    progress: list[Any] = []

    async def sender() -> None:
        await send.send_all(b"abc")
        progress.append("sent")

    async with lib.open_nursery() as nursery:
        nursery.start_soon(sender)
        await testing.wait_all_tasks_blocked()
        progress.append(bytes(await receive.receive_some(2)))
        await testing.wait_all_tasks_blocked()
        progress.append(list(progress))
        progress.append(bytes(await receive.receive_some()))
    trace.append(progress)
    await send.aclose()
    trace.append(bytes(await receive.receive_some()))

    send = testing.MemorySendStream()
    receive = testing.MemoryReceiveStream()
    await send.send_all(b"12345")
    trace.append(testing.memory_stream_pump(send, receive, max_bytes=2))
    trace.append(bytes(await receive.receive_some()))
    trace.append(bytes(send.get_data_nowait()))
    _sync(trace, "get_data_nowait empty", send.get_data_nowait)
    receive.put_eof()
    trace.append(bytes(await receive.receive_some()))
    _sync(trace, "put_data after eof", lambda: receive.put_data(b"x"))
    return trace


@scenario
async def checkpoints_of_nonblocking_operations(lib: ModuleType) -> Trace:
    # Every one of these can complete at once; each must still raise when cancelled
    # beforehand, and do nothing.
    trace: Trace = []
    s, r = lib.open_memory_channel(1)
    s.send_nowait(0)
    event = lib.Event()
    event.set()
    operations: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("Lock.acquire", lib.Lock().acquire),
        ("Semaphore.acquire", lib.Semaphore(1).acquire),
        ("CapacityLimiter.acquire", lib.CapacityLimiter(1).acquire),
        ("Event.wait", event.wait),
        ("receive", r.receive),
        ("aclose", lib.open_memory_channel(0)[0].aclose),
    ]
    for name, operation in operations:
        with lib.CancelScope() as scope:
            scope.cancel()
            await operation()
        trace.append((name, scope.cancelled_caught))
    trace.append(_channel_stats(r))
    return trace


def test_scenarios_registered() -> None:
    assert len(scenario) >= 9
