"""Handing a task's coroutine object to another coroutine runner, and taking it back.

For libraries that drive a nursery_io task's coroutine themselves for a while (greenback,
trio-asyncio style bridges). While detached, the task stays parked in the run, like a
task in :func:`~nursery_io.lowlevel.wait_task_rescheduled`; the foreign runner calls
``coro.send()``/``throw()`` on ``task.coro`` directly.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import outcome

from ._context import current_task
from ._traps import Abort, RaiseCancelT, WaitTaskRescheduled

if TYPE_CHECKING:
    from ._task import Task

__all__ = [
    "PermanentlyDetachCoroutineObject",
    "permanently_detach_coroutine_object",
    "reattach_detached_coroutine_object",
    "temporarily_detach_coroutine_object",
]


class PermanentlyDetachCoroutineObject:
    """The message by which a task's coroutine leaves the run for good."""

    __slots__ = ("final_outcome",)

    def __init__(self, final_outcome: outcome.Outcome[Any]) -> None:
        self.final_outcome = final_outcome


class _Reattaching:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<nursery_io: reattaching a detached coroutine>"


_REATTACHING = outcome.Value(_Reattaching())


@types.coroutine
def _yield(value: object) -> Generator[Any, Any, Any]:
    # A bare yield: what comes back is whatever the (foreign) runner sends in.
    return (yield value)


async def temporarily_detach_coroutine_object(abort_func: Callable[[RaiseCancelT], Abort]) -> Any:
    """Detach the current task's coroutine from the run until
    :func:`reattach_detached_coroutine_object`.

    The task stays alive, parked; another coroutine runner must now advance the coroutine
    (this call returns, or raises, whatever that runner first sends or throws in). Keep
    :func:`~nursery_io.lowlevel.current_task` to reattach later; the coroutine is its
    ``coro``. ``abort_func`` is as for :func:`~nursery_io.lowlevel.wait_task_rescheduled`
    but must return ``Abort.FAILED``: a cancelled detached task can only come back
    through a reattach (arrange for that, then call ``raise_cancel``).
    """
    return await _yield(WaitTaskRescheduled(abort_func))


async def reattach_detached_coroutine_object(task: Task, yield_value: object) -> None:
    """Give a detached coroutine back to its task: yields ``yield_value`` to the foreign
    runner (which should take it as "stop driving me") and returns once the run has
    resumed the task. Call it from inside that coroutine, while the foreign runner drives
    it."""
    if not getattr(task.coro, "cr_running", False):
        # Trio's wording ("given task does not match calling coroutine") leads the message.
        raise RuntimeError(
            f"given task does not match calling coroutine: {task!r} is not the detached "
            "coroutine being driven here (reattach_detached_coroutine_object must be called "
            "from inside that task's coroutine, while another runner drives it)"
        )
    task._runner.reschedule(task, _REATTACHING)
    sent = await _yield(yield_value)
    if sent is not _REATTACHING:
        raise RuntimeError(
            f"the foreign coroutine runner resumed {task!r} after it was reattached "
            f"(it sent {sent!r}); only the nursery_io run may resume it now"
        )


async def permanently_detach_coroutine_object(final_outcome: outcome.Outcome[Any]) -> Any:
    """End the current task as if its coroutine had finished with ``final_outcome``, and
    hand the still-running coroutine object to another runner: this call returns (or
    raises) whatever that runner first sends (or throws) in. The task must not have open
    nurseries (release everything nursery_io-specific first)."""
    task = current_task()
    if any(not nursery._closed for nursery in task._open_nurseries or ()):
        raise RuntimeError("can't permanently detach a coroutine object with open nurseries")
    return await _yield(PermanentlyDetachCoroutineObject(final_outcome))
