"""Opening one end of a FIFO the way a blocking ``open()`` does, without its pitfalls.

``open()`` of a FIFO waits until the other end is opened too. Only a blocking ``open()``
in a worker thread can wait like that, and two things go wrong with it naively:

* Cancellation. A thread blocked in ``open()`` can't be interrupted, so a cancelled
  ``open_file`` would wait (and hold a thread) until a peer showed up, possibly forever.
  Here it is released by briefly opening the other end ourselves (non-blocking, closed at
  once): the blocked ``open()`` returns, and its fd is closed.
* A peer that comes and goes early. Both io_uring's OPENAT and the inline open try every
  open non-blocking first, and a read-only non-blocking open of a FIFO succeeds at once.
  ``open_file`` keeps that fd (``held``) while the thread's blocking open runs, so a
  writer that connects now has a reader and its data stays in the pipe. But a writer that
  connects, writes and closes before the thread's ``open()`` starts would leave that
  ``open()`` waiting for the *next* writer, forever if there is none. ``held`` sees such a
  writer (data, or the hangup it left), and the thread is then released the same way.

A release can race with the thread entering ``open()`` (it wasn't blocked yet, so the
brief open on the other side didn't wake it); releasing is repeated, backing off, until
the open finishes. The brief open is seen by others waiting on the same FIFO as a peer
that connected and left at once.
"""

from __future__ import annotations

import os

from . import lowlevel
from ._core import CancelScope, open_nursery, wait_readable
from ._core._nursery import TASK_STATUS_IGNORED, TaskStatus
from ._sync import Event
from ._timeouts import sleep, sleep_forever

__all__ = ["open_fifo_end"]

_FIRST_RETRY = 0.001
_MAX_RETRY = 0.1


def _touch_other_end(path: str | bytes, reading: bool) -> None:
    """Open and close the other end of the FIFO without blocking, waking a blocked open."""
    flags = (os.O_WRONLY if reading else os.O_RDONLY) | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        os.close(os.open(path, flags))
    except OSError:
        pass  # ENXIO: no reader (the blocked open isn't in yet); retried below


async def _release_blocked_open(
    path: str | bytes,
    reading: bool,
    needed: Event,
    task_status: TaskStatus[CancelScope] = TASK_STATUS_IGNORED,
) -> None:
    # Shielded: it must keep going after the caller is cancelled (that is when it matters);
    # the caller cancels this scope as soon as the open has finished.
    with CancelScope(shield=True) as scope:
        task_status.started(scope)
        await needed.wait()
        delay = _FIRST_RETRY
        while not scope.cancel_called:
            _touch_other_end(path, reading)
            await sleep(delay)
            delay = min(delay * 2, _MAX_RETRY)


async def _watch(held: int | None, needed: Event) -> None:
    try:
        if held is None:
            await sleep_forever()
        else:
            # Readable: data came, or a writer connected and left (POLLHUP).
            await wait_readable(held)
    finally:
        # Also on cancellation: a cancelled open must release its thread.
        needed.set()


async def open_fifo_end(path: str | bytes, flags: int, held: int | None = None) -> int:
    """Open ``path`` (a FIFO) with ``flags`` in a worker thread, waiting for the other end
    as ``open()`` does, and return the fd. Cancellable: see the module docstring.

    ``held``: a read end of the same FIFO opened non-blocking; the caller closes it after.
    """
    reading = flags & os.O_ACCMODE == os.O_RDONLY
    op = lowlevel.ops.pool_only(os.open, path, flags, 0o666, name="open")
    op.on_abandoned = lowlevel.ops.close_result_fd  # cancelled while it ran: close what it opened
    needed = Event()
    async with open_nursery() as nursery:
        release_scope: CancelScope = await nursery.start(
            _release_blocked_open, path, reading, needed
        )
        nursery.start_soon(_watch, held, needed)
        try:
            fd: int = await lowlevel.run_op(op)
        finally:
            release_scope.cancel()
            nursery.cancel_scope.cancel()
    return fd
