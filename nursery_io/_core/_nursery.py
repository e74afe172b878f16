"""Nurseries: the only place tasks are born, and the place where their errors are collected."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar, TypeVarTuple, overload

import outcome

from ._cancel import NONSTRICT_EXCEPTIONGROUP_NOTE, CancelScope
from ._context import GLOBAL_RUN_CONTEXT, current_runner, current_task
from ._deprecate import warn_loose_exception_groups
from ._exceptions import Cancelled, CancelReason, InternalError, no_public_constructor_error
from ._ki import enable_ki_protection
from ._traps import Abort, RaiseCancelT, cancel_shielded_checkpoint, wait_task_rescheduled
from ._util import final

if TYPE_CHECKING:
    from ._cancel import CancelStatus
    from ._task import Task

__all__ = ["TASK_STATUS_IGNORED", "Nursery", "NurseryManager", "TaskStatus", "open_nursery"]

if TYPE_CHECKING:
    # A bare ``TaskStatus`` means ``TaskStatus[None]`` (PEP 696 defaults), as in Trio. Only
    # the type checker needs the default; at run time these are plain TypeVars.
    from typing_extensions import TypeVar as TypeVarWithDefault

    StatusT = TypeVarWithDefault("StatusT", default=None)
    StatusT_co = TypeVarWithDefault("StatusT_co", covariant=True, default=None)
    StatusT_contra = TypeVarWithDefault("StatusT_contra", contravariant=True, default=None)
else:
    StatusT = TypeVar("StatusT")
    StatusT_co = TypeVar("StatusT_co", covariant=True)
    StatusT_contra = TypeVar("StatusT_contra", contravariant=True)

PosArgT = TypeVarTuple("PosArgT")
# The positional arguments of a function given to Nursery.start, one by one (see there).
Arg1T_contra = TypeVar("Arg1T_contra", contravariant=True)
Arg2T_contra = TypeVar("Arg2T_contra", contravariant=True)
Arg3T_contra = TypeVar("Arg3T_contra", contravariant=True)
Arg4T_contra = TypeVar("Arg4T_contra", contravariant=True)
Arg5T_contra = TypeVar("Arg5T_contra", contravariant=True)


class TaskStatus(Protocol[StatusT_contra]):
    """What a task started with :meth:`Nursery.start` uses to say it is ready."""

    @overload
    def started(self: TaskStatus[None]) -> None: ...
    @overload
    def started(self, value: StatusT_contra) -> None: ...
    def started(self, value: StatusT_contra | None = None) -> None:
        """Report readiness: ``start()`` returns ``value`` and the task moves to its nursery."""


class _TaskStatusIgnored:
    def __repr__(self) -> str:
        return "TASK_STATUS_IGNORED"

    def started(self, value: object = None) -> None:
        pass


#: The default ``task_status`` for functions that may be started with ``start()`` or run
#: directly; calling ``started()`` on it does nothing.
TASK_STATUS_IGNORED: Final[TaskStatus[Any]] = _TaskStatusIgnored()

_NO_STATUS: Final = object()


# What Nursery.start accepts: an async function taking the given positional arguments and a
# ``task_status`` keyword. A type checker infers StatusT_co from that parameter's annotation,
# which makes it start()'s return type. mypy drops keyword parameters when it matches a
# callable against a TypeVarTuple (``*args: *PosArgT``), so the common arities spell their
# arguments out one by one. Past four arguments, _StartableAnyArity checks the arguments but
# not the status type (start() then returns Any). It must not accept fewer arguments: as a
# fallback for a failed precise match it would hide that failure.
class _Startable0(Protocol[StatusT_co]):
    def __call__(self, *, task_status: TaskStatus[StatusT_co]) -> Awaitable[object]: ...


class _Startable1(Protocol[Arg1T_contra, StatusT_co]):
    def __call__(
        self, a1: Arg1T_contra, /, *, task_status: TaskStatus[StatusT_co]
    ) -> Awaitable[object]: ...


class _Startable2(Protocol[Arg1T_contra, Arg2T_contra, StatusT_co]):
    def __call__(
        self, a1: Arg1T_contra, a2: Arg2T_contra, /, *, task_status: TaskStatus[StatusT_co]
    ) -> Awaitable[object]: ...


class _Startable3(Protocol[Arg1T_contra, Arg2T_contra, Arg3T_contra, StatusT_co]):
    def __call__(
        self,
        a1: Arg1T_contra,
        a2: Arg2T_contra,
        a3: Arg3T_contra,
        /,
        *,
        task_status: TaskStatus[StatusT_co],
    ) -> Awaitable[object]: ...


class _Startable4(Protocol[Arg1T_contra, Arg2T_contra, Arg3T_contra, Arg4T_contra, StatusT_co]):
    def __call__(
        self,
        a1: Arg1T_contra,
        a2: Arg2T_contra,
        a3: Arg3T_contra,
        a4: Arg4T_contra,
        /,
        *,
        task_status: TaskStatus[StatusT_co],
    ) -> Awaitable[object]: ...


class _StartableAnyArity(Protocol[*PosArgT]):
    def __call__(self, *args: *PosArgT, task_status: TaskStatus[Any]) -> Awaitable[object]: ...


class _StartTaskStatus(Generic[StatusT]):
    # As in Trio, users may set attributes: tricycle wraps ``started`` on the instance.
    __slots__ = ("__dict__", "_new_nursery", "_old_nursery", "_value")

    def __init__(self, old_nursery: Nursery, new_nursery: Nursery) -> None:
        self._old_nursery = old_nursery
        self._new_nursery = new_nursery
        self._value: Any = _NO_STATUS

    def __repr__(self) -> str:
        return f"<TaskStatus for start() into {self._new_nursery!r}>"

    @enable_ki_protection
    def started(self, value: StatusT | None = None) -> None:
        if self._value is not _NO_STATUS:
            raise RuntimeError("called 'started' twice on the same task status")
        self._value = value
        old = self._old_nursery
        # If start()'s caller is being cancelled, leave the child where it is: it will see
        # the cancellation and exit, and moving a task that may be carrying a Cancelled into
        # a nursery whose scopes are not cancelled would let that Cancelled escape.
        if old._cancel_status.effectively_cancelled:
            return
        new = self._new_nursery
        assert not new._closed, "start() keeps the target nursery open"
        for task in old._children:
            task._parent_nursery = new
            task._eventual_parent_nursery = None
            new._children.add(task)
        old._children = set()
        # Detach everything from the old nursery's cancel status before attaching it to the
        # new one: attaching below an already cancelled nursery can run abort functions, and
        # those must not see a half-moved tree.
        statuses = list(old._cancel_status._children)
        tasks = [t for t in old._cancel_status.tasks if t is not old._parent_task]
        for status in statuses:
            status.parent = None
        for task in tasks:
            task._activate_cancel_status(None)
        for status in statuses:
            status.parent = new._cancel_status
        for task in tasks:
            task._activate_cancel_status(new._cancel_status)
        old._check_nursery_closed()


@final
class Nursery:
    """A scope that owns child tasks; get one from ``async with open_nursery() as nursery``.

    The ``async with`` block does not exit until every child has finished. If any child
    raises, the nursery cancels the others and re-raises everything as one
    :class:`BaseExceptionGroup`.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        # Get one from 'async with nursery_io.open_nursery() as nursery:'.
        raise no_public_constructor_error("nursery_io.Nursery")

    @classmethod
    def _create(
        cls, parent_task: Task, cancel_scope: CancelScope, strict_exception_groups: bool
    ) -> Nursery:
        nursery = object.__new__(cls)
        nursery._setup(parent_task, cancel_scope, strict_exception_groups)
        return nursery

    def _setup(
        self, parent_task: Task, cancel_scope: CancelScope, strict_exception_groups: bool
    ) -> None:
        self._parent_task = parent_task
        self._strict_exception_groups = strict_exception_groups
        if parent_task._open_nurseries is None:
            parent_task._open_nurseries = [self]
        else:
            parent_task._open_nurseries.append(self)
        self.cancel_scope = cancel_scope
        assert cancel_scope._cancel_status is not None
        self._cancel_status: CancelStatus = cancel_scope._cancel_status
        self._nested_child_running = True
        self._parent_waiting_in_aexit = False
        self._pending_starts = 0
        self._children: set[Task] = set()
        self._pending_excs: list[BaseException] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<nursery_io.Nursery at {id(self):#x}>"

    @property
    def child_tasks(self) -> frozenset[Task]:
        """The tasks currently running in this nursery (not counting ``start()`` in progress)."""
        return frozenset(self._children)

    @property
    def parent_task(self) -> Task:
        """The task that opened this nursery."""
        return self._parent_task

    def _add_exc(self, exc: BaseException, why: Callable[[], CancelReason] | None) -> None:
        self._pending_excs.append(exc)
        scope = self.cancel_scope
        if not scope._cancel_called:
            # The reason (with its exception repr) is only built if it can still matter:
            # a scope keeps the first reason it gets.
            scope._cancel(why() if why is not None and scope._cancel_reason is None else None)

    def _check_nursery_closed(self) -> None:
        if not (self._nested_child_running or self._children or self._pending_starts):
            self._closed = True
            if self._parent_waiting_in_aexit:
                self._parent_waiting_in_aexit = False
                GLOBAL_RUN_CONTEXT.runner.reschedule(self._parent_task)

    def _child_finished(self, task: Task, result: outcome.Outcome[Any]) -> None:
        self._children.remove(task)
        if isinstance(result, outcome.Error):
            error = result.error
            self._add_exc(
                error,
                lambda: CancelReason(
                    "nursery", repr(task), f"child task raised exception {error!r}"
                ),
            )
            del error
        self._check_nursery_closed()

    async def _nested_child_finished(
        self, nested_child_exc: BaseException | None
    ) -> BaseException | None:
        """Called from ``__aexit__``: wait for the children, then build the combined error."""
        if nested_child_exc is not None:
            parent = self._parent_task
            self._add_exc(
                nested_child_exc,
                lambda: CancelReason(
                    "nursery",
                    repr(parent),
                    "Code block inside nursery contextmanager raised exception "
                    f"{nested_child_exc!r}",
                ),
            )
        self._nested_child_running = False
        self._check_nursery_closed()

        if not self._closed:

            def aborted(raise_cancel: RaiseCancelT) -> Abort:
                # The parent keeps waiting for its children (the cancellation reaches them
                # through the scope tree). A KeyboardInterrupt is not a cancellation, though:
                # keep it so it is raised with the children's errors.
                error = outcome.capture(raise_cancel).error
                if not isinstance(error, Cancelled):
                    parent = self._parent_task
                    self._add_exc(error, lambda: CancelReason("KeyboardInterrupt", repr(parent)))
                del error
                return Abort.FAILED

            self._parent_waiting_in_aexit = True
            await wait_task_rescheduled(aborted)
        else:
            # Nothing to wait for; still a schedule point, and still not cancellable.
            try:
                await cancel_shielded_checkpoint()
            except BaseException as exc:
                self._add_exc(exc, None)

        open_nurseries = self._parent_task._open_nurseries
        if not open_nurseries or open_nurseries.pop() is not self:
            # Nurseries exited out of order. Like Trio, fail this exit; the task's exit
            # then reports the nurseries it left open as "Nursery stack corrupted".
            raise AssertionError("Nursery misnesting detected!")
        if not self._pending_excs:
            return None
        excs, self._pending_excs = self._pending_excs, []
        if not self._strict_exception_groups and len(excs) == 1:
            return excs[0]
        group = BaseExceptionGroup("Exceptions from nursery_io nursery", excs)
        if not self._strict_exception_groups:
            group.add_note(NONSTRICT_EXCEPTIONGROUP_NOTE)
        return group

    def start_soon(
        self,
        async_fn: Callable[[*PosArgT], Awaitable[object]],
        *args: *PosArgT,
        name: object = None,
    ) -> None:
        """Create a child task running ``await async_fn(*args)`` and return immediately.

        The task starts at the next scheduling batch. ``name`` (any object; its ``str`` is
        used) labels it in tracebacks and debuggers. Raises ``RuntimeError`` if the nursery
        has already closed.
        """
        GLOBAL_RUN_CONTEXT.runner.spawn_impl(async_fn, args, self, name)

    @overload
    async def start(
        self, async_fn: _Startable0[StatusT_co], *, name: object = None
    ) -> StatusT_co: ...
    @overload
    async def start(
        self,
        async_fn: _Startable1[Arg1T_contra, StatusT_co],
        a1: Arg1T_contra,
        /,
        *,
        name: object = None,
    ) -> StatusT_co: ...
    @overload
    async def start(
        self,
        async_fn: _Startable2[Arg1T_contra, Arg2T_contra, StatusT_co],
        a1: Arg1T_contra,
        a2: Arg2T_contra,
        /,
        *,
        name: object = None,
    ) -> StatusT_co: ...
    @overload
    async def start(
        self,
        async_fn: _Startable3[Arg1T_contra, Arg2T_contra, Arg3T_contra, StatusT_co],
        a1: Arg1T_contra,
        a2: Arg2T_contra,
        a3: Arg3T_contra,
        /,
        *,
        name: object = None,
    ) -> StatusT_co: ...
    @overload
    async def start(
        self,
        async_fn: _Startable4[Arg1T_contra, Arg2T_contra, Arg3T_contra, Arg4T_contra, StatusT_co],
        a1: Arg1T_contra,
        a2: Arg2T_contra,
        a3: Arg3T_contra,
        a4: Arg4T_contra,
        /,
        *,
        name: object = None,
    ) -> StatusT_co: ...
    @overload
    async def start(
        self,
        async_fn: _StartableAnyArity[
            Arg1T_contra, Arg2T_contra, Arg3T_contra, Arg4T_contra, Arg5T_contra, *PosArgT
        ],
        a1: Arg1T_contra,
        a2: Arg2T_contra,
        a3: Arg3T_contra,
        a4: Arg4T_contra,
        a5: Arg5T_contra,
        /,
        *args: *PosArgT,
        name: object = None,
    ) -> Any: ...
    async def start(
        self,
        async_fn: Callable[..., Awaitable[object]],
        *args: object,
        name: object = None,
    ) -> Any:
        """Start ``async_fn(*args, task_status=...)`` and wait until it calls ``started()``.

        Returns the value passed to ``task_status.started()``. Until then the new task runs
        inside a temporary nursery owned by the caller: exceptions it raises propagate out of
        ``start()``, and cancelling the caller cancels it. Once started it moves here.

        For a type checker, ``start()`` returns ``T`` when ``async_fn`` declares
        ``task_status: TaskStatus[T]`` (with up to four positional arguments; ``Any`` past
        that), and a function without a ``task_status`` parameter is an error.
        """
        if self._closed:
            raise RuntimeError("Nursery is closed to new arrivals")
        try:
            self._pending_starts += 1
            try:
                async with open_nursery(strict_exception_groups=True) as old_nursery:
                    task_status: _StartTaskStatus[Any] = _StartTaskStatus(old_nursery, self)
                    task = GLOBAL_RUN_CONTEXT.runner.spawn_impl(
                        async_fn, args, old_nursery, name, task_status=task_status
                    )
                    task._eventual_parent_nursery = self
            except BaseExceptionGroup as group:
                # The temporary nursery is an implementation detail: a single failure comes
                # out of start() as itself, the way the child raised it (context included).
                if len(group.exceptions) == 1:
                    only = group.exceptions[0]
                    context = only.__context__
                    try:
                        raise only
                    finally:
                        only.__context__ = context
                        del only, context
                # Only the child runs in the temporary nursery, unless user code reached it
                # (through the task's parent_nursery) and spawned more: as in Trio, that
                # misuse is reported as an internal error, with the failures as the cause.
                raise InternalError(
                    "Internal nursery should not have multiple tasks. This can be caused by "
                    'the user managing to access the "old" nursery in `task_status` and '
                    "spawning tasks in it."
                ) from group
            if task_status._value is _NO_STATUS:
                raise RuntimeError("child exited without calling task_status.started()")
            return task_status._value
        finally:
            self._pending_starts -= 1
            self._check_nursery_closed()


class NurseryManager:
    """The async context manager returned by :func:`open_nursery`."""

    __slots__ = ("_nursery", "_scope", "_strict_exception_groups")

    def __init__(self, strict_exception_groups: bool) -> None:
        self._strict_exception_groups = strict_exception_groups
        self._scope: CancelScope | None = None
        self._nursery: Nursery | None = None

    @enable_ki_protection
    async def __aenter__(self) -> Nursery:
        self._scope = CancelScope()
        self._scope.__enter__()
        self._nursery = Nursery._create(current_task(), self._scope, self._strict_exception_groups)
        return self._nursery

    @enable_ki_protection
    async def __aexit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._nursery is not None and self._scope is not None
        new_exc = await self._nursery._nested_child_finished(exc)
        combined = self._scope._close(new_exc)
        if combined is None:
            return True
        if combined is exc:
            return False
        context = combined.__context__
        try:
            raise combined
        finally:
            combined.__context__ = context
            del combined, new_exc, exc

    def __enter__(self) -> None:
        raise RuntimeError("use 'async with open_nursery(...)', not 'with open_nursery(...)'")

    def __exit__(self, *args: object) -> None:  # pragma: no cover - __enter__ always raises
        raise AssertionError("unreachable")


def open_nursery(strict_exception_groups: bool | None = None) -> NurseryManager:
    """Return an async context manager that opens a :class:`Nursery`.

    ``strict_exception_groups`` defaults to the value given to :func:`run` (True unless
    changed): errors from the nursery always arrive wrapped in a ``BaseExceptionGroup``.
    """
    if strict_exception_groups is None:
        strict_exception_groups = current_runner().strict_exception_groups
    elif not strict_exception_groups:
        warn_loose_exception_groups("open_nursery(strict_exception_groups=False)")
    return NurseryManager(strict_exception_groups)
