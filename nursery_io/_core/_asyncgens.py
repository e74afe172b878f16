"""Async generator finalization inside the run.

An async generator abandoned mid-iteration must run its ``finally`` blocks, and those may
await. Python asks the running loop to do that through ``sys.set_asyncgen_hooks``: we note
every async generator first iterated by one of our tasks (or a run_sync_soon callback), and
when one is garbage-collected unfinished we warn (ResourceWarning, as Trio does) and close it
in a system task. As in Trio, that close runs in a cancelled, shielded scope: an await in the
``finally`` raises Cancelled at once rather than run in the background of whatever the program
does next. Generators still alive when the main task ends are closed the same way, after the
system tasks have finished. An exception out of such a close is logged (logger
``nursery_io.async_generator_errors``): nobody is left to catch it.

Async generators that aren't the run's (first iterated outside any task, by an abort function
run at a deadline, say, or by a guest run's host between the guest's turns) go to the hooks
that were installed before the run (and are put back after it). That matters for a guest run
(``start_guest_run``): the host loop, asyncio say, iterates its own generators on the same
thread between the guest's turns, and only its own hooks can finalize them. Without such
hooks they are closed on the spot, as CPython would without any hooks.
"""

from __future__ import annotations

import logging
import sys
import warnings
import weakref
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from ._context import GLOBAL_RUN_CONTEXT

if TYPE_CHECKING:
    from ._runner import Runner

__all__ = ["AsyncGenerators"]

ASYNCGEN_LOGGER = logging.getLogger("nursery_io.async_generator_errors")


def _name(agen: AsyncGenerator[Any, Any]) -> str:
    """``module.qualname`` of the generator's function, the way Trio names it in messages."""
    frame = getattr(agen, "ag_frame", None)
    module = frame.f_globals.get("__name__") if frame is not None else None
    if module is None:
        code = getattr(agen, "ag_code", None)
        module = f"<{code.co_filename}>" if code is not None else "<unknown>"
    qualname = getattr(agen, "__qualname__", None) or type(agen).__qualname__
    return f"{module}.{qualname}"


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
        # Ours if first iterated by one of our tasks or run_sync_soon callbacks (Trio runs
        # those in a task). Not if iterated by code the loop itself calls outside any task
        # (an abort function at a deadline), nor by a guest run's host, which runs its own
        # code on our thread between our turns: those belong to whoever installed the hooks
        # we replaced (asyncio, say).
        runner = self._runner
        context = GLOBAL_RUN_CONTEXT
        if (
            getattr(context, "runner", None) is runner
            and (hasattr(context, "task") or runner.in_callback)
            and not runner.host_owns_thread
        ):
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
                self._close_foreign(agen)
            return
        try:
            self._runner.run_sync_soon(self._spawn_finalizer, (agen,), False)
        except Exception:
            # The run is over: close it right here if it doesn't need to await.
            self._close_synchronously(agen)
        # Last: with warnings turned into errors this raises (and Python reports it as
        # unraisable), but the generator is already on its way to being closed.
        warnings.warn(
            f"Async generator {_name(agen)!r} was garbage collected before it had been "
            "exhausted. Surround its use in 'async with aclosing(...):' to ensure that it "
            "gets cleaned up as soon as you're done using it.",
            ResourceWarning,
            stacklevel=2,
            source=agen,
        )

    def _spawn_finalizer(self, agen: AsyncGenerator[Any, Any]) -> None:
        from ._runner import spawn_system_task

        if self._phase == "running":
            name = _name(agen)
            try:
                spawn_system_task(
                    self._finalize_one, agen, name, name=f"close asyncgen {name} (abandoned)"
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
    async def _finalize_one(agen: AsyncGenerator[Any, Any], name: str) -> None:
        from ._cancel import CancelScope

        try:
            # Cancelled inside, so the close can't hang on an await; shielded, so nothing
            # (not even Cancelled) escapes into the task doing the closing.
            with CancelScope(shield=True) as scope:
                scope.cancel(
                    reason="disallow async work when closing async generators during "
                    "nursery_io shutdown"
                )
                await agen.aclose()
        except BaseException:
            # Nobody is left to catch it: log it, with its traceback.
            ASYNCGEN_LOGGER.exception(
                "Exception ignored during finalization of async generator %r -- surround "
                "your use of the generator in 'async with aclosing(...):' to raise "
                "exceptions like this in the context where they're generated",
                name,
            )

    @staticmethod
    def _close_foreign(agen: AsyncGenerator[Any, Any]) -> None:
        """Close a generator that isn't ours when no previous hook can: what CPython does
        with no hooks installed (an exception escapes to Python's unraisable hook)."""
        closer = agen.aclose()
        try:
            # A yield after GeneratorExit raises RuntimeError here: let it out.
            closer.send(None)
        except StopIteration:
            return
        closer.close()
        raise RuntimeError(
            f"async generator {_name(agen)!r}, which doesn't belong to the run, awaited "
            "something during finalization; install a finalization hook to support this, "
            "or wrap it in 'async with aclosing(...):'"
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
            # status to checkpoint against; _finalize_one closes each generator in its own
            # cancelled scope, so an await in a finalizer can't hang the run.
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
                        await self._finalize_one(agen, _name(agen))
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
