"""Async generator finalization inside the run.

An async generator abandoned mid-iteration must run its ``finally`` blocks, and those may
await. Python asks the running loop to do that through ``sys.set_asyncgen_hooks``: we note
every async generator first iterated inside our run, and when one is garbage-collected
unfinished we close it in a system task, where awaiting works. Generators still alive when
the main task ends are closed after the system tasks have finished, in a cancelled scope:
their awaits raise Cancelled rather than wait for services that are gone.

Async generators that aren't the run's go to the hooks that were installed before the run
(and are put back after it). That matters for a guest run (``start_guest_run``): the host
loop, asyncio say, iterates its own generators on the same thread between the guest's
turns, and only its own hooks can finalize them.
"""

from __future__ import annotations

import sys
import warnings
import weakref
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from ._context import GLOBAL_RUN_CONTEXT

if TYPE_CHECKING:
    from ._runner import Runner

__all__ = ["AsyncGenerators"]


def _name(agen: AsyncGenerator[Any, Any]) -> str:
    try:
        code = agen.ag_code  # type: ignore[attr-defined]
        return f"{code.co_filename}:{code.co_qualname}"
    except AttributeError:  # pragma: no cover - not a real generator
        return repr(agen)


class AsyncGenerators:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self.alive: weakref.WeakSet[AsyncGenerator[Any, Any]] = weakref.WeakSet()
        # ids of generators first iterated while our hooks were installed but outside our
        # run. The finalizer can't ask ``alive`` whether a generator is ours: CPython
        # clears weak references *before* calling the finalizer hook, so a dying
        # generator is never "in" a WeakSet any more. Everything not listed here is ours.
        self._foreign: set[int] = set()
        # Ours, garbage-collected after the system nursery closed: finalize_remaining()
        # closes them (a system task can no longer be spawned for them).
        self._trailing: set[AsyncGenerator[Any, Any]] = set()
        # "running" -> "final" (finalize_remaining has started) -> "done".
        self._phase = "running"
        self._previous: Any = None

    def install_hooks(self) -> None:
        self._previous = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=self._firstiter, finalizer=self._finalizer)

    def close(self) -> None:
        if self._previous is not None:
            sys.set_asyncgen_hooks(*self._previous)
            self._previous = None

    def _firstiter(self, agen: AsyncGenerator[Any, Any]) -> None:
        # Ours if first iterated inside our run: by a task, a run_sync_soon callback, ...
        # A guest run's host runs its own code on our thread between our turns; what it
        # iterates belongs to whoever installed the hooks we replaced (asyncio, say).
        runner = self._runner
        if getattr(GLOBAL_RUN_CONTEXT, "runner", None) is runner and not runner.host_owns_thread:
            self.alive.add(agen)
        else:
            self._foreign.add(id(agen))
            if self._previous is not None and self._previous.firstiter is not None:
                self._previous.firstiter(agen)

    def _finalizer(self, agen: AsyncGenerator[Any, Any]) -> None:
        if id(agen) in self._foreign:
            self._foreign.discard(id(agen))
            previous = self._previous.finalizer if self._previous is not None else None
            if previous is not None:
                previous(agen)
            else:
                self._close_synchronously(agen)
            return
        runner = self._runner
        try:
            runner.run_sync_soon(self._spawn_finalizer, (agen,), False)
        except Exception:
            # The run is over: close it right here if it doesn't need to await.
            self._close_synchronously(agen)

    def _spawn_finalizer(self, agen: AsyncGenerator[Any, Any]) -> None:
        from ._runner import spawn_system_task

        if self._phase == "running":
            try:
                spawn_system_task(
                    self._aclose, agen, name=f"close of async generator {_name(agen)}"
                )
                return
            except RuntimeError:
                # The system nursery has just closed: finalize_remaining() takes it.
                pass
        if self._phase == "done":
            self._close_synchronously(agen)
        else:
            self._trailing.add(agen)

    @staticmethod
    async def _aclose(agen: AsyncGenerator[Any, Any]) -> None:
        try:
            await agen.aclose()
        except Exception as exc:
            # Nobody is left to catch it: report like an exception in __del__ would be.
            sys.unraisablehook(
                _Unraisable(exc, f"Exception ignored while closing async generator {_name(agen)}")  # type: ignore[arg-type]
            )

    @staticmethod
    def _close_synchronously(agen: AsyncGenerator[Any, Any]) -> None:
        closer = agen.aclose()
        try:
            closer.send(None)
        except StopIteration:
            return
        except Exception:
            return
        closer.close()
        warnings.warn(
            f"async generator {_name(agen)} awaited during finalization after its run ended; "
            "its cleanup could not finish",
            RuntimeWarning,
            stacklevel=1,
        )

    async def finalize_remaining(self) -> None:
        """Close every generator still alive; runs in the init task after the system
        nursery has closed."""
        from ._cancel import CancelScope

        self._phase = "final"
        try:
            # The system tasks are gone, so nothing an await in a finalizer might wait for
            # is guaranteed to happen any more: run them cancelled (as Trio does), so a
            # ``finally: await ...`` gets Cancelled instead of hanging the run forever.
            # The outer scope gives the init task (outside every nursery by now) a cancel
            # status to checkpoint against; each generator gets its own cancelled scope so
            # a Cancelled escaping one finalizer can't skip the others.
            with CancelScope(shield=True):
                # Generators can create generators while closing; loop until none are left.
                while True:
                    # Run pending run_sync_soon callbacks first: generators collected just
                    # before now are on their way to _trailing through the entry queue.
                    await self._flush_entry_queue()
                    batch = sorted(self.alive, key=id) + sorted(self._trailing, key=id)
                    self.alive.clear()
                    self._trailing.clear()
                    if not batch:
                        break
                    for agen in batch:
                        with CancelScope(shield=True) as scope:
                            scope.cancel(
                                reason="disallow async work when closing async generators "
                                "during nursery_io shutdown"
                            )
                            await self._aclose(agen)
                    del batch, agen
        finally:
            self._phase = "done"

    async def _flush_entry_queue(self) -> None:
        from ._context import current_task
        from ._traps import Abort, wait_task_rescheduled

        task = current_task()
        self._runner.run_sync_soon(self._runner.reschedule, (task,), False)
        # Entry-queue callbacks run in FIFO order, so when this one wakes us every
        # callback queued before it has run. Not abortable: it always completes promptly.
        await wait_task_rescheduled(lambda _: Abort.FAILED)


class _Unraisable:
    """The object ``sys.unraisablehook`` expects."""

    def __init__(self, exc: BaseException, message: str) -> None:
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = message
        self.object = None
