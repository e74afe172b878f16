"""The one kernel object a run drives: epoll, wake-ups, the file engine, the entry queue.

The process sleeps in exactly one place, :meth:`Kernel.poll`: sockets, the ring fd, the
eventfd used by other threads and the signal wake-up socket all live in one epoll set.
"""

from __future__ import annotations

import select
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .epoll import EpollRegistry
from .wakeup import SignalWakeup, WakeupFd

if TYPE_CHECKING:
    from .engine import FileEngine

__all__ = ["Kernel", "KernelStatistics"]


@dataclass(frozen=True)
class KernelStatistics:
    """What the kernel layer has been doing; ``current_statistics().io_statistics``."""

    backend: str
    #: fds with a task waiting for readiness right now
    fds_watched: int
    #: times the loop polled the kernel (epoll_wait calls)
    kernel_polls: int
    #: the file engine's statistics (``IOStatistics``), or None if no file op ran yet
    file_engine: Any


class Kernel:
    """Per-run kernel state. Loop-thread only, except :meth:`call_soon_threadsafe` and
    :meth:`wakeup_threadsafe` (any thread) and :meth:`wait` (one thread at a time, while
    the loop thread is not using the kernel: a guest run sleeps in a worker thread)."""

    def __init__(self, *, handle_signals: bool) -> None:
        self._epoll = select.epoll()
        self.registry = EpollRegistry(self._epoll)
        self._wakeup = WakeupFd()
        self._wakeup_fd = self._wakeup.fileno()
        self._epoll.register(self._wakeup_fd, select.EPOLLIN)
        self._signal_wakeup: SignalWakeup | None = None
        self._signal_fd = -1
        if handle_signals and SignalWakeup.available():
            self._signal_wakeup = SignalWakeup()
            self._signal_wakeup.install()
            self._signal_fd = self._signal_wakeup.fileno()
            self._epoll.register(self._signal_fd, select.EPOLLIN)
        # Callbacks queued from other threads (and signal handlers) to run in the loop thread.
        self._entry_queue: deque[Callable[[], None]] = deque()
        # True while the loop thread is inside (or about to enter) epoll_wait: producers only
        # pay for an eventfd write when the loop could actually be asleep.
        self._sleeping = False
        self._engine: FileEngine | None = None
        self._ring_fd = -1
        self.polls = 0
        self._closed = False
        self.sleep_interrupted_by: BaseException | None = None

    # ----- cross-thread entry queue -----

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        """Queue ``callback`` to run in the loop thread during the next :meth:`poll`."""
        self._entry_queue.append(callback)
        if self._sleeping:
            self._wakeup.wakeup_threadsafe()

    def wakeup_threadsafe(self) -> None:
        self._wakeup.wakeup_threadsafe()

    @property
    def replaced_signal_wakeup_fd(self) -> int:
        """The process's signal wake-up fd before this kernel installed its own (-1: none,
        or this kernel installed none)."""
        signal_wakeup = self._signal_wakeup
        return -1 if signal_wakeup is None else signal_wakeup.replaced_fd

    @property
    def entry_queue_size(self) -> int:
        return len(self._entry_queue)

    # ----- file engine -----

    @property
    def engine(self) -> FileEngine:
        """The file engine, created on first use so runs that never touch files pay nothing."""
        engine = self._engine
        if engine is None:
            from .engine import FileEngine

            engine = self._engine = FileEngine(self.call_soon_threadsafe)
            if engine.ring_fd is not None:
                self._ring_fd = engine.ring_fd
                self._epoll.register(self._ring_fd, select.EPOLLIN)
        return engine

    def flush_and_reap(self) -> None:
        """Submit pending ring work and collect finished work without sleeping.

        Used on loop turns that skip the epoll poll: cached file reads complete inside the
        submit syscall, so reaping right away saves a whole loop turn per batch of them.
        """
        engine = self._engine
        if engine is not None and engine.ring_busy:
            engine.flush()
            engine.reap()

    @property
    def file_ops_in_flight(self) -> int:
        """Disk ops submitted but not yet completed (0 if the engine was never started)."""
        engine = self._engine
        return 0 if engine is None else engine.in_flight

    @property
    def engine_started(self) -> bool:
        return self._engine is not None

    # ----- the loop's only blocking call -----

    def poll(self, timeout: float) -> int:
        """Submit pending ring work, sleep up to ``timeout`` seconds (-1: forever), dispatch.

        Returns how many things happened (fd events plus cross-thread callbacks run), so the
        caller can tell "slept the whole timeout with nothing happening" from real work.
        The same three steps, taken one by one, let a guest run (``start_guest_run``) sleep
        in a worker thread: :meth:`prepare_wait` and :meth:`dispatch` in the loop thread,
        :meth:`wait` in any thread.
        """
        engine = self._engine
        if engine is not None:
            engine.flush()
        return self.dispatch(self.wait(timeout))

    def prepare_wait(self) -> bool:
        """Loop thread, before :meth:`wait`: submit pending ring work (the ring takes
        submissions only from its own thread). True if callbacks are already queued, so a
        wait would return at once."""
        engine = self._engine
        if engine is not None:
            engine.flush()
        return bool(self._entry_queue)

    def wait(self, timeout: float) -> list[tuple[int, int]]:
        """Sleep in ``epoll_wait`` up to ``timeout`` seconds (-1: forever); return its events.

        Touches nothing but the epoll set and the sleeping flag, so it may run in another
        thread while the loop thread is outside the run; what it returns must then be handed
        to :meth:`dispatch` in the loop thread. The ring is never entered here: a completion
        makes the ring fd readable, and reaping it is :meth:`dispatch`'s job.
        """
        if timeout != 0:
            self._sleeping = True
            if self._entry_queue:  # checked after raising the flag: see call_soon_threadsafe
                timeout = 0
        self.polls += 1
        try:
            return self._epoll.poll(timeout)
        except BaseException as exc:
            # Raised by a Python signal handler that ran while we slept: it belongs to
            # whoever installed the handler, and the runner passes it on unchanged.
            self.sleep_interrupted_by = exc
            raise
        finally:
            self._sleeping = False

    def dispatch(self, events: list[tuple[int, int]]) -> int:
        """Loop thread: act on what :meth:`wait` returned, then run queued callbacks.

        Returns the number of events plus callbacks run. Events may be stale by now (a
        guest's host can close an fd between the wait and this call): the registry ignores
        fds nobody waits on any more.
        """
        engine = self._engine
        registry = self.registry
        for fd, mask in events:
            if fd == self._wakeup_fd:
                self._wakeup.drain()
            elif fd == self._ring_fd:
                if engine is not None:
                    engine.reap()
            elif fd == self._signal_fd:
                if self._signal_wakeup is not None:
                    self._signal_wakeup.drain()
            else:
                registry.dispatch(fd, mask)
        # Run only what was queued before we started: a callback that queues another one
        # (or a thread that keeps queueing) must not keep the loop here forever. Anything
        # queued meanwhile makes the next poll non-blocking (see the check in wait).
        queue = self._entry_queue
        pending = len(queue)
        for _ in range(pending):
            queue.popleft()()
        return len(events) + pending

    def run_entry_queue(self) -> None:
        """Run queued cross-thread callbacks without sleeping (used at shutdown)."""
        queue = self._entry_queue
        while queue:
            queue.popleft()()

    def statistics(self) -> KernelStatistics:
        engine = self._engine
        return KernelStatistics(
            backend="epoll",
            fds_watched=self.registry.watched_count(),
            kernel_polls=self.polls,
            file_engine=engine.statistics() if engine is not None else None,
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._engine is not None:
            self._engine.close()
        self.registry.close()
        if self._signal_wakeup is not None:
            self._signal_wakeup.close()
        self._wakeup.close()
        self._epoll.close()
