"""The one kernel object a run drives: epoll, wake-ups, the file engine, the entry queue.

The process sleeps in exactly one place, :meth:`Kernel.poll`: sockets, the ring fd, the
eventfd used by other threads and the signal wake-up socket all live in one epoll set.

Fork: an epoll set, an eventfd and a socketpair are shared with the parent after ``fork()``
(the child's fds refer to the same kernel objects), so a child that kept them would steal
the parent's wake-ups and change its registrations. Right after a fork made by a run's own
thread, the child's kernel gets its own epoll set and wake-up fds, re-arms the fds its tasks
wait on, and watches the fresh ring its file engine sets up (see ``engine.py``).
"""

from __future__ import annotations

import os
import select
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .epoll import EpollRegistry
from .wakeup import SignalWakeup, WakeupFd

if TYPE_CHECKING:
    from .contract import FileEngineAPI
    from .engine import FileEngine

__all__ = ["Kernel", "KernelStatistics"]


@dataclass(frozen=True)
class KernelStatistics:
    """What the kernel layer has been doing; ``current_statistics().io_statistics``.

    The first three fields are Trio's (``tasks_waiting_read`` counts, as Trio's does, the
    run's own cross-thread wake-up, which Trio serves with a task reading a socket).
    """

    tasks_waiting_read: int
    tasks_waiting_write: int
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
        # Public so the loop can test it for emptiness without a call.
        self.entry_queue: deque[Callable[[], None]] = deque()
        # True while the loop thread is inside (or about to enter) epoll_wait: producers only
        # pay for an eventfd write when the loop could actually be asleep.
        self._sleeping = False
        self._engine: FileEngine | None = None
        self._ring_fd = -1
        self.polls = 0
        self._closed = False
        self.sleep_interrupted_by: BaseException | None = None
        self._thread_ident = threading.get_ident()
        _live_kernels.add(self)

    # ----- cross-thread entry queue -----

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        """Queue ``callback`` to run in the loop thread during the next :meth:`poll`."""
        self.entry_queue.append(callback)
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
        return len(self.entry_queue)

    # ----- file engine -----

    @property
    def engine(self) -> FileEngineAPI:
        """The file engine, created on first use so runs that never touch files pay nothing."""
        engine = self._engine
        if engine is None:
            from .engine import FileEngine

            engine = self._engine = FileEngine(self.call_soon_threadsafe, on_ring=self._watch_ring)
        return engine

    def _watch_ring(self, fd: int) -> None:
        # The engine set up a ring (at creation, or a fresh one in a forked child).
        self._ring_fd = fd
        self._epoll.register(fd, select.EPOLLIN)

    def _after_fork_in_child(self) -> None:
        if self._closed or threading.get_ident() != self._thread_ident:
            return  # another thread forked: this run's thread doesn't exist in the child
        old_epoll = self._epoll
        self._epoll = epoll = select.epoll()
        old_epoll.close()  # our reference only; the parent's set and registrations stay
        self._wakeup.close()
        self._wakeup = WakeupFd()
        self._wakeup_fd = self._wakeup.fileno()
        epoll.register(self._wakeup_fd, select.EPOLLIN)
        if self._signal_wakeup is not None:
            self._signal_wakeup = self._signal_wakeup.renew_after_fork()
            self._signal_fd = self._signal_wakeup.fileno()
            epoll.register(self._signal_fd, select.EPOLLIN)
        self.registry.move_to(epoll)
        # On its next call (the next poll at the latest) the engine drops the parent's ring
        # and ops and sets up a ring of its own, which _watch_ring adds to the new set. Not
        # now: a child that only execs or exits never pays for a ring.
        self._ring_fd = -1
        # Callbacks queued before the fork stay: they are completions that really happened.

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
        return bool(self.entry_queue)

    def wait(self, timeout: float) -> list[tuple[int, int]]:
        """Sleep in ``epoll_wait`` up to ``timeout`` seconds (-1: forever); return its events.

        Touches nothing but the epoll set and the sleeping flag, so it may run in another
        thread while the loop thread is outside the run; what it returns must then be handed
        to :meth:`dispatch` in the loop thread. The ring is never entered here: a completion
        makes the ring fd readable, and reaping it is :meth:`dispatch`'s job.
        """
        if timeout != 0:
            self._sleeping = True
            if self.entry_queue:  # checked after raising the flag: see call_soon_threadsafe
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
        return len(events) + self.run_queued_callbacks()

    def run_queued_callbacks(self) -> int:
        """Run the callbacks queued so far (not those they queue); return how many ran.

        A callback that queues another one (or a thread that keeps queueing) must not keep
        the loop here forever. Anything queued meanwhile makes the next poll non-blocking
        (see the check in :meth:`wait`).
        """
        queue = self.entry_queue
        pending = len(queue)
        for _ in range(pending):
            queue.popleft()()
        return pending

    def run_entry_queue(self) -> None:
        """Run queued cross-thread callbacks without sleeping (used at shutdown)."""
        queue = self.entry_queue
        while queue:
            queue.popleft()()

    def statistics(self) -> KernelStatistics:
        engine = self._engine
        readers, writers = self.registry.waiter_counts()
        return KernelStatistics(
            tasks_waiting_read=readers + 1,
            tasks_waiting_write=writers,
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
        _live_kernels.discard(self)


_live_kernels: weakref.WeakSet[Kernel] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for kernel in list(_live_kernels):
        kernel._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
