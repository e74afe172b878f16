"""Ways for other threads and signal handlers to wake the loop out of ``epoll_wait``.

Two fds, both living in the run's epoll set:

* :class:`WakeupFd` — an ``eventfd`` for wake-ups from other threads. Writes from many
  threads coalesce into one counter, so a burst of completions costs one wake-up.
* :class:`SignalWakeup` — a non-blocking pipe handed to :func:`signal.set_wakeup_fd`. It
  cannot be the eventfd: CPython's C-level signal handler writes a single byte per signal,
  and an eventfd rejects any write shorter than eight bytes (``EINVAL``). A pipe rather
  than a socketpair: on Linux both work, and a pipe spares a program that uses no sockets
  the import of :mod:`socket`.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["SignalWakeup", "WakeupFd"]

_ONE = (1).to_bytes(8, "little")


class WakeupFd:
    """A non-blocking eventfd. :meth:`wakeup_threadsafe` may be called from any thread."""

    __slots__ = ("_closed", "_fd")

    def __init__(self) -> None:
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._closed = False

    def fileno(self) -> int:
        return self._fd

    def wakeup_threadsafe(self) -> None:
        try:
            os.write(self._fd, _ONE)
        except (BlockingIOError, OSError):
            # Counter saturated (the loop will wake anyway) or closed during shutdown: in
            # both cases there is nobody left to wake or the wake-up is already pending.
            pass

    def drain(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:
            pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)


class SignalWakeup:
    """A pipe installed as the process's signal wake-up fd while a run is active.

    Only possible in the main thread. The previous wake-up fd is restored on :meth:`close`.
    """

    __slots__ = ("_closed", "_old_fd", "_read", "_write")

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_fd: int | None = None
        self._closed = False

    @staticmethod
    def available() -> bool:
        # By ident: current_thread() is fooled by a damaged threading._active table.
        return threading.get_ident() == threading.main_thread().ident

    def install(self) -> None:
        self._old_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    def fileno(self) -> int:
        return self._read

    @property
    def replaced_fd(self) -> int:
        """The wake-up fd that :meth:`install` replaced (-1: there was none)."""
        return -1 if self._old_fd is None else self._old_fd

    def drain(self) -> None:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    def renew_after_fork(self) -> SignalWakeup:
        """In a forked child: a new pipe installed in place of this one, which is shared with
        the parent (a signal here would wake the parent, and the parent's would wake us).
        The new one restores the same previous fd on close."""
        new = SignalWakeup()
        if self._old_fd is not None:
            signal.set_wakeup_fd(new._write, warn_on_full_buffer=False)
            new._old_fd, self._old_fd = self._old_fd, None
        self.close()  # our copies only: the parent's ends stay open
        return new

    def close(self) -> None:
        if self._old_fd is not None:
            signal.set_wakeup_fd(self._old_fd)
            self._old_fd = None
        if not self._closed:
            self._closed = True
            os.close(self._read)
            os.close(self._write)
