"""anyio's CancelScope, TaskGroup and TaskInfo on top of nursery_io's scopes and nurseries.

nursery_io's semantics are Trio's, which are the ones anyio's API was modelled on, so the
adapters are thin: an anyio scope owns a nursery_io scope, a task group owns a nursery.
What anyio adds on top is handled here: task handles, ``start()`` with a ``task_status``
that may be used before the task has even started running, and the rule that a group
whose only errors are cancellations re-raises one bare cancellation.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Coroutine
from contextvars import Context
from functools import partial
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

import anyio
from anyio import TaskHandle
from anyio.abc import TaskStatus
from anyio.abc._tasks import call_for_coroutine, get_callable_name, get_coro_name

import nursery_io
from nursery_io import _core

__all__ = ["CancelScope", "TaskGroup", "TaskInfo"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class CancelScope(anyio.CancelScope):
    """An anyio cancel scope backed by a :class:`nursery_io.CancelScope`."""

    __slots__ = ("_native",)

    def __new__(
        cls,
        *,
        deadline: float = math.inf,
        shield: bool = False,
        native: nursery_io.CancelScope | None = None,
    ) -> Self:
        # anyio.CancelScope.__new__ dispatches to the running backend; we *are* it.
        return object.__new__(cls)

    def __init__(
        self,
        *,
        deadline: float = math.inf,
        shield: bool = False,
        native: nursery_io.CancelScope | None = None,
    ) -> None:
        self._native = (
            native
            if native is not None
            else nursery_io.CancelScope(deadline=deadline, shield=shield)
        )

    def __repr__(self) -> str:
        return f"<anyio CancelScope over {self._native!r}>"

    def __enter__(self) -> Self:
        self._native.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool:
        return self._native.__exit__(exc_type, exc_val, exc_tb)

    def cancel(self, reason: str | None = None) -> None:
        self._native.cancel(reason)

    @property
    def deadline(self) -> float:
        return self._native.deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._native.deadline = value

    @property
    def cancel_called(self) -> bool:
        return self._native.cancel_called

    @property
    def cancelled_caught(self) -> bool:
        return self._native.cancelled_caught

    @property
    def shield(self) -> bool:
        return self._native.shield

    @shield.setter
    def shield(self, value: bool) -> None:
        self._native.shield = value


_NOT_STARTED: Final = object()


class _EarlyTaskStatus(TaskStatus[T]):
    """The ``task_status`` handed to a function started with ``TaskGroup.start``.

    anyio lets a function call ``started()`` while its coroutine is being *created*
    (before it runs at all); the value is then remembered and forwarded once the task is
    running and holds nursery_io's real task status.
    """

    __slots__ = ("_native", "_value")

    def __init__(self) -> None:
        self._native: nursery_io.TaskStatus[Any] | None = None
        self._value: object = _NOT_STARTED

    def started(self, value: T | None = None) -> None:
        if self._native is not None:
            self._native.started(value)
        elif self._value is not _NOT_STARTED:
            raise RuntimeError("called 'started' twice on the same task status")
        else:
            self._value = value

    def attach(self, native: nursery_io.TaskStatus[Any]) -> None:
        if self._value is not _NOT_STARTED:
            native.started(self._value)
        else:
            self._native = native


def _only_cancellations(group: BaseExceptionGroup[BaseException]) -> nursery_io.Cancelled | None:
    """The first Cancelled in ``group`` if it holds nothing else, else None."""
    matched, rest = group.split(nursery_io.Cancelled)
    if rest is not None or matched is None:
        return None
    leaf: BaseException = matched
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, nursery_io.Cancelled)
    # split() copies the groups but not the leaves: this is one of the originals.
    return leaf


class TaskGroup(anyio.abc.TaskGroup):
    """An anyio task group: a nursery_io nursery with anyio's task handles."""

    cancel_scope: CancelScope

    def __init__(self) -> None:
        self._entered = False
        self._active = False
        self._manager = nursery_io.open_nursery(strict_exception_groups=True)
        self._nursery: nursery_io.Nursery | None = None

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("TaskGroup cannot be entered more than once")
        self._entered = True
        self._nursery = await self._manager.__aenter__()
        self.cancel_scope = CancelScope(native=self._nursery.cancel_scope)
        self._active = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool:
        cancelled: nursery_io.Cancelled | None = None
        try:
            return await self._manager.__aexit__(exc_type, exc_val, exc_tb)
        except BaseExceptionGroup as group:
            # anyio's rule: a group of nothing but cancellations leaves as one bare
            # Cancelled, so enclosing code sees a plain cancellation.
            cancelled = _only_cancellations(group)
            if cancelled is None:
                # The group replaces the body's exception rather than being raised
                # while handling it (and Trio's nurseries say so the same way).
                group.__suppress_context__ = True
                raise
        finally:
            del exc_val, exc_tb
            self._active = False
        # Raised here, after the group is gone, so that no cycle (leaf -> context ->
        # group -> leaf) keeps the group and everything its tracebacks hold alive.
        context = cancelled.__context__
        try:
            raise cancelled
        finally:
            cancelled.__context__ = context
            del cancelled

    def _check_active(self, coro: Coroutine[Any, Any, Any] | None = None) -> nursery_io.Nursery:
        if not self._active or self._nursery is None:
            if coro is not None:
                coro.close()  # never awaited: close it so Python doesn't warn
            raise RuntimeError("This task group is not active; no new tasks can be started.")
        return self._nursery

    def create_task(
        self,
        coro: Coroutine[Any, Any, T_co],
        *,
        name: object = None,
        context: Context | None = None,
    ) -> TaskHandle[T_co]:
        if not isinstance(coro, Coroutine):
            raise TypeError(f"expected a coroutine, got {coro.__class__.__qualname__}")
        nursery = self._check_active(coro)
        handle: TaskHandle[T_co] = TaskHandle(coro, get_coro_name(coro, name))
        if context is None:
            nursery.start_soon(handle._run_coro, name=handle.name)
        else:
            # start_soon gives the task a copy of the *current* context; make that the
            # requested one.
            context.run(partial(nursery.start_soon, handle._run_coro, name=handle.name))
        return handle

    async def start(
        self,
        func: Callable[..., Coroutine[Any, Any, T_co]],
        *args: object,
        name: object = None,
        return_handle: Literal[False, True] = False,
    ) -> Any:
        nursery = self._check_active()
        final_name = get_callable_name(func, name)
        holder: list[TaskHandle[T_co]] = []

        async def run_started(*, task_status: nursery_io.TaskStatus[Any]) -> None:
            status: _EarlyTaskStatus[Any] = _EarlyTaskStatus()
            coro = call_for_coroutine(func, args, task_status=status)
            status.attach(task_status)
            handle: TaskHandle[T_co] = TaskHandle(coro, final_name)
            holder.append(handle)
            await handle._run_coro()

        value = await nursery.start(run_started, name=final_name)
        if return_handle:
            handle = holder[0]
            handle._start_value = value
            return handle
        return value


class TaskInfo(anyio.TaskInfo):
    """anyio's view of a nursery_io task."""

    __slots__ = ("_task",)

    def __init__(self, task: _core.Task) -> None:
        nursery = task.parent_nursery
        parent = nursery.parent_task if nursery is not None else None
        super().__init__(id(task), id(parent) if parent is not None else None, task.name, task.coro)
        self._task = weakref.ref(task)

    def has_pending_cancellation(self) -> bool:
        task = self._task()
        # A task that has exited has nothing pending.
        return task is not None and task.cancel_pending


def running_tasks() -> list[TaskInfo]:
    """Every task of the current run, the root task first, parents before children."""
    root = _core.current_root_task()
    assert root is not None
    infos: list[TaskInfo] = [TaskInfo(root)]
    nurseries = root.child_nurseries
    while nurseries:
        next_level: list[nursery_io.Nursery] = []
        for nursery in nurseries:
            for task in nursery.child_tasks:
                infos.append(TaskInfo(task))
                next_level.extend(task.child_nurseries)
        nurseries = next_level
    return infos
