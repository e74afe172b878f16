"""Tests for the worker-thread cache (nursery_io._kernel.workers). Plain threads, no runtime."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import outcome
import pytest

from nursery_io._kernel import workers
from nursery_io._kernel.workers import ThreadCache, WorkerStatistics

WAIT = 10.0  # generous bound for anything that should happen "promptly"


class Delivery:
    """A deliver callback that records the outcome and the thread it was called in."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: outcome.Outcome[Any] | None = None
        self.thread: threading.Thread | None = None
        self.thread_name: str | None = None

    def __call__(self, result: outcome.Outcome[Any]) -> None:
        self.result = result
        self.thread = threading.current_thread()
        self.thread_name = self.thread.name
        self.done.set()

    def wait(self) -> outcome.Outcome[Any]:
        assert self.done.wait(WAIT), "deliver was not called"
        assert self.result is not None
        return self.result


def run_job(cache: ThreadCache, fn: Callable[[], Any], name: str | None = None) -> Delivery:
    d = Delivery()
    cache.start_thread_soon(fn, d, name)
    d.wait()
    return d


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def os_thread_name(thread: threading.Thread) -> str | None:
    try:
        with open(f"/proc/self/task/{thread.native_id}/comm") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


@pytest.fixture
def cache() -> Iterator[ThreadCache]:
    c = ThreadCache(idle_timeout=0.2)
    yield c
    # Leave no threads behind for the next test.
    wait_until(lambda: c.statistics().threads_alive == 0)


def test_value_and_error_outcomes(cache: ThreadCache) -> None:
    d = run_job(cache, lambda: 42)
    assert d.result == outcome.Value(42)
    assert d.thread is not threading.current_thread()

    def boom() -> None:
        raise KeyError("nope")

    d = run_job(cache, boom)
    assert isinstance(d.result, outcome.Error)
    assert isinstance(d.result.error, KeyError)
    with pytest.raises(KeyError):
        d.result.unwrap()

    # BaseExceptions are captured too; they must not kill the worker.
    def exit_() -> None:
        raise SystemExit(3)

    d = run_job(cache, exit_)
    assert isinstance(d.result, outcome.Error)
    assert isinstance(d.result.error, SystemExit)
    assert run_job(cache, lambda: "still alive").result == outcome.Value("still alive")
    assert cache.statistics().jobs_run == 4


def test_deliver_runs_in_the_worker_thread(cache: ThreadCache) -> None:
    job_thread: list[threading.Thread] = []
    d = run_job(cache, lambda: job_thread.append(threading.current_thread()))
    assert d.thread is job_thread[0]


def test_consecutive_jobs_reuse_one_thread(cache: ThreadCache) -> None:
    idents = {run_job(cache, threading.get_ident).wait().unwrap() for _ in range(20)}
    assert len(idents) == 1
    stats = cache.statistics()
    assert stats.peak_threads == 1
    assert stats.jobs_run == 20


def test_idle_before_deliver_job_from_deliver_reuses_thread(cache: ThreadCache) -> None:
    # A job submitted from inside deliver (the round-trip pattern: deliver wakes the loop,
    # the loop submits the next op) must go to the same thread, not spawn a second one.
    second = Delivery()
    first: list[Any] = []

    def first_deliver(result: outcome.Outcome[Any]) -> None:
        first.append((result.unwrap(), cache.statistics().threads_idle))
        cache.start_thread_soon(threading.get_ident, second)

    cache.start_thread_soon(threading.get_ident, first_deliver)
    assert second.wait().unwrap() == first[0][0]
    assert first[0][1] == 1  # the worker was already idle inside deliver
    stats = cache.statistics()
    assert stats.peak_threads == 1
    assert stats.threads_alive == 1


def _start_blocked_jobs(cache: ThreadCache, n: int) -> tuple[threading.Barrier, list[Delivery]]:
    """Start n jobs that all wait on one barrier (so each needs its own thread)."""
    barrier = threading.Barrier(n + 1, timeout=WAIT)
    deliveries = [Delivery() for _ in range(n)]
    for d in deliveries:
        cache.start_thread_soon(lambda: (barrier.wait(), threading.get_ident())[1], d)
    return barrier, deliveries


