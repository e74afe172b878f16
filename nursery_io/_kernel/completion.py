"""How every :class:`~.ops.Op` ends, whichever engine ran it: :meth:`Completions.complete`.

``on_complete(op)`` runs in the loop thread, exactly once per submitted op, with
``op.result`` / ``op.error`` / ``op.cancelled`` set. An op finishes one of three ways:

- ``NOW``: the engine is in the loop thread at a point where callbacks may run (reaping the
  ring, a pool result brought back to the loop) and delivers at once;
- ``LATER``: it finished somewhere a callback must not run (inside ``submit()`` or
  ``cancel()``, whose callers must never be re-entered): it is delivered on the next loop
  turn through ``call_soon_threadsafe``, or by ``close()``, whichever comes first;
- ``ABANDON``: nobody can receive it any more (it finished into a closed engine, or in a
  forked child that forgot it): ``op.discard()`` undoes a result such as an opened fd.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Final

from .ops import Op

__all__ = [
    "ABANDON",
    "ENGINE_INLINE",
    "ENGINE_THREADS",
    "ENGINE_URING",
    "LATER",
    "NOW",
    "Completions",
]

ENGINE_URING: Final = "io_uring"
ENGINE_THREADS: Final = "threads"
#: Reads served from the page cache by an inline ``preadv2(RWF_NOWAIT)``: no ring, no thread.
ENGINE_INLINE: Final = "inline"

NOW: Final = 0
LATER: Final = 1
ABANDON: Final = 2


class Completions:
    """Delivers finished ops; holds those waiting for the next loop turn."""

    __slots__ = ("_call_soon_threadsafe", "closed", "deferred")

    def __init__(self, call_soon_threadsafe: Callable[[Callable[[], None]], None]) -> None:
        self._call_soon_threadsafe = call_soon_threadsafe
        #: Ops finished ``LATER`` and not delivered yet, by user_data.
        self.deferred: dict[int, Op] = {}
        #: Set by the engine's close(): from then on nothing new is scheduled.
        self.closed = False

    def complete(
        self, op: Op, engine: str | None, how: int = NOW, *, cancelled: bool = False
    ) -> None:
        """``op`` is finished: its outcome is set (or it is ``cancelled``). The kernel is
        done with its memory; it leaves the engine that held it and reaches its waiter."""
        if cancelled:
            op.cancelled = True
        op.buffer = op.c_path = op.c_path2 = None  # op.release(), inline: the hot path
        if engine is not None:
            op.engine = engine
        op._owner = None
        if how == NOW:
            callback = op._on_complete
            op._on_complete = None
            if callback is not None:
                callback(op)
        elif how == LATER:
            self.deferred[op.user_data] = op
            if not self.closed:
                self._call_soon_threadsafe(partial(self._run_deferred, op.user_data))
        else:
            op._on_complete = None
            op.discard()

    def _run_deferred(self, user_data: int) -> None:
        op = self.deferred.pop(user_data, None)
        if op is not None:  # None: close() delivered it already
            self.complete(op, None)

    def deliver_deferred(self) -> None:
        """Deliver every op waiting for the next loop turn now (at close). The first
        exception a callback raises is raised after all were delivered."""
        first_error: BaseException | None = None
        deferred = self.deferred
        while deferred:
            op = deferred.pop(next(iter(deferred)))  # in the order they finished
            try:
                self.complete(op, None)
            except BaseException as exc:
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error
