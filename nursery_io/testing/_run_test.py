"""A decorator that turns an async test function into a plain one that runs it under
:func:`nursery_io.run`, for test runners that only know how to call plain functions."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import ParamSpec, TypeVar

from .. import run
from ..abc import Clock, Instrument

__all__ = ["run_test", "select_clock_and_instruments", "trio_test"]

P = ParamSpec("P")
T = TypeVar("T")


def select_clock_and_instruments(
    named_values: Iterable[tuple[str, object]],
) -> tuple[Clock | None, list[Instrument]]:
    """Pick the run's clock and instruments out of ``(name, value)`` pairs.

    Every :class:`~nursery_io.abc.Instrument` is used. At most one distinct
    :class:`~nursery_io.abc.Clock` may be present (a run has exactly one clock); the same
    object under several names counts once.
    """
    clocks: dict[int, tuple[str, Clock]] = {}
    instruments: dict[int, Instrument] = {}
    for name, value in named_values:
        if isinstance(value, Clock):
            clocks.setdefault(id(value), (name, value))
        if isinstance(value, Instrument):
            instruments.setdefault(id(value), value)
    if len(clocks) > 1:
        # Trio's exact text: its tests match it whole, notes included.
        raise ValueError("too many clocks spoil the broth!")
    clock = next(iter(clocks.values()))[1] if clocks else None
    return clock, list(instruments.values())


def run_test(fn: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """Decorate an ``async def`` test so that calling it runs it with :func:`nursery_io.run`.

    Keyword arguments that are a :class:`~nursery_io.abc.Clock` (at most one) or
    :class:`~nursery_io.abc.Instrument` objects are still passed to the function, and are
    also handed to ``run()`` as its ``clock=`` and ``instruments=``; so a fixture that
    provides ``MockClock(autojump_threshold=0)`` makes the whole test use virtual time.
    Trio spelling: ``trio_test``.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        __tracebackhide__ = True
        clock, instruments = select_clock_and_instruments(kwargs.items())
        return run(functools.partial(fn, *args, **kwargs), clock=clock, instruments=instruments)

    return wrapper


#: Trio's name for :func:`run_test`.
trio_test = run_test