def test_concurrent_jobs_get_separate_threads_and_peak(cache: ThreadCache) -> None:
    barrier, deliveries = _start_blocked_jobs(cache, 4)
    stats = cache.statistics()
    assert stats.threads_alive == 4
    assert stats.peak_threads == 4
    barrier.wait()  # raises BrokenBarrierError if the jobs did not run concurrently
    idents = {d.wait().unwrap() for d in deliveries}
    assert len(idents) == 4
    wait_until(lambda: cache.statistics().threads_idle == 4)
    assert cache.statistics() == WorkerStatistics(
        threads_alive=4, threads_idle=4, threads_busy=0, peak_threads=4, jobs_run=4
    )

    # Sequential work afterwards needs one thread; reset_peak lets a benchmark see that.
    cache.reset_peak()
    assert cache.statistics().peak_threads == 4  # reset to the current count, not to zero
    for _ in range(5):
        run_job(cache, int)
    assert cache.statistics().peak_threads == 4
    wait_until(lambda: cache.statistics().threads_alive == 0)
    cache.reset_peak()
    assert cache.statistics().peak_threads == 0
    run_job(cache, int)
    assert cache.statistics().peak_threads == 1


def test_busy_threads_are_counted(cache: ThreadCache) -> None:
    barrier, deliveries = _start_blocked_jobs(cache, 2)
    stats = cache.statistics()
    assert (stats.threads_alive, stats.threads_busy, stats.threads_idle) == (2, 2, 0)
    barrier.wait()
    for d in deliveries:
        d.wait()


def test_lifo_most_recently_idle_thread_goes_first(cache: ThreadCache) -> None:
    n = 3
    gates = [threading.Event() for _ in range(n)]
    deliveries = [Delivery() for _ in range(n)]

    def gated_job(gate: threading.Event) -> Callable[[], int]:
        def job() -> int:
            gate.wait(WAIT)
            return threading.get_ident()

        return job

    for gate, d in zip(gates, deliveries):
        cache.start_thread_soon(gated_job(gate), d)
    # Finish the jobs one at a time, so the threads become idle in a known order.
    order = []
    for gate, d in zip(gates, deliveries):
        gate.set()
        order.append(d.wait().unwrap())
    assert len(set(order)) == n
    # The last thread to become idle takes the next job, then the one before it.
    barrier, more = _start_blocked_jobs(cache, 2)
    barrier.wait()
    assert [d.wait().unwrap() for d in more] == [order[-1], order[-2]]
    assert cache.statistics().threads_alive == n


def test_idle_timeout_threads_exit_and_leave_nothing_behind() -> None:
    cache = ThreadCache(idle_timeout=0.05)
    barrier, deliveries = _start_blocked_jobs(cache, 3)
    barrier.wait()
    for d in deliveries:
        d.wait()
    threads = [d.thread for d in deliveries]
    for t in threads:
        assert t is not None
        t.join(WAIT)
        assert not t.is_alive()
    assert not any(t in threading.enumerate() for t in threads)
    stats = cache.statistics()
    assert stats == WorkerStatistics(
        threads_alive=0, threads_idle=0, threads_busy=0, peak_threads=3, jobs_run=3
    )
    # The cache still works after all its threads are gone, with a new thread.
    d = run_job(cache, threading.get_ident)
    assert d.thread not in threads
    assert d.thread is not None
    d.thread.join(WAIT)
    assert not d.thread.is_alive()
    assert cache.statistics().jobs_run == 4


def test_idle_thread_survives_while_jobs_keep_coming() -> None:
    cache = ThreadCache(idle_timeout=0.3)
    first = run_job(cache, int).thread
    for _ in range(5):
        time.sleep(0.1)  # shorter than the timeout each time
        assert run_job(cache, int).thread is first
    assert first is not None
    first.join(WAIT)
    assert cache.statistics().threads_alive == 0


