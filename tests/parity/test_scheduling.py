"""Scheduling and core odds and ends, side by side with Trio where it can be observed.

Batch order, run_sync_soon fairness, deadlines noticed while the run queue never empties,
instrument hook discovery, statistics, MockClock arithmetic, RunVar tokens,
``custom_sleep_data`` and ``iter_await_frames``. Each side-by-side test runs the same
function under ``trio.run`` and ``nursery_io.run`` and compares what they record.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest
import trio

import nursery_io
from nursery_io._core import _run

from .harness import each_library, run_both, same_under_both


def _mock_clock(lib: ModuleType) -> Any:
    return lib.testing.MockClock()


@contextmanager
def scheduler_random(
    random_source: random.Random | None = None, *, deterministic: bool | None = None
) -> Iterator[None]:
    """Temporarily swap the scheduler's random source and/or deterministic switch."""
    saved = (_run._r, _run._ALLOW_DETERMINISTIC_SCHEDULING)
    if random_source is not None:
        _run._r = random_source
    if deterministic is not None:
        _run._ALLOW_DETERMINISTIC_SCHEDULING = deterministic
    try:
        yield
    finally:
        _run._r, _run._ALLOW_DETERMINISTIC_SCHEDULING = saved


# ----- 1. batch order -----


async def _two_task_order(lib: ModuleType) -> tuple[str, ...]:
    order: list[str] = []

    async def record(name: str) -> None:
        order.append(name)

    async with lib.open_nursery() as nursery:
        # Both become runnable before the parent's next step: one batch.
        nursery.start_soon(record, "a")
        nursery.start_soon(record, "b")
    return tuple(order)


@each_library
def test_a_batch_runs_in_either_direction(lib: ModuleType) -> None:
    # Seeded, so the outcome is fixed; 40 runs with a fair bit each see both directions.
    seen = set()
    with scheduler_random(random.Random(20250101), deterministic=False):
        if lib is trio:
            trio._core._run._r.seed(20250101)
        for _ in range(40):
            seen.add(lib.run(_two_task_order, lib))
    assert seen == {("a", "b"), ("b", "a")}


class _CountingRandom(random.Random):
    draws = 0
    # Only this thread's draws: a run some other test left going in a thread would add its own.
    thread = threading.get_ident()

    def getrandbits(self, k: int, /) -> int:
        if threading.get_ident() == self.thread:
            self.draws += 1
        return super().getrandbits(k)


def test_one_random_draw_per_batch_not_per_task() -> None:
    source = _CountingRandom(1)
    steps = 0

    async def main() -> None:
        nonlocal steps

        async def spinner() -> None:
            for _ in range(50):
                await nursery_io.lowlevel.checkpoint()

        async with nursery_io.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(spinner)
        steps = nursery_io.lowlevel.current_statistics().task_steps

    with scheduler_random(source, deterministic=False):
        nursery_io.run(main)
    # ~51 batches of 8 or 9 tasks: one draw each, never one per task step.
    assert 40 <= source.draws <= 70, source.draws
    assert steps > 400


def _interleaving_trace(seed: int) -> list[tuple[str, int]]:
    trace: list[tuple[str, int]] = []

    async def worker(name: str) -> None:
        for i in range(4):
            trace.append((name, i))
            await nursery_io.lowlevel.checkpoint()

    async def main() -> None:
        async with nursery_io.open_nursery() as nursery:
            for name in "abcdef":
                nursery.start_soon(worker, name)

    with scheduler_random(random.Random(seed), deterministic=True):
        nursery_io.run(main)
    return trace


def test_deterministic_scheduling_follows_the_seed() -> None:
    assert _interleaving_trace(7) == _interleaving_trace(7)
    # Shuffled, not merely reversed: more than the two directions show up.
    first_rounds = {
        tuple(name for name, i in _interleaving_trace(seed) if i == 0) for seed in range(6)
    }
    assert len(first_rounds) > 2


def test_seeding_the_scheduler_random_reproduces_the_clock_offset() -> None:
    async def offset() -> float:
        return nursery_io.current_time() - time.perf_counter()

    with scheduler_random(random.Random(3)):
        first = nursery_io.run(offset)
    with scheduler_random(random.Random(3)):
        second = nursery_io.run(offset)
    assert abs(first - second) < 1.0  # same ~10,000-200,000 s offset, not a fresh draw
    assert first > 9_000


