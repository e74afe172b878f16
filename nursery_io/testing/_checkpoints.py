"""Assertions about whether a block of code passes through checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from .._core import current_task

__all__ = ["assert_checkpoints", "assert_no_checkpoints"]


@contextmanager
def _check_checkpoints(expect_checkpoint: bool) -> Iterator[None]:
    __tracebackhide__ = True
    task = current_task()
    # The runner counts, per task, every point where the task could have been cancelled
    # and every point where it let others run; a full checkpoint moves both counters.
    cancel_points = task._cancel_points
    schedule_points = task._schedule_points
    yield
    was_cancel_point = task._cancel_points != cancel_points
    was_schedule_point = task._schedule_points != schedule_points
    if expect_checkpoint and not (was_cancel_point and was_schedule_point):
        missing = [
            what
            for what, happened in (
                ("a cancel point", was_cancel_point),
                ("a schedule point", was_schedule_point),
            )
            if not happened
        ]
        raise AssertionError(
            f"assert_checkpoints: the block did not execute a checkpoint (missing "
            f"{' and '.join(missing)})"
        )
    if not expect_checkpoint and (was_cancel_point or was_schedule_point):
        raise AssertionError("assert_no_checkpoints: the block executed a checkpoint")


def assert_checkpoints() -> AbstractContextManager[None]:
    """Context manager: fail with ``AssertionError`` unless the block executes at least one
    checkpoint (a point that could both raise ``Cancelled`` and let other tasks run).

    A block that exits with an exception is not checked.
    """
    return _check_checkpoints(True)


def assert_no_checkpoints() -> AbstractContextManager[None]:
    """Context manager: fail with ``AssertionError`` if the block executes any checkpoint,
    cancel point or schedule point.

    A block that exits with an exception is not checked.
    """
    return _check_checkpoints(False)
