"""Running blocking code in worker threads, and calling back into the run from them.

``to_thread.run_sync`` hands a function to the kernel's worker-thread cache and parks the
calling task. The task stays parked for the whole call, which lets it *serve* the worker:
``from_thread.run`` / ``run_sync`` called from that worker are executed by the waiting
task itself, inside its context and cancel scopes, rather than in some unrelated system
task. That is what makes "call back into the run" inherit the caller's cancellation and
contextvars.
"""

from __future__ import annotations

import contextvars
import inspect
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar, TypeVarTuple

import outcome
import sniffio

from ._core import (
    Abort,
    ParkingLot,
    RaiseCancelT,
    RunFinishedError,
    RunToken,
    RunVar,
    Task,
    WouldBlock,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    current_task,
    current_token,
    in_run,
    reschedule,
    spawn_system_task,
    start_thread_soon,
    wait_task_rescheduled,
)
from ._sync import CapacityLimiter

__all__ = [
    "active_thread_count",
    "check_cancelled",
    "current_default_thread_limiter",
    "from_thread_run",
    "from_thread_run_sync",
    "to_thread_run_sync",
    "wait_all_threads_completed",
]

T = TypeVar("T")
PosArgT = TypeVarTuple("PosArgT")

DEFAULT_THREAD_LIMIT: Final = 40


class _RunThreads:
    """The run's thread state: its default limiter, and how many ``to_thread.run_sync``
    jobs are still running in a thread (abandoned ones included: they are still making
    progress). One run-local lookup per call gets both."""

    __slots__ = ("count", "idle", "limiter")

    def __init__(self) -> None:
        self.limiter = CapacityLimiter(DEFAULT_THREAD_LIMIT)
        self.count = 0
        self.idle = ParkingLot()  # tasks waiting for count to reach 0

    def finished(self) -> None:
        self.count -= 1
        if not self.count:
            self.idle.unpark_all()


_run_threads: RunVar[_RunThreads] = RunVar("to_thread state")


def _state() -> _RunThreads:
    try:
        return _run_threads.get()
    except LookupError:
        state = _RunThreads()
        _run_threads.set(state)
        return state


def current_default_thread_limiter() -> CapacityLimiter:
    """The run's default limiter for ``to_thread.run_sync``: 40 threads at once.

    Change its ``total_tokens`` to change the default for the whole run.
    """
    return _state().limiter


def active_thread_count() -> int:
    """How many ``to_thread.run_sync`` calls of this run have a thread still running their
    function, including calls whose task stopped waiting (``abandon_on_cancel=True``)."""
    return _state().count


async def wait_all_threads_completed() -> None:
    """Wait until :func:`active_thread_count` is 0. Always a checkpoint.

    For tests of code that uses ``to_thread``: together with
    :func:`~nursery_io.testing.wait_all_tasks_blocked` it tells when nothing is making
    progress any more, neither in a task nor in a thread.
    """
    await checkpoint()
    state = _state()
    while state.count:
        await state.idle.park()


class _WorkerLink:
    """What a worker thread knows about the task that started it (thread-local)."""

    __slots__ = ("abandon_on_cancel", "abandoned", "raise_cancel", "task", "token")

    def __init__(self, task: Task, token: RunToken, abandon_on_cancel: bool) -> None:
        self.task = task
        self.token = token
        self.abandon_on_cancel = abandon_on_cancel
        self.raise_cancel: RaiseCancelT | None = None
        self.abandoned = False


class _Request:
    """A call from a worker back into the run, served by the task waiting for that worker."""

    __slots__ = ("args", "context", "fn", "is_async", "reply")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], is_async: bool) -> None:
        self.fn = fn
        self.args = args
        self.is_async = is_async
        # The call runs in (a copy of) the calling thread's context, as in Trio: context
        # variables set in the worker are seen by what it calls back into the run.
        self.context = contextvars.copy_context()
        self.reply: queue.SimpleQueue[outcome.Outcome[Any]] = queue.SimpleQueue()


class _Finished:
    __slots__ = ("result",)

    def __init__(self, result: outcome.Outcome[Any]) -> None:
        self.result = result


_thread_local = threading.local()


def _worker_link() -> _WorkerLink | None:
    return getattr(_thread_local, "link", None)