def test_hypothesis_plugin_setup_makes_scheduling_deterministic() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    traces: list[list[tuple[str, int]]] = []

    async def main() -> None:
        trace: list[tuple[str, int]] = []

        async def worker(name: str) -> None:
            for i in range(4):
                trace.append((name, i))
                await nursery_io.lowlevel.checkpoint()

        async with nursery_io.open_nursery() as nursery:
            for name in "abcdefgh":
                nursery.start_soon(worker, name)
        traces.append(trace)

    @hypothesis.settings(max_examples=5, database=None, derandomize=True)
    @hypothesis.given(hypothesis.strategies.integers())
    def under_hypothesis(_: int) -> None:
        nursery_io.run(main)

    with scheduler_random(deterministic=False):
        # What the ``hypothesis`` entry point runs when Hypothesis is imported.
        _run._hypothesis_plugin_setup()
        assert _run._ALLOW_DETERMINISTIC_SCHEDULING is True
        under_hypothesis()
    # Hypothesis reseeds the registered random for every example: same schedule each time,
    # and a shuffled one (not merely spawn order or its reverse).
    assert len(traces) >= 2
    assert all(trace == traces[0] for trace in traces)
    first_round = [name for name, i in traces[0] if i == 0]
    assert first_round not in (list("abcdefgh"), list("hgfedcba"))


# ----- 2. run_sync_soon can't be starved -----


async def _self_requeueing_callback(lib: ModuleType) -> tuple[bool, bool]:
    token = lib.lowlevel.current_trio_token()
    calls = 0

    def again() -> None:
        nonlocal calls
        calls += 1
        try:
            token.run_sync_soon(again)
        except lib.RunFinishedError:
            pass

    token.run_sync_soon(again)
    for _ in range(20):
        await lib.lowlevel.checkpoint()
    # The callback queue never empties, yet the task keeps running; and the callback
    # keeps running too, about once per batch.
    return (calls >= 15, calls <= 25)


def test_run_sync_soon_and_a_busy_task_both_progress() -> None:
    run_both(_self_requeueing_callback)


@each_library
def test_run_sync_soon_from_another_thread_runs_while_busy(lib: ModuleType) -> None:
    async def main() -> int:
        token = lib.lowlevel.current_trio_token()
        done = threading.Event()
        queued = threading.Event()

        def from_thread() -> None:
            token.run_sync_soon(done.set)
            queued.set()

        threading.Thread(target=from_thread).start()
        while not queued.is_set():
            await lib.lowlevel.checkpoint()
        checkpoints = 0
        while not done.is_set():
            checkpoints += 1
            await lib.lowlevel.checkpoint()
        return checkpoints

    assert lib.run(main) <= 3


# ----- 3. past deadlines are noticed while the run queue never empties -----


async def _deadlines_with_busy_tasks(lib: ModuleType) -> list[object]:
    clock = lib.lowlevel.current_clock()
    trace: list[object] = []

    async def spinner() -> None:
        while True:
            await lib.lowlevel.checkpoint()

    async with lib.open_nursery() as nursery:
        nursery.start_soon(spinner)
        nursery.start_soon(spinner)
        # A jump past a scope's deadline: the very next checkpoint raises.
        with lib.CancelScope(deadline=lib.current_time() + 5) as scope:
            await lib.lowlevel.checkpoint()
            clock.jump(10)
            try:
                await lib.lowlevel.checkpoint()
            except lib.Cancelled:
                trace.append("cancelled at the first checkpoint after the jump")
                raise
        trace.append(("caught", scope.cancelled_caught))
        # Moving a deadline into the past: the same.
        start = lib.current_time()
        with lib.CancelScope() as scope:
            await lib.lowlevel.checkpoint()
            scope.deadline = start + 10
            await lib.lowlevel.checkpoint()
            clock.jump(5)
            await lib.lowlevel.checkpoint()
            scope.deadline = start + 1
            for n in range(3):
                try:
                    await lib.lowlevel.checkpoint()
                except lib.Cancelled:
                    trace.append(("cancelled at checkpoint", n))
                    break
        # Two scopes expiring at once while busy: the outer one catches.
        with lib.CancelScope(deadline=lib.current_time() + 1) as outer:
            with lib.CancelScope(deadline=lib.current_time() + 1) as inner:
                clock.jump(1)
                await lib.lowlevel.checkpoint()
        trace.append(("outer", outer.cancelled_caught, "inner", inner.cancelled_caught))
        nursery.cancel_scope.cancel()
    return trace


