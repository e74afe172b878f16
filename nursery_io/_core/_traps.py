"""The only ways a task gives control back to the scheduler.

A task talks to the runner by yielding one of three messages from its coroutine:

* :data:`CHECKPOINT` — "reschedule me at the next batch". The runner answers with a bool:
  True when a cancellation (or a KeyboardInterrupt for the main task) is pending, so the
  common, uncancelled case costs one yield and one attribute check.
* :class:`WaitTaskRescheduled` — "park me until someone calls ``reschedule``"; the runner
  answers with an :class:`outcome.Outcome` that the trap unwraps.
* anything else is a foreign library's awaitable; the runner throws a ``TypeError`` in.
"""

from __future__ import annotations

import enum
import math
import types
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Final, NoReturn

import outcome

from ._context import GLOBAL_RUN_CONTEXT, NOT_IN_RUN_MESSAGE

if TYPE_CHECKING:
    from typing import TypeAlias

__all__ = [
    "CHECKPOINT",
    "SCHEDULE_POINT",
    "Abort",
    "RaiseCancelT",
    "WaitTaskRescheduled",
    "cancel_shielded_checkpoint",
    "checkpoint",
    "checkpoint_if_cancelled",
    "wait_task_rescheduled",
]

RaiseCancelT: TypeAlias = Callable[[], NoReturn]


class Abort(enum.Enum):
    """What an abort function tells the runner.

    ``SUCCEEDED``: the wait was undone; the runner reschedules the task with the
    cancellation. ``FAILED``: the wait could not be undone yet; the task keeps waiting and
    whoever completes the operation must ``reschedule`` it (possibly with the exception
    obtained from ``raise_cancel``).
    """

    SUCCEEDED = 1
    FAILED = 2


class _CheckpointMessage:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<nursery_io checkpoint: this awaitable only works inside nursery_io.run()>"


CHECKPOINT: Final = _CheckpointMessage()


class _SchedulePointMessage:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<nursery_io schedule point: this awaitable only works inside nursery_io.run()>"


#: A schedule point that is not a cancel point (``cancel_shielded_checkpoint``).
SCHEDULE_POINT: Final = _SchedulePointMessage()


class WaitTaskRescheduled:
    __slots__ = ("abort_func",)

    def __init__(self, abort_func: Callable[[RaiseCancelT], Abort]) -> None:
        self.abort_func = abort_func

    def __repr__(self) -> str:
        return "<nursery_io wait: this awaitable only works inside nursery_io.run()>"


def _abort_succeeded(raise_cancel: RaiseCancelT) -> Abort:
    return Abort.SUCCEEDED


@types.coroutine
def wait_task_rescheduled(abort_func: Callable[[RaiseCancelT], Abort]) -> Generator[Any, Any, Any]:
    """Park the current task until :func:`reschedule` is called for it.

    ``abort_func(raise_cancel)`` is called if the task is cancelled (or interrupted) while
    parked. It must undo the wait and return :attr:`Abort.SUCCEEDED`, or return
    :attr:`Abort.FAILED` and arrange for ``reschedule`` to be called later. It must not
    raise, and it runs in whatever context delivered the cancellation.

    Returns (or raises) whatever :class:`outcome.Outcome` the task is rescheduled with.
    """
    result: outcome.Outcome[Any] | None = yield WaitTaskRescheduled(abort_func)
    # None is the runner's allocation-free spelling of outcome.Value(None).
    if result is None:
        return None
    try:
        return result.unwrap()
    finally:
        # An Error's exception has this frame in its traceback; keeping the outcome in a
        # local would make a cycle (exception -> frame -> outcome -> exception).
        del result


@types.coroutine
def _deliver_pending_cancel() -> Generator[Any, Any, None]:
    # Park under a scope whose deadline has already passed: the runner then aborts the
    # wait at once with whatever is pending (KeyboardInterrupt or the enclosing scope's
    # Cancelled). If the cancellation vanished meanwhile (a shield went up), this inner
    # scope catches its own Cancelled and the checkpoint simply returns.
    from ._cancel import CancelScope
    from ._exceptions import CancelReason

    task = GLOBAL_RUN_CONTEXT.task
    enclosing = task._cancel_status.scope
    if (
        enclosing._cancel_reason is None
        and task._runner.ki_pending
        and task is task._runner.main_task
    ):
        # What Trio does here: a pending KeyboardInterrupt becomes the enclosing scope's
        # reason (it sticks, and shows if that scope is cancelled later).
        enclosing._cancel_reason = CancelReason("KeyboardInterrupt")
    scope = CancelScope(deadline=-math.inf)
    # The Cancelled raised here must describe the enclosing cancellation, not this helper.
    scope._cancel_reason = enclosing._cancel_reason
    with scope:
        yield from wait_task_rescheduled(_abort_succeeded)


@types.coroutine
def checkpoint() -> Generator[Any, Any, None]:
    """A full checkpoint: a schedule point that also raises if the task is cancelled."""
    if (yield CHECKPOINT):
        yield from _deliver_pending_cancel()


@types.coroutine
def checkpoint_if_cancelled() -> Generator[Any, Any, None]:
    """Raise :class:`Cancelled` if the task is cancelled; otherwise return without yielding.

    Counts as a cancel point for :func:`nursery_io.testing.assert_checkpoints`.
    """
    try:
        task = GLOBAL_RUN_CONTEXT.task
    except AttributeError:
        raise RuntimeError(NOT_IN_RUN_MESSAGE) from None
    task._cancel_points += 1
    if task._cancel_status.effectively_cancelled or (
        task._runner.ki_pending and task is task._runner.main_task
    ):
        yield from _deliver_pending_cancel()


@types.coroutine
def cancel_shielded_checkpoint() -> Generator[Any, Any, None]:
    """A schedule point that cannot be cancelled (it never raises ``Cancelled``)."""
    yield SCHEDULE_POINT
