"""An opt-in signal (SIGUSR1 by default) that writes the task tree to stderr.

The handler itself does nothing but queue a ``run_sync_soon`` callback on each run that
asked for it: queueing wakes the loop if it sleeps, and the dump is then produced in the
loop thread between two batches, where every task is parked and its frames are stable.
The program carries on undisturbed.

A run stuck in a step that never yields can't produce the dump this way (its loop never
gets back to the callback); ``faulthandler.register(signal.SIGUSR2)`` is the tool for
seeing the stack of such a thread.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, TextIO

from .._core._abc_clock import Instrument
from .._core._context import current_runner
from .._core._exceptions import RunFinishedError

if TYPE_CHECKING:
    from types import FrameType

    from .._core._runner import Runner

__all__ = ["disable_debug_signal", "dump_runner", "enable_debug_signal"]

_lock = threading.RLock()
# Runs to dump (weakly: a run that died without cleaning up just drops out).
_runs: weakref.WeakKeyDictionary[Runner, TextIO | None] = weakref.WeakKeyDictionary()
_installed: dict[int, Any] = {}  # signum -> the handler we replaced


def dump_runner(runner: Runner, file: TextIO | None = None) -> None:
    """Write ``runner``'s task tree to ``file`` (default stderr). Loop thread only."""
    from ._format import format_snapshot
    from ._snapshot import take_snapshot
    from ._timing import timer_of

    text = format_snapshot(take_snapshot(runner, timing=timer_of(runner)))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    out = sys.stderr if file is None else file
    out.write(f"--- nursery_io task dump at {stamp} ---\n{text}--- end of task dump ---\n")
    out.flush()


def _dump_callback(runner: Runner) -> None:
    # A run_sync_soon callback must not raise (it would end the run): a dump that fails
    # says so on stderr instead.
    try:
        dump_runner(runner, _runs.get(runner))
    except Exception as exc:
        try:
            sys.stderr.write(f"nursery_io: task dump failed: {exc!r}\n")
        except Exception:
            pass


def _handler(signum: int, frame: FrameType | None) -> None:
    for runner in list(_runs):
        try:
            runner.run_sync_soon(_dump_callback, (runner,), True)
        except RunFinishedError:
            _runs.pop(runner, None)


class _Unregister(Instrument):
    def __init__(self, runner: Runner) -> None:
        self._runner = weakref.ref(runner)

    def after_run(self) -> None:
        runner = self._runner()
        if runner is not None:
            disable_debug_signal(_runner=runner)


def enable_debug_signal(
    signum: int = signal.SIGUSR1, *, file: TextIO | None = None, _runner: Runner | None = None
) -> None:
    """Make ``signum`` (default SIGUSR1) write the current run's task tree to ``file``
    (default stderr): ``kill -USR1 <pid>``. Call it inside a run, in the main thread;
    it lasts until the run ends (the previous handler is then put back).

    Also starts recording where locks, events and channels are created (see
    :func:`nursery_io.lowlevel.record_creation_sites`), so the dump can say.
    """
    from ._sites import record_creation_sites

    runner = current_runner() if _runner is None else _runner
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("enable_debug_signal() must be called from the main thread")
    record_creation_sites()
    with _lock:
        if signum not in _installed:
            _installed[signum] = signal.signal(signum, _handler)
        _runs[runner] = file
        runner.instruments.add_instrument(_Unregister(runner))


def disable_debug_signal(*, _runner: Runner | None = None) -> None:
    """Stop dumping the current run on the signal; the last run to stop restores the
    previous handlers. Called automatically when the run ends."""
    runner = current_runner() if _runner is None else _runner
    with _lock:
        _runs.pop(runner, None)
        if _runs or threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in list(_installed.items()):
            if signal.getsignal(signum) is _handler:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            del _installed[signum]