def test_past_deadlines_fire_at_the_next_checkpoint_while_busy() -> None:
    run_both(_deadlines_with_busy_tasks, clock=_mock_clock)


@each_library
def test_move_on_after_ends_a_checkpoint_loop_promptly(lib: ModuleType) -> None:
    async def main() -> tuple[int, float]:
        steps = 0
        start = time.perf_counter()
        with lib.move_on_after(0.01):
            while True:
                steps += 1
                await lib.lowlevel.checkpoint()
        return steps, time.perf_counter() - start

    steps, elapsed = lib.run(main)
    assert steps > 1
    assert 0.01 <= elapsed < 0.5


class _SteppedClock(nursery_io.abc.Clock):
    """A clock that moves only when told to and is not a MockClock, so the run keeps its
    busy turns (a MockClock run polls on every turn)."""

    def __init__(self) -> None:
        self.now = 0.0

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self.now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - self.now


def test_busy_turns_fire_an_expired_deadline_without_polling() -> None:
    # Checkpoints far closer together than the busy-poll interval: the jump is noticed
    # although no kernel poll happens between the two checkpoints.
    clock = _SteppedClock()

    async def main() -> tuple[int, bool]:
        with nursery_io.CancelScope(deadline=nursery_io.current_time() + 1) as scope:
            await nursery_io.lowlevel.checkpoint()
            polls = nursery_io.lowlevel.current_statistics().kernel_polls
            clock.now += 2
            await nursery_io.lowlevel.checkpoint()
        return nursery_io.lowlevel.current_statistics().kernel_polls - polls, scope.cancelled_caught

    new_polls, caught = nursery_io.run(main, clock=clock)
    assert caught
    assert new_polls <= 1


def test_a_mock_clock_run_polls_on_every_turn() -> None:
    # Virtual time: no real-time throttle between polls (the order of socket wake-ups must
    # not depend on the machine's speed), so each checkpoint's turn polls the kernel.
    async def main() -> int:
        polls = nursery_io.lowlevel.current_statistics().kernel_polls
        for _ in range(10):
            await nursery_io.lowlevel.checkpoint()
        return nursery_io.lowlevel.current_statistics().kernel_polls - polls

    assert nursery_io.run(main, clock=nursery_io.testing.MockClock()) >= 10


# ----- 4. instruments -----


async def _instrument_hooks_added_later(lib: ModuleType) -> list[object]:
    class Plain(lib.abc.Instrument):  # type: ignore[name-defined,misc]
        pass

    instrument = Plain()
    lib.lowlevel.add_instrument(instrument)
    seen: list[object] = []
    me = lib.lowlevel.current_task()
    trace: list[object] = []
    # A hook given to an installed instrument isn't called until it is re-added...
    instrument.before_task_step = seen.append
    await lib.lowlevel.checkpoint()
    await lib.lowlevel.checkpoint()
    trace.append(seen.count(me))
    lib.lowlevel.remove_instrument(instrument)
    lib.lowlevel.add_instrument(instrument)
    await lib.lowlevel.checkpoint()
    await lib.lowlevel.checkpoint()
    trace.append(seen.count(me))
    # ...but replacing a hook it already has takes effect at once.
    other: list[object] = []
    instrument.before_task_step = other.append
    await lib.lowlevel.checkpoint()
    trace.append((seen.count(me), other.count(me)))
    lib.lowlevel.remove_instrument(instrument)
    await lib.lowlevel.checkpoint()
    trace.append(other.count(me))
    try:
        lib.lowlevel.remove_instrument(instrument)
    except KeyError as exc:
        trace.append(("KeyError", exc.args == (instrument,)))
    return trace


def test_instrument_hooks_are_found_when_added() -> None:
    run_both(_instrument_hooks_added_later)


async def _instrument_raising_on_attribute_access(lib: ModuleType) -> list[object]:
    trace: list[object] = []

    class Evil(lib.abc.Instrument):  # type: ignore[name-defined,misc]
        def task_exited(self, task: object) -> None:
            trace.append("task_exited called")

        @property
        def after_run(self) -> Any:
            raise ValueError("oops")

    instrument = Evil()
    try:
        lib.lowlevel.add_instrument(instrument)
    except ValueError as exc:
        trace.append(("ValueError", str(exc)))
    runner = lib.lowlevel.current_task()._runner
    trace.append(sorted(name for name in runner.instruments if runner.instruments[name]))
    try:
        lib.lowlevel.remove_instrument(instrument)
    except KeyError:
        trace.append("not installed")
    async with lib.open_nursery() as nursery:
        nursery.start_soon(lib.lowlevel.checkpoint)
    return trace


