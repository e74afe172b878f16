"""Guest mode: a run that lives inside another event loop (its *host*), driven by callbacks.

A normal run owns its thread: each loop turn plans a sleep, sleeps in ``Kernel.poll`` and
then runs a batch. A guest run shares its thread with a host loop (asyncio, Qt, ...) that
must never be blocked, so each turn is split at the sleep:

* on the host thread (a callback the host runs): dispatch what the last kernel wait
  returned, expire deadlines, run a batch of task steps, plan the next sleep and submit
  pending ring work;
* the sleep itself, ``Kernel.wait`` (just ``epoll_wait``), on a worker thread; its result
  comes back through ``run_sync_soon_threadsafe`` and starts the next host half.

When no sleep is needed (tasks are runnable, or a non-blocking wait already found events)
the next half is queued with ``run_sync_soon_not_threadsafe`` and no thread is involved.

Between callbacks the host runs its own code on the same thread, still "inside" the run
(``in_run()`` is True there, as in Trio, so the host may set an ``Event`` or move a cancel
scope's deadline). Such a change may need the run to wake up earlier than the pending
wait would: the :class:`GuestRunner` notices a task becoming runnable or a deadline moving
earlier and writes the kernel's eventfd, which ends the worker's ``epoll_wait``.

The ring (io_uring) is only ever entered on the host thread, which created it (it is
``SINGLE_ISSUER``): the worker only waits on the epoll set, where the ring fd becomes
readable when completions are posted.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

import outcome
import sniffio

from .._kernel.workers import start_thread_soon
from . import _context
from ._cancel import CancelScope, Deadlines
from ._context import GLOBAL_RUN_CONTEXT
from ._deprecate import warn_loose_exception_groups
from ._entry import _close_leftover_coroutines, _finish, _ki_handler, _new_runner, _start
from ._exceptions import InternalError
from ._runner import _MAX_SLEEP, Runner

if TYPE_CHECKING:
    import contextvars

    from ._abc_clock import Clock, Instrument
    from ._instruments import Instruments
    from ._nursery import Nursery
    from ._task import Task

__all__ = ["GuestRunner", "start_guest_run"]

RetT = TypeVar("RetT")

Events = list[tuple[int, int]]

# The init task opens the system nursery in its first step; a few more are tolerated.
_MAX_STARTUP_BATCHES: Final = 5

# Trio's words exactly: code written for Trio's guest mode matches on them.
_ABANDONED_MESSAGE: Final = (
    "Trio guest run got abandoned without properly finishing... weird stuff might happen"
)


class _GuestDeadlines(Deadlines):
    """Deadlines that wake the guest's pending kernel wait when the earliest one moves
    earlier (the wait's timeout was computed from the old one)."""

    __slots__ = ("_on_earlier",)

    def __init__(self, on_earlier: Callable[[], None]) -> None:
        super().__init__()
        self._on_earlier = on_earlier

    def add(self, deadline: float, scope: CancelScope) -> None:
        if deadline < self.next_deadline():
            self._on_earlier()
        super().add(deadline, scope)


class GuestRunner(Runner):
    """A :class:`Runner` that wakes its guest's kernel wait when host code changes the plan.

    Only guest runs pay for these checks: a normal run never has host code running while
    its loop sleeps.
    """

    def __init__(
        self,
        clock: Clock,
        instruments: Instruments,
        restrict_ki: bool,
        strict_exception_groups: bool,
        *,
        handle_signals: bool = True,
    ) -> None:
        super().__init__(
            clock,
            instruments,
            restrict_ki,
            strict_exception_groups,
            handle_signals=handle_signals,
        )
        self.deadlines = _GuestDeadlines(self.force_guest_tick_asap)
        # False only while a worker thread waits in the kernel for this run: then, and only
        # then, a change made by host code needs a wake-up to be noticed.
        self.guest_tick_scheduled = True

    def force_guest_tick_asap(self) -> None:
        if self.guest_tick_scheduled:
            return
        self.guest_tick_scheduled = True
        self.kernel.wakeup_threadsafe()

    def reschedule(self, task: Task, next_send: outcome.Outcome[Any] | None = None) -> None:
        if not self.runq:
            self.force_guest_tick_asap()
        super().reschedule(task, next_send)

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
        if not self.runq:
            self.force_guest_tick_asap()
        return super().spawn_impl(
            async_fn,
            args,
            nursery,
            name,
            system_task=system_task,
            context=context,
            task_status=task_status,
        )


class _GuestRun:
    """Drives one guest run through its host's callbacks.

    Only the host's callback queue (and a worker thread while it waits) refer to this
    object; the runner does not. So when a host stops without letting the run finish and
    drops its callbacks, this object is collected and :meth:`__del__` reports it.
    """

    def __init__(
        self,
        runner: GuestRunner,
        run_sync_soon_threadsafe: Callable[[Callable[[], object]], object],
        run_sync_soon_not_threadsafe: Callable[[Callable[[], object]], object],
        done_callback: Callable[[outcome.Outcome[Any]], object],
    ) -> None:
        self._runner = runner
        self._run_sync_soon_threadsafe = run_sync_soon_threadsafe
        self._run_sync_soon_not_threadsafe = run_sync_soon_not_threadsafe
        self._done_callback = done_callback
        # The SIGINT handler, installed for the whole run as trio does.
        self._ki_handler = contextlib.ExitStack()
        self._host_thread = threading.get_ident()
        self._finished = False

    # ----- start -----

    def start(self, async_fn: Callable[..., Awaitable[object]], args: tuple[object, ...]) -> None:
        """Set the run up on the host thread and queue its first turn.

        On return the system nursery exists, so the host may already call
        ``spawn_system_task``, ``current_token()`` or ``current_time()``; no user code has
        run yet. A failure here is an :class:`InternalError`, raised to the caller.
        """
        runner = self._runner
        GLOBAL_RUN_CONTEXT.runner = runner
        previous_library = sniffio.thread_local.name
        sniffio.thread_local.name = _context.library_name
        try:
            try:
                runner.asyncgens.install_hooks()
                self._ki_handler.enter_context(_ki_handler(runner))
                _start(runner, async_fn, args)
                for _ in range(_MAX_STARTUP_BATCHES):
                    if runner.system_nursery is not None:
                        break
                    if not runner.runq:
                        raise InternalError(
                            "the guest run blocked before its system nursery existed"
                        )
                    runner.run_batch()
                else:  # pragma: no cover - the init task opens the nursery in one step
                    raise InternalError("the guest run took too long to initialize")
            except BaseException as exc:
                self._finished = True
                try:
                    _finish(runner, exc).unwrap()  # tears the run down; raises InternalError
                finally:
                    self._ki_handler.close()
                    del GLOBAL_RUN_CONTEXT.runner
        finally:
            sniffio.thread_local.name = previous_library
        runner.host_owns_thread = True
        self._run_sync_soon_not_threadsafe(partial(self._tick, outcome.Value([]), 0.0, 0))

    # ----- one loop turn, split around the kernel wait -----

    def _tick(self, polled: outcome.Outcome[Events] | None, timeout: float, primed: int) -> None:
        """Host thread: finish the turn whose wait ``polled`` reports (None: a busy turn
        that skipped the wait), then start the next turn or report the run's outcome."""
        runner = self._runner
        previous_library = sniffio.thread_local.name
        sniffio.thread_local.name = _context.library_name
        runner.host_owns_thread = False
        try:
            failure: BaseException | None = None
            try:
                if polled is None:
                    # Busy: the plain loop turn, which skips the kernel poll (or, if the
                    # interval ran out meanwhile, polls without blocking: tasks are runnable).
                    runner.run_turn()
                else:
                    events = runner.kernel.dispatch(polled.unwrap())
                    runner.finish_turn(timeout, primed, events)
                if runner.tasks:
                    self._start_turn()
                    return
            except BaseException as exc:
                failure = exc
            # Like trio, the done callback runs inside the tick (sniffio still says ours).
            self._done_callback(self._finish(failure))
        finally:
            runner.host_owns_thread = True
            sniffio.thread_local.name = previous_library

    def _start_turn(self) -> None:
        """Plan the next kernel wait; do it right here if it can't block, else in a thread."""
        runner = self._runner
        kernel = runner.kernel
        if runner.runq:
            if time.monotonic_ns() - runner._last_poll_ns < runner.busy_poll_interval_ns:
                # Busy: skip the wait, as Runner.run_turn does.
                self._run_sync_soon_not_threadsafe(partial(self._tick, None, 0.0, 0))
                return
            timeout, primed = 0.0, 0
        else:
            timeout, primed = runner._sleep_timeout()
        instruments = runner.instruments
        if instruments and "before_io_wait" in instruments:
            instruments.call("before_io_wait", timeout)
        callbacks_queued = kernel.prepare_wait()
        # A non-blocking look first: often something is ready and no thread is needed.
        polled = outcome.capture(kernel.wait, 0)
        if (
            timeout <= 0
            or callbacks_queued
            or not isinstance(polled, outcome.Value)
            or polled.value
        ):
            self._run_sync_soon_not_threadsafe(partial(self._tick, polled, timeout, primed))
            return
        runner.guest_tick_scheduled = False
        sleep = -1 if timeout == math.inf else min(timeout, _MAX_SLEEP)
        start_thread_soon(
            partial(kernel.wait, sleep),
            partial(self._deliver, timeout, primed),
            name="nursery_io guest wait",
        )

    def _deliver(self, timeout: float, primed: int, polled: outcome.Outcome[Events]) -> None:
        # Worker thread: hand the wait's result to the host thread.
        self._run_sync_soon_threadsafe(partial(self._after_wait, polled, timeout, primed))

    def _after_wait(self, polled: outcome.Outcome[Events], timeout: float, primed: int) -> None:
        self._runner.guest_tick_scheduled = True
        self._tick(polled, timeout, primed)

    # ----- the end -----

    def _finish(self, failure: BaseException | None) -> outcome.Outcome[Any]:
        """Tear the run down; return what ``run`` would have returned or raised."""
        runner = self._runner
        self._finished = True
        try:
            return _finish(runner, failure)
        finally:
            # As in run(): the handler stays ours until the teardown is over, so a Ctrl-C
            # during it is recorded rather than raised in the middle of it.
            self._ki_handler.close()
            if getattr(GLOBAL_RUN_CONTEXT, "runner", None) is runner:
                del GLOBAL_RUN_CONTEXT.runner

    def __del__(self) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            warnings.warn(RuntimeWarning(_ABANDONED_MESSAGE), stacklevel=1)
        finally:  # even if warnings are errors
            self._clean_up_abandoned_run()

    def _clean_up_abandoned_run(self) -> None:
        # Undo what the run changed in the process: the host is gone, and nothing else
        # will. Signal handlers, async generator hooks and the current run belong to the
        # host thread; the garbage collector may run us on another, which can only close
        # the kernel's descriptors. Each step on its own, so one failure doesn't skip the
        # rest.
        runner = self._runner
        if threading.get_ident() != self._host_thread:
            with contextlib.suppress(Exception):
                runner.kernel.close()
            return
        with contextlib.suppress(Exception):
            self._ki_handler.close()
        if getattr(GLOBAL_RUN_CONTEXT, "runner", None) is runner:
            # Unwind the tasks while the run is still current, so their cleanup finds it.
            with contextlib.suppress(Exception):
                _close_leftover_coroutines(runner)
            del GLOBAL_RUN_CONTEXT.runner
        with contextlib.suppress(Exception):
            runner.close()  # also puts the async generator hooks back


def start_guest_run(
    async_fn: Callable[..., Awaitable[RetT]],
    *args: object,
    run_sync_soon_threadsafe: Callable[[Callable[[], object]], object],
    done_callback: Callable[[outcome.Outcome[RetT]], object],
    run_sync_soon_not_threadsafe: Callable[[Callable[[], object]], object] | None = None,
    host_uses_signal_set_wakeup_fd: bool = False,
    clock: Clock | None = None,
    instruments: tuple[Instrument, ...] | list[Instrument] = (),
    restrict_keyboard_interrupt_to_checkpoints: bool = False,
    strict_exception_groups: bool = True,
) -> None:
    """Start ``await async_fn(*args)`` as a *guest* inside another event loop (the host).

    The host keeps its thread; the run does its work in short callbacks that it asks the
    host to run, and sleeps in a worker thread. When the run finishes, ``done_callback``
    is called (on the host thread) with an :class:`outcome.Outcome` of what :func:`run`
    would have returned or raised.

    ``run_sync_soon_threadsafe(fn)`` must make the host call ``fn()`` soon, on its thread;
    it is called from other threads. ``run_sync_soon_not_threadsafe(fn)`` does the same but
    is only called from the host thread (defaults to the threadsafe one). Pass
    ``host_uses_signal_set_wakeup_fd=True`` if the host loop uses
    :func:`signal.set_wakeup_fd` (asyncio does): the run then leaves it alone.

    Once this returns, sync functions like :func:`~nursery_io.current_time`,
    :func:`~nursery_io.lowlevel.spawn_system_task` and
    :func:`~nursery_io.lowlevel.current_token` work on the host thread; an
    :class:`~nursery_io.InternalError` during setup is raised here, everything else goes to
    ``done_callback``. A host loop can only have one guest run at a time, and should not
    stop before its guest has finished. The other arguments are those of :func:`run`.
    """
    if not strict_exception_groups:
        warn_loose_exception_groups("trio.start_guest_run(..., strict_exception_groups=False)")
    runner = _new_runner(
        clock,
        instruments,
        restrict_keyboard_interrupt_to_checkpoints,
        strict_exception_groups,
        handle_signals=not host_uses_signal_set_wakeup_fd,
        runner_type=GuestRunner,
    )
    assert isinstance(runner, GuestRunner)
    guest = _GuestRun(
        runner,
        run_sync_soon_threadsafe,
        run_sync_soon_not_threadsafe or run_sync_soon_threadsafe,
        done_callback,
    )
    guest.start(async_fn, args)
