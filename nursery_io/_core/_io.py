"""Readiness waits for file descriptors: the core side of the kernel's epoll registry."""

from __future__ import annotations

from typing import Protocol

import outcome

from ._context import current_runner, current_task
from ._traps import Abort, RaiseCancelT, wait_task_rescheduled

__all__ = ["notify_closing", "wait_readable", "wait_writable"]


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


def _fileno(obj: int | _HasFileno) -> int:
    if isinstance(obj, int):
        return obj
    return obj.fileno()


async def _wait(obj: int | _HasFileno, writable: bool) -> None:
    fd = _fileno(obj)
    task = current_task()
    runner = task._runner
    registry = runner.kernel.registry

    def wake(error: BaseException | None) -> None:
        runner.reschedule(task, None if error is None else outcome.Error(error))

    if writable:
        registry.add_writer(fd, wake)

        def abort(raise_cancel: RaiseCancelT) -> Abort:
            registry.remove_writer(fd)
            return Abort.SUCCEEDED
    else:
        registry.add_reader(fd, wake)

        def abort(raise_cancel: RaiseCancelT) -> Abort:
            registry.remove_reader(fd)
            return Abort.SUCCEEDED

    await wait_task_rescheduled(abort)


async def wait_readable(fd: int | _HasFileno) -> None:
    """Block until ``fd`` (an fd or an object with ``fileno()``) is readable.

    At most one task may wait for readability of one fd at a time (a second gets
    :class:`BusyResourceError`); if another task calls :func:`notify_closing` on it, the
    wait ends with :class:`ClosedResourceError`. Always a checkpoint.
    """
    await _wait(fd, False)


async def wait_writable(fd: int | _HasFileno) -> None:
    """Block until ``fd`` is writable; the same rules as :func:`wait_readable`."""
    await _wait(fd, True)


def notify_closing(fd: int | _HasFileno) -> None:
    """Tell the run that ``fd`` is about to be closed: tasks waiting on it get
    :class:`ClosedResourceError`. Call it *before* closing the fd."""
    current_runner().kernel.registry.notify_closing(_fileno(fd))
