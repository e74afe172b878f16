"""The runner: one object per run that owns the tasks, the clock and the kernel.

One turn of the loop (see docs/design.rst, "The loop"):

1. work out how long we may sleep: 0 if anything is runnable, else until the next deadline;
2. ``Kernel.poll``: submit ring work, sleep in the one epoll set, dispatch what woke us;
3. expire deadlines; wake ``wait_all_tasks_blocked`` waiters or autojump a MockClock when
   the run is idle;
4. run one *batch*: every task that was runnable when the batch began runs exactly one
   step, in one direction or the other at random (see ``_run.py``). Tasks made runnable
   during the batch wait for the next one, which bounds unfairness: nobody runs twice
   while someone else waits.

When tasks are runnable back to back, polling the kernel after every small batch costs a
syscall and two clock reads per socket operation (Trio issue #1595). So while the run queue
stays non-empty we poll at most every ``_BUSY_POLL_INTERVAL_NS``; I/O readiness is then
noticed at most that late. Turns that skip the poll still run queued ``run_sync_soon``
callbacks and fire deadlines that have passed, and a checkpoint still reschedules the task
behind everything else that is runnable. A run on a ``MockClock`` polls on every turn, as
Trio does: there, time is virtual and the order of wake-ups is all a test can observe.
"""

from __future__ import annotations

import contextvars
import functools
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from inspect import CO_COROUTINE
from types import FunctionType
from typing import TYPE_CHECKING, Any, Final, TypeVar, TypeVarTuple

import outcome

from .._kernel.kernel import Kernel
from . import _run
from ._asyncgens import AsyncGenerators
from ._cancel import MISNESTING_ADVICE, Deadlines
from ._context import (
    GLOBAL_RUN_CONTEXT,
    current_runner,
    current_task,
)
from ._detach import PermanentlyDetachCoroutineObject
from ._exceptions import CancelReason, InternalError, RunFinishedError
from ._instruments import Instruments
from ._ki import enable_ki_protection
from ._mock_clock import MockClock
from ._nursery import Nursery, open_nursery
from ._parking_lot import break_lots_of_exited_task
from ._task import Task
from ._traps import CHECKPOINT, SCHEDULE_POINT, Abort, WaitTaskRescheduled, wait_task_rescheduled
from ._util import coroutine_or_error, final, name_for_task

if TYPE_CHECKING:
    from ._abc_clock import Clock

__all__ = [
    "RunStatistics",
    "RunToken",
    "Runner",
    "current_clock",
    "current_effective_deadline",
    "current_root_task",
    "current_statistics",
    "current_time",
    "current_token",
    "deadline_passed",
    "in_run",
    "in_task",
    "reschedule",
    "spawn_system_task",
    "wait_all_tasks_blocked",
]

RetT = TypeVar("RetT")
PosArgT = TypeVarTuple("PosArgT")

_BUSY_POLL_INTERVAL_NS: Final = 500_000
INTERNAL_ERROR_MESSAGE: Final = "internal error in nursery_io - please file a bug!"
# Longest single kernel sleep: a huge timeout would overflow epoll_wait's milliseconds.
_MAX_SLEEP: Final = 86400.0
# Trio runs run_sync_soon callbacks in a system task of its own, which its statistics count.
_ENTRY_QUEUE_TASKS: Final = 1


class _ResumeCheckpoint:
    __slots__ = ()


class _Throw:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_RESUME_CHECKPOINT: Final = _ResumeCheckpoint()


def _spawn_order(task: Task) -> int:
    return task._counter


@dataclass(frozen=True)
class RunStatistics:
    """A snapshot of the run, from :func:`nursery_io.lowlevel.current_statistics`.

    The counts match Trio's for the same program: ``tasks_living`` includes the root task
    and one task standing for the run's cross-thread entry point (Trio has a task serving
    ``run_sync_soon``; nursery_io runs those callbacks from the loop itself), so a run
    whose main task is alone reports 3. ``tasks_runnable`` counts tasks already queued for
    the next batch.
    """

    tasks_living: int
    tasks_runnable: int
    seconds_to_next_deadline: float
    io_statistics: Any
    run_sync_soon_queue_size: int
    #: Loop turns that polled the kernel, and task steps taken, since the run began.
    kernel_polls: int = 0
    task_steps: int = 0


