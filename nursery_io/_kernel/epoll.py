"""Readiness waits on file descriptors, built on ``epoll``.

Registration model: level-triggered with ``EPOLLONESHOT``, re-armed with ``EPOLL_CTL_MOD`` on
every wait.

Why not a persistent edge-triggered registration, which would save that one ``epoll_ctl``
per wait? Because epoll registrations belong to the *open file description*, while our
callers speak in fd numbers. When a program closes an fd (or closes one of two dups) and the
number is reused for a new file, a persistent registration silently keeps watching the old
file, and a waiter on the new one sleeps forever. Re-arming on every wait asks the kernel
about the fd *as it is now*: ``MOD`` on a number whose old file is gone fails with
``ENOENT`` and we ``ADD`` the new file. The worst a stale registration can then do is fire
once, which wakes a waiter spuriously; callers retry their non-blocking call, so that is
harmless. The cost is one syscall per wait, and a wait only happens when the operation
would have blocked, i.e. when we are about to sleep anyway.

Each fd has at most one reader and one writer callback. A second waiter in the same
direction is a bug in the caller (two tasks reading one socket interleave data), so it gets
:class:`BusyResourceError` instead of silently queueing.
"""

from __future__ import annotations

import errno
import select
from collections.abc import Callable

from .errors import BusyResourceError, ClosedResourceError

__all__ = ["EpollRegistry", "WaitCallback"]

#: Called once when the wait ends: with ``None`` when the fd became ready, or with the
#: exception to deliver (``ClosedResourceError`` after :meth:`EpollRegistry.notify_closing`).
WaitCallback = Callable[[BaseException | None], None]

# Trio's text, for both directions: callers (anyio's trio backend, tests) see it as is.
_BUSY = "another task is already reading / writing this fd"

_READ_EVENTS = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP
_WRITE_EVENTS = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP


class _FdWaiters:
    __slots__ = ("armed", "reader", "writer")

    def __init__(self) -> None:
        self.reader: WaitCallback | None = None
        self.writer: WaitCallback | None = None
        # The event mask currently armed in the kernel (0 = disarmed or never added).
        self.armed = 0


class EpollRegistry:
    """One reader and one writer callback per fd, on a shared ``select.epoll`` object."""

    __slots__ = ("_epoll", "_fds")

    def __init__(self, epoll: select.epoll) -> None:
        self._epoll = epoll
        self._fds: dict[int, _FdWaiters] = {}

    def add_reader(self, fd: int, callback: WaitCallback) -> None:
        waiters = self._fds.get(fd)
        if waiters is None:
            waiters = self._fds[fd] = _FdWaiters()
        elif waiters.reader is not None:
            raise BusyResourceError(_BUSY)
        waiters.reader = callback
        self._rearm(fd, waiters, undo_reader=True)

    def add_writer(self, fd: int, callback: WaitCallback) -> None:
        waiters = self._fds.get(fd)
        if waiters is None:
            waiters = self._fds[fd] = _FdWaiters()
        elif waiters.writer is not None:
            raise BusyResourceError(_BUSY)
        waiters.writer = callback
        self._rearm(fd, waiters, undo_reader=False)

    def remove_reader(self, fd: int) -> None:
        waiters = self._fds.get(fd)
        if waiters is not None and waiters.reader is not None:
            waiters.reader = None
            self._rearm_quietly(fd, waiters)

    def remove_writer(self, fd: int) -> None:
        waiters = self._fds.get(fd)
        if waiters is not None and waiters.writer is not None:
            waiters.writer = None
            self._rearm_quietly(fd, waiters)

    def has_waiters(self, fd: int) -> bool:
        waiters = self._fds.get(fd)
        return waiters is not None and (waiters.reader is not None or waiters.writer is not None)

    def notify_closing(self, fd: int) -> None:
        """Wake every waiter on ``fd`` with :class:`ClosedResourceError` and forget the fd.

        Call it *before* closing the fd, so the registration can still be removed cleanly.
        """
        waiters = self._fds.pop(fd, None)
        if waiters is None:
            return
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass
        for callback in (waiters.reader, waiters.writer):
            if callback is not None:
                callback(ClosedResourceError("another task closed this fd"))

    def dispatch(self, fd: int, events: int) -> None:
        """Handle one ``(fd, events)`` pair reported by ``epoll.poll``."""
        waiters = self._fds.get(fd)
        if waiters is None:
            return
        waiters.armed = 0  # EPOLLONESHOT disarmed the registration when it fired
        reader = writer = None
        if events & _READ_EVENTS and waiters.reader is not None:
            reader, waiters.reader = waiters.reader, None
        if events & _WRITE_EVENTS and waiters.writer is not None:
            writer, waiters.writer = waiters.writer, None
        if waiters.reader is not None or waiters.writer is not None:
            self._rearm_quietly(fd, waiters)
        else:
            del self._fds[fd]
        if reader is not None:
            reader(None)
        if writer is not None:
            writer(None)

    def move_to(self, epoll: select.epoll) -> None:
        """Use ``epoll`` from now on, arming in it every fd that has a waiter (a forked child
        moves to an epoll set of its own: registrations in the inherited one are the
        parent's too)."""
        self._epoll = epoll
        for fd, waiters in list(self._fds.items()):
            waiters.armed = 0
            self._rearm_quietly(fd, waiters)

    def watched_count(self) -> int:
        return len(self._fds)

    def waiter_counts(self) -> tuple[int, int]:
        """How many fds have a reader waiting, and how many have a writer waiting."""
        readers = writers = 0
        for waiters in self._fds.values():
            if waiters.reader is not None:
                readers += 1
            if waiters.writer is not None:
                writers += 1
        return readers, writers

    def close(self) -> None:
        self._fds.clear()

    def _wanted(self, waiters: _FdWaiters) -> int:
        mask = 0
        if waiters.reader is not None:
            mask |= select.EPOLLIN
        if waiters.writer is not None:
            mask |= select.EPOLLOUT
        return mask

    def _rearm(self, fd: int, waiters: _FdWaiters, *, undo_reader: bool) -> None:
        try:
            self._apply(fd, waiters)
        except BaseException:
            # Registration failed (EBADF, EPERM for regular files, ...): leave no trace.
            if undo_reader:
                waiters.reader = None
            else:
                waiters.writer = None
            if waiters.reader is None and waiters.writer is None:
                self._fds.pop(fd, None)
            raise

    def _rearm_quietly(self, fd: int, waiters: _FdWaiters) -> None:
        try:
            self._apply(fd, waiters)
        except OSError:
            # The fd went away behind our back; whoever still waits on it will be woken
            # by notify_closing or will wait on a fresh registration next time.
            waiters.armed = 0
        if waiters.reader is None and waiters.writer is None:
            self._fds.pop(fd, None)

    def _apply(self, fd: int, waiters: _FdWaiters) -> None:
        wanted = self._wanted(waiters)
        if wanted == waiters.armed:
            return
        flags = wanted | select.EPOLLONESHOT
        try:
            self._epoll.modify(fd, flags)
        except FileNotFoundError:
            if wanted == 0:
                waiters.armed = 0
                return
            self._epoll.register(fd, flags)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
            self._epoll.register(fd, flags)
        waiters.armed = wanted
