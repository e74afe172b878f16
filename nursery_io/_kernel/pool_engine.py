"""``PoolEngine``: runs ops' blocking equivalents on worker threads (``workers.py``).

One engine keeps at most ``max_threads`` of its ops on threads; further ops wait in a queue
and stay cancellable. An op handed to a worker that hasn't claimed it yet is still
cancellable too: the worker finds it gone and skips it. Once running it runs to completion
(threads can't be interrupted), like Trio's ``to_thread.run_sync(abandon_on_cancel=False)``.

Results come back to the loop thread through ``call_soon_threadsafe``. After ``close()`` the
loop may never run another callback, so a result that arrives then is abandoned right in
the worker thread (``op.discard()`` closes an fd it opened).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Final

import outcome

from . import workers
from .completion import ABANDON, ENGINE_THREADS, LATER, NOW, Completions
from .ops import Op

__all__ = ["PoolEngine"]

# A pool job that found its op cancelled before it started.
_SKIPPED: Final = object()


def _record(op: Op, result: outcome.Outcome[object]) -> None:
    if type(result) is outcome.Value:
        op.result = result.value
    else:
        op.error = result.error  # type: ignore[attr-defined]


class PoolEngine:
    """The worker-thread engine of one :class:`~.engine.FileEngine`.

    ``check_fork`` is the file engine's fork guard (a result may be the first thing a forked
    child's loop runs); ``claim_forgotten(op)`` takes an op the file engine forgot at a fork
    (True: its result, decided before the fork, is to be delivered); ``on_rerun_result(op)``
    sees the result of an op the ring answered EOPNOTSUPP/EINVAL for.
    """

    name = ENGINE_THREADS

    def __init__(
        self,
        completions: Completions,
        call_soon_threadsafe: Callable[[Callable[[], None]], None],
        max_threads: int,
        *,
        check_fork: Callable[[], None],
        claim_forgotten: Callable[[Op], bool],
        on_rerun_result: Callable[[Op], None],
    ) -> None:
        self._completions = completions
        self._call_soon_threadsafe = call_soon_threadsafe
        self._max_threads = max_threads
        self._check_fork = check_fork
        self._claim_forgotten = claim_forgotten
        self._on_rerun_result = on_rerun_result
        self._reset()

    def _reset(self) -> None:
        self._queue: deque[Op] = deque()  # waiting for one of our thread slots
        self._unclaimed: dict[int, Op] = {}  # handed to a worker, not started
        self._slots: dict[int, Op] = {}  # holding one of our thread slots (handed or running)
        self._skipping = 0  # of those, cancelled ones whose worker will skip them
        #: Statistics: ops run, most ops on threads at once, ring-capable ops by reason.
        self.ops_run = 0
        self.peak = 0
        self.fallbacks: dict[str, int] = {}

    @property
    def in_flight(self) -> int:
        """Ops submitted here and not completed yet."""
        return len(self._queue) + len(self._slots) - self._skipping

    def forget(self) -> list[Op]:
        """In a forked child: start over with nothing, and return the parent's ops that were
        still waiting for an outcome here (none of them will run in this process)."""
        held = [op for op in (*self._queue, *self._slots.values()) if op._owner is self]
        self._reset()
        return held

    # --- submission ---------------------------------------------------------------------------

    def submit(self, op: Op, reason: str | None) -> None:
        """Run ``op`` on a thread; ``reason``: why a ring-capable op came here (counted)."""
        if reason is not None:
            self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1
        self.ops_run += 1
        op._owner = self
        if len(self._slots) < self._max_threads:
            self._start(op)
        else:
            self._queue.append(op)

    def _start(self, op: Op) -> None:
        ud = op.user_data
        unclaimed = self._unclaimed
        unclaimed[ud] = op
        slots = self._slots
        slots[ud] = op
        self.peak = max(self.peak, len(slots))
        completions = self._completions

        def job() -> object:
            # dict.pop is atomic: either this worker or cancel() takes the op, never both.
            if unclaimed.pop(ud, None) is None:
                return _SKIPPED
            return op.blocking()

        def deliver(result: outcome.Outcome[object]) -> None:
            # Runs in the worker thread. After close() the loop may never run another
            # callback: finish here so that on_abandoned (closing an fd) still happens.
            if completions.closed:
                self._abandon(op, result)
                return
            try:
                self._call_soon_threadsafe(partial(self._finished, op, result))
            except BaseException:
                self._abandon(op, result)

        try:
            workers.start_thread_soon(job, deliver)
        except BaseException as exc:  # e.g. RuntimeError("can't start new thread")
            unclaimed.pop(ud, None)
            del slots[ud]
            op.error = exc
            completions.complete(op, ENGINE_THREADS, LATER)

    # --- completion ---------------------------------------------------------------------------

    def _record(self, op: Op, result: outcome.Outcome[object]) -> None:
        _record(op, result)
        if op._ring_errno:
            self._on_rerun_result(op)

    def _finished(self, op: Op, result: outcome.Outcome[object]) -> None:
        # Loop thread: a worker's result.
        self._check_fork()
        skipped = type(result) is outcome.Value and result.value is _SKIPPED
        slots = self._slots
        if slots.pop(op.user_data, None) is None:
            # Not holding one of this process's slots: a forked child got the parent's
            # result (queued before the fork). Starting queued ops here would run the
            # parent's ops a second time.
            if not skipped:
                self._record(op, result)
                # It ran before the fork, so the result is true in this process too.
                how = NOW if self._claim_forgotten(op) else ABANDON
                self._completions.complete(op, ENGINE_THREADS, how)
            return
        closed = self._completions.closed
        queue = self._queue
        while queue and len(slots) < self._max_threads and not closed:
            self._start(queue.popleft())
        if skipped:
            self._skipping -= 1
            return  # cancelled before it started; already delivered by cancel()
        self._record(op, result)
        self._completions.complete(op, ENGINE_THREADS, ABANDON if closed else NOW)

    def _abandon(self, op: Op, result: outcome.Outcome[object]) -> None:
        if type(result) is outcome.Value and result.value is _SKIPPED:
            return
        self._record(op, result)
        self._completions.complete(op, ENGINE_THREADS, ABANDON)

    # --- cancellation -------------------------------------------------------------------------

    def cancel(self, op: Op) -> None:
        """Queued or not yet claimed by its worker: completes as cancelled (``LATER``).
        Running: runs to completion."""
        ud = op.user_data
        if ud not in self._slots:
            self._queue.remove(op)
        elif self._unclaimed.pop(ud, None) is not None:
            # The worker will find it gone and skip it (and free our thread slot).
            self._skipping += 1
        else:
            return
        self._completions.complete(op, ENGINE_THREADS, LATER, cancelled=True)

    def cancel_unstarted(self) -> None:
        """At close: every op not running yet completes as cancelled."""
        unstarted = [*self._queue]
        self._queue.clear()
        for ud in list(self._unclaimed):
            op = self._unclaimed.pop(ud, None)
            if op is not None:
                self._skipping += 1
                unstarted.append(op)
        for op in unstarted:
            op.cancel_requested = True
            self._completions.complete(op, ENGINE_THREADS, LATER, cancelled=True)

    def where(self, op: Op) -> str:
        """Where ``op`` is, for introspection."""
        return "on a thread" if op.user_data in self._slots else "queued for a thread"
