"""Opening one end of a FIFO the way a blocking ``open()`` does, without its pitfalls.

``open()`` of a FIFO waits until the other end is opened too. Only a blocking ``open()``
in a worker thread can wait like that, and two things go wrong with it naively:

* Cancellation. A thread blocked in ``open()`` can't be interrupted, so a cancelled
  ``open_file`` would wait (and hold a thread) until a peer showed up, possibly forever.
  Here it is released by briefly opening the other end ourselves (non-blocking, closed at
  once): the blocked ``open()`` returns, its fd is closed, and the caller gets
  ``Cancelled`` (or ``KeyboardInterrupt``).
* A peer that comes and goes early. Both io_uring's OPENAT and the inline open try every
  open non-blocking first, and a read-only non-blocking open of a FIFO succeeds at once.
  ``open_file`` keeps that fd (``held``) while the thread's blocking open runs, so a
  writer that connects now has a reader and its data stays in the pipe. But a writer that
  connects, writes and closes before the thread's ``open()`` starts would leave that
  ``open()`` waiting for the *next* writer, forever if there is none. ``held`` sees such a
  writer (data, or the hangup it left), and the thread is then released the same way.

A release can race with the thread entering ``open()`` (it wasn't blocked yet, so the
brief open on the other side didn't wake it), so it is repeated, backing off, until the
open finishes. Others waiting on the same FIFO see each brief open as a peer that
connected and left at once. The other end is reached through ``/proc/self/fd`` (of
``held``, or of an ``O_PATH`` descriptor taken first), which works even if the FIFO's name
was removed meanwhile. When that fails (no permission to open the other end), the open
waits for a real peer, as ``open()`` would.

The helpers run as system tasks rather than in a nursery of the caller's, so that
``open_file`` raises plain exceptions, never exception groups.
"""

from __future__ import annotations

import os

from .._core import CancelScope, checkpoint_if_cancelled, spawn_system_task, wait_readable
from .._core._ops import run_op
from .._kernel import ops
from .._timeouts import sleep

__all__ = ["open_fifo_end"]

_FIRST_RETRY = 0.001
_MAX_RETRY = 0.1


def _touch(target: str | bytes, reading: bool) -> None:
    """Open and close the other end of the FIFO without blocking, waking a blocked open."""
    flags = (os.O_WRONLY if reading else os.O_RDONLY) | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        os.close(os.open(target, flags))
    except OSError:
        pass  # e.g. ENXIO: no reader yet (the blocked open isn't in yet); retried


class _Release:
    """Unblocks the thread's ``open()``: on demand, until :meth:`stop`."""

    __slots__ = ("_reading", "_scopes", "_started", "_stopped", "_target")

    def __init__(self, target: str | bytes, reading: bool) -> None:
        self._target = target
        self._reading = reading
        self._started = False
        self._stopped = False
        self._scopes: list[CancelScope] = []

    def start(self) -> None:
        """Begin releasing (idempotent; nothing once stopped). Runs in the run's thread."""
        # After stop() too: the watch task can wake from a readiness that came just before
        # stop() and call this late. A release started then would never be stopped, and
        # would keep opening the other end of the FIFO (and, once `held` is closed and its
        # number reused, of whatever file gets that number), waking later opens falsely.
        if self._started or self._stopped:
            return
        self._started = True
        scope = CancelScope()
        self._scopes.append(scope)
        spawn_system_task(self._keep_releasing, scope, name="nursery_io FIFO release")

    def watch(self, held: int) -> None:
        """Start releasing once ``held`` (a read end) reports a writer came, or left."""
        scope = CancelScope()
        self._scopes.append(scope)
        spawn_system_task(self._watch, held, scope, name="nursery_io FIFO watch")

    def stop(self) -> None:
        self._stopped = True
        for scope in self._scopes:
            scope.cancel()

    async def _keep_releasing(self, scope: CancelScope) -> None:
        with scope:
            delay = _FIRST_RETRY
            # Checked before every touch, not only at the sleep: once stop() is called the
            # caller may close `held`, and its number could name another file by the time
            # a sleep that had already ended lets this task run again.
            while not scope.cancel_called:
                _touch(self._target, self._reading)
                await sleep(delay)
                delay = min(delay * 2, _MAX_RETRY)

    async def _watch(self, held: int, scope: CancelScope) -> None:
        with scope:
            # Not a moment after stop(): `held` may be closed (even reused) by then.
            await checkpoint_if_cancelled()
            try:
                await wait_readable(held)  # data, or POLLHUP: a writer connected and left
            except OSError:
                return  # can't watch it: the open then waits for a writer that stays
            self.start()


async def open_fifo_end(path: str | bytes, flags: int, held: int | None = None) -> int:
    """Open ``path`` (a FIFO) with ``flags`` in a worker thread, waiting for the other end
    as ``open()`` does, and return the fd. Cancellable: see the module docstring.

    ``held``: a read end of the same FIFO opened non-blocking; the caller closes it after
    this returns (not before: the release may go through it).
    """
    reading = flags & os.O_ACCMODE == os.O_RDONLY
    op = ops.pool_only(os.open, path, flags, 0o666, name="open")
    op.on_abandoned = ops.close_result_fd  # cancelled while it ran: close its fd
    pin = -1
    if held is None:
        # Something to reach this very FIFO through later, even if its name goes away.
        try:
            pin = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            pass  # then through the path
    anchor = held if held is not None else pin
    target: str | bytes = path if anchor < 0 else f"/proc/self/fd/{anchor}"
    release = _Release(target, reading)
    try:
        if held is not None:
            release.watch(held)
        fd: int = await run_op(op, on_abort=release.start)
    finally:
        release.stop()  # before `pin` (or the caller's `held`) is closed: see _Release
        if pin >= 0:
            os.close(pin)
    return fd