@final
class RunToken:
    """A handle on a run that other threads may use to call into it.

    Get it with :func:`nursery_io.lowlevel.current_token` (Trio spelling:
    ``current_trio_token``). Hashable; equal only to itself.
    """

    __slots__ = ("__weakref__", "_runner")

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    def __repr__(self) -> str:
        return f"<nursery_io.lowlevel.RunToken at {id(self):#x}>"

    def run_sync_soon(
        self, sync_fn: Callable[[*PosArgT], object], *args: *PosArgT, idempotent: bool = False
    ) -> None:
        """Schedule ``sync_fn(*args)`` to run in the run's thread, soon. Thread- and
        signal-safe.

        The callback runs outside any task, with KeyboardInterrupt protection. It must not
        raise: an exception ends the run with :class:`InternalError`. With
        ``idempotent=True``, a call identical (same function and arguments) to one still
        pending is dropped. Raises :class:`RunFinishedError` once the run has finished.
        """
        self._runner.run_sync_soon(sync_fn, args, idempotent)


class Runner:
    """All the state of one run. Created by :func:`run`; reached through module functions."""

    # Slots, not an instance dict: every loop turn reads a dozen of these attributes, and
    # CPython 3.11 stops specialising attribute access on instances whose dict outgrows
    # the shared-keys limit (30 names), which cost the hot path ~15% once the runner
    # grew past it. Slots keep that lookup fast however many fields the runner gains.
    __slots__ = (
        "__weakref__",  # introspection keys per-run state by weak reference
        "_entry_lock",
        "_idempotent",
        "_idle_tiebreak",
        "_last_poll_ns",
        "asyncgens",
        "busy_poll_interval_ns",
        "cancelled_by_host",
        "clock",
        "clock_autojump_threshold",
        "crash",
        "deadlines",
        "done",
        "host_owns_thread",
        "in_callback",
        "init_task",
        "instruments",
        "kernel",
        "ki_pending",
        "main_task",
        "main_task_outcome",
        "max_sleep",
        "outer_nursery",
        "restrict_keyboard_interrupt_to_checkpoints",
        "run_locals",
        "runq",
        "strict_exception_groups",
        "system_context",
        "system_nursery",
        "task_steps",
        "tasks",
        "token",
        "waiting_for_idle",
    )

    def __init__(
        self,
        clock: Clock,
        instruments: Instruments,
        restrict_ki: bool,
        strict_exception_groups: bool,
        *,
        handle_signals: bool = True,
    ) -> None:
        self.clock = clock
        self.instruments = instruments
        self.restrict_keyboard_interrupt_to_checkpoints = restrict_ki
        self.strict_exception_groups = strict_exception_groups
        self.kernel = Kernel(handle_signals=handle_signals)
        # Upper bound on one kernel sleep; SteppedRun lowers it so its host gets control back.
        self.max_sleep = math.inf
        self.cancelled_by_host = False
        # True while a guest run's host runs its own code on this thread, between the
        # guest's callbacks: what happens then (an async generator's first iteration,
        # say) isn't the run's, although the run is still the thread's current one.
        self.host_owns_thread = False
        # True while a run_sync_soon callback runs: what it does is the run's (in Trio such
        # callbacks run in a task), e.g. an async generator it iterates first.
        self.in_callback = False
        self.runq: list[Task] = []
        self.tasks: set[Task] = set()
        self.deadlines = Deadlines()
        self.init_task: Task | None = None
        self.main_task: Task | None = None
        self.main_task_outcome: outcome.Outcome[Any] | None = None
        self.system_nursery: Nursery | None = None
        self.outer_nursery: Nursery | None = None
        self.system_context = contextvars.copy_context()
        self.ki_pending = False
        self.waiting_for_idle: dict[tuple[float, int], Task] = {}
        self._idle_tiebreak = 0
        self.clock_autojump_threshold = math.inf
        self.crash: BaseException | None = None
        self.token = RunToken(self)
        self.asyncgens = AsyncGenerators(self)
        self.done = False
        self._entry_lock = threading.RLock()
        self._idempotent: dict[tuple[Callable[..., object], tuple[object, ...]], None] = {}
        self._last_poll_ns = 0
        # On a MockClock, time is virtual and the order of events is all a test has: poll
        # on every turn, as Trio does, so a socket made ready by one task wakes its reader
        # in the same batch as under Trio (a real-time throttle would make the order
        # depend on how fast the machine runs).
        self.busy_poll_interval_ns = 0 if isinstance(clock, MockClock) else _BUSY_POLL_INTERVAL_NS
        self.task_steps = 0
        self.run_locals: dict[object, object] = {}

    # ----- spawning and scheduling -----

    def spawn_impl(
        self,
        async_fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        nursery: Nursery | None,
        name: object,
        *,
        system_task: bool = False,
        context: contextvars.Context | None = None,
        task_status: object = None,
    ) -> Task:
        if nursery is not None and nursery._closed:
            raise RuntimeError("Nursery is closed to new arrivals")
        if context is None:
            context = self.system_context.copy() if system_task else contextvars.copy_context()
        if (
            type(async_fn) is FunctionType
            and async_fn.__code__.co_flags & CO_COROUTINE
            and task_status is None
        ):
            # An ``async def`` runs none of its code when called: no need to enter the
            # task's context or to check what comes back. (Wrong arguments raise their
            # TypeError here, as coroutine_or_error would let them.)
            coro = async_fn(*args)
        elif task_status is None:
            coro = context.run(coroutine_or_error, async_fn, *args)
        else:
            coro = context.run(coroutine_or_error, async_fn, *args, task_status=task_status)
        if name is not None and type(name) is not str:
            name = name_for_task(async_fn, name)  # now, not later: the object may change
        task = Task(self, coro, async_fn if name is None else name, context, nursery, system_task)
        self.tasks.add(task)
        if nursery is not None:
            nursery._children.add(task)
            task._activate_cancel_status(nursery._cancel_status)
        if "task_spawned" in self.instruments:
            self.instruments.call("task_spawned", task)
        task._next_send = None
        self.runq.append(task)
        if "task_scheduled" in self.instruments:
            self.instruments.call("task_scheduled", task)
        return task

    def reschedule(self, task: Task, next_send: outcome.Outcome[Any] | None = None) -> None:
        if task._abort_func is None:
            raise RuntimeError(
                f"{task!r} is not parked in wait_task_rescheduled; it cannot be rescheduled"
            )
        task._abort_func = None
        task.custom_sleep_data = None
        task._next_send = next_send
        self.runq.append(task)
        if "task_scheduled" in self.instruments:
            self.instruments.call("task_scheduled", task)

    def task_exited(self, task: Task, result: outcome.Outcome[Any]) -> None:
        open_nurseries = task._open_nurseries
        if open_nurseries:
            # The task left nurseries open (misnested exits, or a nursery entered by hand
            # and never exited). Their children can't be waited for any more: cancel them
            # and let no new ones in.
            for nursery in open_nurseries:
                nursery.cancel_scope._cancel(
                    CancelReason(
                        "nursery",
                        repr(task),
                        "Parent Task exited prematurely, abandoning this nursery without "
                        "exiting it properly.",
                    )
                )
                nursery._closed = True
        status = task._cancel_status
        if (
            status is not None and status.abandoned_by_misnesting and status.parent is None
        ) or open_nurseries:
            what = "Nursery" if open_nurseries else "Cancel scope"
            try:
                # Raised rather than just created, so the traceback shows where.
                raise RuntimeError(
                    f"{what} stack corrupted: {what} surrounding {task!r} was closed before "
                    f"the task exited\n{MISNESTING_ADVICE}"
                )
            except RuntimeError as misnesting:
                # The task's own error, if any, is the context (not the StopIteration that
                # may be being handled while we get here).
                misnesting.__context__ = result.error if isinstance(result, outcome.Error) else None
                result = outcome.Error(misnesting)
        task._activate_cancel_status(None)
        self.tasks.remove(task)
        break_lots_of_exited_task(task)
        if task is self.init_task:
            # Instruments saw it spawn, so they must see it exit (before a failure below
            # ends the run).
            if "task_exited" in self.instruments:
                self.instruments.call("task_exited", task)
            # The init task only fails if a system task crashed or the runtime is broken.
            result.unwrap()
            return
        if task is self.main_task:
            self.main_task_outcome = result
            result = outcome.Value(None)
        assert task._parent_nursery is not None
        task._parent_nursery._child_finished(task, result)
        if "task_exited" in self.instruments:
            self.instruments.call("task_exited", task)

    # ----- the loop -----

    def run_batch(self) -> None:
        """Run one step of every task that is runnable right now."""
        batch = self.runq
        if not batch:
            return
        runq: list[Task] = []  # not typing.cast: that is a call and a new alias per batch
        self.runq = runq
        if len(batch) > 1:
            # As in Trio: a random direction per batch, so no program can come to rely on
            # an order that isn't promised. One random bit per batch, not per task.
            if _run._ALLOW_DETERMINISTIC_SCHEDULING:
                batch.sort(key=_spawn_order)
                _run._r.shuffle(batch)
            elif _run._r.getrandbits(1):
                batch.reverse()
        append = runq.append
        ctx = GLOBAL_RUN_CONTEXT
        instruments = self.instruments
        self.task_steps += len(batch)
        for task in batch:
            ctx.task = task
            next_send = task._next_send
            # Don't keep the outcome once sent: an Error's exception can reach this task
            # through its traceback's frames, and the task would keep it alive in a cycle.
            task._next_send = None
            coro = task.coro
            if next_send is _RESUME_CHECKPOINT:
                task._cancel_points += 1
                next_send = task._cancel_status.effectively_cancelled or (
                    self.ki_pending and task is self.main_task
                )
                send = coro.send
            elif type(next_send) is _Throw:
                send = coro.throw
                next_send = next_send.exc
            else:
                send = coro.send
            if instruments and "before_task_step" in instruments:
                instruments.call("before_task_step", task)
            try:
                msg = task.context.run(send, next_send)
            except StopIteration as stop:
                self.task_exited(task, outcome.Value(stop.value))
            except BaseException as exc:
                tb = exc.__traceback__
                # Drop this frame from the traceback: it says nothing about the task.
                self.task_exited(
                    task, outcome.Error(exc.with_traceback(tb.tb_next if tb else None))
                )
                del exc, tb
            else:
                task._schedule_points += 1
                if msg is CHECKPOINT:
                    task._next_send = _RESUME_CHECKPOINT
                    task.custom_sleep_data = None
                    append(task)
                    if instruments and "task_scheduled" in instruments:
                        instruments.call("task_scheduled", task)
                elif type(msg) is WaitTaskRescheduled:
                    task._cancel_points += 1
                    task._abort_func = msg.abort_func
                    if self.ki_pending and task is self.main_task:
                        task._attempt_delivery_of_pending_ki()
                    task._attempt_delivery_of_any_pending_cancel()
                elif msg is SCHEDULE_POINT:
                    task._next_send = None
                    task.custom_sleep_data = None
                    append(task)
                    if instruments and "task_scheduled" in instruments:
                        instruments.call("task_scheduled", task)
                elif type(msg) is PermanentlyDetachCoroutineObject:
                    self.task_exited(task, msg.final_outcome)
                else:
                    task._next_send = _Throw(
                        TypeError(
                            f"nursery_io received an unrecognized yield message {msg!r}. Are "
                            "you awaiting something from another async library (asyncio, "
                            "curio, ...)? That cannot work inside nursery_io without a "
                            "compatibility layer."
                        )
                    )
                    append(task)
            if instruments and "after_task_step" in instruments:
                instruments.call("after_task_step", task)
        del ctx.task

    def _sleep_timeout(self) -> tuple[float, int]:
        """How long the kernel may sleep, and what to do if it sleeps that long (0/1/2)."""
        deadline = self.deadlines.next_deadline()
        if deadline == math.inf:
            timeout = math.inf
        else:
            timeout = max(0.0, self.clock.deadline_to_sleep_time(deadline))
        primed = 0
        if self.kernel.file_ops_in_flight:
            # A task waiting for a disk op is waiting for our own kernel work, which will
            # finish by itself in a moment: the run is not idle. Jumping a MockClock now
            # would fire deadlines that a real clock never would.
            return timeout, primed
        if self.waiting_for_idle:
            cushion = min(self.waiting_for_idle)[0]
            if cushion < timeout:
                timeout = cushion
                primed = 1
        elif deadline != math.inf and self.clock_autojump_threshold < timeout:
            # Only with a deadline to jump to: otherwise an autojump does nothing, and
            # priming it would turn a run waiting on a thread or a socket into a busy
            # loop of zero-timeout polls.
            timeout = self.clock_autojump_threshold
            primed = 2
        return timeout, primed

    def run_turn(self) -> None:
        """One loop turn: poll the kernel (unless busy and polled very recently), run a batch."""
        kernel = self.kernel
        if self.runq:
            now_ns = time.monotonic_ns()
            if now_ns - self._last_poll_ns < self.busy_poll_interval_ns:
                kernel.flush_and_reap()
                if kernel.entry_queue:
                    kernel.run_queued_callbacks()
                heap = self.deadlines._heap
                if heap and heap[0][0] <= (now := self.clock.current_time()):
                    self.deadlines.expire(now)
                self.run_batch()
                return
            timeout, primed = 0.0, 0
        else:
            timeout, primed = self._sleep_timeout()
            if timeout > self.max_sleep:
                timeout, primed = self.max_sleep, 0
        instruments = self.instruments
        if instruments and "before_io_wait" in instruments:
            instruments.call("before_io_wait", timeout)
        events = kernel.poll(-1 if timeout == math.inf else min(timeout, _MAX_SLEEP))
        self.finish_turn(timeout, primed, events)

    def finish_turn(self, timeout: float, primed: int, events: int) -> None:
        """The rest of a loop turn once the kernel poll is done and dispatched: expire
        deadlines, wake idle waiters or autojump if nothing happened, run a batch.

        ``timeout``/``primed`` are what :meth:`_sleep_timeout` planned for the poll and
        ``events`` is what the poll's dispatch returned.
        """
        self._last_poll_ns = time.monotonic_ns()
        instruments = self.instruments
        if instruments and "after_io_wait" in instruments:
            instruments.call("after_io_wait", timeout)
        if self.deadlines and self.deadlines.expire(self.clock.current_time()):
            primed = 0
        # Both checks are needed: in a guest run the poll can end early with nothing
        # runnable (the host moved a deadline), or hit its timeout while host code made a
        # task runnable meanwhile.
        if primed and not self.runq and not events:
            if primed == 1 and self.waiting_for_idle:
                cushion = min(self.waiting_for_idle)[0]
                for key in sorted(self.waiting_for_idle):
                    if key[0] != cushion:
                        break
                    self.reschedule(self.waiting_for_idle.pop(key))
            elif primed == 2:
                autojump = getattr(self.clock, "_autojump", None)
                if autojump is not None:
                    autojump()
        self.run_batch()

    async def init(
        self, async_fn: Callable[..., Awaitable[object]], args: tuple[object, ...]
    ) -> None:
        # Three nurseries, as in Trio (so failures come out in the same exception-group
        # shape): the outer one catches run_sync_soon callbacks that fail after the system
        # nursery closed, the system nursery holds system tasks, the inner one the main task.
        async with open_nursery() as outer_nursery:
            self.outer_nursery = outer_nursery
            async with open_nursery() as system_nursery:
                self.system_nursery = system_nursery
                async with open_nursery() as main_task_nursery:
                    try:
                        self.main_task = self.spawn_impl(async_fn, args, main_task_nursery, None)
                    except BaseException as exc:
                        self.main_task_outcome = outcome.Error(exc)
                # The main task is done: system tasks exist only to serve it.
                system_nursery.cancel_scope._cancel(
                    CancelReason(
                        "shutdown",
                        repr(self.init_task),
                        "main task done, shutting down system tasks",
                    )
                )
            await self.asyncgens.finalize_remaining()
            outer_nursery.cancel_scope._cancel(
                CancelReason(
                    "shutdown",
                    repr(self.init_task),
                    "main task done, shutting down run_sync_soon callbacks",
                )
            )

    # ----- entry from other threads -----

    def run_sync_soon(
        self, sync_fn: Callable[..., object], args: tuple[object, ...], idempotent: bool
    ) -> None:
        with self._entry_lock:
            if self.done:
                raise RunFinishedError("run() has exited")  # Trio's text
            if idempotent:
                key = (sync_fn, args)
                if key in self._idempotent:
                    return
                self._idempotent[key] = None
            self.kernel.call_soon_threadsafe(
                functools.partial(self._run_callback, sync_fn, args, idempotent)
            )

    @enable_ki_protection
    def _run_callback(
        self, sync_fn: Callable[..., object], args: tuple[object, ...], idempotent: bool
    ) -> None:
        if idempotent:
            self._idempotent.pop((sync_fn, args), None)
        outer = self.in_callback
        self.in_callback = True
        try:
            sync_fn(*args)
        except BaseException as exc:
            self._fail_from_callback(exc)
        finally:
            self.in_callback = outer

    def _fail_from_callback(self, exc: BaseException) -> None:
        """A run_sync_soon callback raised: fail the run the way a crashed system task does."""

        async def kill_everything(exc: BaseException) -> None:
            raise exc

        for nursery in (self.system_nursery, self.outer_nursery):
            if nursery is not None and not nursery._closed:
                self.spawn_impl(kill_everything, (exc,), nursery, None, system_task=True)
                return
        # No nursery left to fail in (the run is past its last task): end the run with
        # the error as that outer nursery would have reported it.
        crash = InternalError(INTERNAL_ERROR_MESSAGE)
        crash.__cause__ = BaseExceptionGroup("Exceptions from nursery_io nursery", [exc])
        self.report_crash(crash)

    def report_crash(self, crash: InternalError) -> None:
        """End the run with ``crash`` (raised by :func:`run`), after cancelling everything.

        Shutting down gracefully beats abandoning every task mid-step: cancelling the
        system nursery (the main task lives inside it) lets finally blocks and __aexit__s
        run inside the run. Closing suspended coroutines from outside the run instead
        would run their cleanup with no run context, where nurseries can't wait.
        """
        if self.crash is not None:
            return  # the first crash is the one worth reporting
        self.crash = crash
        nursery = self.outer_nursery
        if nursery is not None:
            nursery.cancel_scope._cancel(CancelReason("shutdown", None, str(crash)))

    # ----- KeyboardInterrupt -----

    def deliver_ki(self) -> None:
        self.ki_pending = True
        try:
            self.run_sync_soon(self._deliver_ki_cb, (), True)
        except RunFinishedError:
            pass

    def _deliver_ki_cb(self) -> None:
        if not self.ki_pending:
            return
        main = self.main_task
        if main is not None and main in self.tasks:
            main._attempt_delivery_of_pending_ki()

    # ----- teardown -----

    def close(self) -> None:
        with self._entry_lock:
            self.done = True
        # Callbacks queued before the run was marked finished still run, as promised.
        try:
            self.kernel.run_entry_queue()
        finally:
            self.kernel.close()
            self.asyncgens.close()

    def statistics(self) -> RunStatistics:
        deadline = self.deadlines.next_deadline()
        return RunStatistics(
            tasks_living=len(self.tasks) + _ENTRY_QUEUE_TASKS,
            tasks_runnable=len(self.runq),
            seconds_to_next_deadline=deadline - self.clock.current_time(),
            io_statistics=self.kernel.statistics(),
            run_sync_soon_queue_size=self.kernel.entry_queue_size,
            kernel_polls=self.kernel.polls,
            task_steps=self.task_steps,
        )


