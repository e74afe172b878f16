"""Process-wide cache of worker threads: ``start_thread_soon(fn, deliver, name=None)``.

Used for everything no kernel interface can do asynchronously (getaddrinfo, listdir, ...) and
for file ops when io_uring can't run them. The loop thread never waits here: it hands a job to a
thread and ``deliver`` (called in that thread) gets the result back to the loop.

How a job gets to a thread, and why:

- Idle workers sit in a dict used as a LIFO stack (``popitem()`` takes the most recently
  inserted key). The most recently idle thread is the one most likely to have a warm stack and
  CPU cache, and reusing it lets the others reach the idle timeout and exit, so a burst of
  parallelism shrinks back to what the steady state actually needs.
- The handoff is a plain ``threading.Lock`` per worker, held while the worker has no job: the
  submitter writes the job into the worker's slots and releases the lock; the worker's
  ``acquire`` returns. That is one futex wake, with no Condition/Queue bookkeeping and no
  per-job allocation besides the ``Outcome``.
- No lock guards the idle dict: ``popitem``, ``__setitem__`` and ``__delitem__`` are each
  atomic, and that is all the protocol needs (see ``_Worker._run`` for the one race it has to
  resolve). A lock is taken only when a thread is created or exits, and for statistics.
- A worker marks itself idle *before* calling ``deliver``. ``deliver`` wakes the loop, which
  often submits the next job at once; that job then goes to this same thread (it runs as soon
  as ``deliver`` returns) instead of waking or creating another one.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import outcome

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "ThreadCache",
    "WorkerStatistics",
    "reset_peak",
    "start_thread_soon",
    "worker_statistics",
]

T = TypeVar("T")

DEFAULT_IDLE_TIMEOUT: Final = 10.0
"""Seconds an idle worker waits for a job before it exits."""

_DEFAULT_NAME_PREFIX: Final = "nursery_io worker"
# The OS limit on a thread name (/proc/<pid>/task/<tid>/comm): 16 bytes including the NUL.
_OS_NAME_MAX_BYTES: Final = 15

# Unique numbers for default thread names, shared by all caches so names never collide.
# next() on itertools.count is atomic, so no lock is needed.
_thread_numbers = itertools.count(1)


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """A snapshot of a worker-thread cache. Counts are read without stopping the workers, so
    a thread in the middle of changing state may be counted as busy rather than idle."""

    threads_alive: int
    """Worker threads that exist now (idle + busy)."""
    threads_idle: int
    """Threads waiting for a job."""
    threads_busy: int
    """Threads running a job or its ``deliver`` callback."""
    peak_threads: int
    """Most threads alive at once since the cache was created (or ``reset_peak()``)."""
    jobs_run: int
    """Jobs whose ``fn`` has finished, in total."""


# --- OS-level thread names -------------------------------------------------------------------
#
# Python 3.11 names threads only inside the interpreter; top -H, gdb, perf and py-spy see the
# name of the thread that created the worker. pthread_setname_np is one cheap call (~1 us),
# made only when the name shown would change: a worker remembers what the OS shows, and
# after a named job it goes back to its own name only once it has been idle for
# _OS_NAME_RESET_DELAY, so back-to-back jobs with the same name (every to_thread call of one
# function) cost no call at all.

_setname: Callable[[int, bytes], int] | None = None
_setname_loaded = False
_OS_NAME_RESET_DELAY: Final = 0.05
_os_name_cache: dict[str, bytes] = {}
_OS_NAME_CACHE_SIZE: Final = 256


def _load_setname() -> Callable[[int, bytes], int] | None:
    try:
        # CDLL(None) is the already-loaded C library; nothing new gets loaded from disk.
        func = ctypes.CDLL(None).pthread_setname_np
    except (OSError, AttributeError):  # not glibc/musl, or a libc without it
        return None
    func.argtypes = [ctypes.c_ulong, ctypes.c_char_p]
    func.restype = ctypes.c_int
    return func


def _os_name(name: str) -> bytes:
    """``name`` as the OS will show it: cut to the OS limit without splitting a UTF-8
    sequence (the kernel would keep the broken bytes and tools would show garbage)."""
    raw = _os_name_cache.get(name)
    if raw is None:
        raw = name.encode("utf-8", "replace")[:_OS_NAME_MAX_BYTES]
        raw = raw.decode("utf-8", "ignore").encode("utf-8")
        if len(_os_name_cache) >= _OS_NAME_CACHE_SIZE:
            _os_name_cache.clear()  # names are few in practice; this only bounds the worst
        _os_name_cache[name] = raw
    return raw


def _set_os_thread_name(raw: bytes) -> None:
    """Name the calling thread ``raw`` (from :func:`_os_name`) at the OS level."""
    global _setname, _setname_loaded
    if not _setname_loaded:
        # Benign race: two threads may both load it; they get the same function.
        _setname = _load_setname()
        _setname_loaded = True
    if _setname is not None:
        # On Linux threading.get_ident() is pthread_self(). Failure only loses a debugging aid.
        _setname(threading.get_ident(), raw)


# --- the cache -------------------------------------------------------------------------------


def _no_job() -> None:
    # Placeholder while a worker has no job, so an idle thread holds no reference to the last
    # job's function (which may keep large objects alive). Never called.
    raise AssertionError("nursery_io worker thread woke up without a job")


def _no_deliver(result: outcome.Outcome[Any]) -> None:
    raise AssertionError("nursery_io worker thread woke up without a job")


class _Worker:
    """One cached thread. Its job slots are written by a submitter only after it has removed
    the worker from the idle dict, and read by the worker only after ``_wakeup`` was released,
    so they are never written by two threads at once."""

    __slots__ = ("_cache", "_deliver", "_fn", "_name", "_thread", "_wakeup", "jobs_run")

    def __init__(
        self,
        cache: ThreadCache,
        fn: Callable[[], object],
        deliver: Callable[[outcome.Outcome[Any]], None],
        name: str | None,
    ) -> None:
        self._cache = cache
        # The first job is handed over in the constructor; the thread runs it without waiting.
        self._fn = fn
        self._deliver = deliver
        self._name = name
        self.jobs_run = 0  # written only by this worker's thread
        # Held means "no job for you"; a submitter releases it to hand over a job.
        self._wakeup = threading.Lock()
        self._wakeup.acquire()
        # Daemon: a thread stuck in a blocking call must never keep the interpreter alive.
        self._thread = threading.Thread(
            target=self._run,
            name=f"{_DEFAULT_NAME_PREFIX} {next(_thread_numbers)}",
            daemon=True,
        )

    def _run(self) -> None:
        cache = self._cache
        # Locals: the loop below is the hot path. The idle dict is never replaced (a fork
        # clears it in place), so holding it in a local is safe.
        idle = cache._idle
        wakeup = self._wakeup
        thread = self._thread
        default_name = thread.name
        default_os_name = _os_name(default_name)
        capture = outcome.capture
        _set_os_thread_name(default_os_name)
        os_name = default_os_name  # what the OS shows for this thread now
        try:
            while True:
                fn = self._fn
                deliver = self._deliver
                name = self._name
                self._fn = _no_job
                self._deliver = _no_deliver
                job_os_name = default_os_name
                if name is not None:
                    thread.name = name
                    job_os_name = _os_name(name)
                if job_os_name != os_name:
                    _set_os_thread_name(job_os_name)
                    os_name = job_os_name
                result = capture(fn)
                del fn
                if name is not None:
                    thread.name = default_name
                self.jobs_run += 1
                # Idle before deliver: a job submitted as a consequence of deliver (the loop
                # waking up and starting the next operation) is handed to this thread, which
                # picks it up as soon as deliver returns.
                idle[self] = None
                try:
                    deliver(result)
                except BaseException:
                    _report_deliver_error(deliver)
                del deliver, result
                if os_name != default_os_name:
                    # Still showing the last job's name: keep it if the next job comes soon
                    # (it likely has the same name), else show the worker's own name again.
                    if wakeup.acquire(timeout=_OS_NAME_RESET_DELAY):
                        continue
                    _set_os_thread_name(default_os_name)
                    os_name = default_os_name
                if not wakeup.acquire(timeout=cache.idle_timeout):
                    try:
                        del idle[self]
                    except KeyError:
                        # A submitter popped us between the timeout and here: its job is
                        # written (or about to be) and the release is on its way. Take it.
                        wakeup.acquire()
                    else:
                        return
        finally:
            cache._retire(self)


def _report_deliver_error(deliver: object) -> None:
    # deliver must not raise: it is the caller's bridge back to its loop, and an exception
    # here means the result went nowhere. Make that loud, and keep the thread usable.
    # The first sentence is Trio's, for tools and tests that look for it.
    print(
        "Exception while delivering result of thread. nursery_io: the deliver callback"
        f" {deliver!r} of a worker-thread job raised; the job's result was lost. This is a"
        " bug in the code that called start_thread_soon(); the worker thread keeps running.",
        file=sys.stderr,
    )
    traceback.print_exc(file=sys.stderr)
    sys.stderr.flush()


class ThreadCache:
    """An unbounded cache of daemon worker threads. The module functions use one process-wide
    instance; separate instances exist for tests and benchmarks (e.g. a short idle timeout).

    ``idle_timeout`` may be changed at any time; a worker reads it each time it becomes idle.
    """

    __slots__ = (
        "__weakref__",
        "_idle",
        "_lock",
        "_peak",
        "_retired_jobs",
        "_workers",
        "idle_timeout",
    )

    def __init__(self, idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        if not idle_timeout > 0:
            raise ValueError(
                f"idle_timeout must be a positive number of seconds, not {idle_timeout!r}"
            )
        self.idle_timeout = idle_timeout
        # Insertion-ordered, so popitem() is LIFO. Keys are idle workers; values unused.
        self._idle: dict[_Worker, None] = {}
        # Guards _workers, _peak and _retired_jobs: touched only on thread start/exit and for
        # statistics, never per job.
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._peak = 0
        self._retired_jobs = 0
        _all_caches.add(self)

    def start_thread_soon(
        self,
        fn: Callable[[], T],
        deliver: Callable[[outcome.Outcome[T]], None],
        name: str | None = None,
    ) -> None:
        """Run ``fn()`` in a worker thread, then call ``deliver(outcome)`` in that thread.

        ``deliver`` must not raise (an exception is printed to stderr and the result is lost)
        and should be quick: it is usually ``call_soon_threadsafe`` back into a loop. While
        ``fn`` runs, the thread is named ``name`` if given (in Python and at the OS level).
        """
        try:
            worker = self._idle.popitem()[0]
        except KeyError:
            self._spawn(fn, deliver, name)
            return
        # We own this worker now: nobody else can pop it, and it reads the slots only after
        # the release below.
        worker._fn = fn
        worker._deliver = deliver
        worker._name = name
        worker._wakeup.release()

    def _spawn(
        self,
        fn: Callable[[], object],
        deliver: Callable[[outcome.Outcome[Any]], None],
        name: str | None,
    ) -> None:
        worker = _Worker(self, fn, deliver, name)
        # Count it before it starts, so the peak covers a thread that runs a very short job.
        with self._lock:
            self._workers.add(worker)
            self._peak = max(self._peak, len(self._workers))
        try:
            worker._thread.start()
        except BaseException:  # e.g. RuntimeError("can't start new thread")
            with self._lock:
                self._workers.discard(worker)
            raise

    def _retire(self, worker: _Worker) -> None:
        # Normally the worker already removed itself from _idle; this covers a thread that
        # ends for any other reason, so that no submitter hands a job to a dead thread.
        self._idle.pop(worker, None)
        with self._lock:
            if worker in self._workers:  # not after a fork that forgot it
                self._workers.remove(worker)
                self._retired_jobs += worker.jobs_run

    def statistics(self) -> WorkerStatistics:
        with self._lock:
            alive = len(self._workers)
            jobs = self._retired_jobs + sum(w.jobs_run for w in self._workers)
            peak = self._peak
        idle = min(len(self._idle), alive)
        return WorkerStatistics(
            threads_alive=alive,
            threads_idle=idle,
            threads_busy=alive - idle,
            peak_threads=peak,
            jobs_run=jobs,
        )

    def reset_peak(self) -> None:
        """Reset ``peak_threads`` to the number of threads alive now (tests and benchmarks)."""
        with self._lock:
            self._peak = len(self._workers)

    def _after_fork_in_child(self) -> None:
        # Only the thread that called fork() exists in the child. Forget every other worker:
        # their locks would never be released and a job handed to them would never run. If
        # the forking thread is itself one of our workers it is alive and keeps working.
        me = threading.current_thread()
        survivors = {w for w in self._workers if w._thread is me}
        idle_survivors = [w for w in self._idle if w._thread is me]
        # In place: the surviving worker holds a reference to _idle.
        self._idle.clear()
        for w in idle_survivors:
            self._idle[w] = None
        # Another thread may have held the lock at fork time; in the child it never unlocks.
        self._lock = threading.Lock()
        self._workers = survivors
        for w in survivors:
            w.jobs_run = 0
        self._peak = len(survivors)
        self._retired_jobs = 0


_all_caches: weakref.WeakSet[ThreadCache] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_all_caches):
        cache._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)

_THREAD_CACHE = ThreadCache()


def start_thread_soon(
    fn: Callable[[], T],
    deliver: Callable[[outcome.Outcome[T]], None],
    name: str | None = None,
) -> None:
    """Run ``fn()`` in a cached worker thread, then call ``deliver(outcome)`` in that thread.

    ``deliver`` must not raise and should only hand the outcome back to its loop (usually
    through ``Kernel.call_soon_threadsafe``). While ``fn`` runs the thread is named ``name``
    if given. Idle threads are reused most-recently-idle first and exit after
    ``DEFAULT_IDLE_TIMEOUT`` seconds without a job.
    """
    _THREAD_CACHE.start_thread_soon(fn, deliver, name)


def worker_statistics() -> WorkerStatistics:
    """Statistics of the process-wide worker-thread cache."""
    return _THREAD_CACHE.statistics()


def reset_peak() -> None:
    """Reset the process-wide cache's ``peak_threads`` to the current count (for tests and
    benchmarks that measure how many threads a workload needs)."""
    _THREAD_CACHE.reset_peak()
