"""Small helpers shared by the core modules."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["coroutine_or_error", "name_for_task"]


def _describe(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def coroutine_or_error(
    async_fn: Callable[..., object], *args: object, **kwargs: object
) -> Coroutine[Any, Any, Any]:
    """Call ``async_fn(*args)`` and return the coroutine, or explain what went wrong."""
    if inspect.iscoroutine(async_fn):
        # Close it so Python doesn't add a confusing "never awaited" warning.
        async_fn.close()
        raise TypeError(
            "nursery_io was expecting an async function, but got a coroutine object "
            f"{async_fn!r}. Pass the function and its arguments separately, e.g. "
            "'run(main, arg)' or 'nursery.start_soon(fn, arg)', not 'fn(arg)'."
        )
    if inspect.isasyncgenfunction(async_fn):
        raise TypeError(
            f"{_describe(async_fn)} is an async generator function, not an async function; "
            "iterate it from inside a task instead of starting it as one"
        )
    coro = async_fn(*args, **kwargs)
    if isinstance(coro, Coroutine) or (inspect.isawaitable(coro) and hasattr(coro, "send")):
        return coro  # type: ignore[return-value]
    if inspect.isasyncgen(coro):
        raise TypeError(
            f"{_describe(async_fn)} returned an async generator; start an async function"
        )
    if inspect.isawaitable(coro):
        # asyncio futures, Twisted deferreds and the like.
        raise TypeError(
            f"{_describe(async_fn)} returned {coro!r}, an awaitable from another async "
            "library. nursery_io can only run coroutines written for nursery_io (or Trio)."
        )
    if callable(async_fn) and not inspect.iscoroutinefunction(getattr(async_fn, "func", async_fn)):
        raise TypeError(
            f"nursery_io expected an async function, but {_describe(async_fn)} is a "
            f"synchronous callable (it returned {coro!r}). Did you forget 'async def'? "
            "To run a blocking function, use nursery_io.to_thread.run_sync."
        )
    raise TypeError(f"{_describe(async_fn)} did not return a coroutine (got {coro!r})")


def name_for_task(fn: object, name: object) -> str:
    if name is None:
        name = fn
        while isinstance(name, functools.partial):
            name = name.func
    if isinstance(name, str):
        return name
    try:
        return f"{name.__module__}.{name.__qualname__}"  # type: ignore[attr-defined]
    except AttributeError:
        return repr(name)
