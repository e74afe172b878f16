"""Running a kernel :class:`~nursery_io._kernel.ops.Op` from a task (files and disk ops).

The task submits the Op to the run's file engine (io_uring, or the worker pool) and parks.
Cancellation follows the completion-port pattern (docs/design.rst, "One Op, two engines"):
the abort function asks the engine to cancel and returns ``Abort.FAILED``, so the task keeps
waiting for the Op's own completion, which says what really happened:

* cancelled before it ran → the task gets ``Cancelled``;
* it ran anyway → the task gets the real result (bytes read, bytes written: the operation
  happened, and hiding that would lose data) — except for an Op that *creates* a resource
  (an ``openat`` fd), which is released through ``Op.discard()`` and reported as
  ``Cancelled``, so a cancelled open never leaks a descriptor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import outcome

from .._kernel import ops as _kernel_ops
from ._context import GLOBAL_RUN_CONTEXT, NOT_IN_RUN_MESSAGE
from ._traps import (
    Abort,
    RaiseCancelT,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    wait_task_rescheduled,
)

if TYPE_CHECKING:
    from .._kernel.contract import FileEngineAPI
    from .._kernel.ops import Op
    from ._runner import Runner
    from ._task import Task

__all__ = ["read_at", "run_linked", "run_op"]

_Value = outcome.Value


def _calling_task() -> Task:
    """The shared prologue of the op runners: the task calling, outside a run a RuntimeError.
    (Each then checks ``effectively_cancelled or ki_pending`` itself, before submitting:
    awaiting a helper for it would cost a coroutine on every cached read.)"""
    try:
        return GLOBAL_RUN_CONTEXT.task
    except AttributeError:
        raise RuntimeError(NOT_IN_RUN_MESSAGE) from None


class _OpWaiter:
    """Connects one Op to the task waiting for it. Its bound methods are the engine's
    completion callback and the task's abort function (cheaper than two closures and a
    box per op: this is the hot path of every file read)."""

    __slots__ = ("engine", "on_abort", "op", "raise_cancel", "runner", "task")

    def __init__(
        self,
        task: Task,
        runner: Runner,
        engine: FileEngineAPI,
        op: Op,
        on_abort: Callable[[], object] | None = None,
    ) -> None:
        self.task = task
        self.runner = runner
        self.engine = engine
        self.op = op
        self.on_abort = on_abort
        self.raise_cancel: RaiseCancelT | None = None

    def on_complete(self, op: Op) -> None:
        raise_cancel = self.raise_cancel
        self.raise_cancel = None  # drop the reference cycle through the task
        result: outcome.Outcome[Any]
        if raise_cancel is None:
            if op.error is not None:
                result = outcome.Error(op.error)
            elif op.cancelled:  # only when the engine shuts down under us
                result = outcome.Error(RuntimeError(f"{op!r} was cancelled by the engine"))
            else:
                result = _Value(op.result)
        elif op.cancelled:
            result = outcome.capture(raise_cancel)
        elif op.error is not None:
            result = outcome.Error(op.error)
        elif op.on_abandoned is not None:
            # Completed after a cancel request, and its result is a resource: release it
            # and report the cancellation the waiter asked for.
            op.discard()
            result = outcome.capture(raise_cancel)
        else:
            result = _Value(op.result)
        self.runner.reschedule(self.task, result)

    def abort(self, raise_cancel: RaiseCancelT) -> Abort:
        self.raise_cancel = raise_cancel
        self.engine.cancel(self.op)
        on_abort = self.on_abort
        if on_abort is not None:
            self.on_abort = None
            on_abort()
        return Abort.FAILED


async def run_op(op: Op, *, on_abort: Callable[[], object] | None = None) -> Any:
    """Run ``op`` on the current run's file engine and return its result.

    A checkpoint: always yields, raises ``Cancelled`` if cancelled before the Op ran.

    ``on_abort`` is called once, in the run's thread, if the waiting task is cancelled (or
    interrupted by Ctrl-C) while the op is in flight. The task goes on waiting for the op,
    so this is the place to make an op that can't be stopped finish sooner, e.g. to
    unblock a worker thread stuck in a blocking call.
    """
    task = _calling_task()
    runner = task._runner
    if task._cancel_status.effectively_cancelled or runner.ki_pending:
        # Already cancelled: raise before submitting. A cached read completes inside the
        # submit syscall, ahead of the cancel request, so without this check a cancelled
        # task looping on reads would never see Cancelled.
        await checkpoint_if_cancelled()
    engine = runner.kernel.engine
    if engine.try_inline(op):
        task._cancel_points += 1  # see read_at
        # Served from the page cache without blocking: keep the checkpoint semantics of
        # a completed operation (a schedule point, not a cancel point: it happened).
        await cancel_shielded_checkpoint()
        if op.error is not None:
            raise op.error
        return op.result
    waiter = _OpWaiter(task, runner, engine, op, on_abort)
    engine.submit(op, waiter.on_complete)
    return await wait_task_rescheduled(waiter.abort)


async def read_at(fd: int, length: int, offset: int) -> bytes:
    """``os.pread(fd, length, offset)`` on the run's file engine, as a checkpoint.

    The same as ``run_op(ops.read(fd, length, offset))``, with a shortcut for the common
    case: data already in the page cache is copied inline (see ``FileEngine.try_inline``)
    without building an Op at all.
    """
    task = _calling_task()
    runner = task._runner
    if task._cancel_status.effectively_cancelled or runner.ki_pending:
        await checkpoint_if_cancelled()
    # A cancel point even when not cancelled (what checkpoint_if_cancelled would count),
    # without paying for the call on this hot path.
    task._cancel_points += 1
    engine = runner.kernel.engine
    data = engine.read_nowait(fd, length, offset)
    if data is not None:
        await cancel_shielded_checkpoint()
        return data
    # Not cached: straight to the engine (run_op would try the inline read a second time).
    op = _kernel_ops.read(fd, length, offset)
    engine.submit(op, (waiter := _OpWaiter(task, runner, engine, op)).on_complete)
    return await wait_task_rescheduled(waiter.abort)  # type: ignore[no-any-return]


class _ChainWaiter:
    """Connects a chain of Ops (``FileEngine.submit_linked``) to the task waiting for all of
    them; the task is rescheduled once every op has completed."""

    __slots__ = ("engine", "ops", "pending", "raise_cancel", "runner", "task")

    def __init__(
        self, task: Task, runner: Runner, engine: FileEngineAPI, ops: Sequence[Op]
    ) -> None:
        self.task = task
        self.runner = runner
        self.engine = engine
        self.ops = ops
        self.pending = len(ops)
        self.raise_cancel: RaiseCancelT | None = None

    def on_complete(self, op: Op) -> None:
        self.pending -= 1
        if self.pending:
            return
        raise_cancel = self.raise_cancel
        self.raise_cancel = None
        result: outcome.Outcome[Any] = _Value(None)
        if raise_cancel is not None and any(o.cancelled for o in self.ops):
            result = outcome.capture(raise_cancel)
        self.runner.reschedule(self.task, result)

    def abort(self, raise_cancel: RaiseCancelT) -> Abort:
        self.raise_cancel = raise_cancel
        for op in self.ops:  # the head first: cancelling it cancels the rest of the chain
            self.engine.cancel(op)
        return Abort.FAILED


async def run_linked(ops: Sequence[Op]) -> None:
    """Run ``ops`` as one chain: each starts when the one before completed in full; an
    error or a short count ends the chain and the ops after it don't run
    (``op.cancelled``). Returns once all have completed; read each op's ``result`` /
    ``error`` / ``cancelled``. On the ring this is one batch of linked SQEs; elsewhere (no
    ring, or no room for the chain) the ops run one after the other with the same rule.

    A checkpoint. If the task is cancelled meanwhile, every op is asked to stop and the
    task still waits for all of them; ``Cancelled`` is raised if any op was cancelled
    (the ops keep their outcomes, so the caller can see what happened before that).
    """
    task = _calling_task()
    runner = task._runner
    if task._cancel_status.effectively_cancelled or runner.ki_pending:
        await checkpoint_if_cancelled()
    engine = runner.kernel.engine
    waiter = _ChainWaiter(task, runner, engine, ops)
    if engine.submit_linked(ops, waiter.on_complete):
        await wait_task_rescheduled(waiter.abort)
        return
    # One at a time, with the ring's link rule: stop after an error or a short count.
    for i, op in enumerate(ops):
        try:
            await run_op(op)
        except BaseException as exc:
            if exc is not op.error:  # Cancelled, KeyboardInterrupt: not the op's outcome
                for later in ops[i + 1 :]:
                    later.cancelled = True
                raise
        if op.error is not None or op.result != op.length:
            for later in ops[i + 1 :]:
                later.cancelled = True
            return
