"""KeyboardInterrupt protection.

Ctrl-C should interrupt the user's code immediately, but must never land in the middle of the
runtime's own bookkeeping (a half-updated cancel-scope tree is worse than a late Ctrl-C).
So the SIGINT handler looks at the interrupted stack: in unprotected code it raises
``KeyboardInterrupt`` right there; in protected code it records the interrupt and the runner
delivers it to the main task at its next checkpoint.

Protection is a property of *code objects*: ``enable_ki_protection`` / ``disable_ki_protection``
mark a function's code, and the stack walk stops at the innermost marked frame. Frames of
nursery_io's own modules count as protected unless marked otherwise. A task's root coroutine
frame ends the walk with the task's default: user tasks are unprotected, system tasks are
protected. Marking the code object (rather than wrapping the function) keeps the hot path
free of wrapper frames and works the same for plain, generator, coroutine and async
generator functions; the flip side is that every function sharing that code object (for
example closures created by one ``def``) shares the mark, which is what a decorator means.
"""

from __future__ import annotations

import sys
import types
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ._context import GLOBAL_RUN_CONTEXT

if TYPE_CHECKING:
    from ._task import Task

__all__ = [
    "currently_ki_protected",
    "disable_ki_protection",
    "enable_ki_protection",
    "ki_protection_enabled",
]

F = TypeVar("F", bound=Callable[..., object])

_CODE_PROTECTION: weakref.WeakKeyDictionary[types.CodeType, bool] = weakref.WeakKeyDictionary()
_PACKAGE_PREFIX = __name__.split(".")[0] + "."


def _mark(fn: F, protected: bool) -> F:
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        raise TypeError(
            f"{fn!r} is not a Python function; KeyboardInterrupt protection can only be "
            "set on functions defined in Python"
        )
    _CODE_PROTECTION[code] = protected
    return fn


def enable_ki_protection(fn: F, /) -> F:
    """Decorator: KeyboardInterrupt is deferred while ``fn`` (and what it calls) runs."""
    return _mark(fn, True)


def disable_ki_protection(fn: F, /) -> F:
    """Decorator: KeyboardInterrupt may be raised directly inside ``fn``."""
    return _mark(fn, False)


def _root_frame(task: Task) -> types.FrameType | None:
    coro = task.coro
    frame = getattr(coro, "cr_frame", None)
    if frame is None:
        frame = getattr(coro, "gi_frame", None)
    return frame


def ki_protection_enabled(frame: types.FrameType | None) -> bool:
    """Whether a KeyboardInterrupt arriving while ``frame`` executes must be deferred."""
    try:
        task: Task | None = GLOBAL_RUN_CONTEXT.task
    except AttributeError:
        task = None
    root = _root_frame(task) if task is not None else None
    while frame is not None:
        code = frame.f_code
        mark = _CODE_PROTECTION.get(code)
        if mark is not None:
            return mark
        if frame is root:
            assert task is not None
            return task._system_task
        if code.co_name == "__del__":
            # Finalizers run at arbitrary points; interrupting them corrupts state silently.
            return True
        module = frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith(_PACKAGE_PREFIX):
            return True
        frame = frame.f_back
    # Outside any task (for example the runner's own frames before the first step).
    return True


def currently_ki_protected() -> bool:
    """Whether KeyboardInterrupt is currently deferred for the calling code."""
    return ki_protection_enabled(sys._getframe(1))