async def to_thread_run_sync(
    sync_fn: Callable[[*PosArgT], T],
    *args: *PosArgT,
    thread_name: str | None = None,
    abandon_on_cancel: bool = False,
    limiter: CapacityLimiter | None = None,
) -> T:
    """Run ``sync_fn(*args)`` in a worker thread and return its result.

    The calling task waits; the thread runs in a copy of the task's contextvars, with
    sniffio reporting no async library. At most ``limiter.total_tokens`` threads run at
    once (default: :func:`current_default_thread_limiter`); waiting for a token is
    cancellable.

    Threads can't be interrupted. With ``abandon_on_cancel=False`` (the default) the call
    cannot be cancelled once the thread has started: the task waits for the function and
    returns its result (the function can poll :func:`nursery_io.from_thread.check_cancelled`
    to stop early). With ``abandon_on_cancel=True`` a cancellation makes the task stop
    waiting at once; the thread runs on and its result is discarded.
    """
    await checkpoint_if_cancelled()
    # Now, so that an object whose truth can't be told fails here and not at cancel time.
    abandon_on_cancel = bool(abandon_on_cancel)
    state = _state()
    if limiter is None:
        limiter = state.limiter
    task = current_task()
    token = current_token()
    # Each call borrows a token on behalf of a unique object, so one task can run several
    # threads (through several nurseries) without tripping "already holding a token".
    borrower = _WorkerLink(task, token, abandon_on_cancel)
    if type(limiter) is CapacityLimiter:
        try:
            # Not acquire_on_behalf_of(): its schedule point would cost a loop turn per
            # call, and waiting for the thread below is already one.
            limiter.acquire_on_behalf_of_nowait(borrower)
        except WouldBlock:
            await limiter.acquire_on_behalf_of(borrower)
    else:  # a limiter-like object (anyio's, for one): only the async API is assumed
        await limiter.acquire_on_behalf_of(borrower)
    state.count += 1
    try:
        context = contextvars.copy_context()
        context.run(sniffio.current_async_library_cvar.set, None)
        if thread_name is None:
            thread_name = f"{getattr(sync_fn, '__name__', None)} from {task.name}"

        def in_worker() -> T:
            _thread_local.link = borrower
            try:
                result = context.run(sync_fn, *args)
            finally:
                del _thread_local.link
            if inspect.iscoroutine(result):
                result.close()  # no "never awaited" warning on top of our error
                raise TypeError(
                    f"Trio expected a sync function, but {_qualname(sync_fn)!r} appears to "
                    "be asynchronous"
                )
            return result

        def deliver(result: outcome.Outcome[T]) -> None:
            # In the worker thread: hop back into the run's thread.
            try:
                token.run_sync_soon(finish, result)
            except RunFinishedError:
                pass  # the run ended while an abandoned thread was still going

        def finish(result: outcome.Outcome[T]) -> None:
            state.finished()
            limiter.release_on_behalf_of(borrower)
            if not borrower.abandoned:
                reschedule(task, outcome.Value(_Finished(result)))

        start_thread_soon(in_worker, deliver, thread_name)
    except BaseException:
        state.finished()
        limiter.release_on_behalf_of(borrower)
        raise

    def abort(raise_cancel: RaiseCancelT) -> Abort:
        borrower.raise_cancel = raise_cancel
        if abandon_on_cancel:
            borrower.abandoned = True
            return Abort.SUCCEEDED
        return Abort.FAILED

    while True:
        message = await wait_task_rescheduled(abort)
        if type(message) is _Finished:
            return message.result.unwrap()  # type: ignore[no-any-return]
        await _serve(message)


async def _serve(request: _Request) -> None:
    """Run a worker's call-back inside the waiting task and send the result to the worker."""
    if request.is_async:
        # Borrow the worker's context for the call: the task runs each step in
        # task.context, so switch it and let a (shielded) schedule point take effect.
        task = current_task()
        own_context = task.context
        task.context = request.context
        await cancel_shielded_checkpoint()
        result = await outcome.acapture(_call_async, request.fn, request.args)
        task.context = own_context
        await cancel_shielded_checkpoint()
    else:
        result = outcome.capture(_call_sync, request)
    request.reply.put(result)


def _qualname(fn: object) -> object:
    return getattr(fn, "__qualname__", fn)


def _call_sync(request: _Request) -> Any:
    """``fn(*args)`` for ``from_thread.run_sync``, refusing an async function (Trio's text)."""
    result = request.context.run(request.fn, *request.args)
    if inspect.iscoroutine(result):
        result.close()
        raise TypeError(
            f"Trio expected a synchronous function, but {_qualname(request.fn)!r} appears to "
            "be asynchronous"
        )
    return result


