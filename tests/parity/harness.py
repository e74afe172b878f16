"""The harness behind every test in tests/parity/: the same code, run under Trio and nursery_io.

A *scenario* is written once against a library module ``lib`` (``trio`` or ``nursery_io``,
whose public APIs match) and returns what it observed, a *trace*. It runs under both
libraries and the two traces must be equal. Trio runs simultaneously runnable tasks in a
random order, so scenarios sequence their tasks with virtual time or
``wait_all_tasks_blocked`` wherever order matters, and sort where it doesn't.

Each test file registers its scenarios in its own `Scenarios` and compares them with
`assert_same_trace`; `same_under_both` compares anything else a test computes per library.
Exceptions go into traces as data: `shape` for types and texts, `Raised` where our message
may add to Trio's.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, Self, TypeVar

import pytest
import trio
import trio.testing

import nursery_io
import nursery_io.testing

T = TypeVar("T")
Trace = list[Any]

LIBRARIES: tuple[ModuleType, ModuleType] = (trio, nursery_io)
# For a test that checks something of each library on its own.
each_library = pytest.mark.parametrize("lib", LIBRARIES, ids=["trio", "nursery_io"])

# The library the harness runs now: some trace entries compare differently on Trio's side.
_running: list[ModuleType] = [nursery_io]


def running_trio() -> bool:
    return _running[0] is trio


def lib_testing(lib: ModuleType) -> Any:
    """``lib.testing``, imported (``trio.testing`` is not imported by ``import trio``)."""
    return importlib.import_module(lib.__name__ + ".testing")


def autojump_clock(lib: ModuleType) -> Any:
    """A MockClock that skips ahead whenever every task is blocked: virtual time."""
    return lib_testing(lib).MockClock(autojump_threshold=0)


@dataclass(frozen=True)
class Scenario:
    fn: Callable[..., Any]
    autojump: bool

    @property
    def name(self) -> str:
        return self.fn.__name__


class Scenarios(Collection[Scenario]):
    """The scenarios of one test file, registered with ``@scenarios`` or
    ``@scenarios(autojump=True)`` (run with `autojump_clock`)."""

    def __init__(self, *, autojump: bool = False) -> None:
        self._default_autojump = autojump
        self._by_name: dict[str, Scenario] = {}

    def __call__(
        self, fn: Callable[..., Any] | None = None, *, autojump: bool | None = None
    ) -> Any:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            assert fn.__name__ not in self._by_name, f"two scenarios named {fn.__name__}"
            jump = self._default_autojump if autojump is None else autojump
            self._by_name[fn.__name__] = Scenario(fn, jump)
            return fn

        return register if fn is None else register(fn)

    def __iter__(self) -> Iterator[Scenario]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, item: object) -> bool:
        return item in self._by_name.values()

    def names(self) -> set[str]:
        return set(self._by_name)

    def parametrize(self) -> pytest.MarkDecorator:
        """Parametrize a test with argument ``scenario``, one case per scenario. pytest reads
        the registry when it collects the file, after every scenario has registered."""
        return pytest.mark.parametrize("scenario", self, ids=lambda s: s.name)


def run_under(
    lib: ModuleType, fn: Callable[..., Any], *args: Any, autojump: bool = False, **kwargs: Any
) -> Any:
    """``lib.run(fn, *args)``, on virtual time with ``autojump``."""
    _running[0] = lib
    if autojump:
        kwargs["clock"] = autojump_clock(lib)
    return lib.run(fn, *args, **kwargs)


def same_under_both(
    observe: Callable[[ModuleType], T], *, matches: Callable[[T, T], bool] | None = None
) -> T:
    """``observe(trio)``, then ``observe(nursery_io)``: the two must be equal (or satisfy
    ``matches(trio's, ours)``). Returns Trio's."""
    _running[0] = trio
    expected = observe(trio)
    _running[0] = nursery_io
    got = observe(nursery_io)
    same = got == expected if matches is None else matches(expected, got)
    assert same, f"\ntrio:       {expected!r}\nnursery_io: {got!r}"
    return expected


def run_both(
    fn: Callable[[ModuleType], Awaitable[T]],
    *,
    autojump: bool = False,
    clock: Callable[[ModuleType], Any] | None = None,
) -> T:
    """``lib.run(fn, lib)`` under each library (with a clock made by ``clock(lib)``, or on
    virtual time with ``autojump``): the results must be equal. Returns Trio's."""

    def observe(lib: ModuleType) -> T:
        kwargs = {} if clock is None else {"clock": clock(lib)}
        result: T = run_under(lib, fn, lib, autojump=autojump, **kwargs)
        return result

    return same_under_both(observe)


def assert_same_trace(
    scenario: Scenario, *args: Any, before_each: Callable[[], object] | None = None
) -> None:
    """Run a scenario ``fn(lib, *args)`` under both libraries (calling ``before_each()``
    before each run); it must record something."""

    def observe(lib: ModuleType) -> Any:
        if before_each is not None:
            before_each()
        return run_under(lib, scenario.fn, lib, *args, autojump=scenario.autojump)

    assert same_under_both(observe), "a scenario must record something"


async def outcome(fn: Callable[[], Awaitable[Any]], describe: Callable[[Exception], Any]) -> Any:
    """What an awaited call did: ``("returned", result)``, or ``describe(exc)`` of what it
    raised. A bytearray result is recorded as bytes, which reads better in a failed diff."""
    try:
        result = await fn()
    except Exception as exc:
        return describe(exc)
    return ("returned", bytes(result) if isinstance(result, bytearray) else result)


def sync_outcome(fn: Callable[[], Any], describe: Callable[[Exception], Any]) -> Any:
    """What a call did: ``("returned", result)``, or ``describe(exc)`` of what it raised."""
    try:
        return ("returned", fn())
    except Exception as exc:
        return describe(exc)


def shape(exc: BaseException, leaf: Callable[[BaseException], Any] = str) -> Any:
    """An exception as comparable data: its type name and ``leaf(exc)``; a group's members
    are sorted, as the order in which tasks fail is up to the scheduler."""
    if isinstance(exc, BaseExceptionGroup):
        return (type(exc).__name__, sorted((shape(e, leaf) for e in exc.exceptions), key=repr))
    return (type(exc).__name__, leaf(exc))


@dataclass(frozen=True)
class Raised:
    """An exception in a trace, for tests that compare messages. Recorded on the same side,
    two compare exactly; across sides, the types and ``extra`` (a cause, an errno: whatever
    the test records besides) must be equal and Trio's message contained in ours, which
    may add a hint. `from_exception` records the side."""

    type_name: str
    message: str
    extra: Any = None
    by_trio: bool = False

    # Whether ours may record an extra where Trio records none (a cause naming the
    # original failure, say).
    EXTRA_OPTIONAL: ClassVar[bool] = False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Raised):
            return NotImplemented
        if self.type_name != other.type_name:
            return False
        if self.by_trio == other.by_trio:
            return self.message == other.message and self.extra == other.extra
        theirs, ours = (self, other) if self.by_trio else (other, self)
        if theirs.extra != ours.extra and not (self.EXTRA_OPTIONAL and theirs.extra is None):
            return False
        return theirs.message in ours.message

    def __hash__(self) -> int:
        return hash(self.type_name)

    @classmethod
    def from_exception(cls, exc: BaseException, message: str, extra: Any = None) -> Self:
        """``exc`` as raised under the library the harness runs now."""
        return cls(type(exc).__name__, message, extra, running_trio())
