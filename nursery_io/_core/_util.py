"""Small helpers shared by the core modules."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Coroutine, Generator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import sniffio

from ._context import current_library_name

__all__ = [
    "ClosesOnExit",
    "LazyTable",
    "coroutine_or_error",
    "final",
    "lazy_attributes",
    "name_for_task",
]

_ClassT = TypeVar("_ClassT", bound=type)


def _refuse_subclass(cls: type) -> NoReturn:
    # Called as the base's __init_subclass__, so ``cls`` is the would-be subclass.
    raise TypeError(f"{cls.__module__}.{cls.__qualname__} does not support subclassing")


def _final_at_runtime(cls: _ClassT) -> _ClassT:
    """Class decorator: subclassing ``cls`` raises TypeError (as with Trio's public
    classes), and type checkers see :func:`typing.final`."""
    cls.__init_subclass__ = classmethod(_refuse_subclass)  # type: ignore[assignment]
    return typing.final(cls)


if TYPE_CHECKING:
    from typing import final
else:
    final = _final_at_runtime


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


def _is_own_generator_coroutine(value: object) -> bool:
    """A ``@types.coroutine`` generator defined by nursery_io itself (not yet started)."""
    if type(value) is not types.GeneratorType:
        return False
    frame = value.gi_frame
    return (
        bool(value.gi_code.co_flags & inspect.CO_ITERABLE_COROUTINE)
        and frame is not None
        and str(frame.f_globals.get("__name__", "")).startswith("nursery_io.")
    )


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
    library = current_library_name()
    if previous_library != library:
        sniffio.thread_local.name = library
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
        if previous_library != library:
            sniffio.thread_local.name = previous_library

    if type(coro) is types.CoroutineType:
        return coro
    if isinstance(coro, Coroutine) or _is_own_generator_coroutine(coro):
        # Coroutine-shaped but without a frame: an async generator's asend object, a
        # coroutine implemented in C or Cython. Or one of our own traps (checkpoint & co.),
        # generators for speed where Trio's are async functions that may be started as tasks.
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


# ----- PEP 562 lazy names for a module: loaded on first use, then cached in the module -----

#: name -> (module to import, relative to the caller's package if it starts with a dot;
#: the attribute to take from it, or None for the module itself).
LazyTable = Mapping[str, tuple[str, str | None]]


def lazy_attributes(
    namespace: dict[str, Any], table: LazyTable
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` that load ``table``'s names on first use.

    Call it from the module itself with ``globals()``. Keep the result hidden from type
    checkers (``if not TYPE_CHECKING``): a visible module ``__getattr__`` would make them
    accept any attribute name, typos included; list the lazy names for them in an
    ``if TYPE_CHECKING`` import instead.
    """
    module_name = namespace["__name__"]
    package = namespace["__package__"]

    def __getattr__(name: str) -> object:
        where = table.get(name)
        if where is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        import importlib

        target, attribute = where
        module = importlib.import_module(target, package)
        value = module if attribute is None else getattr(module, attribute)
        namespace[name] = value  # later lookups don't come back here
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | table.keys())

    return __getattr__, __dir__


class ClosesOnExit:
    """Mixin: the object is a context manager that calls its ``close()`` on the way out,
    whatever happens inside the block (memory channels, sockets, DTLS endpoints)."""

    __slots__ = ()

    if TYPE_CHECKING:

        def close(self) -> None: ...

    def __enter__(self) -> typing.Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.close()