# ----- module-level API over the current runner -----


def reschedule(task: Task, next_send: outcome.Outcome[Any] | None = None) -> None:
    """Wake a task parked in :func:`wait_task_rescheduled`, sending it ``next_send``
    (an :class:`outcome.Outcome`; the default means ``outcome.Value(None)``)."""
    current_runner().reschedule(task, next_send)


def current_time() -> float:
    """The current time according to the run's clock (seconds, arbitrary origin)."""
    return current_runner().clock.current_time()


def current_clock() -> Clock:
    """The clock this run uses."""
    return current_runner().clock


def current_root_task() -> Task | None:
    """The task at the root of the task tree (it runs the system nursery)."""
    return current_runner().init_task


def current_statistics() -> RunStatistics:
    """A snapshot of the run's scheduler and kernel state."""
    return current_runner().statistics()


def current_token() -> RunToken:
    """The :class:`RunToken` of the current run (Trio spelling: ``current_trio_token``)."""
    return current_runner().token


def current_effective_deadline() -> float:
    """The deadline that applies to the current task: the earliest one among its enclosing
    scopes up to the first shield. ``-inf`` if it is already cancelled, ``inf`` if none."""
    return current_task()._cancel_status.effective_deadline()


def deadline_passed() -> bool:
    """Whether a deadline of the current run has passed that the run hasn't fired yet.

    Deadlines fire between batches, at schedule points. Library code that leaves out a
    schedule point Trio has, for speed, asks this first and takes the schedule point when
    it would change the outcome: a deadline that passed just before is then noticed where
    Trio notices it.
    """
    runner = GLOBAL_RUN_CONTEXT.runner
    deadlines = runner.deadlines
    return bool(deadlines) and deadlines.next_deadline() <= runner.clock.current_time()