async def _call_async(afn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """``await afn(*args)`` for ``from_thread.run``, with Trio's errors for the usual
    mistakes: a coroutine object instead of a function, or a synchronous function."""
    if isinstance(afn, Coroutine):
        name = getattr(afn, "__name__", "fn")
        afn.close()
        raise TypeError(
            "Trio was expecting an async function, but instead it got a coroutine object "
            f"{afn!r}\n\n"
            "Probably you did something like:\n\n"
            f"  trio.run({name}(...))            # incorrect!\n"
            f"  nursery.start_soon({name}(...))  # incorrect!\n\n"
            "Instead, you want (notice the parentheses!):\n\n"
            f"  trio.run({name}, ...)            # correct!\n"
            f"  nursery.start_soon({name}, ...)  # correct!"
        )
    coro = afn(*args)
    if not inspect.isawaitable(coro):
        raise TypeError(
            f"Trio expected an async function, but {_qualname(afn)!r} appears to be synchronous"
        )
    return await coro


def _send_request(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    is_async: bool,
    token: RunToken | None,
) -> Any:
    # Checks in Trio's order, with Trio's texts (users match on them).
    link = _worker_link()
    if token is None:
        if link is None:
            raise RuntimeError(
                "this thread wasn't created by Trio, pass kwarg trio_token=... (or token=...)"
            )
    elif not isinstance(token, RunToken):
        raise RuntimeError("Passed kwarg trio_token is not of type TrioToken")
    # Blocking this thread on its own run would deadlock. (Unlike Trio we allow blocking
    # on *another* run, e.g. a portal's run in another thread: that is merely blocking.)
    if in_run() and (token is None or token is current_token()):
        raise RuntimeError("this is a blocking function; call it from a thread")
    request = _Request(fn, args, is_async)
    if token is None and link is not None and not link.abandon_on_cancel:
        # Served by the task waiting in to_thread.run_sync: same context, same scopes.
        # (Not for an abandonable thread: its task may stop waiting at any moment, so
        # its calls get a system task, as in Trio.)
        link.token.run_sync_soon(_deliver_to_waiting_task, link, request)
    else:
        if token is None:
            assert link is not None
            token = link.token
        token.run_sync_soon(_serve_in_system_task, request)
    return request.reply.get().unwrap()


def _deliver_to_waiting_task(link: _WorkerLink, request: _Request) -> None:
    # Runs in the run's thread, so "abandoned" can't change under our feet here.
    if link.abandoned:
        _serve_in_system_task(request)
    else:
        reschedule(link.task, outcome.Value(request))


def _serve_in_system_task(request: _Request) -> None:
    if request.is_async:

        async def runner() -> None:
            request.reply.put(await outcome.acapture(_call_async, request.fn, request.args))

        try:
            spawn_system_task(runner, name=request.fn, context=request.context)
        except RuntimeError as exc:  # system nursery already closed: the run is ending
            request.reply.put(outcome.Error(RunFinishedError(str(exc))))
    else:
        request.reply.put(outcome.capture(_call_sync, request))


def from_thread_run(
    afn: Callable[[*PosArgT], Awaitable[T]],
    *args: *PosArgT,
    token: RunToken | None = None,
) -> T:
    """From a worker thread, run ``await afn(*args)`` in the run and return its result.

    In a thread started by ``to_thread.run_sync`` (and no ``token`` given) the call is
    served by the task that is waiting for the thread, inside that task's cancel scopes
    (unless the thread was started with ``abandon_on_cancel=True``: then, as with an
    explicit ``token``, a system task runs it). Either way it runs in a copy of the
    calling thread's contextvars context.
    Raises :class:`RunFinishedError` if the run is over.
    """
    return _send_request(afn, args, True, token)  # type: ignore[no-any-return]


def from_thread_run_sync(
    fn: Callable[[*PosArgT], T], *args: *PosArgT, token: RunToken | None = None
) -> T:
    """From a worker thread, call ``fn(*args)`` in the run's thread and return its result."""
    return _send_request(fn, args, False, token)  # type: ignore[no-any-return]


def check_cancelled() -> None:
    """From a ``to_thread.run_sync`` worker: raise ``Cancelled`` if the waiting task has been
    cancelled. Lets long-running blocking code stop cooperatively."""
    link = _worker_link()
    if link is None:
        raise RuntimeError("this thread wasn't created by Trio, can't check for cancellation")
    if link.raise_cancel is not None:
        link.raise_cancel()