def test_no_worker_threads_left_after_timeout() -> None:
    cache = ThreadCache(idle_timeout=0.05)
    before = set(threading.enumerate())
    barrier, deliveries = _start_blocked_jobs(cache, 5)
    barrier.wait()
    for d in deliveries:
        d.wait()
    wait_until(lambda: set(threading.enumerate()) <= before)
    assert cache.statistics().threads_alive == 0


def test_thread_name_during_job_and_reset_after(cache: ThreadCache) -> None:
    seen: dict[str, Any] = {}

    def job() -> None:
        me = threading.current_thread()
        seen["name"] = me.name
        seen["os_name"] = os_thread_name(me)

    d = run_job(cache, job, name="resolve example.org")
    assert seen["name"] == "resolve example.org"
    if seen["os_name"] is not None:
        assert seen["os_name"] == "resolve example"  # 15 bytes: the OS limit
    # Reset before deliver, and for later unnamed jobs.
    assert d.thread_name is not None
    assert d.thread_name.startswith("nursery_io worker")
    run_job(cache, job)
    assert seen["name"] == d.thread_name
    if seen["os_name"] is not None:
        assert seen["os_name"] == d.thread_name[:15]


def test_os_thread_name_goes_back_once_idle(cache: ThreadCache) -> None:
    # The OS-level name of a named job may linger briefly (so that repeated jobs with one
    # name cost no syscall), but an idle worker soon shows its own name again.
    threads: list[threading.Thread] = []
    run_job(cache, lambda: threads.append(threading.current_thread()), name="lingering name")
    (worker,) = threads
    if os_thread_name(worker) is None:
        pytest.skip("no /proc thread names")
    assert worker.name.startswith("nursery_io worker")  # the Python name: reset at once
    wait_until(lambda: os_thread_name(worker) == worker.name[:15])


def test_repeated_job_names_keep_the_os_name_right(cache: ThreadCache) -> None:
    seen: list[str | None] = []

    def job() -> None:
        seen.append(os_thread_name(threading.current_thread()))

    for name in ["alpha", "alpha", "beta", None, "alpha"]:
        run_job(cache, job, name=name)
    if seen[0] is None:
        pytest.skip("no /proc thread names")
    default = seen[3]
    assert default is not None and default.startswith("nursery_io work")
    assert seen == ["alpha", "alpha", "beta", default, "alpha"]


def test_os_thread_name_truncation_keeps_utf8_valid(cache: ThreadCache) -> None:
    seen: dict[str, Any] = {}

    def job() -> None:
        seen["os_name"] = os_thread_name(threading.current_thread())

    # 14 ASCII bytes + a 2-byte character: byte 15 would split it, so it is dropped.
    run_job(cache, job, name="abcdefghijklmné")
    if seen["os_name"] is None:
        pytest.skip("no /proc thread names")
    assert seen["os_name"] == "abcdefghijklmn"


def test_raising_deliver_is_reported_and_worker_survives(
    cache: ThreadCache, capsys: pytest.CaptureFixture[str]
) -> None:
    called = threading.Event()

    def bad_deliver(result: outcome.Outcome[Any]) -> None:
        called.set()
        raise RuntimeError("deliver blew up")

    cache.start_thread_soon(threading.get_ident, bad_deliver)
    assert called.wait(WAIT)
    # The worker was idle before deliver, so this job goes to it and runs only after the
    # report has been printed.
    d = run_job(cache, threading.get_ident)
    assert d.result == outcome.Value(d.thread.ident if d.thread else None)
    err = capsys.readouterr().err
    assert "bad_deliver" in err  # names the culprit
    assert "Traceback" in err
    assert "RuntimeError: deliver blew up" in err
    stats = cache.statistics()
    assert stats.threads_alive == 1  # the same worker, still usable
    assert stats.jobs_run == 2


