"""What the pytest plugin gives pytest for fixtures: placeholders for the fixtures that only
exist inside a test's run, and the built-in ``nursery``, ``mock_clock`` and ``autojump_clock``
fixtures (registered with pytest by ``nursery_io.pytest_plugin``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Final

import pytest

import nursery_io
from nursery_io.testing import MockClock

from .trio_mode import PYTEST_TRIO_PLUGIN

# Set on a fixture function that must run inside the test's run, even a plain ``def``.
FORCED_ATTR: Final = "_nursery_io_fixture"
# What pytest_trio.trio_fixture sets on a fixture function.
PYTEST_TRIO_FORCED_ATTR: Final = "_force_trio_fixture"
# Set on our built-in fixture functions: the fixture's name.
BUILTIN_ATTR: Final = "_nursery_io_builtin_fixture"


class DeferredFixture:
    """What pytest holds for a fixture that can only be evaluated inside the test's run."""

    __slots__ = ("func", "kwargs", "name")

    def __init__(self, name: str, func: Callable[..., Any], kwargs: dict[str, object]) -> None:
        self.name = name
        self.func = func
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return (
            f"<nursery_io fixture {self.name!r}: its value only exists inside the test's "
            "nursery_io run>"
        )


DEFERRED_KEY: Final = pytest.StashKey[list[DeferredFixture]]()


def nursery_fixture() -> nursery_io.Nursery:
    """A nursery for the test (or fixture) that asks for it, open for as long as it runs.

    Each requester gets its own nursery, owned by its own task: for the test, the nursery's
    tasks are cancelled when the test returns; for a fixture, after its teardown. A task
    in it that raises cancels the requester and fails the test with that error.
    """
    # Only pytest-trio calls this: when this definition hides its own `nursery` (both
    # plugins active), it serves pytest-trio's tests as a trio_fixture and must return
    # pytest-trio's marker value. nursery_io's plugin never calls it.
    placeholder: Any = getattr(
        sys.modules.get(PYTEST_TRIO_PLUGIN), "NURSERY_FIXTURE_PLACEHOLDER", None
    )
    if placeholder is None:
        raise AssertionError("unreachable: the nursery_io plugin supplies this fixture's value")
    return placeholder  # type: ignore[no-any-return]


# Forced: a plain test asking for it gets our explanation, not pytest's generic one; and
# for pytest-trio it is a trio_fixture like its own `nursery`.
setattr(nursery_fixture, FORCED_ATTR, True)
setattr(nursery_fixture, PYTEST_TRIO_FORCED_ATTR, True)
# The value pytest caches for `nursery`; each node that uses it gets its own nursery.
NURSERY: Final = DeferredFixture("nursery", nursery_fixture, {})


def mock_clock_fixture() -> MockClock:
    """A :class:`~nursery_io.testing.MockClock` used as the test's clock (time stands still
    unless the test moves it)."""
    return MockClock()


def autojump_clock_fixture() -> MockClock:
    """A :class:`~nursery_io.testing.MockClock` that jumps to the next deadline whenever every
    task is blocked, so sleeps and timeouts in the test take no real time."""
    return MockClock(autojump_threshold=0)


OWN_BUILTINS: Final[dict[str, Callable[[], object]]] = {
    "nursery": nursery_fixture,
    "mock_clock": mock_clock_fixture,
    "autojump_clock": autojump_clock_fixture,
}
for _name, _builtin in OWN_BUILTINS.items():
    setattr(_builtin, BUILTIN_ATTR, _name)
del _name, _builtin
