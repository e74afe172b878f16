"""The per-thread pointer to the current run and the current task."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._runner import Runner
    from ._task import Task

__all__ = [
    "GLOBAL_RUN_CONTEXT",
    "NOT_IN_RUN_MESSAGE",
    "current_library_name",
    "current_runner",
    "current_task",
    "set_library_name",
]

# What sniffio reports inside a run: "nursery_io", or "trio" in trio mode (_trio_mode.py).
library_name = "nursery_io"


def set_library_name(name: str) -> None:
    """Set the name sniffio reports inside runs started from now on."""
    global library_name
    library_name = name


def current_library_name() -> str:
    """The name sniffio reports inside runs ("nursery_io", or "trio" in trio mode)."""
    return library_name


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
