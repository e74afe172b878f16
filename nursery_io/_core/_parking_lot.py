"""ParkingLot: the FIFO queue of sleeping tasks underneath every synchronization primitive."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import outcome

from ._context import GLOBAL_RUN_CONTEXT, current_task
from ._exceptions import BrokenResourceError
from ._ki import enable_ki_protection
from ._traps import Abort, RaiseCancelT, wait_task_rescheduled

if TYPE_CHECKING:
    from ._task import Task

__all__ = [
    "ParkingLot",
    "ParkingLotStatistics",
    "add_parking_lot_breaker",
    "break_lots_of_exited_task",
    "remove_parking_lot_breaker",
]

# Task -> the lots to break if it exits first (e.g. the lot of a Lock it holds). Keyed by
# task, and tasks belong to exactly one run, so runs in different threads never share keys.
_LOT_BREAKERS: dict[Task, list[ParkingLot]] = {}


@dataclass(frozen=True)
class ParkingLotStatistics:
    """``tasks_waiting``: how many tasks are parked in the lot."""

    tasks_waiting: int


class ParkingLot:
    """A fair (FIFO) queue of parked tasks, woken explicitly by ``unpark``.

    It holds no state of its own beyond who is waiting: primitives like Lock or Event keep
    their state and use a lot to sleep on it. ``bool(lot)`` is True when anyone is parked.
    """

    __slots__ = ("__weakref__", "_parked", "broken_by")

    def __init__(self) -> None:
        # A dict is an insertion-ordered set with O(1) removal from the middle, which
        # cancellation needs.
        self._parked: dict[Task, None] = {}
        self.broken_by: list[Task] = []

    def __len__(self) -> int:
        return len(self._parked)

    def __bool__(self) -> bool:
        return bool(self._parked)

    @enable_ki_protection
    async def park(self) -> None:
        """Sleep until unparked (or cancelled). Raises ``BrokenResourceError`` if broken."""
        if self.broken_by:
            raise BrokenResourceError(
                f"Attempted to park in parking lot broken by {self.broken_by}"
            )
        task = current_task()
        self._parked[task] = None
        task.custom_sleep_data = self

        def abort(raise_cancel: RaiseCancelT) -> Abort:
            # The task may have been reparked into another lot meanwhile.
            del task.custom_sleep_data._parked[task]
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def _pop(self, count: int | float) -> Iterator[Task]:
        # As in Trio: math.inf means everyone, a negative count means no one, and any
        # other float is an error.
        if isinstance(count, float):
            if not math.isinf(count):
                raise ValueError("Cannot pop a non-integer number of tasks.")
            count = len(self._parked)
        parked = self._parked
        while count > 0 and parked:
            task = next(iter(parked))
            del parked[task]
            count -= 1
            yield task

    @enable_ki_protection
    def unpark(self, *, count: int | float = 1) -> list[Task]:
        """Wake the ``count`` longest-waiting tasks; return them."""
        tasks = list(self._pop(count))
        if tasks:
            # Only now: with nobody parked this works outside a run too (Event.set does).
            reschedule = GLOBAL_RUN_CONTEXT.runner.reschedule
            for task in tasks:
                reschedule(task)
        return tasks

    def unpark_all(self) -> list[Task]:
        """Wake every parked task; return them."""
        return self.unpark(count=len(self))

    @enable_ki_protection
    def repark(self, new_lot: ParkingLot, *, count: int | float = 1) -> None:
        """Move the ``count`` longest-waiting tasks to the back of ``new_lot`` without waking
        them (used e.g. by Condition.notify to move waiters onto a lock's queue)."""
        if not isinstance(new_lot, ParkingLot):
            raise TypeError("new_lot must be a ParkingLot")
        for task in self._pop(count):
            new_lot._parked[task] = None
            task.custom_sleep_data = new_lot

    def repark_all(self, new_lot: ParkingLot) -> None:
        """Move every parked task to ``new_lot``."""
        return self.repark(new_lot, count=len(self))

    @enable_ki_protection
    def break_lot(self, task: Task | None = None) -> None:
        """Mark the lot broken by ``task`` (default: the current task): every parked task
        and every later ``park`` get ``BrokenResourceError``."""
        if task is None:
            task = current_task()
        # Every call is recorded, repeats included (as in Trio).
        self.broken_by.append(task)
        if not self._parked:
            return
        reschedule = GLOBAL_RUN_CONTEXT.runner.reschedule
        for parked in list(self._pop(len(self))):
            # One Error (and one exception) per task: an outcome can be unwrapped only
            # once, and sharing one exception object would tangle its traceback between
            # the tasks that raise it.
            reschedule(
                parked, outcome.Error(BrokenResourceError(f"Parking lot broken by {task!r}"))
            )

    def statistics(self) -> ParkingLotStatistics:
        return ParkingLotStatistics(tasks_waiting=len(self._parked))


def add_parking_lot_breaker(task: Task, lot: ParkingLot) -> None:
    """Break ``lot`` (see :meth:`ParkingLot.break_lot`) if ``task`` exits before the
    registration is removed. Lock uses this so waiters don't hang on a dead owner.

    ``BrokenResourceError`` if ``task`` has already exited (it could never break the lot).
    """
    # A finished coroutine drops its frame (cheaper to test than getcoroutinestate; Lock
    # calls this on every acquire). Non-coroutine awaitables are taken as alive.
    if getattr(task.coro, "cr_frame", True) is None:
        raise BrokenResourceError("Attempted to add already exited task as lot breaker.")
    _LOT_BREAKERS.setdefault(task, []).append(lot)


def remove_parking_lot_breaker(task: Task, lot: ParkingLot) -> None:
    """Undo one :func:`add_parking_lot_breaker`; ``RuntimeError`` if there is none."""
    try:
        _LOT_BREAKERS[task].remove(lot)
    except (KeyError, ValueError):
        raise RuntimeError(
            "Attempted to remove task as breaker for a lot it is not registered for"
        ) from None
    if not _LOT_BREAKERS[task]:
        del _LOT_BREAKERS[task]


def break_lots_of_exited_task(task: Task) -> None:
    """Called by the runner when a task exits (cheap when no breakers exist)."""
    if _LOT_BREAKERS:
        lots = _LOT_BREAKERS.pop(task, None)
        if lots is not None:
            for lot in lots:
                lot.break_lot(task)
