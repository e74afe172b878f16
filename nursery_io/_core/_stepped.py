"""SteppedRun: a run whose loop turns are driven by a host, one at a time."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVarTuple

import outcome

from ._deprecate import warn_loose_exception_groups
from ._entry import _entered, _finish, _new_runner, _start
from ._exceptions import CancelReason
from ._util import final

if TYPE_CHECKING:
    from types import TracebackType

    from .._abc_clock import Clock, Instrument

__all__ = ["SteppedRun"]

PosArgT = TypeVarTuple("PosArgT")


@final
class SteppedRun:
    """A run driven from outside, one loop turn at a time.

    ``run()`` drives its loop itself until the main task finishes. A ``SteppedRun`` hands
    the turns to its owner instead, which is what a host needs when it owns the thread:
    a test runner that re-enters the same run for every fixture and test (the anyio
    backend's), or another event loop. Between turns the thread is *not* inside the run:
    ``in_run()`` is False and other code (even another ``nursery_io.run``) may use it.
    Code outside the run talks to it through :attr:`token` (``run_sync_soon`` works from
    any thread, including this one between turns).

    ``turn(timeout)`` runs one loop turn; the kernel poll sleeps at most ``timeout``
    seconds (``None``: as long as the run wants), so a host can interleave its own work.
    The run does not install a SIGINT handler or a signal wake-up fd: the host owns those.
    """

    def __init__(
        self,
        async_fn: Callable[[*PosArgT], Awaitable[object]],
        *args: *PosArgT,
        clock: Clock | None = None,
        instruments: tuple[Instrument, ...] | list[Instrument] = (),
        strict_exception_groups: bool = True,
    ) -> None:
        if not strict_exception_groups:
            warn_loose_exception_groups("SteppedRun(..., strict_exception_groups=False)")
        self._runner = _new_runner(
            clock, instruments, True, strict_exception_groups, handle_signals=False
        )
        self._failure: BaseException | None = None
        self._finished = False
        self._result: outcome.Outcome[Any] | None = None
        self._result_tb: TracebackType | None = None
        self.token = self._runner.token
        with self._turn_context():
            try:
                _start(self._runner, async_fn, args)
            except BaseException as exc:
                self._failure = exc

    @contextmanager
    def _turn_context(self) -> Iterator[None]:
        runner = self._runner
        with _entered(runner):
            runner.asyncgens.install_hooks()
            try:
                yield
            finally:
                runner.asyncgens.close()

    @property
    def done(self) -> bool:
        """True once the main task and every system task have finished."""
        return self._finished

    def cancel(self) -> None:
        """Cancel every task in the run; keep calling :meth:`turn` until it returns False.

        :meth:`result` then raises :class:`RunFinishedError` if the main task was cut short.
        A host must do this (rather than just stop calling ``turn``) before abandoning a
        run: it lets every ``finally`` block and nursery exit run inside the run.
        """
        if not self._finished:
            self._runner.cancelled_by_host = True
            self.token.run_sync_soon(self._cancel_everything)

    def _cancel_everything(self) -> None:
        nursery = self._runner.system_nursery
        if nursery is None:
            # The run hasn't opened its system nursery yet: try again next turn.
            self.token.run_sync_soon(self._cancel_everything)
            return
        nursery.cancel_scope._cancel(CancelReason("shutdown", None, "the host cancelled the run"))

    def turn(self, timeout: float | None = None) -> bool:
        """Run one loop turn; return False once the run has finished (then see ``result``)."""
        if self._finished:
            return False
        runner = self._runner
        with self._turn_context():
            try:
                if self._failure is None and runner.tasks:
                    runner.max_sleep = math.inf if timeout is None else max(0.0, timeout)
                    runner.run_turn()
            except BaseException as exc:
                self._failure = exc
            if self._failure is not None or not runner.tasks:
                self._finished = True
                self._result = _finish(runner, self._failure)
                if isinstance(self._result, outcome.Error):
                    self._result_tb = self._result.error.__traceback__
        return not self._finished

    def result(self) -> Any:
        """The main task's return value (or its exception); only once :attr:`done`."""
        result = self._result
        if result is None:
            raise RuntimeError("the run has not finished yet")
        # Unwrapped inline (no helper frames in the traceback), and with the traceback
        # the error had, however often this is called.
        if isinstance(result, outcome.Value):
            return result.value
        assert isinstance(result, outcome.Error)
        raise result.error.with_traceback(self._result_tb)
