"""Async generator finalization inside the run.

An async generator abandoned mid-iteration must run its ``finally`` blocks, and those may
await. Python asks the running loop to do that through ``sys.set_asyncgen_hooks``: we note
every async generator first iterated inside our run, and when one is garbage-collected
unfinished we close it in a system task, where awaiting works. Generators still alive when
the main task ends are closed after the system tasks have finished.
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
        self._previous: Any = None

    def install_hooks(self) -> None:
        self._previous = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=self._firstiter, finalizer=self._finalizer)

    def close(self) -> None:
        if self._previous is not None:
            sys.set_asyncgen_hooks(*self._previous)
            self._previous = None

    def _firstiter(self, agen: AsyncGenerator[Any, Any]) -> None:
        if getattr(GLOBAL_RUN_CONTEXT, "runner", None) is self._runner:
            self.alive.add(agen)
        elif self._previous is not None and self._previous.firstiter is not None:
            self._previous.firstiter(agen)

    def _finalizer(self, agen: AsyncGenerator[Any, Any]) -> None:
        if agen not in self.alive:
            previous = self._previous.finalizer if self._previous is not None else None
            if previous is not None:
                previous(agen)
            return
        self.alive.discard(agen)
        runner = self._runner
        try:
            runner.run_sync_soon(self._spawn_finalizer, (agen,), False)
        except Exception:
            # The run is over: close it right here if it doesn't need to await.
            self._close_synchronously(agen)

    def _spawn_finalizer(self, agen: AsyncGenerator[Any, Any]) -> None:
        from ._runner import spawn_system_task

        spawn_system_task(self._aclose, agen, name=f"close of async generator {_name(agen)}")

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
        # Generators can create generators while closing; loop until none are left.
        while self.alive:
            batch = sorted(self.alive, key=id)
            self.alive.clear()
            for agen in batch:
                await self._aclose(agen)


class _Unraisable:
    """The object ``sys.unraisablehook`` expects."""

    def __init__(self, exc: BaseException, message: str) -> None:
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = message
        self.object = None