def test_instrument_that_raises_on_getattr_is_not_installed() -> None:
    run_both(_instrument_raising_on_attribute_access)


async def test_instrument_whose_hook_lookup_raises_attribute_error() -> None:
    # (Trio's add_instrument turns this AttributeError into "must be called from async
    # context"; the error the instrument raised is the more useful one.)
    class Broken(nursery_io.abc.Instrument):
        @property
        def before_task_step(self) -> Any:
            raise AttributeError("no")

    broken = Broken()
    with pytest.raises(AttributeError, match="^no$"):
        nursery_io.lowlevel.add_instrument(broken)
    with pytest.raises(KeyError):
        nursery_io.lowlevel.remove_instrument(broken)


# ----- 5. statistics -----


def _stats(lib: ModuleType) -> tuple[object, ...]:
    stats = lib.lowlevel.current_statistics()
    io = stats.io_statistics
    return (
        stats.tasks_living,
        stats.tasks_runnable,
        stats.seconds_to_next_deadline,
        stats.run_sync_soon_queue_size,
        io.tasks_waiting_read,
        io.tasks_waiting_write,
        io.backend,
    )


async def _statistics_over_a_run(lib: ModuleType) -> list[object]:
    await lib.testing.wait_all_tasks_blocked()
    trace: list[object] = [_stats(lib)]

    async def sleeper() -> None:
        try:
            await lib.sleep_forever()
        except lib.Cancelled:
            pass

    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        while True:  # fill b's send buffer so a writer has to wait
            try:
                b.send(b"x" * 65536)
            except BlockingIOError:
                break
        async with lib.open_nursery() as nursery:
            nursery.start_soon(sleeper)
            trace.append(_stats(lib))
            nursery.start_soon(lib.lowlevel.wait_readable, a)
            nursery.start_soon(lib.lowlevel.wait_writable, b)
            await lib.testing.wait_all_tasks_blocked()
            trace.append(_stats(lib))
            token = lib.lowlevel.current_trio_token()
            token.run_sync_soon(lambda: None)
            token.run_sync_soon(lambda: None, idempotent=True)
            token.run_sync_soon(lambda: None, idempotent=True)
            trace.append(_stats(lib))
            nursery.cancel_scope.cancel()
            trace.append(_stats(lib))
        await lib.lowlevel.checkpoint()
        await lib.lowlevel.checkpoint()
        trace.append(_stats(lib))
    with lib.CancelScope(deadline=lib.current_time() + 5):
        with lib.CancelScope(deadline=lib.current_time() + 7):
            trace.append(_stats(lib))
    trace.append(_stats(lib))
    lib.lowlevel.spawn_system_task(lib.sleep_forever)
    trace.append(_stats(lib))
    return trace


def test_statistics_count_like_trio() -> None:
    run_both(_statistics_over_a_run, clock=_mock_clock)


async def test_io_statistics_keep_nursery_io_fields() -> None:
    io = nursery_io.lowlevel.current_statistics().io_statistics
    assert io.backend == "epoll"
    assert io.kernel_polls >= 1
    assert io.fds_watched == 0
    assert io.tasks_waiting_read == 1  # the run's own wake-up, as Trio counts it


# ----- 6. MockClock, RunVar, Task -----


def _mock_clock_arithmetic(lib: ModuleType) -> list[object]:
    real = [123.0]
    clock = lib.testing.MockClock()
    clock._real_clock = lambda: real[0]
    trace: list[object] = [clock.current_time()]
    clock.jump(1.2)
    clock.rate = 2
    trace.append(clock.current_time())
    real[0] += 1
    trace += [clock.current_time(), clock.deadline_to_sleep_time(4.2)]
    clock.rate = 0.5
    trace += [clock.current_time(), clock.deadline_to_sleep_time(4.2)]
    clock.jump(0.8)
    real[0] += 1
    trace.append(clock.current_time())
    clock.rate = 0.1
    real[0] += 0.3
    trace.append(clock.current_time())
    clock.rate = 3
    real[0] += 1 / 3
    trace.append(clock.current_time())
    return trace


