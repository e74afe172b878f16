"""The per-thread pointer to the current run and the current task."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._runner import Runner
    from ._task import Task

__all__ = ["GLOBAL_RUN_CONTEXT", "NOT_IN_RUN_MESSAGE", "current_runner", "current_task"]

NOT_IN_RUN_MESSAGE = (
    "must be called from inside a nursery_io run (nursery_io.run(...)); "
    "if you are in a worker thread, use nursery_io.from_thread"
)


class _RunContext(threading.local):
    # Attributes exist only while a run is active in this thread; reading them otherwise
    # raises AttributeError, which the accessors turn into a helpful RuntimeError.
    runner: Runner
    task: Task


GLOBAL_RUN_CONTEXT = _RunContext()


def current_runner() -> Runner:
    try:
        return GLOBAL_RUN_CONTEXT.runner
    except AttributeError:
        raise RuntimeError(NOT_IN_RUN_MESSAGE) from None


def current_task() -> Task:
    """Return the :class:`Task` object for the currently running task."""
    try:
        return GLOBAL_RUN_CONTEXT.task
    except AttributeError:
        raise RuntimeError(NOT_IN_RUN_MESSAGE) from None