def test_default_cache_module_functions() -> None:
    d = Delivery()
    workers.start_thread_soon(lambda: 7, d)
    assert d.wait() == outcome.Value(7)
    stats = workers.worker_statistics()
    assert isinstance(stats, WorkerStatistics)
    assert stats.threads_alive >= 1
    assert stats.jobs_run >= 1
    workers.reset_peak()
    assert workers.worker_statistics().peak_threads == workers.worker_statistics().threads_alive


def test_worker_threads_are_daemon(cache: ThreadCache) -> None:
    d = run_job(cache, int)
    assert d.thread is not None
    assert d.thread.daemon


def test_bad_idle_timeout() -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        ThreadCache(idle_timeout=0)


# --- fork -------------------------------------------------------------------------------------


def _fork() -> int:
    with warnings.catch_warnings():
        # Python >= 3.12 warns about fork() in a multi-threaded process; that is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def _wait_child(pid: int) -> int:
    deadline = time.monotonic() + WAIT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("forked child hung")
        time.sleep(0.01)


def _child_checks(cache: ThreadCache) -> int:
    """Runs in the child; returns an exit code (0 = all good)."""
    stats = cache.statistics()
    if stats.threads_alive != 0 or stats.threads_idle != 0 or stats.jobs_run != 0:
        return 2
    d = Delivery()
    cache.start_thread_soon(threading.get_ident, d)
    if not d.done.wait(WAIT):
        return 3
    if d.result is None or d.result.unwrap() == threading.get_ident():
        return 4
    stats = cache.statistics()
    if stats.threads_alive != 1 or stats.jobs_run != 1:
        return 5
    return 0


@pytest.mark.parametrize("which", ["default", "instance"])
def test_fork_child_starts_with_empty_cache(which: str) -> None:
    cache = workers._THREAD_CACHE if which == "default" else ThreadCache(idle_timeout=5)
    # Leave a busy thread and an idle one in the parent's cache.
    gate = threading.Event()
    busy = Delivery()
    cache.start_thread_soon(lambda: gate.wait(WAIT), busy)
    run_job(cache, int)
    alive_before = cache.statistics().threads_alive
    assert alive_before >= 2
    try:
        pid = _fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                code = _child_checks(cache)
            finally:
                os._exit(code)
        assert _wait_child(pid) == 0
    finally:
        gate.set()
    busy.wait()
    # The parent's cache is untouched.
    assert cache.statistics().threads_alive >= alive_before


def test_fork_from_inside_a_worker_keeps_that_worker() -> None:
    # A job that forks (e.g. multiprocessing inside a thread): in the child, the forking
    # thread is the only thread and is still our worker; it must finish the job, deliver,
    # and take further jobs.
    cache = ThreadCache(idle_timeout=5)
    run_job(cache, int)  # an idle thread that will not exist in the child
    barrier, others = _start_blocked_jobs(cache, 1)  # a busy one, likewise

    # In the child the worker is the last thread: if it simply ended, the process would exit
    # with status 0, so success is a distinctive code.
    success = 42

    def child_deliver_2(result: outcome.Outcome[Any]) -> None:
        stats = cache.statistics()
        ok = result == outcome.Value("second") and stats.threads_alive == 1
        os._exit(success if ok else 7)

    def child_deliver_1(result: outcome.Outcome[Any]) -> None:
        try:
            stats = cache.statistics()
            if (stats.threads_alive, stats.threads_idle, stats.jobs_run) != (1, 1, 1):
                os._exit(9)
            # Idle before deliver: this job goes to this same (only) thread after we return.
            cache.start_thread_soon(lambda: "second", child_deliver_2)
        except BaseException:
            os._exit(10)

    parent_result = Delivery()

    def deliver_1(result: outcome.Outcome[Any]) -> None:
        if result == outcome.Value(0):
            child_deliver_1(result)  # we are the child
        else:
            parent_result(result)

    cache.start_thread_soon(_fork, deliver_1)
    pid = parent_result.wait().unwrap()
    barrier.wait()
    others[0].wait()
    assert _wait_child(pid) == success
