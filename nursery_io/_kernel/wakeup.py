"""Ways for other threads and signal handlers to wake the loop out of ``epoll_wait``.

Two fds, both living in the run's epoll set:

* :class:`WakeupFd` — an ``eventfd`` for wake-ups from other threads. Writes from many
  threads coalesce into one counter, so a burst of completions costs one wake-up.
* :class:`SignalWakeup` — a socketpair handed to :func:`signal.set_wakeup_fd`. It cannot be
  the eventfd: CPython's C-level signal handler writes a single byte per signal, and an
  eventfd rejects any write shorter than eight bytes (``EINVAL``).
"""

from __future__ import annotations

import os
import signal
import socket
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
    """A socketpair installed as the process's signal wake-up fd while a run is active.

    Only possible in the main thread. The previous wake-up fd is restored on :meth:`close`.
    """

    __slots__ = ("_old_fd", "_read", "_write")

    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._old_fd: int | None = None

    @staticmethod
    def available() -> bool:
        return threading.current_thread() is threading.main_thread()

    def install(self) -> None:
        self._old_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)

    def fileno(self) -> int:
        return self._read.fileno()

    @property
    def replaced_fd(self) -> int:
        """The wake-up fd that :meth:`install` replaced (-1: there was none)."""
        return -1 if self._old_fd is None else self._old_fd

    def drain(self) -> None:
        try:
            while self._read.recv(4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self._old_fd is not None:
            signal.set_wakeup_fd(self._old_fd)
            self._old_fd = None
        self._read.close()
        self._write.close()
