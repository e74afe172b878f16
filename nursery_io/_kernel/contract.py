"""The kernel layer's contract with the core, as types mypy checks (no prose to drift).

The kernel knows fds, ops, callbacks and time-outs. It never imports from
``nursery_io._core`` or anything above it, and knows nothing of tasks, nurseries or cancel
scopes. Every object here is per run (per thread): nothing is a process-wide singleton
except the worker-thread cache (``workers.py``: process-wide, like Trio's, and fork-safe).

The core reaches the kernel only through what is declared below: :class:`KernelAPI` (the
one object a run drives, :class:`~.kernel.Kernel`), its :class:`RegistryAPI` (fd readiness)
and :class:`FileEngineAPI` (disk ops, :class:`~.engine.FileEngine`), plus the Op
constructors in ``ops.py`` and ``workers.start_thread_soon(fn, deliver, name=None)``, which
runs ``fn()`` in a cached worker thread and calls ``deliver(outcome)`` in that thread.
``Kernel.engine`` is typed as :class:`FileEngineAPI`, so a core module that uses anything
else of the engine fails mypy; the assignments at the end make mypy check that the real
classes provide all of it.

Modules: ``errors.py`` (``BusyResourceError``, ``ClosedResourceError``), ``wakeup.py``
(eventfd wake-ups, the signal wake-up fd), ``epoll.py`` (``EpollRegistry``), ``workers.py``,
``uring/`` (io_uring ABI and the ``Ring``), ``kinds.py`` + ``ops.py`` (what an Op is),
``inline.py`` (the inline pre-filter), ``ring_engine.py`` / ``pool_engine.py`` (the two
engines), ``completion.py`` (how an op ends), ``engine.py`` (the router), ``kernel.py``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .engine import IOStatistics
    from .epoll import WaitCallback
    from .kernel import KernelStatistics
    from .ops import Op
    from .pipes import PipePool

__all__ = ["FileEngineAPI", "KernelAPI", "RegistryAPI"]


class FileEngineAPI(Protocol):
    """Runs :class:`~.ops.Op` objects on io_uring or worker threads.

    ``on_complete(op)`` always runs in the loop thread, exactly once per submitted op,
    with ``op.result`` or ``op.error`` set, or ``op.cancelled`` True; never inside
    ``submit`` or ``cancel``.
    """

    @property
    def engine(self) -> str:
        """``"io_uring"`` or ``"threads"``."""
        ...

    @property
    def ring_fd(self) -> int | None:
        """Watch it for readability, then call :meth:`reap`; None when pool-only."""
        ...

    @property
    def in_flight(self) -> int:
        """Submitted ops whose completion hasn't been delivered yet."""
        ...

    @property
    def ring_busy(self) -> bool:
        """SQEs to submit or CQEs still to come (cheap)."""
        ...

    @property
    def splice_on_ring(self) -> bool: ...

    @property
    def pipes(self) -> PipePool: ...

    @property
    def ring_depth(self) -> int: ...

    def try_inline(self, op: Op) -> bool:
        """Complete ``op`` at once if that can't block; False: nothing happened."""
        ...

    def read_nowait(self, fd: int, length: int, offset: int) -> bytes | None:
        """A cached ``pread`` without an Op; None: run ``ops.read`` instead."""
        ...

    def submit(self, op: Op, on_complete: Callable[[Op], None]) -> None: ...

    def submit_linked(self, ops: Sequence[Op], on_complete: Callable[[Op], None]) -> bool:
        """One io_uring link chain; False with nothing submitted if it can't run now."""
        ...

    def cancel(self, op: Op) -> None:
        """Ask; the completion still arrives through ``on_complete``."""
        ...

    def flush(self) -> None:
        """One ``io_uring_enter`` for all pending SQEs (once per loop turn)."""
        ...

    def reap(self) -> None:
        """Dispatch finished CQEs (loop thread)."""
        ...

    def close(self, timeout: float = ...) -> None:
        """Cancel and drain in-flight ops, unmap, close."""
        ...

    def statistics(self) -> IOStatistics: ...

    def in_flight_by_engine(self) -> dict[str, int]: ...

    def describe(self, op: Op) -> tuple[str, str]:
        """``(engine, where)`` of a submitted op."""
        ...


class RegistryAPI(Protocol):
    """One reader and one writer callback per fd, woken by the run's epoll set."""

    def add_reader(self, fd: int, callback: WaitCallback) -> None: ...

    def add_writer(self, fd: int, callback: WaitCallback) -> None: ...

    def remove_reader(self, fd: int) -> None: ...

    def remove_writer(self, fd: int) -> None: ...

    def notify_closing(self, fd: int) -> None: ...

    def watched_count(self) -> int: ...


class KernelAPI(Protocol):
    """The one kernel object a run drives. Loop-thread only, except
    :meth:`call_soon_threadsafe` and :meth:`wakeup_threadsafe` (any thread) and :meth:`wait`
    (one thread at a time, while the loop thread is not using the kernel: guest mode)."""

    entry_queue: deque[Callable[[], None]]
    polls: int
    sleep_interrupted_by: BaseException | None

    @property
    def registry(self) -> RegistryAPI: ...

    @property
    def engine(self) -> FileEngineAPI:
        """Created on first use."""
        ...

    @property
    def engine_started(self) -> bool: ...

    @property
    def file_ops_in_flight(self) -> int: ...

    @property
    def entry_queue_size(self) -> int: ...

    @property
    def replaced_signal_wakeup_fd(self) -> int: ...

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None: ...

    def wakeup_threadsafe(self) -> None: ...

    def flush_and_reap(self) -> None: ...

    def poll(self, timeout: float) -> int:
        """``prepare_wait()`` + ``wait(timeout)`` + ``dispatch(events)``."""
        ...

    def prepare_wait(self) -> bool: ...

    def wait(self, timeout: float) -> list[tuple[int, int]]: ...

    def dispatch(self, events: list[tuple[int, int]]) -> int: ...

    def run_queued_callbacks(self) -> int: ...

    def run_entry_queue(self) -> None: ...

    def statistics(self) -> KernelStatistics: ...

    def close(self) -> None: ...


if TYPE_CHECKING:
    # mypy checks that the real classes provide everything the core may use.
    from .engine import FileEngine
    from .epoll import EpollRegistry
    from .kernel import Kernel

    def _conforms(engine: FileEngine, registry: EpollRegistry, kernel: Kernel) -> Any:
        checked: tuple[FileEngineAPI, RegistryAPI, KernelAPI] = (engine, registry, kernel)
        return checked
