"""Seeing inside a running program: task-tree dumps, a live console, traces.

Everything here is opt-in and costs nothing until used: no instrument is installed, no
socket opened and no constructor wrapped before one of these functions (or the
``NURSERY_IO_DEBUG_SIGNAL`` / ``NURSERY_IO_CONSOLE`` / ``NURSERY_IO_TRACE`` environment
variables) asks for it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

from .._core._context import current_runner
from ._format import format_snapshot
from ._sites import record_creation_sites
from ._snapshot import take_snapshot

if TYPE_CHECKING:
    from .._core._runner import Runner

__all__ = [
    "format_task_tree",
    "print_task_tree",
    "record_creation_sites",
    "task_tree_snapshot",
]


def task_tree_snapshot(*, _runner: Runner | None = None) -> dict[str, Any]:
    """The current run's tasks, nurseries, waits and kernel state as JSON-able data (the
    same data ``python -m nursery_io ps --json`` prints)."""
    runner = current_runner() if _runner is None else _runner
    from ._timing import timer_of

    return take_snapshot(runner, timing=timer_of(runner))


def format_task_tree(*, compress_min: int = 3, max_frames: int = 3) -> str:
    """The current run's tree of nurseries and tasks as text.

    For each task: its name, its state (running, runnable or blocked), what it waits on
    (a lock or event and who holds it, a memory channel, an fd, a file op in flight, a
    worker thread, a sleep, its child nurseries), its innermost frames outside nursery_io
    and the cancel scopes it entered, with their deadlines and shields. Alike sibling
    tasks are folded into one line once there are ``compress_min`` of them. Must be called
    from inside the run (in a task, or a ``run_sync_soon`` callback).
    """
    return format_snapshot(task_tree_snapshot(), compress_min=compress_min, max_frames=max_frames)


def print_task_tree(
    file: TextIO | None = None, *, compress_min: int = 3, max_frames: int = 3
) -> None:
    """Write :func:`format_task_tree` to ``file`` (default: ``sys.stderr``)."""
    text = format_task_tree(compress_min=compress_min, max_frames=max_frames)
    out = sys.stderr if file is None else file
    out.write(text)
    out.flush()
