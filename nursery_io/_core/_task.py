"""The Task object: one coroutine scheduled by the runner."""

from __future__ import annotations

import contextvars
import gc
import itertools
import types
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any

import outcome

from ._exceptions import Cancelled, InternalError
from ._traps import Abort, RaiseCancelT
from ._util import final, name_for_task

if TYPE_CHECKING:
    from ._cancel import CancelStatus
    from ._nursery import Nursery
    from ._runner import Runner

__all__ = ["Task"]

# Spawn order, for deterministic scheduling (see _run.py): task ids aren't reproducible.
_spawn_counter = itertools.count()

# What ``await agen.asend(...)`` / ``await agen.athrow(...)`` suspend in.
_ASYNCGEN_AWAITABLES = frozenset({"async_generator_asend", "async_generator_athrow"})


def _wrapped_async_generator(awaitable: object) -> types.AsyncGeneratorType[Any, Any] | None:
    # These objects don't expose the generator they drive (CPython issue 76991), but they
    # hold a reference to it, which the garbage collector can list.
    for referent in gc.get_referents(awaitable):
        if isinstance(referent, types.AsyncGeneratorType):
            return referent
    return None


@final
class Task:
    """A running task. Get the current one with :func:`nursery_io.lowlevel.current_task`.

    Public attributes: ``name``, ``coro``, ``context`` (a :class:`contextvars.Context`;
    assigning a new one takes effect at the task's next step), ``custom_sleep_data`` (free
    for the code that parks the task), and the nursery accessors below.
    """

    __slots__ = (
        "__weakref__",
        "_abort_func",
        "_cancel_points",
        "_cancel_status",
        "_counter",
        "_eventual_parent_nursery",
        "_name",
        "_next_send",
        "_open_nurseries",
        "_parent_nursery",
        "_runner",
        "_schedule_points",
        "_system_task",
        "context",
        "coro",
        "custom_sleep_data",
    )

    def __init__(
        self,
        runner: Runner,
        coro: Coroutine[Any, Any, Any],
        name: object,
        context: contextvars.Context,
        parent_nursery: Nursery | None,
        system_task: bool,
    ) -> None:
        self._runner = runner
        self.coro = coro
        # A str, or the function (or name object) to derive one from: see ``name``.
        self._name = name
        self.context = context
        self._parent_nursery = parent_nursery
        self._eventual_parent_nursery: Nursery | None = None
        # The nurseries the task has open, innermost last; None until it opens one (most
        # tasks never do, and an empty list per task is a measurable part of a spawn).
        self._open_nurseries: list[Nursery] | None = None
        self._cancel_status: CancelStatus = None  # type: ignore[assignment]
        self._abort_func: Any = None
        self._next_send: Any = None
        self._cancel_points = 0
        self._schedule_points = 0
        self._system_task = system_task
        self.custom_sleep_data: Any = None
        self._counter = next(_spawn_counter)

    def __repr__(self) -> str:
        return f"<Task {self.name!r} at {id(self):#x}>"

    @property
    def name(self) -> str:
        """The task's name: the one given to ``start_soon``/``start``, or else the
        qualified name (``module.qualname``) of the function it runs. Assignable."""
        name = self._name
        if type(name) is not str:
            # Worked out on first use: most tasks are never asked for their name.
            name = self._name = name_for_task(name, None)
        return name

    @name.setter
    def name(self, name: str) -> None:
        self._name = name

    @property
    def parent_nursery(self) -> Nursery | None:
        """The nursery this task lives in (None only for the run's root task)."""
        return self._parent_nursery

    @property
    def eventual_parent_nursery(self) -> Nursery | None:
        """For a task launched by ``Nursery.start()`` that hasn't called ``started()`` yet:
        the nursery it will move to. Otherwise None."""
        return self._eventual_parent_nursery

    @property
    def child_nurseries(self) -> list[Nursery]:
        """The nurseries this task has open, outermost first."""
        return list(self._open_nurseries or ())

    @property
    def _child_nurseries(self) -> list[Nursery]:
        # Trio's name for the stack, which code written for trio sometimes reads.
        return self._open_nurseries or []

    @property
    def cancel_pending(self) -> bool:
        """True if the task sits in a cancelled scope it isn't shielded from: its next
        checkpoint will raise ``Cancelled``. (Lets code such as a channel skip handing an
        item to a waiter that is about to be cancelled.)"""
        status = self._cancel_status
        return status is not None and status.effectively_cancelled

    def iter_await_frames(self) -> Iterator[tuple[types.FrameType, int]]:
        """Yield ``(frame, lineno)`` for each frame in the task's current await chain.

        Starts at the task's root coroutine and follows what each frame is awaiting, so
        the last item is where the task is suspended (or running).
        """
        awaitable: Any = self.coro
        while awaitable is not None:
            if isinstance(awaitable, types.CoroutineType):
                frame, awaitable = awaitable.cr_frame, awaitable.cr_await
            elif isinstance(awaitable, types.GeneratorType):
                frame, awaitable = awaitable.gi_frame, awaitable.gi_yieldfrom
            elif isinstance(awaitable, types.AsyncGeneratorType):
                frame, awaitable = awaitable.ag_frame, awaitable.ag_await
            elif type(awaitable).__name__ in _ASYNCGEN_AWAITABLES:
                agen = _wrapped_async_generator(awaitable)
                if agen is None:
                    return
                frame, awaitable = agen.ag_frame, agen.ag_await
            else:
                return
            if frame is None:
                return
            yield frame, frame.f_lineno

    # ----- cancellation plumbing (runner-internal) -----

    def _activate_cancel_status(self, status: CancelStatus | None) -> None:
        old = self._cancel_status
        if old is not None:
            old.tasks.discard(self)
        self._cancel_status = status  # type: ignore[assignment]
        if status is not None:
            status.tasks.add(self)
            if status.effectively_cancelled:
                self._attempt_delivery_of_any_pending_cancel()

    def _attempt_abort(self, raise_cancel: RaiseCancelT) -> None:
        # Only called while the task is parked in wait_task_rescheduled.
        abort_func = self._abort_func
        crash: InternalError | None = None
        try:
            success = abort_func(raise_cancel)
        except BaseException as exc:
            crash = InternalError(f"the abort function {abort_func!r} raised an exception")
            crash.__cause__ = exc
        else:
            if type(success) is not Abort:
                crash = InternalError(
                    f"abort function {abort_func!r} must return an Abort value, not {success!r}"
                )
        if crash is not None:
            # Raising here would unwind through whoever delivered the cancellation (often
            # user code calling cancel(), or the middle of a cancel-status push-down, which
            # would leave other tasks undelivered and the run hung). Instead end the run
            # with the error, and wake this task as if the abort had succeeded so it
            # unwinds with the rest.
            self._runner.report_crash(crash)
            success = Abort.SUCCEEDED
        if success is Abort.SUCCEEDED:
            self._runner.reschedule(self, outcome.capture(raise_cancel))

    def _attempt_delivery_of_any_pending_cancel(self) -> None:
        if self._abort_func is None:
            return
        status = self._cancel_status
        if not status.effectively_cancelled:
            return
        # The innermost scope knows the reason: its own, or the one it inherited when an
        # enclosing scope's cancellation reached it.
        reason = status.scope._cancel_reason

        def raise_cancel() -> Any:
            raise Cancelled._from_reason(reason)

        self._attempt_abort(raise_cancel)

    def _attempt_delivery_of_pending_ki(self) -> None:
        if self._abort_func is None:
            return

        runner = self._runner

        def raise_ki() -> Any:
            # Cleared only when actually delivered: an abort that fails keeps it pending.
            runner.ki_pending = False
            raise KeyboardInterrupt

        self._attempt_abort(raise_ki)