def in_run() -> bool:
    """Whether the calling thread is inside a run (Trio spelling: ``in_trio_run``)."""
    return hasattr(GLOBAL_RUN_CONTEXT, "runner")


def in_task() -> bool:
    """Whether the caller is running inside a task (Trio spelling: ``in_trio_task``)."""
    return hasattr(GLOBAL_RUN_CONTEXT, "task")


def spawn_system_task(
    async_fn: Callable[[*PosArgT], Awaitable[object]],
    *args: *PosArgT,
    name: object = None,
    context: contextvars.Context | None = None,
) -> Task:
    """Start a task in the run's system nursery.

    System tasks are cancelled when the main task exits, are KeyboardInterrupt-protected,
    and if one raises, the run ends with :class:`InternalError`.
    """
    runner = current_runner()
    return runner.spawn_impl(
        async_fn, args, runner.system_nursery, name, system_task=True, context=context
    )


async def wait_all_tasks_blocked(cushion: float = 0.0) -> None:
    """Wait until every other task is blocked and has been for ``cushion`` seconds.

    "Blocked" means parked waiting for something external (I/O, a timer, another thread).
    Useful in tests to reach a quiescent state deterministically. Time is real time, even
    under a :class:`~nursery_io.testing.MockClock`.
    """
    task = current_task()
    runner = task._runner
    runner._idle_tiebreak += 1
    key = (float(cushion), runner._idle_tiebreak)
    runner.waiting_for_idle[key] = task

    def abort(_: object) -> Abort:
        del runner.waiting_for_idle[key]
        return Abort.SUCCEEDED

    await wait_task_rescheduled(abort)
