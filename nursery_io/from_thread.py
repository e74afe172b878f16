"""Call into a run from a worker thread.

Trio spells the token argument ``trio_token``; both ``token=`` and ``trio_token=`` work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple

from ._core import RunToken
from ._threads import check_cancelled, from_thread_run, from_thread_run_sync

__all__ = ["check_cancelled", "run", "run_sync"]

T = TypeVar("T")
PosArgT = TypeVarTuple("PosArgT")


def run(
    afn: Callable[[*PosArgT], Awaitable[T]],
    *args: *PosArgT,
    token: RunToken | None = None,
    trio_token: RunToken | None = None,
) -> T:
    """Run ``await afn(*args)`` in the run from a worker thread; see the module docs."""
    return from_thread_run(afn, *args, token=token or trio_token)


def run_sync(
    fn: Callable[[*PosArgT], T],
    *args: *PosArgT,
    token: RunToken | None = None,
    trio_token: RunToken | None = None,
) -> T:
    """Call ``fn(*args)`` in the run's thread from a worker thread and return the result."""
    return from_thread_run_sync(fn, *args, token=token or trio_token)