def test_mock_clock_with_rate_gives_the_same_times_as_trio() -> None:
    expected = same_under_both(_mock_clock_arithmetic)
    assert expected[:7] == [0.0, 1.2, 3.2, 0.5, 3.2, 2.0, 4.5]  # exact, not approximately


def _runvar_tokens(lib: ModuleType) -> list[object]:
    with_default = lib.lowlevel.RunVar("with_default", default=7)
    plain = lib.lowlevel.RunVar("plain")
    trace: list[object] = []

    def attempt(fn: Callable[[], object]) -> None:
        try:
            trace.append(("ok", fn()))
        except Exception as exc:
            trace.append((type(exc).__name__, str(exc)))

    attempt(with_default.get)
    attempt(lambda: with_default.set(1))
    attempt(lambda: with_default.reset(None))

    async def main() -> None:
        token = with_default.set(3)
        trace.append((token.previous_value, token.redeemed))
        with_default.reset(token)
        trace.append((token.redeemed, with_default.get()))
        attempt(lambda: with_default.reset(token))
        attempt(lambda: plain.reset(with_default.set(4)))
        attempt(lambda: plain.reset(None))
        token = plain.set(1)
        trace.append(isinstance(token.previous_value, type))
        plain.reset(token)
        attempt(plain.get)

    lib.run(main)
    return trace


def test_runvar_tokens_match_trio() -> None:
    assert _runvar_tokens(nursery_io) == _runvar_tokens(trio)


async def _custom_sleep_data(lib: ModuleType) -> list[object]:
    task = lib.lowlevel.current_task()
    trace: list[object] = [task.custom_sleep_data]
    for pause in (
        lib.lowlevel.checkpoint,
        lib.lowlevel.cancel_shielded_checkpoint,
        lambda: lib.sleep(0),
        lambda: lib.sleep(1),
    ):
        task.custom_sleep_data = "mine"
        await pause()
        trace.append(task.custom_sleep_data)
    task.custom_sleep_data = "kept"
    await lib.lowlevel.checkpoint_if_cancelled()  # not a schedule point
    trace.append(task.custom_sleep_data)
    return trace


def test_custom_sleep_data_is_cleared_by_every_schedule_point() -> None:
    run_both(_custom_sleep_data, autojump=True)


async def _agen(lib: ModuleType, event: Any) -> AsyncGenerator[None, None]:
    await lib.lowlevel.checkpoint()
    yield
    await _innermost(lib, event)
    yield  # pragma: no cover


async def _innermost(lib: ModuleType, event: Any) -> None:
    event.set()
    await lib.sleep_forever()


async def _through_asend(lib: ModuleType, event: Any) -> None:
    async for _ in _agen(lib, event):
        pass


async def _through_athrow(lib: ModuleType, event: Any) -> None:
    async def cleanup_gen() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await _innermost(lib, event)

    cleanup = cleanup_gen()
    await cleanup.asend(None)
    await cleanup.athrow(GeneratorExit)


async def _await_frames(lib: ModuleType) -> list[list[str]]:
    traces = []
    for fn in (_through_asend, _through_athrow):
        async with lib.open_nursery() as nursery:
            event = lib.Event()
            nursery.start_soon(fn, lib, event)
            await event.wait()
            (task,) = nursery.child_tasks
            names = [frame.f_code.co_name for frame, _ in task.iter_await_frames()]
            traces.append(names[: names.index("_innermost") + 1])
            nursery.cancel_scope.cancel()
    return traces


def test_iter_await_frames_goes_through_async_generators() -> None:
    run_both(_await_frames)
    traces = nursery_io.run(_await_frames, nursery_io)
    assert traces == [
        ["_through_asend", "_agen", "_innermost"],
        ["_through_athrow", "cleanup_gen", "_innermost"],
    ]


async def _start_traps_as_tasks(lib: ModuleType) -> list[str]:
    started = []
    async with lib.open_nursery() as nursery:
        for trap in (
            lib.lowlevel.checkpoint,
            lib.lowlevel.cancel_shielded_checkpoint,
            lib.lowlevel.checkpoint_if_cancelled,
        ):
            nursery.start_soon(trap)
            started.append(trap.__name__)
    return started


def test_checkpoints_can_be_started_as_tasks() -> None:
    # Trio's are async functions; nursery_io's are generator-based but must start alike.
    run_both(_start_traps_as_tasks)
