"""Small helpers shared by the core modules."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import sniffio

from ._context import current_library_name

__all__ = ["coroutine_or_error", "name_for_task"]


def _describe(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _display_name() -> str:
    """How error messages name the library: "Trio" in trio mode, else "nursery_io"."""
    name = current_library_name()
    return "Trio" if name == "trio" else name


def _looks_like_another_library(value: object) -> bool:
    """asyncio futures and legacy generator coroutines, Tornado futures, Twisted deferreds."""
    if isinstance(value, Generator):
        return True
    if getattr(value, "_asyncio_future_blocking", None) is not None:
        return True
    return type(value).__name__ in ("Future", "Deferred")


async def _await_frameless(awaitable: Any) -> Any:
    # A coroutine-like object without a Python frame of its own (an async generator's
    # ``__anext__()``, a coroutine implemented in C): run it from a real coroutine, so the
    # task has a root frame that ends KeyboardInterrupt protection's stack walk.
    return await awaitable


def coroutine_or_error(
    async_fn: Callable[..., object], *args: object, **kwargs: object
) -> Coroutine[Any, Any, Any]:
    """Call ``async_fn(*args)`` and return the coroutine, or explain what went wrong.

    The messages begin as Trio's do, so code that matches on them keeps working.
    """
    # A sync function that returns a coroutine still sees the running library in sniffio.
    previous_library = sniffio.thread_local.name
    sniffio.thread_local.name = current_library_name()
    try:
        coro = async_fn(*args, **kwargs)
    except TypeError:
        if isinstance(async_fn, Coroutine):
            async_fn.close()  # no extra "never awaited" warning
            name = getattr(async_fn, "__name__", "fn")
            raise TypeError(
                f"{_display_name()} was expecting an async function, but instead it got a "
                f"coroutine object {async_fn!r}\n\n"
                "Pass the function and its arguments separately:\n\n"
                f"  run({name}, ...)            # correct\n"
                f"  nursery.start_soon({name}, ...)  # correct\n\n"
                f"instead of calling it yourself: run({name}(...)) is incorrect"
            ) from None
        if _looks_like_another_library(async_fn):
            raise TypeError(
                f"{_display_name()} was expecting an async function, but instead it got "
                f"{async_fn!r} - are you trying to use a library written for "
                "asyncio/twisted/tornado or similar? That won't work without some sort of "
                "compatibility shim."
            ) from None
        raise
    finally:
        sniffio.thread_local.name = previous_library

    if type(coro) is types.CoroutineType:
        return coro
    if isinstance(coro, Coroutine):
        # Coroutine-shaped but without a frame: an async generator's asend object, a
        # coroutine implemented in C or Cython.
        return _await_frameless(coro)
    if _looks_like_another_library(coro):
        raise TypeError(
            f"{_display_name()} got unexpected {coro!r} - are you trying to use a library "
            "written for asyncio/twisted/tornado or similar? That won't work without some "
            "sort of compatibility shim."
        )
    if inspect.isasyncgen(coro):
        raise TypeError(
            f"start_soon expected an async function but got an async generator {coro!r}; "
            "iterate it from inside a task instead of starting it as one"
        )
    raise TypeError(
        f"{_display_name()} expected an async function, but {_describe(async_fn)!r} appears "
        f"to be synchronous (it returned {coro!r}). Did you forget 'async def'? To run a "
        "blocking function, use to_thread.run_sync."
    )


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
