"""Side by side: misuse of the library surface raises what Trio raises.

Users match these errors with ``pytest.raises(SomeError, match=...)``, so each case is run
once against ``trio`` and once against ``nursery_io`` and must raise the same exception
type with exactly Trio's message (users anchor their patterns, ``match=r"^...$"``). The
few cases in ``HINTED_CASES`` may append a hint to Trio's words, never replace them. Cases
that must *succeed* must return the same value under both libraries.

A case is a plain function of the library module (run outside any run) or an async one
(run with ``lib.run``). Addresses (``0x...``) and the library's own qualified names
(``trio.Lock`` / ``nursery_io.Lock``) are normalised before comparing.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import subprocess
import threading
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from .harness import outcome, same_under_both, sync_outcome

Case = Callable[[ModuleType], Any]
CASES: dict[str, Case] = {}


def case(fn: Case) -> Case:
    CASES[fn.__name__] = fn
    return fn


def _normalise(text: str) -> str:
    text = re.sub(r"0x[0-9a-f]+", "0xADDR", text)
    return text.replace("nursery_io.", "trio.")


def _describe(exc: BaseException) -> Any:
    if isinstance(exc, BaseExceptionGroup):
        return ("group", type(exc).__name__, [_describe(e) for e in exc.exceptions])
    return ("exc", type(exc).__name__, _normalise(str(exc)))


def _outcome(lib: ModuleType, fn: Case) -> Any:
    try:
        if inspect.iscoroutinefunction(fn):
            result = lib.run(fn, lib)
        else:
            result = fn(lib)
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt is no case of ours
        return ("raised", _describe(exc))
    return ("returned", result)


# Cases whose messages may carry a hint after Trio's text (none of sync or channels:
# those are exactly Trio's).
HINTED_CASES = frozenset(
    {
        "fd_stream_needs_an_int",
        "from_thread_called_in_a_foreign_thread",
        "from_thread_called_in_the_run_thread",
        "open_process_command_shapes",
        "open_process_rejects_text_options",
        "process_has_no_public_constructor",
        "run_process_misuse",
    }
)


def _matches(trio_side: Any, ours: Any, *, hinted: bool = False) -> bool:
    """Equal; with ``hinted``, an exception's message only has to start with Trio's."""
    if hinted and isinstance(trio_side, tuple) and trio_side[:1] == ("exc",):
        return bool(
            isinstance(ours, tuple)
            and ours[:2] == trio_side[:2]
            and ours[2].startswith(trio_side[2])
        )
    if isinstance(trio_side, (tuple, list)) and type(ours) is type(trio_side):
        return len(trio_side) == len(ours) and all(
            _matches(theirs, mine, hinted=hinted) for theirs, mine in zip(trio_side, ours)
        )
    return bool(trio_side == ours)


def _run_case(name: str) -> None:
    hinted = name in HINTED_CASES
    same_under_both(
        lambda lib: _outcome(lib, CASES[name]),
        matches=lambda theirs, ours: _matches(theirs, ours, hinted=hinted),
    )


def _raises(fn: Callable[[], object]) -> Any:
    """Inside a case: what ``fn()`` raised, as comparable data (or its return value)."""
    return sync_outcome(fn, lambda exc: ("raised", _describe(exc)))


async def _araises(fn: Callable[[], Any]) -> Any:
    return await outcome(fn, lambda exc: ("raised", _describe(exc)))


# ----- CapacityLimiter -----


@case
def limiter_total_tokens_float(lib: ModuleType) -> Any:
    return lib.CapacityLimiter(1.5)


@case
def limiter_total_tokens_str(lib: ModuleType) -> Any:
    return lib.CapacityLimiter("3")


@case
def limiter_total_tokens_nan(lib: ModuleType) -> Any:
    return lib.CapacityLimiter(math.nan)


@case
def limiter_total_tokens_negative(lib: ModuleType) -> Any:
    return lib.CapacityLimiter(-1)


@case
def limiter_total_tokens_accepted(lib: ModuleType) -> Any:
    return [lib.CapacityLimiter(n).total_tokens for n in (0, 3, True, math.inf)]


@case
def limiter_total_tokens_assigned_badly(lib: ModuleType) -> Any:
    limiter = lib.CapacityLimiter(2)

    def assign(value: object) -> None:
        limiter.total_tokens = value

    return [_raises(lambda: assign(v)) for v in (-1, 2.5, None)], limiter.total_tokens


@case
async def limiter_acquire_twice(lib: ModuleType) -> Any:
    limiter = lib.CapacityLimiter(2)
    await limiter.acquire()
    return _raises(limiter.acquire_nowait), await _araises(limiter.acquire)


@case
async def limiter_on_behalf_of_twice(lib: ModuleType) -> Any:
    limiter = lib.CapacityLimiter(2)
    await limiter.acquire_on_behalf_of("x")
    return (
        _raises(lambda: limiter.acquire_on_behalf_of_nowait("x")),
        await _araises(lambda: limiter.acquire_on_behalf_of("x")),
    )


@case
async def limiter_release_unborrowed(lib: ModuleType) -> Any:
    limiter = lib.CapacityLimiter(2)
    await limiter.acquire_on_behalf_of("x")
    return (
        _raises(limiter.release),
        _raises(lambda: limiter.release_on_behalf_of("y")),
        limiter.statistics().borrowed_tokens,
    )


# ----- Semaphore -----


@case
def semaphore_bad_arguments(lib: ModuleType) -> Any:
    return [
        _raises(lambda: lib.Semaphore("1")),
        _raises(lambda: lib.Semaphore(1.0)),
        _raises(lambda: lib.Semaphore(-1)),
        _raises(lambda: lib.Semaphore(1, max_value="2")),
        _raises(lambda: lib.Semaphore(1, max_value=1.5)),
        _raises(lambda: lib.Semaphore(2, max_value=1)),
        _raises(lambda: lib.Semaphore(1, max_value=1).value),
    ]


@case
def semaphore_released_too_often(lib: ModuleType) -> Any:
    semaphore = lib.Semaphore(1, max_value=1)
    return semaphore.release()


# ----- Lock, StrictFIFOLock -----


def _lock_misuse(cls_name: str) -> Case:
    async def lock_misuse(lib: ModuleType) -> Any:
        lock = getattr(lib, cls_name)()
        trace = [_raises(lock.release)]
        await lock.acquire()
        trace.append(_raises(lock.acquire_nowait))
        trace.append(await _araises(lock.acquire))

        async def other_task() -> None:
            trace.append(_raises(lock.release))
            trace.append(_raises(lock.acquire_nowait))

        async with lib.open_nursery() as nursery:
            nursery.start_soon(other_task)
        lock.release()
        trace.append(_raises(lock.release))
        return trace

    lock_misuse.__name__ = f"{cls_name.lower()}_misuse"
    return lock_misuse


case(_lock_misuse("Lock"))
case(_lock_misuse("StrictFIFOLock"))


async def _owner_exits_holding(lib: ModuleType) -> None:
    lock = lib.Lock()

    async def holder(task_status: Any) -> None:
        await lock.acquire()
        task_status.started()

    async with lib.open_nursery() as nursery:
        await nursery.start(holder)
        await lock.acquire()


@case
async def lock_owner_exited_without_releasing(lib: ModuleType) -> Any:
    return await _owner_exits_holding(lib)


# ----- Condition -----


@case
def condition_needs_a_lock(lib: ModuleType) -> Any:
    return [
        _raises(lambda: lib.Condition(lib.StrictFIFOLock())),
        _raises(lambda: lib.Condition("lock")),
    ]


@case
async def condition_needs_the_lock_held(lib: ModuleType) -> Any:
    condition = lib.Condition()
    return [
        await _araises(condition.wait),
        _raises(condition.notify),
        _raises(condition.notify_all),
        _raises(condition.release),
    ]


# ----- Event -----


@case
def event_is_no_bool(lib: ModuleType) -> Any:
    return bool(lib.Event())


# ----- ParkingLot -----


@case
async def parking_lot_counts(lib: ModuleType) -> Any:
    lot = lib.lowlevel.ParkingLot()
    return [
        _raises(lambda: lot.unpark(count=1.5)),
        _raises(lambda: lot.unpark(count=-1)),
        _raises(lambda: lot.unpark(count=math.inf)),
        _raises(lambda: lot.repark(lib.lowlevel.ParkingLot(), count=-2)),
        _raises(lambda: lot.repark("lot")),
    ]


@case
async def parking_lot_broken(lib: ModuleType) -> Any:
    lot = lib.lowlevel.ParkingLot()
    lot.break_lot()
    lot.break_lot()
    return len(lot.broken_by), await _araises(lot.park)


@case
async def parking_lot_breaker_misuse(lib: ModuleType) -> Any:
    lot = lib.lowlevel.ParkingLot()
    me = lib.lowlevel.current_task()
    finished: list[Any] = []

    async def child() -> None:
        finished.append(lib.lowlevel.current_task())

    async with lib.open_nursery() as nursery:
        nursery.start_soon(child)
    return [
        _raises(lambda: lib.lowlevel.remove_parking_lot_breaker(me, lot)),
        _raises(lambda: lib.lowlevel.add_parking_lot_breaker(finished[0], lot)),
    ]


# ----- memory channels -----


@case
def channel_buffer_sizes(lib: ModuleType) -> Any:
    results = []
    for size in (-1, 1.5, "1", None, math.nan, -math.inf):
        results.append(_raises(lambda size=size: lib.open_memory_channel(size)))
    for size in (0, 5, True, math.inf):
        send, receive = lib.open_memory_channel(size)
        results.append(send.statistics().max_buffer_size)
    return results


@case
def channel_no_public_constructor(lib: ModuleType) -> Any:
    return [
        _raises(lib.MemorySendChannel),
        _raises(lib.MemoryReceiveChannel),
    ]


@case
async def channel_closed_ends(lib: ModuleType) -> Any:
    send, receive = lib.open_memory_channel(1)
    send2 = send.clone()
    send.close()
    trace = [
        _raises(send.clone),
        _raises(lambda: send.send_nowait(1)),
        await _araises(lambda: send.send(1)),
    ]
    receive2 = receive.clone()
    receive.close()
    trace += [
        _raises(receive.clone),
        _raises(receive.receive_nowait),
        await _araises(receive.receive),
        _raises(receive2.receive_nowait),
    ]
    receive2.close()
    trace += [_raises(lambda: send2.send_nowait(1)), await _araises(lambda: send2.send(1))]
    send2.close()
    return trace


@case
async def channel_end_of_channel(lib: ModuleType) -> Any:
    send, receive = lib.open_memory_channel(1)
    send.send_nowait("x")
    await send.aclose()
    return _raises(receive.receive_nowait), _raises(receive.receive_nowait)


# ----- timeouts -----


@case
async def sleep_bad_durations(lib: ModuleType) -> Any:
    return [
        await _araises(lambda: lib.sleep(-1)),
        await _araises(lambda: lib.sleep(math.nan)),
        await _araises(lambda: lib.sleep(-math.inf)),
        await _araises(lambda: lib.sleep("1")),
        await _araises(lambda: lib.sleep_until(math.nan)),
    ]


@case
def timeout_scopes_bad_values(lib: ModuleType) -> Any:
    return [
        _raises(lambda: lib.move_on_after(-1)),
        _raises(lambda: lib.move_on_after(math.nan)),
        _raises(lambda: lib.move_on_at(math.nan)),
    ]


@case
async def fail_after_bad_values(lib: ModuleType) -> Any:
    results = []
    for make in (
        lambda: lib.fail_after(-1),
        lambda: lib.fail_after(math.nan),
        lambda: lib.fail_at(math.nan),
    ):

        def enter(make: Callable[[], Any] = make) -> None:
            with make():
                pass

        results.append(_raises(enter))
    return results


@case
async def fail_after_expires(lib: ModuleType) -> Any:
    with lib.fail_after(0):
        await lib.sleep(1)


@case
async def sleep_forever_rescheduled(lib: ModuleType) -> Any:
    task = lib.lowlevel.current_task()

    async def wake() -> None:
        await lib.testing.wait_all_tasks_blocked()
        lib.lowlevel.reschedule(task)

    async with lib.open_nursery() as nursery:
        nursery.start_soon(wake)
        return await _araises(lib.sleep_forever)


# ----- threads -----


@case
async def to_thread_given_an_async_function(lib: ModuleType) -> Any:
    async def not_sync() -> None:
        pass  # pragma: no cover - never awaited

    return await _araises(lambda: lib.to_thread.run_sync(not_sync))


@case
async def to_thread_default_thread_name(lib: ModuleType) -> Any:
    def name() -> str:
        return threading.current_thread().name

    return await lib.to_thread.run_sync(name)


@case
async def to_thread_abandon_on_cancel_is_made_a_bool_first(lib: ModuleType) -> Any:
    class NotABool:
        def __bool__(self) -> bool:
            raise ValueError("no truth value")

    called: list[bool] = []
    result = await _araises(
        lambda: lib.to_thread.run_sync(called.append, True, abandon_on_cancel=NotABool())
    )
    return result, called


@case
async def from_thread_given_the_wrong_kind_of_function(lib: ModuleType) -> Any:
    async def asynchronous() -> int:
        return 1  # pragma: no cover - never awaited

    def synchronous() -> int:
        return 2

    def in_worker() -> Any:
        return [
            _raises(lambda: lib.from_thread.run_sync(asynchronous)),
            _raises(lambda: lib.from_thread.run(synchronous)),
            _raises(lambda: lib.from_thread.run(asynchronous())),
        ]

    return await lib.to_thread.run_sync(in_worker)


@case
async def from_thread_called_in_the_run_thread(lib: ModuleType) -> Any:
    token = lib.lowlevel.current_trio_token()

    async def asynchronous() -> int:
        return 1  # pragma: no cover - never called

    return [
        _raises(lambda: lib.from_thread.run_sync(int)),
        _raises(lambda: lib.from_thread.run(asynchronous)),
        _raises(lambda: lib.from_thread.run_sync(int, trio_token=token)),
        _raises(lambda: lib.from_thread.run(asynchronous, trio_token=token)),
        _raises(lambda: lib.from_thread.run_sync(int, trio_token="token")),
        _raises(lib.from_thread.check_cancelled),
    ]


@case
def from_thread_called_in_a_foreign_thread(lib: ModuleType) -> Any:
    results: list[Any] = []

    def foreign() -> None:
        results.append(_raises(lambda: lib.from_thread.run_sync(int)))
        results.append(_raises(lambda: lib.from_thread.run_sync(int, trio_token=object())))
        results.append(_raises(lib.from_thread.check_cancelled))

    thread = threading.Thread(target=foreign)
    thread.start()
    thread.join()
    return results


# ----- FdStream -----


@case
def fd_stream_needs_an_int(lib: ModuleType) -> Any:
    return [_raises(lambda: lib.lowlevel.FdStream(fd)) for fd in ("3", None, 3.0)]


@case
async def fd_stream_misuse(lib: ModuleType) -> Any:
    # Nobody writes to the receiver's pipe, nobody reads from the sender's.
    read_fd, unused_write_fd = os.pipe()
    unused_read_fd, write_fd = os.pipe()
    receiver = lib.lowlevel.FdStream(read_fd)
    sender = lib.lowlevel.FdStream(write_fd)
    trace = [await _araises(lambda n=n: receiver.receive_some(n)) for n in (0, -1, 1.5, "1")]
    async with lib.open_nursery() as nursery:
        nursery.start_soon(receiver.receive_some)
        nursery.start_soon(sender.send_all, b"x" * 10_000_000)
        await lib.testing.wait_all_tasks_blocked()
        trace.append(await _araises(receiver.receive_some))
        trace.append(await _araises(lambda: sender.send_all(b"y")))
        trace.append(await _araises(sender.wait_send_all_might_not_block))
        nursery.cancel_scope.cancel()
    await receiver.aclose()
    await sender.aclose()
    trace += [
        await _araises(receiver.receive_some),
        await _araises(lambda: sender.send_all(b"")),
        await _araises(sender.wait_send_all_might_not_block),
        receiver.fileno(),
    ]
    os.close(unused_read_fd)
    os.close(unused_write_fd)
    return trace


# ----- subprocesses -----


@case
async def open_process_rejects_text_options(lib: ModuleType) -> Any:
    options = [
        {"encoding": "utf-8"},
        {"errors": "strict"},
        {"text": True},
        {"universal_newlines": True},
        {"bufsize": 1},
    ]
    return [await _araises(lambda o=o: lib.lowlevel.open_process(["true"], **o)) for o in options]


@case
async def open_process_accepts_binary_settings(lib: ModuleType) -> Any:
    process = await lib.lowlevel.open_process(
        ["true"], encoding=None, errors=None, text=False, universal_newlines=False, bufsize=0
    )
    await process.wait()
    return process.returncode, process.encoding, process.errors, process.universal_newlines


@case
def process_has_no_public_constructor(lib: ModuleType) -> Any:
    return lib.Process(["true"])


@case
async def open_process_command_shapes(lib: ModuleType) -> Any:
    return [
        await _araises(lambda: lib.lowlevel.open_process("true")),
        await _araises(lambda: lib.lowlevel.open_process(b"true")),
        await _araises(lambda: lib.lowlevel.open_process(["true"], shell=True)),
    ]


@case
async def run_process_misuse(lib: ModuleType) -> Any:
    calls: list[Callable[[], Any]] = [
        lambda: lib.run_process(["true"], stdin="text"),
        lambda: lib.run_process(["true"], stdin=subprocess.PIPE),
        lambda: lib.run_process(["true"], stdout=subprocess.PIPE),
        lambda: lib.run_process(["true"], stderr=subprocess.PIPE),
        lambda: lib.run_process(["true"], capture_stdout=True, stdout=subprocess.DEVNULL),
        lambda: lib.run_process(["true"], capture_stderr=True, stderr=subprocess.DEVNULL),
        lambda: lib.run_process(["true"], input=b""),
        lambda: lib.run_process(["true"], timeout=1),
        lambda: lib.run_process(["true"], capture_output=True),
        lambda: lib.run_process(["false"]),
    ]
    return [await _araises(call) for call in calls]


# ----- weak references -----


@case
async def primitives_can_be_weakly_referenced(lib: ModuleType) -> Any:
    objects = [
        lib.Event(),
        lib.Lock(),
        lib.StrictFIFOLock(),
        lib.Semaphore(1),
        lib.Condition(),
        lib.CapacityLimiter(1),
        lib.lowlevel.ParkingLot(),
        *lib.open_memory_channel(0),
        lib.StapledStream(*lib.testing.memory_stream_one_way_pair()),
    ]
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    stream = lib.lowlevel.FdStream(read_fd)
    objects.append(stream)
    try:
        return [weakref.ref(obj)() is obj for obj in objects]
    finally:
        stream.close()


# ----- outside a run -----


@case
def event_outside_a_run(lib: ModuleType) -> Any:
    event = lib.Event()
    event.set()
    event.set()
    return event.is_set(), event.statistics().tasks_waiting


@case
def parking_lot_outside_a_run(lib: ModuleType) -> Any:
    lot = lib.lowlevel.ParkingLot()
    other = lib.lowlevel.ParkingLot()
    lot.repark_all(other)
    lot.repark(other, count=3)
    return lot.unpark_all(), lot.unpark(count=2), lot.statistics().tasks_waiting, len(lot)


@case
def limiter_outside_a_run(lib: ModuleType) -> Any:
    limiter = lib.CapacityLimiter(1)
    limiter.acquire_on_behalf_of_nowait("a")
    trace = [
        _raises(lambda: limiter.acquire_on_behalf_of_nowait("b")),
        limiter.borrowed_tokens,
        limiter.available_tokens,
    ]
    limiter.total_tokens = 2
    limiter.acquire_on_behalf_of_nowait("b")
    limiter.release_on_behalf_of("a")
    stats = limiter.statistics()
    trace.append((stats.borrowed_tokens, stats.total_tokens, stats.borrowers))
    trace.append(stats.tasks_waiting)
    return trace


@case
def semaphore_outside_a_run(lib: ModuleType) -> Any:
    semaphore = lib.Semaphore(1, max_value=2)
    semaphore.acquire_nowait()
    trace = [_raises(semaphore.acquire_nowait), semaphore.value]
    semaphore.release()
    semaphore.release()
    trace += [semaphore.value, semaphore.statistics().tasks_waiting]
    return trace


@case
def lock_outside_a_run(lib: ModuleType) -> Any:
    lock = lib.Lock()
    condition = lib.Condition()
    stats = lock.statistics()
    return (
        lock.locked(),
        (stats.locked, stats.owner, stats.tasks_waiting),
        condition.locked(),
        condition.statistics().tasks_waiting,
    )


@case
def channel_outside_a_run(lib: ModuleType) -> Any:
    send, receive = lib.open_memory_channel(2)
    send.send_nowait(1)
    send2 = send.clone()
    send2.send_nowait(2)
    trace = [_raises(lambda: send.send_nowait(3))]
    trace.append(receive.receive_nowait())
    receive2 = receive.clone()
    trace.append(receive2.receive_nowait())
    trace.append(_raises(receive.receive_nowait))
    stats = send.statistics()
    trace.append((stats.open_send_channels, stats.open_receive_channels))
    with send, send2:
        pass
    trace.append(_raises(receive.receive_nowait))
    receive.close()
    with receive2:
        pass
    trace.append(receive2.statistics().open_receive_channels)
    return trace


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_error_as_trio(name: str) -> None:
    _run_case(name)


def test_hinted_cases_exist() -> None:
    assert HINTED_CASES <= CASES.keys()
