"""Starting and finishing a run: :func:`run`, and the steps that guest and stepped runs
share with it (make the runner current, install the SIGINT handler, spawn the init task,
tear down and turn the outcome into what the caller gets).

The loop itself is ``Runner.run_turn`` in ``_runner.py``.
"""

from __future__ import annotations

import signal
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar, TypeVarTuple

import outcome
import sniffio

from . import _context
from ._clock import SystemClock
from ._context import GLOBAL_RUN_CONTEXT
from ._deprecate import warn_loose_exception_groups
from ._exceptions import Cancelled, InternalError, RunFinishedError
from ._instruments import Instruments
from ._ki import enable_ki_protection, ki_protection_enabled
from ._run_hooks import at_run_start
from ._runner import INTERNAL_ERROR_MESSAGE, Runner

if TYPE_CHECKING:
    from types import FrameType

    from ._abc_clock import Clock, Instrument

__all__ = ["run"]

RetT = TypeVar("RetT")
PosArgT = TypeVarTuple("PosArgT")


@contextmanager
def _ki_handler(runner: Runner) -> Iterator[None]:
    if (
        # By ident: current_thread() is fooled by a damaged threading._active table.
        threading.get_ident() != threading.main_thread().ident
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        # Someone installed their own SIGINT handler (or we can't install one): leave it.
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if not runner.restrict_keyboard_interrupt_to_checkpoints and not ki_protection_enabled(
            frame
        ):
            raise KeyboardInterrupt
        runner.deliver_ki()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is handler:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _close_leftover_coroutines(runner: Runner) -> None:
    # The run is being abandoned (an internal error, or something like a test timeout
    # raised out of the kernel poll). A plain coro.close() fails on a task suspended
    # inside a nursery: the nursery's __aexit__ awaits its children while handling the
    # GeneratorExit ("coroutine ignored GeneratorExit"), the coroutine stays suspended,
    # and the garbage collector retries later, printing errors that pytest pins on
    # whatever test runs then. Throwing GeneratorExit again at every await it makes while
    # unwinding lets each coroutine run its cleanup to the end, now.
    for task in list(runner.tasks):
        coro = task.coro
        for _ in range(_MAX_UNWIND_STEPS):
            try:
                task.context.run(coro.throw, GeneratorExit())
            except BaseException:
                break  # finished (however it ended): nothing left to unwind
        else:  # pragma: no cover - a finally block that awaits in a loop forever
            try:
                coro.close()
            except BaseException:
                pass
    runner.tasks.clear()


_MAX_UNWIND_STEPS: Final = 1000


def _new_runner(
    clock: Clock | None,
    instruments: tuple[Instrument, ...] | list[Instrument],
    restrict_keyboard_interrupt_to_checkpoints: bool,
    strict_exception_groups: bool,
    handle_signals: bool,
    runner_type: type[Runner] = Runner,
) -> Runner:
    if hasattr(GLOBAL_RUN_CONTEXT, "runner"):
        raise RuntimeError(
            # Trio's text first (code matches on it), then what to do instead.
            "Attempted to call run() from inside a run(): await the function directly, "
            "or start it in a nursery, instead of starting a second loop."
        )
    return runner_type(
        clock if clock is not None else SystemClock(),
        Instruments(instruments),
        restrict_keyboard_interrupt_to_checkpoints,
        strict_exception_groups,
        handle_signals=handle_signals,
    )


@contextmanager
def _entered(runner: Runner) -> Iterator[None]:
    """Make ``runner`` the current run of this thread (and tell sniffio) while inside."""
    previous_library = sniffio.thread_local.name
    sniffio.thread_local.name = _context.library_name
    GLOBAL_RUN_CONTEXT.runner = runner
    try:
        yield
    finally:
        del GLOBAL_RUN_CONTEXT.runner
        sniffio.thread_local.name = previous_library


def _start(
    runner: Runner, async_fn: Callable[..., Awaitable[object]], args: tuple[object, ...]
) -> None:
    if runner.kernel.replaced_signal_wakeup_fd != -1:
        # Signals that the other owner of the wake-up fd relied on now wake us instead.
        warnings.warn(
            RuntimeWarning(
                "It looks like nursery_io's signal handling code might have collided with "
                "another library you're using. If you're running nursery_io in guest mode, "
                "then this might mean you should set host_uses_signal_set_wakeup_fd=True. "
                "Otherwise, please report it to nursery_io's developers."
            ),
            stacklevel=3,
        )
    runner.clock.start_clock()
    at_run_start(runner)  # NURSERY_IO_DEBUG_SIGNAL / _CONSOLE / _TRACE (nursery_io._introspect)
    if "before_run" in runner.instruments:
        runner.instruments.call("before_run")
    runner.init_task = runner.spawn_impl(
        runner.init, (async_fn, args), None, "<init>", system_task=True
    )


def _only_cancellations(error: BaseException) -> bool:
    """True for a Cancelled, or an exception group holding nothing but Cancelled."""
    if isinstance(error, Cancelled):
        return True
    if isinstance(error, BaseExceptionGroup):
        return error.split(Cancelled)[1] is None
    return False


def _finish(runner: Runner, failure: BaseException | None) -> outcome.Outcome[Any]:
    """Tear the run down; return what the run's caller gets: the main task's outcome, or
    what ended the run instead."""
    if failure is None and "after_run" in runner.instruments:
        try:
            runner.instruments.call("after_run")
        except BaseException as exc:  # pragma: no cover - Instruments.call catches
            failure = exc
    if failure is not None:
        _close_leftover_coroutines(runner)
    try:
        runner.close()
    except BaseException as exc:  # pragma: no cover - defensive
        failure = failure or exc
    if failure is None and runner.crash is not None:
        failure = runner.crash
    if failure is not None:
        if isinstance(failure, InternalError) or failure is runner.kernel.sleep_interrupted_by:
            # The latter came from a signal handler (a test timeout, say) while the loop
            # slept: it is the user's exception, not the runtime's, so it comes out as is
            # (minus the frame of the caller, which re-raises it).
            if failure.__traceback__ is not None and not isinstance(failure, InternalError):
                failure = failure.with_traceback(failure.__traceback__.tb_next)
            return outcome.Error(failure)
        crash = InternalError(INTERNAL_ERROR_MESSAGE)
        crash.__cause__ = failure
        return outcome.Error(crash)
    result = runner.main_task_outcome
    assert result is not None
    if runner.ki_pending:
        ki = KeyboardInterrupt()
        if isinstance(result, outcome.Error):
            ki.__context__ = result.error
        return outcome.Error(ki)
    if (
        runner.cancelled_by_host
        and isinstance(result, outcome.Error)
        and _only_cancellations(result.error)
    ):
        cut_short = RunFinishedError(
            "the run was cancelled by its host before the main task finished"
        )
        cut_short.__cause__ = result.error
        return outcome.Error(cut_short)
    return result


@enable_ki_protection
def run(
    async_fn: Callable[[*PosArgT], Awaitable[RetT]],
    *args: *PosArgT,
    clock: Clock | None = None,
    instruments: tuple[Instrument, ...] | list[Instrument] = (),
    restrict_keyboard_interrupt_to_checkpoints: bool = False,
    strict_exception_groups: bool = True,
) -> RetT:
    """Run ``await async_fn(*args)`` in a new event loop and return its result.

    This is the entry point: everything else in nursery_io must be called (directly or
    indirectly) from inside ``async_fn``. The run ends when ``async_fn`` returns and every
    system task has finished. Its exception, if any, propagates out.

    ``clock`` replaces the system clock (e.g. :class:`nursery_io.testing.MockClock`);
    ``instruments`` are :class:`nursery_io.abc.Instrument` objects installed for the whole
    run. With ``restrict_keyboard_interrupt_to_checkpoints=True``, Ctrl-C is only ever
    delivered at a checkpoint of the main task, never in the middle of user code.
    ``strict_exception_groups=False`` lets a nursery with a single error raise that error
    bare instead of wrapped in an exception group (deprecated, as in Trio).
    """
    if not strict_exception_groups:
        warn_loose_exception_groups("trio.run(..., strict_exception_groups=False)")
    runner = _new_runner(
        clock,
        instruments,
        restrict_keyboard_interrupt_to_checkpoints,
        strict_exception_groups,
        handle_signals=True,
    )
    failure: BaseException | None = None
    with _entered(runner), _ki_handler(runner):
        runner.asyncgens.install_hooks()
        try:
            _start(runner, async_fn, args)
            while runner.tasks:
                runner.run_turn()
        except BaseException as exc:
            failure = exc
        finally:
            final = _finish(runner, failure)
            del failure
    # Unwrapped here rather than by a helper, so that a traceback out of run() shows just
    # this frame above the main task's own frames.
    if isinstance(final, outcome.Value):
        return final.value  # type: ignore[no-any-return]
    assert isinstance(final, outcome.Error)
    error = final.error
    del final
    try:
        raise error
    finally:
        del error  # no cycle through this frame's locals
